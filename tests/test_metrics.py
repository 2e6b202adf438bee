import numpy as np
import pytest
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

from cryoem_denoise.evaluation import metrics


def test_hand_computed_values():
    ref = np.array([[0, 10], [20, 30]], np.float32)
    img = np.array([[1, 8], [20, 34]], np.float32)
    assert metrics.mae(ref, img) == pytest.approx((1 + 2 + 0 + 4) / 4)
    assert metrics.mse(ref, img) == pytest.approx((1 + 4 + 0 + 16) / 4)
    assert metrics.rmse(ref, img) == pytest.approx(np.sqrt(21 / 4))
    assert metrics.psnr(ref, img) == pytest.approx(10 * np.log10(255 ** 2 / (21 / 4)))
    assert metrics.psnr(ref, ref) == float("inf")


def test_noise_of_sigma_40_gives_the_expected_psnr():
    rng = np.random.default_rng(0)
    ref = rng.uniform(0, 255, (256, 256))
    noisy = ref + rng.normal(0, 40, ref.shape)
    # MSE ~ 1600, PSNR = 10 log10(255^2 / 1600) ~ 16.1 dB
    assert metrics.mse(ref, noisy) == pytest.approx(1600, rel=0.03)
    assert metrics.psnr(ref, noisy) == pytest.approx(16.09, abs=0.15)


def test_agrees_with_scikit_image():
    rng = np.random.default_rng(1)
    ref = rng.uniform(0, 255, (64, 48))
    img = np.clip(ref + rng.normal(0, 20, ref.shape), 0, 255)
    assert metrics.mse(ref, img) == pytest.approx(mean_squared_error(ref, img))
    assert metrics.psnr(ref, img) == pytest.approx(peak_signal_noise_ratio(ref, img, data_range=255))
    assert metrics.ssim(ref, img, gaussian=False) == pytest.approx(
        structural_similarity(ref, img, data_range=255))
    wang = structural_similarity(ref, img, data_range=255, gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False)
    assert metrics.ssim(ref, img) == pytest.approx(wang)
    assert metrics.ssim(ref, ref) == pytest.approx(1.0)


def test_all_metrics_and_shape_check():
    ref = np.zeros((16, 16))
    res = metrics.all_metrics(ref, ref + 1)
    assert set(res) == set(metrics.NAMES)
    with pytest.raises(ValueError, match="shapes differ"):
        metrics.mse(ref, np.zeros((16, 15)))


def test_ssim_on_images_smaller_than_the_window():
    ref = np.arange(64, dtype=float).reshape(8, 8)
    assert metrics.ssim(ref, ref) == pytest.approx(1.0)
    assert metrics.ssim(ref, ref[::-1]) < 1.0


def _band_limited(shape, width, rng):
    """White noise filtered by exp(-k^2 / (2 width^2)), k in cycles/px."""
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :]
    gain = np.exp(-(fx ** 2 + fy ** 2) / (2 * width ** 2))
    return np.fft.irfft2(np.fft.rfft2(rng.standard_normal(shape)) * gain, s=shape)


def test_frc_of_an_image_with_itself_is_one_to_nyquist():
    rng = np.random.default_rng(0)
    image = 100 + 20 * rng.standard_normal((64, 80))
    freq, values = metrics.frc(image, image)
    assert len(freq) == 32 and freq[0] == pytest.approx(1 / 64) and freq[-1] == pytest.approx(0.5)
    np.testing.assert_allclose(values, 1, atol=1e-9)
    # a change of scale and offset changes nothing
    np.testing.assert_allclose(metrics.frc(image, 3 * image - 50)[1], 1, atol=1e-9)
    result = metrics.frc_resolution(image, image, pixel_size=1.5)
    assert result.beyond_nyquist and result.resolution is None
    assert str(result).startswith("beyond Nyquist") and "3 Å" in str(result)
    assert result.to_dict()["beyond_nyquist"] is True


def test_frc_of_independent_noise_is_near_zero():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((2, 128, 128))
    freq, values = metrics.frc(a, b)
    # ring k (k/128 cycles/px) holds about pi k independent complex coefficients, two real
    # numbers each: the FRC of independent images there is ~ N(0, 1 / (2 pi k))
    z = values * np.sqrt(2 * np.pi * freq * 128)
    assert np.abs(z).max() < 4 and z.std() == pytest.approx(1, abs=0.2)
    assert abs(z.mean()) < 0.4
    assert np.abs(values[freq > 0.25]).max() < 0.2
    assert metrics.frc_resolution(a, b).frequency < 0.1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_frc_of_noisy_halves_crosses_where_theory_says(seed):
    # halves s + n1, s + n2: FRC = S / (S + N), so 0.5 where the signal's power falls to the
    # noise's and 0.143 where it is 1/6 of it; with a Gaussian spectrum both are analytic
    rng = np.random.default_rng(seed)
    sigma = 0.1
    width = 0.25 / np.sqrt(-np.log(sigma ** 2 * 0.143 / 0.857))
    signal = _band_limited((256, 256), width, rng)
    a = signal + sigma * rng.standard_normal(signal.shape)
    b = signal + sigma * rng.standard_normal(signal.shape)
    equal_power = width * np.sqrt(-np.log(sigma ** 2))  # 0.212 cycles/px
    assert metrics.frc_resolution(a, b, threshold=0.5).frequency == pytest.approx(equal_power,
                                                                                  abs=0.015)
    result = metrics.frc_resolution(a, b, pixel_size=2.0)
    assert result.frequency == pytest.approx(0.25, abs=0.015)
    assert result.resolution == pytest.approx(2.0 / result.frequency)
    assert str(result).endswith("cycles/px)") and "Å" in str(result)


def test_frc_window_keeps_the_periodic_edge_out():
    # a shared ramp jumps at the wrapped edges: without the window its cross of power
    # correlates two independent noise images up to Nyquist
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:128, 0:128]
    ramp = 3.0 * (x + y)
    a, b = ramp + 10 * rng.standard_normal((2, 128, 128))
    _, bare = metrics.frc(a, b, taper=0)
    freq, windowed = metrics.frc(a, b)
    assert bare[-8:].min() > 0.5
    assert np.abs(windowed[freq > 0.3]).max() < 0.2
    assert metrics.frc_resolution(a, b, taper=0).beyond_nyquist


def test_frc_refusals():
    from cryoem_denoise.errors import ConfigError, InputError

    image = np.zeros((32, 32))
    with pytest.raises(InputError, match="same shape"):
        metrics.frc(image, np.zeros((32, 31)))
    with pytest.raises(InputError, match="same shape"):
        metrics.frc_resolution(image, np.zeros((31, 32)))
    with pytest.raises(InputError, match="2D"):
        metrics.frc(np.zeros((2, 32, 32)), np.zeros((2, 32, 32)))
    with pytest.raises(InputError, match="8x8"):
        metrics.frc(np.zeros((4, 32)), np.zeros((4, 32)))
    bad = image.copy()
    bad[1, 1] = np.inf
    with pytest.raises(InputError, match="finite"):
        metrics.frc(image, bad)
    with pytest.raises(ConfigError, match="threshold"):
        metrics.frc_resolution(image, image, threshold=1.5)
    with pytest.raises(ConfigError, match="pixel size"):
        metrics.frc_resolution(image, image, pixel_size=0)
    with pytest.raises(ConfigError, match="taper"):
        metrics.frc(image, image, taper=2)
    # images with no power anywhere correlate nowhere (0, not NaN)
    assert not np.isnan(metrics.frc(image, image)[1]).any()

import numpy as np
import pytest
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

from cryoem_denoise import metrics


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

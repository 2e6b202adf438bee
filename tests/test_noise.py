import numpy as np
import pytest

from cryoem_denoise.errors import ConfigError, InputError
from cryoem_denoise.data.noise import (SigmaSpec, add_gaussian_noise, add_gaussian_noise_tf, estimate_sigma,
                                  expected_counts, shot_noise)


@pytest.mark.parametrize("text,low,high", [("40", 40, 40), (25, 25, 25), ("10:80", 10, 80),
                                           (" 5.5 : 6 ", 5.5, 6)])
def test_parse(text, low, high):
    spec = SigmaSpec.parse(text)
    assert (spec.low, spec.high) == (low, high)
    assert SigmaSpec.parse(str(spec)) == spec


@pytest.mark.parametrize("text", ["0", "-3", "300", "80:10", "a", "1:2:3", "nan", ""])
def test_parse_rejects(text):
    with pytest.raises(ConfigError):
        SigmaSpec.parse(text)


def test_numpy_noise_is_seeded_and_has_sigma():
    clean = np.full((256, 256), 128.0, np.float32)
    a, s1 = add_gaussian_noise(clean, "40", 7)
    b, s2 = add_gaussian_noise(clean, "40", 7)
    np.testing.assert_array_equal(a, b)
    assert s1 == s2 == 40
    assert a.dtype == np.float32
    assert np.std(a - clean) == pytest.approx(40, rel=0.02)
    assert np.mean(a - clean) == pytest.approx(0, abs=0.5)
    assert a.min() < 0 or a.max() > 255  # not clipped
    c, _ = add_gaussian_noise(clean, "40", 8)
    assert not np.array_equal(a, c)


def test_range_draws_sigma_within_bounds():
    sigmas = [add_gaussian_noise(np.zeros((8, 8)), "10:80", seed)[1] for seed in range(200)]
    assert min(sigmas) >= 10 and max(sigmas) <= 80
    assert np.mean(sigmas) == pytest.approx(45, abs=4)


def test_tensorflow_noise_matches_the_numpy_definition():
    tf = pytest.importorskip("tensorflow")
    clean = tf.fill((64, 64, 64, 1), 100.0)
    noisy, sigma = add_gaussian_noise_tf(clean, "10:80", seed=(1, 2))
    again, _ = add_gaussian_noise_tf(clean, "10:80", seed=(1, 2))
    np.testing.assert_array_equal(noisy.numpy(), again.numpy())
    sigma = sigma.numpy()
    assert sigma.min() >= 10 and sigma.max() <= 80
    per_image_std = np.std((noisy - clean).numpy(), axis=(1, 2, 3))
    np.testing.assert_allclose(per_image_std, sigma, rtol=0.06)
    fixed, s = add_gaussian_noise_tf(clean[:2], 40, seed=(3, 4))
    np.testing.assert_allclose(s.numpy(), [40, 40])


def _field(shape=(128, 128), seed=0):
    """A smooth clean field on [0, 255] (blobs), like a min-max stretched simulated one."""
    from scipy.ndimage import gaussian_filter

    f = gaussian_filter(np.random.default_rng(seed).normal(size=shape), 4)
    return ((f - f.min()) * (255 / (f.max() - f.min()))).astype(np.float32)


def test_expected_counts_have_the_dose_as_mean_and_the_contrast_as_relative_std():
    clean = _field()
    lam = expected_counts(clean, 30, contrast=0.05)
    assert lam.shape == clean.shape and lam.min() > 0
    assert lam.mean() == pytest.approx(30, rel=1e-9)
    assert lam.std() / lam.mean() == pytest.approx(0.05, rel=1e-6)
    # any scale and offset of the clean field give the same counts; brighter stays brighter
    np.testing.assert_allclose(expected_counts(3 * clean + 7, 30, contrast=0.05), lam)
    assert np.corrcoef(lam.ravel(), clean.ravel())[0, 1] == pytest.approx(1)
    # each image of a stack separately; a constant image is the flat beam
    stack = np.stack([clean, 2 * clean, np.full_like(clean, 9)])
    lams = expected_counts(stack, 30, contrast=0.05)
    np.testing.assert_allclose(lams[1], lam)
    np.testing.assert_allclose(lams[2], 30)


def test_counts_are_poisson_around_the_expected_counts():
    clean = _field()
    lam = expected_counts(clean, 20)
    counts = shot_noise(np.broadcast_to(clean, (64,) + clean.shape), 20, 3)
    assert counts.dtype == np.float32 and counts.shape == (64,) + clean.shape
    np.testing.assert_array_equal(counts, np.round(counts))  # whole electrons
    # per pixel over 64 draws: mean and variance both equal the expected count (Poisson)
    z = (counts.mean(axis=0) - lam) / np.sqrt(lam / 64)
    assert abs(z.mean()) < 0.02 and z.std() == pytest.approx(1, abs=0.02)
    ratio = counts.var(axis=0, ddof=1) / lam
    assert ratio.mean() == pytest.approx(1, abs=0.01)
    residual = counts - lam
    assert residual.var() / lam.mean() == pytest.approx(1, abs=0.01)


def test_halves_are_independent_half_doses_that_sum_to_a_full_exposure():
    clean = _field((256, 256))
    lam = expected_counts(clean, 40)
    a, b = shot_noise(clean, 40, 11, halves=True)
    assert a.mean() == pytest.approx(20, rel=0.01) and b.mean() == pytest.approx(20, rel=0.01)
    na, nb = a - lam / 2, b - lam / 2
    assert abs(np.corrcoef(na.ravel(), nb.ravel())[0, 1]) < 0.01  # 65536 px: sd ~0.004
    assert na.var() == pytest.approx(20, rel=0.02) and nb.var() == pytest.approx(20, rel=0.02)
    total = a + b
    assert (total - lam).var() == pytest.approx(40, rel=0.02)
    # the signal is shared: the halves correlate through it (at half dose, SNR 0.05)
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] == pytest.approx(0.05 / 1.05, abs=0.015)


def test_shot_noise_is_seeded():
    clean = _field((32, 32))
    np.testing.assert_array_equal(shot_noise(clean, 5, 1), shot_noise(clean, 5, 1))
    assert not np.array_equal(shot_noise(clean, 5, 1), shot_noise(clean, 5, 2))
    h1, h2 = shot_noise(clean, 5, np.random.default_rng(4), halves=True)
    g1, g2 = shot_noise(clean, 5, np.random.default_rng(4), halves=True)
    np.testing.assert_array_equal(h1, g1)
    np.testing.assert_array_equal(h2, g2)
    assert not np.array_equal(h1, h2)


@pytest.mark.parametrize("dose", [0, -1, float("nan"), float("inf"), "a"])
def test_bad_dose_is_one_config_error(dose):
    with pytest.raises(ConfigError, match="dose must be") as info:
        shot_noise(_field((16, 16)), dose, 0)
    assert "\n" not in str(info.value)


def test_bad_contrast_and_fields():
    with pytest.raises(ConfigError, match="contrast"):
        shot_noise(_field((16, 16)), 5, 0, contrast=1.5)
    with pytest.raises(InputError, match="image or a stack"):
        shot_noise(np.ones(16), 5, 0)
    bad = _field((16, 16))
    bad[3, 3] = np.nan
    with pytest.raises(InputError, match="non-finite"):
        shot_noise(bad, 5, 0)


# -- estimate_sigma --------------------------------------------------------------------------
@pytest.mark.parametrize("sigma", [10, 25, 40, 80])
def test_estimate_sigma_finds_the_noise_under_a_clean_field(sigma):
    for seed in range(3):
        clean = _field((256, 256), seed)
        noisy, _ = add_gaussian_noise(clean, sigma, 100 + seed)
        assert estimate_sigma(noisy) == pytest.approx(sigma, rel=0.05)


def test_estimate_sigma_of_a_clean_field_is_small_and_follows_the_scale():
    clean = _field((256, 256))
    assert estimate_sigma(clean) < 1.0
    noisy, _ = add_gaussian_noise(clean, 20, 5)
    s = estimate_sigma(noisy)
    assert isinstance(s, float)
    assert estimate_sigma(noisy * 1000 + 5e4) == pytest.approx(1000 * s, rel=1e-6)


def test_estimate_sigma_on_a_large_memmap_is_fast_sampled_and_deterministic(tmp_path):
    shape = (2100, 1900)  # over 2**20 pixels: estimated from 256 x 256 blocks
    mm = np.lib.format.open_memmap(tmp_path / "big.npy", mode="w+", dtype=np.float32, shape=shape)
    for y in range(0, shape[0], 700):
        mm[y:y + 700] = 120 + np.random.default_rng(y).normal(0, 30, (700, shape[1]))
    mm.flush()
    mm = np.load(tmp_path / "big.npy", mmap_mode="r")
    s = estimate_sigma(mm)
    assert s == pytest.approx(30, rel=0.03)
    assert estimate_sigma(mm) == s == estimate_sigma(np.array(mm))
    assert estimate_sigma(mm, max_pixels=mm.size) == pytest.approx(30, rel=0.01)


def test_estimate_sigma_ignores_hot_pixels_and_contamination():
    clean = _field((256, 256))
    noisy, _ = add_gaussian_noise(clean, 25, 9)
    bad = noisy.copy()
    bad[tuple(np.random.default_rng(1).integers(0, 256, (2, 30)))] = 5000  # hot pixels
    bad[:40, :60] = -300                                                    # flat dark blob
    assert estimate_sigma(bad) == pytest.approx(estimate_sigma(noisy), rel=0.05)


@pytest.mark.parametrize("image,match", [
    (np.zeros(16), "2D image"),
    (np.zeros((4, 8, 8)), "2D image"),
    (np.zeros((2, 50)), "too small"),
    (np.array([[1.0, np.nan, 2.0]] * 3), "non-finite"),
])
def test_estimate_sigma_bad_images(image, match):
    with pytest.raises(InputError, match=match) as info:
        estimate_sigma(image)
    assert "\n" not in str(info.value)

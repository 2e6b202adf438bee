import numpy as np
import pytest

from cryoem_denoise.errors import ConfigError, InputError
from cryoem_denoise.data.intensity import (METHODS, ROBUST_CENTRE, ROBUST_SPREAD, Affine, background,
                                      intensity_range, robust_stats, stride_sample, to_unit255)


def test_minmax_maps_to_0_255_and_back():
    img = np.random.default_rng(0).normal(5000, 600, (40, 30)).astype(np.float32)
    scaled, affine = to_unit255(img)
    assert scaled.dtype == np.float32
    assert scaled.min() == pytest.approx(0, abs=1e-4) and scaled.max() == pytest.approx(255, abs=1e-3)
    np.testing.assert_allclose(affine.inverse(scaled), img, rtol=1e-5)
    assert affine.sigma_to_units(255.0) == pytest.approx(img.max() - img.min(), rel=1e-6)


def test_percentile_clips_hot_pixels():
    img = np.random.default_rng(1).normal(100, 10, (100, 100)).astype(np.float32)
    img[5, 5] = 1e6  # a hot pixel
    scaled, affine = to_unit255(img, "percentile", (0.1, 99.9))
    assert scaled.max() == 255 and scaled.min() == 0
    assert affine.high < 1000  # the hot pixel did not set the range
    # most of the image keeps its contrast instead of collapsing near 0
    assert np.median(scaled) > 50


def test_integer_input_and_affine_constructor():
    img = np.array([[10, 20], [30, 40]], dtype=np.uint16)
    scaled, affine = to_unit255(img)
    np.testing.assert_allclose(scaled, [[0, 85], [170, 255]], atol=1e-4)
    assert affine == Affine(10.0, 40.0)


@pytest.mark.parametrize("img,exc,match", [
    (np.full((8, 8), 7.0), InputError, "constant image"),
    (np.array([[1.0, np.nan], [2.0, 3.0]]), InputError, "non-finite"),
    (np.zeros((0, 4)), InputError, "empty"),
])
def test_bad_images(img, exc, match):
    with pytest.raises(exc, match=match):
        to_unit255(img)


def test_bad_options():
    img = np.arange(16.0).reshape(4, 4)
    with pytest.raises(ConfigError, match="unknown intensity method"):
        to_unit255(img, "zscore")
    with pytest.raises(ConfigError, match="percentiles"):
        to_unit255(img, "percentile", (50, 10))


# -- 'robust' --------------------------------------------------------------------------------
def _micrograph(shape=(300, 300), seed=0):
    """A noisy 'micrograph' in file units: a weak smooth signal under Gaussian noise of 600."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    signal = gaussian_filter(rng.normal(size=shape), 3) * 2000
    return (5000 + signal + rng.normal(0, 600, shape)).astype(np.float32)


def _robust_std(x):
    return 1.4826 * np.median(np.abs(x - np.median(x)))


def test_robust_maps_median_and_robust_std_to_the_training_level():
    assert "robust" in METHODS
    img = _micrograph()
    scaled, affine = to_unit255(img, "robust")
    assert np.median(scaled) == pytest.approx(ROBUST_CENTRE, abs=1e-3)
    assert _robust_std(scaled) == pytest.approx(ROBUST_SPREAD, rel=1e-3)
    centre, spread = robust_stats(img)
    assert affine.low == pytest.approx(centre - ROBUST_CENTRE / ROBUST_SPREAD * spread)
    assert affine.high == pytest.approx(centre + (255 - ROBUST_CENTRE) / ROBUST_SPREAD * spread)


def test_robust_ignores_hot_pixels_and_dark_contamination():
    img = _micrograph()
    _, clean = to_unit255(img, "robust")
    bad = img.copy()
    bad[tuple(np.random.default_rng(1).integers(0, 300, (2, 20)))] = 1e6  # 20 hot pixels
    bad[:60, :75] = 300.0                                             # dark blob, 5 % of the area
    bad[-1, :] = 0.0                                                   # a dead row
    scaled, affine = to_unit255(bad, "robust")
    assert affine.gain == pytest.approx(clean.gain, rel=0.1)
    # the bulk stays where it was on the [0, 255] scale
    bulk = np.ones(img.shape, bool)
    bulk[:60, :75] = bulk[-1] = False
    assert np.median(scaled[bulk]) == pytest.approx(ROBUST_CENTRE, abs=0.1 * ROBUST_SPREAD)
    assert _robust_std(scaled[bulk]) == pytest.approx(ROBUST_SPREAD, rel=0.1)
    # min-max and percentile scaling are squeezed by the same defects
    for method in ("minmax", "percentile"):
        assert Affine(*intensity_range(bad, method)).gain < 0.7 * Affine(*intensity_range(img, method)).gain


def test_robust_is_an_exact_affine_and_clips_nothing():
    img = _micrograph()
    img[7, 9] = 1e5   # hot: far above 255 once scaled
    img[3, 4] = -1e4  # far below 0
    scaled, affine = to_unit255(img, "robust")
    assert scaled.dtype == np.float32
    assert scaled[7, 9] > 255 and scaled[3, 4] < 0
    np.testing.assert_allclose(scaled, affine.forward(img))
    np.testing.assert_allclose(affine.inverse(scaled), img, rtol=1e-5, atol=1e-3)
    assert affine.sigma_to_units(ROBUST_SPREAD) == pytest.approx(robust_stats(img)[1], rel=1e-6)


def test_robust_on_a_memmap_reads_a_stride_sample(tmp_path):
    shape = (1100, 1030)  # over 2**18 pixels: stride 3 (ceil(1100/3) x ceil(1030/3))
    mm = np.lib.format.open_memmap(tmp_path / "big.npy", mode="w+", dtype=np.float32, shape=shape)
    mm[:] = _micrograph(shape, seed=3)
    mm.flush()
    mm = np.load(tmp_path / "big.npy", mmap_mode="r")
    assert stride_sample(mm).shape == (367, 344)
    low, high = intensity_range(mm, "robust")
    assert (low, high) == intensity_range(np.array(mm), "robust")  # same, and repeatable
    # the sample's statistics are the whole image's
    full = np.asarray(mm, np.float64)
    centre = np.median(full)
    spread = _robust_std(full)
    assert (low + high) / 2 == pytest.approx(centre + (127.5 - ROBUST_CENTRE) / ROBUST_SPREAD * spread,
                                             rel=1e-3)
    assert (high - low) == pytest.approx(255 / ROBUST_SPREAD * spread, rel=0.01)


def test_robust_falls_back_to_std_for_sparse_counts_and_refuses_constant_images():
    counts = np.random.default_rng(2).poisson(0.3, (64, 64)).astype(np.uint16)  # MAD is 0
    low, high = intensity_range(counts, "robust")
    assert high - low == pytest.approx(255 / ROBUST_SPREAD * counts.std(), rel=1e-6)
    with pytest.raises(InputError, match="constant image"):
        to_unit255(np.full((8, 8), 7.0), "robust")
    with pytest.raises(InputError, match="non-finite"):
        to_unit255(np.array([[1.0, np.nan], [2.0, 3.0]]), "robust")
    with pytest.raises(InputError, match="empty"):
        to_unit255(np.zeros((0, 4)), "robust")


def test_background_follows_a_gradient_and_ignores_defects():
    y, x = np.mgrid[:400, :500]
    ramp = (3.0 * x + 2.0 * y).astype(np.float32)
    np.testing.assert_allclose(background(ramp, 128), ramp, atol=1e-2)  # a plane is kept
    img = ramp + np.random.default_rng(0).normal(0, 50, ramp.shape).astype(np.float32)
    img[100:120, 200:220] = -5000  # contamination within a block
    img[300, 300] = 1e6            # a hot pixel
    bg = background(img, 128)
    assert bg.shape == img.shape and bg.dtype == np.float32
    assert np.abs(bg - ramp).mean() < 5 and np.abs(bg - ramp).max() < 100  # max: at the blob
    np.testing.assert_array_equal(background(img, 128), bg)  # deterministic
    with pytest.raises(InputError, match="2D"):
        background(np.zeros((3, 8, 8)))
    with pytest.raises(ConfigError, match="scale"):
        background(img, 2)

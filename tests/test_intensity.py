import numpy as np
import pytest

from cryoem_denoise.errors import ConfigError, InputError
from cryoem_denoise.intensity import Affine, to_unit255


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

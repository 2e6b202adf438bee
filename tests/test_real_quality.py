"""Issue 10's no-reference quality criteria (cryoem_denoise.evaluation.quality), and the shipped model
measured by them on a real micrograph."""

import numpy as np
import pytest

from cryoem_denoise.evaluation import quality
from cryoem_denoise.errors import ConfigError, InputError


@pytest.fixture(scope="module")
def textured():
    """A 256² image on [0, 255] with structure at every scale, plus white noise."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(0)
    smooth = gaussian_filter(rng.normal(0, 1, (256, 256)), 4) * 400 + 128
    return (smooth + rng.normal(0, 20, smooth.shape)).astype(np.float32)


def test_an_added_checkerboard_gives_a_large_ratio(textured):
    y, x = np.indices(textured.shape)
    board = textured + 10.0 * (-1.0) ** (y + x)
    assert quality.checkerboard_ratio(board, textured) > 10
    stripes = textured + 10.0 * (-1.0) ** x  # a stride-2 pattern along one axis only
    assert quality.checkerboard_ratio(stripes, textured) > 10
    assert quality.checkerboard_ratio(textured, textured) == pytest.approx(1.0)


def test_a_blur_removes_high_frequencies(textured):
    from scipy.ndimage import gaussian_filter

    blurred = gaussian_filter(textured, 1.0)
    assert quality.high_frequency_ratio(blurred, textured) < 0.5
    assert quality.checkerboard_ratio(blurred, textured) < 1
    assert quality.high_frequency_ratio(textured, textured) == pytest.approx(1.0)


def test_ratios_do_not_depend_on_the_units(textured):
    out = textured[::-1].copy()
    for fn in (quality.checkerboard_ratio, quality.high_frequency_ratio):
        assert fn(3 * out + 7, 3 * textured + 7) == pytest.approx(fn(out, textured))


def test_ratio_inputs_are_checked(textured):
    with pytest.raises(InputError):
        quality.checkerboard_ratio(textured, textured[:-1])
    with pytest.raises(InputError):
        quality.high_frequency_ratio(textured, np.full_like(textured, 3.0))
    with pytest.raises(ConfigError):
        quality.high_frequency_ratio(textured, textured, cutoff=0.8)


def test_tiling_disagreement_is_zero_for_a_pixelwise_function(textured):
    assert quality.tiling_disagreement(lambda x: 0.5 * x, textured, 64) == 0.0
    comp = quality.tiling_comparison(lambda x: 0.5 * x, textured, 37, margin=10)
    assert comp.a.shape == (256 - 37 - 20,) * 2
    np.testing.assert_array_equal(comp.a, comp.b)
    np.testing.assert_allclose(comp.a, 0.5 * comp.image)


def test_tiling_disagreement_sees_a_grid_bound_function(textured):
    """Blocks processed independently (a tiler without overlap): the result depends on
    where the 64-pixel grid falls."""

    def blockwise_mean(img, block=64):
        out = np.empty_like(img)
        for y in range(0, img.shape[0], block):
            for x in range(0, img.shape[1], block):
                out[y:y + block, x:x + block] = img[y:y + block, x:x + block].mean()
        return out

    assert quality.tiling_disagreement(blockwise_mean, textured, 32) > 0.1
    # a shift by a whole block lands on the same grid relative to the content
    assert quality.tiling_disagreement(blockwise_mean, textured, 64, margin=8) == \
        pytest.approx(0.0, abs=1e-6)


def test_tiling_arguments_are_checked(textured):
    with pytest.raises(ConfigError):
        quality.tiling_disagreement(lambda x: x, textured, 128)
    with pytest.raises(ConfigError):
        quality.tiling_disagreement(lambda x: x, textured, 16, margin=120)
    with pytest.raises(InputError):
        quality.tiling_disagreement(lambda x: x[1:], textured, 16)


@pytest.fixture(scope="module")
def shipped_on_real(sample_files):
    """The shipped model on the central 1024² of the real micrograph: (input, output) on
    the [0, 255] scale the model sees."""
    from cryoem_denoise.io import image_io
    from cryoem_denoise.inference.denoiser import Denoiser

    section = image_io.read_sections(sample_files["epu2.9_example.mrc"])[0][0]
    c = section.shape[0] // 2
    crop = np.asarray(section[c - 512:c + 512, c - 512:c + 512], np.float32)
    denoiser = Denoiser.load("default", precision="float32")
    image = denoiser.scale(crop)[0]
    fn = quality.model_denoise_fn(denoiser, quality.estimate_noise_sigma(image))
    return image, fn(image)


def test_shipped_model_on_a_real_micrograph_meets_the_goals(shipped_on_real):
    image, output = shipped_on_real
    assert quality.checkerboard_ratio(output, image) <= quality.CHECKERBOARD_GOAL
    assert quality.high_frequency_ratio(output, image) <= quality.HIGH_FREQUENCY_GOAL


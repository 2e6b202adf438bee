"""What a real image goes through around the model: noise spectrum, resampling, outliers."""

import numpy as np
import pytest
from scipy import fft as sp_fft
from scipy.ndimage import gaussian_filter

from cryoem_denoise.data.intensity import Affine
from cryoem_denoise.errors import InputError
from cryoem_denoise.inference.conditioning import plan_conditioning
from cryoem_denoise.inference.outliers import replace_outliers
from cryoem_denoise.inference.resample import binning_factor, fourier_resize
from cryoem_denoise.inference.spectrum import (
    LOW_CUTOFF,
    estimate_noise_spectrum,
    radial_frequency,
)


def _field(shape, seed, width=6.0, amplitude=8.0):
    """A smooth 'particle' field: signal that dominates the low frequencies only."""
    rng = np.random.default_rng(seed)
    field = gaussian_filter(rng.normal(0, 1, shape), width)
    return amplitude * field / field.std()


def _coloured_noise(shape, transfer, seed):
    """White noise of unit variance through ``transfer(|k|)`` (a known spectrum)."""
    white = np.random.default_rng(seed).normal(0, 1, shape)
    gain = transfer(radial_frequency(shape))
    return np.real(sp_fft.ifft2(sp_fft.fft2(white) * gain)), gain


TRANSFERS = {
    "white": lambda k: np.ones_like(k),
    "gaussian roll-off": lambda k: np.exp(-(k / 0.35) ** 2),        # detector MTF-like
    "dose weighting-like": lambda k: 1.0 / (1.0 + (k / 0.18) ** 2),  # falls steeply
    "sinc (pixel)": lambda k: np.abs(np.sinc(k)),                     # counting detector
}


@pytest.mark.parametrize("name", list(TRANSFERS))
def test_noise_spectrum_is_measured_within_ten_percent(name):
    # the noise spectrum under a signal, from the cutoff to Nyquist, within 10 % of the truth
    shape = (1024, 1024)
    noise, _ = _coloured_noise(shape, TRANSFERS[name], seed=1)
    noise *= 20.0
    spectrum = estimate_noise_spectrum(_field(shape, 2) + 100.0 + noise)
    k = np.linspace(LOW_CUTOFF, 0.5, 30)
    truth = 400.0 * TRANSFERS[name](k) ** 2
    error = np.abs(spectrum.at(k) / truth - 1.0)
    assert error.max() < 0.10, (name, error.max())
    assert spectrum.is_white == (name == "white")


def test_noise_spectrum_of_a_stack_and_bad_images():
    stack = np.random.default_rng(0).normal(0, 3, (4, 64, 64))
    spectrum = estimate_noise_spectrum(list(stack))
    assert spectrum.at(0.3) == pytest.approx(9.0, rel=0.15)
    assert "white" in spectrum.summary()
    with pytest.raises(InputError, match="too small"):
        estimate_noise_spectrum(np.zeros((8, 8)))
    bad = stack[0].copy()
    bad[5, 5] = np.nan
    with pytest.raises(InputError, match="non-finite"):
        estimate_noise_spectrum(bad)


def test_whitening_makes_coloured_noise_white_and_recolouring_undoes_it():
    shape = (512, 512)
    noise, _ = _coloured_noise(shape, TRANSFERS["dose weighting-like"], seed=3)
    spectrum = estimate_noise_spectrum(noise)
    gain = spectrum.whitening(shape)
    whitened = sp_fft.irfft2(sp_fft.rfft2(noise) * gain, shape)
    assert estimate_noise_spectrum(whitened).is_white
    back = sp_fft.irfft2(sp_fft.rfft2(whitened) / gain, shape)
    np.testing.assert_allclose(back, noise, atol=1e-9)


@pytest.mark.parametrize("shape,to", [((256, 256), (128, 128)), ((255, 301), (127, 150)),
                                      ((100, 90), (150, 135)), ((64, 64), (64, 64))])
def test_fourier_resize_keeps_the_mean_and_band_limited_images(shape, to):
    y, x = np.mgrid[:shape[0], :shape[1]]
    smooth = 50 + 10 * np.cos(2 * np.pi * 3 * y / shape[0]) * np.sin(2 * np.pi * 2 * x / shape[1])
    out = fourier_resize(smooth.astype(np.float32), to)
    assert out.shape == to and out.dtype == np.float32
    assert float(out.mean()) == pytest.approx(float(smooth.mean()), abs=1e-3)
    yy, xx = np.mgrid[:to[0], :to[1]]
    want = 50 + 10 * np.cos(2 * np.pi * 3 * yy / to[0]) * np.sin(2 * np.pi * 2 * xx / to[1])
    np.testing.assert_allclose(out, want, atol=1e-3)
    # there and back: a band-limited image returns
    np.testing.assert_allclose(fourier_resize(out, shape), smooth, atol=1e-3)


@pytest.mark.parametrize("pixel,factor", [(0.667, 2.0), (0.5, 2.0), (0.3, 3.0), (1.0, 1.0),
                                          (3.0, 1.0), (4.0, 0.75), (None, 1.0)])
def test_binning_factor_brings_pixel_sizes_into_the_trained_range(pixel, factor):
    assert binning_factor(pixel, (0.7, 3.0)) == pytest.approx(factor)
    assert binning_factor(pixel, None) == 1.0


def test_isolated_hot_and_dead_pixels_are_replaced_and_structure_stays():
    rng = np.random.default_rng(4)
    image = rng.normal(3500, 60, (200, 200)).astype(np.float32)
    image[50:70, 50:70] -= 1500          # a dark blob of contamination: stays
    truth = image.copy()
    hot = [(10, 10), (100, 150), (0, 0), (199, 3)]
    for y, x in hot:
        image[y, x] = 45000               # hot (one at a corner)
    image[120, 30] = 0                    # dead
    image[150, 150:152] = 30000           # a hot pair: each is an outlier of the other's block
    replaced = replace_outliers(image)
    assert replaced == len(hot) + 3
    assert np.abs(image - truth).max() < 6 * 60 + 1
    assert replace_outliers(image) == 0  # nothing left
    assert replace_outliers(image, threshold=0) == 0


def _identity_scaling(image):
    return Affine(float(image.min()), float(image.max()))


@pytest.mark.parametrize("shape", [(300, 260), (301, 257)])
def test_conditioning_round_trip_gives_the_image_back_without_a_model(shape):
    # a model that returns its input: conditioning and restoring undo each other (odd
    # sizes too); a model that shifts the mean does not shift the output's
    noise, _ = _coloured_noise(shape, TRANSFERS["gaussian roll-off"], seed=5)
    image = (1000 + _field(shape, 6, amplitude=30) + 40 * noise).astype(np.float32)
    plan = plan_conditioning([image], _identity_scaling, keep_below=0.02)
    assert plan.whiten and plan.factor == 1.0
    prepared = plan.prepare(image)
    assert prepared.image.shape == shape and prepared.image.dtype == np.float32
    np.testing.assert_allclose(plan.restore(prepared.image.copy(), prepared), image, atol=0.05)
    shifted = plan.restore(prepared.image + 10.0, prepared)
    assert float(shifted.mean()) == pytest.approx(float(image.mean()), abs=0.05)


def test_conditioning_bins_super_resolution_and_returns_the_input_size():
    shape = (256, 200)
    image = (100 + _field(shape, 7) + np.random.default_rng(8).normal(0, 5, shape)).astype(np.float32)
    plan = plan_conditioning([image], _identity_scaling, pixel_size=0.5, trained_pixel_sizes=(0.7, 3.0))
    assert plan.factor == 2.0 and plan.model_shape(shape) == (128, 100)
    prepared = plan.prepare(image)
    assert prepared.image.shape == (128, 100)
    out = plan.restore(prepared.image.copy(), prepared)
    assert out.shape == shape
    # what comes back is the input without the frequencies beyond the binned Nyquist
    np.testing.assert_allclose(out, fourier_resize(fourier_resize(image, (128, 100)), shape), atol=0.05)


def test_keep_below_restores_the_lowest_frequencies_a_model_flattened():
    shape = (512, 512)
    y, _ = np.mgrid[:shape[0], :shape[1]]
    gradient = 40.0 * y / shape[0]       # an ice gradient: strong, far below 0.02 cycles/px
    image = (500 + gradient + np.random.default_rng(9).normal(0, 10, shape)).astype(np.float32)
    flat = np.full(shape, float(image.mean()), np.float32)
    for keep, kept in ((0.0, False), (0.02, True)):
        plan = plan_conditioning([image], _identity_scaling, keep_below=keep, whiten=False)
        prepared = plan.prepare(image)
        scaled_flat = prepared.affine.forward(flat)  # a 'model' that flattens everything
        out = plan.restore(scaled_flat, prepared)
        profile = out.mean(axis=1)
        assert (np.ptp(profile) > 30) == kept, (keep, np.ptp(profile))


def test_apply_bins_a_super_resolution_micrograph_and_returns_its_size(make_mrc, tmp_path):
    from click.testing import CliRunner

    from cryoem_denoise.cli import cli
    from cryoem_denoise.io import image_io

    rng = np.random.default_rng(10)
    shape = (256, 200)
    counts = rng.poisson(20 + _field(shape, 11, amplitude=2)).astype(np.float32)
    counts[17, 33] = 5000  # a hot pixel
    source = make_mrc(counts, "super.mrc", voxel_size=0.5)
    result = CliRunner().invoke(cli, ["apply", str(source), "--out", str(tmp_path / "o"),
                                      "--tile", "128"])
    assert result.exit_code == 0, result.output
    assert "binned 2x" in result.stderr and "1 hot/dead pixel(s) replaced" in result.stderr
    header = image_io.read_header(tmp_path / "o" / "super_denoised.mrc")
    assert header.section_shape == shape and header.pixel_size == pytest.approx(0.5, abs=1e-4)
    out = image_io.read_sections(tmp_path / "o" / "super_denoised.mrc")[0][0]
    assert out.max() < 100  # the hot pixel is gone, not smeared into a blob
    assert out.std() < counts[counts < 1000].std()  # denoised


@pytest.mark.parametrize("shape", [(9, 9), (12, 30), (31, 64)])
def test_images_too_small_to_measure_are_denoised_as_white(shape):
    image = (100 + np.random.default_rng(12).normal(0, 5, shape)).astype(np.float32)
    plan = plan_conditioning([image], _identity_scaling, keep_below=0.02)
    assert plan.spectrum is None and not plan.whiten and plan.keep_below == 0.0
    prepared = plan.prepare(image, 0)
    np.testing.assert_allclose(plan.restore(prepared.image.copy(), prepared), image, atol=1e-3)

"""Issue 18's measures for whole real micrographs (cryoem_denoise.evaluation.quality): band power
ratios, the seam score at the tile period, the edge score and the range excess. Each must
read ≈ 1 (or 0) for filters with no seams and no border effects, whatever the noise draw,
and far more for a tile grid or a band along the border."""

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from cryoem_denoise.errors import ConfigError, InputError
from cryoem_denoise.evaluation import quality
from cryoem_denoise.inference.tiling import make_grid, tile_positions

SIDE = 1024
#: Tiles of 128 px with 16 px overlap put nine tiles along a 1024-px side, spaced 112 px: a
#: tile frequency of 9.1 bins, as the default 512 / 64 gives along a 4096-px micrograph.
TILE, OVERLAP = 128, 16


def field(seed, side=SIDE, sigma=20.0):
    """A [0, 255]-like image: smooth structure at a few scales plus white noise of ``sigma``."""
    rng = np.random.default_rng(seed)
    smooth = gaussian_filter(rng.normal(0, 1, (side, side)), 6) * 300 + 128
    return (smooth + rng.normal(0, sigma, (side, side))).astype(np.float32)


@pytest.fixture(scope="module")
def image():
    return field(0)


def tiled_blur(img, width, mode):
    """A seamed filter: each tile of the project's grid blurred on its own (its edges
    see ``mode`` padding), later tiles written over earlier ones."""
    out = np.empty_like(img)
    ys = tile_positions(img.shape[0], TILE, OVERLAP)
    xs = tile_positions(img.shape[1], TILE, OVERLAP)
    for y in ys:
        for x in xs:
            out[y:y + TILE, x:x + TILE] = gaussian_filter(img[y:y + TILE, x:x + TILE], width,
                                                          mode=mode)
    return out


# -- band power ratios --------------------------------------------------------------------
def test_band_ratios_of_known_filters(image):
    low, mid = quality.LOW_BAND, quality.MID_BAND
    assert quality.band_power_ratio(image, image, *mid) == pytest.approx(1.0)
    assert quality.band_power_ratio(0.5 * image + 9, image, *mid) == pytest.approx(0.25)
    # an ideal low-pass at 0.03 cycles/px keeps the lowest band and removes the mid band
    k = np.hypot(np.fft.fftfreq(SIDE)[:, None], np.fft.fftfreq(SIDE)[None, :])
    ideal = np.fft.ifft2(np.fft.fft2(image) * (k <= 0.03)).real
    assert quality.band_power_ratio(ideal, image, *low) > 0.95
    assert quality.band_power_ratio(ideal, image, *mid) < 0.01


def test_band_ratio_of_a_blur_follows_its_transfer_function():
    noise = np.random.default_rng(3).normal(0, 1, (SIDE, SIDE))
    width = 2.0
    k = np.hypot(np.fft.fftfreq(SIDE)[:, None], np.fft.fftfreq(SIDE)[None, :])
    gain = np.exp(-2 * (np.pi * width * k) ** 2) ** 2  # the blur's power transfer
    for band in (quality.LOW_BAND, quality.MID_BAND, (0.2, 0.5)):
        inside = (k > band[0]) & (k <= band[1])
        expected = gain[inside].mean()  # white noise: every frequency the same power
        got = quality.band_power_ratio(gaussian_filter(noise, width, mode="wrap"), noise, *band)
        assert got == pytest.approx(expected, rel=0.05, abs=1e-4)


def test_band_ratio_inputs_are_checked(image):
    with pytest.raises(ConfigError):
        quality.band_power_ratio(image, image, 0.2, 0.05)
    with pytest.raises(InputError):
        quality.band_power_ratio(image, image[:-1], 0.05, 0.2)
    with pytest.raises(InputError):
        quality.band_power_ratio(image, np.full_like(image, 4.0), 0.05, 0.2)


# -- tile period --------------------------------------------------------------------------
def test_tile_stride_follows_the_tile_positions():
    assert quality.tile_stride(4096, 512, 64) == 448.0
    assert quality.tile_stride(3838, 512, 64) == pytest.approx((3838 - 512) / 8)
    assert quality.tile_stride(1024, 512, 64) == 256.0
    assert quality.tile_stride(500, 512, 64) is None
    assert quality.tile_stride(SIDE, TILE, OVERLAP) == pytest.approx(112)
    grid = make_grid((3838, 3710), 512, 64)
    sy, sx = quality.grid_strides(grid)
    assert sy == pytest.approx(np.diff(grid.ys).mean())
    assert sx == pytest.approx(np.diff(grid.xs).mean())
    assert quality.grid_strides(make_grid((300, 3710), 512, 64))[0] is None


# -- seam score ---------------------------------------------------------------------------
def test_seam_score_is_about_one_for_seam_free_filters():
    """A whole-image blur (reflect boundary) of many noise draws at the real grid's period:
    the score stays near 1 and under the goal every time."""
    period = quality.tile_stride(SIDE, TILE, OVERLAP)
    scores = []
    for seed in range(16):
        img = field(seed)
        out = gaussian_filter(img, 1.0 + 0.5 * (seed % 4), mode="reflect")
        scores.append(quality.seam_score(out, img, period))
    scores = np.array(scores)
    assert scores.max() < quality.SEAM_GOAL
    assert 0.9 < scores.mean() < 1.1
    white = np.random.default_rng(1).normal(0, 1, (SIDE, SIDE))  # correction = all the noise
    assert quality.seam_score(np.zeros_like(white), white, period) < quality.SEAM_GOAL


def test_seam_score_finds_a_tile_grid(image):
    period = quality.tile_stride(SIDE, TILE, OVERLAP)
    assert quality.seam_score(tiled_blur(image, 2.0, "constant"), image, period) > 50
    # the shipped model's old seams: about 2 grey levels within 16 px of each tile edge,
    # under noise of 20 (a grid the eye barely sees in the output, plain in the correction)
    out = gaussian_filter(image, 2.0)
    ridges = np.zeros(SIDE)
    for start in tile_positions(SIDE, TILE, OVERLAP)[1:]:
        ridges[start:start + 16] = 2.0
    assert quality.seam_score(out - ridges[None, :], image, period) > 3
    assert quality.seam_score(out - ridges[:, None], image, (period, None)) > 3
    assert quality.seam_score(out - ridges[:, None], image, (None, period)) < quality.SEAM_GOAL
    assert quality.seam_score(out - ridges[None, :] / 2, image, period) > quality.SEAM_GOAL


def test_seam_score_with_few_periods(image):
    """Two or three periods along a side (Topaz's 1024-px patches on a 3-4k micrograph) still
    give a score: ≈ 1 without seams, more with them; under two periods after the first half
    period, none."""
    out = gaussian_filter(image, 2.0)
    for period in (341.3, 400.0):
        assert quality.seam_score(out, image, period) < quality.SEAM_GOAL
        ridges = np.zeros(SIDE)
        for k in range(1, int(SIDE // period) + 1):
            ridges[int(k * period):int(k * period) + 16] = 4.0
        assert quality.seam_score(out - ridges[None, :], image, period) > 3
    assert quality.seam_score(out, image, 512) is None


def test_seam_score_inputs_are_checked(image):
    with pytest.raises(ConfigError):
        quality.seam_score(image, image, 2)
    with pytest.raises(ConfigError):
        quality.seam_score(image, image, (256, 256, 256))
    with pytest.raises(ConfigError):
        quality.seam_score(image, image, 256, harmonics=0)
    assert quality.seam_score(image, image + 1, (None, None)) is None
    assert quality.seam_score(image, image + 1, 2000) is None  # no harmonic below Nyquist


# -- edge score ---------------------------------------------------------------------------
def test_edge_score_is_about_one_for_a_whole_image_filter():
    for seed in range(6):
        img = field(seed)
        out = gaussian_filter(img, 1.5, mode="reflect")
        assert 0.7 < quality.edge_score(out, img) < 1.2
        assert quality.edge_score(out, img, block=1) == pytest.approx(1.0, abs=0.05)


def test_edge_score_finds_a_band_along_the_border(image):
    out = gaussian_filter(image, 1.5, mode="reflect")
    dark = out.copy()
    dark[:16] -= 3.0  # three grey levels along the top, under noise of 20
    dark[:, -16:] -= 3.0
    assert quality.edge_score(dark, image) > 3 * quality.EDGE_GOAL
    assert quality.edge_score(gaussian_filter(image, 1.5, mode="constant"), image) > 10
    assert quality.edge_score(out, image, width=32, block=8) < quality.EDGE_GOAL


def test_edge_score_inputs_are_checked(image):
    with pytest.raises(ConfigError):
        quality.edge_score(image, image, width=16, block=5)
    with pytest.raises(InputError):
        quality.edge_score(image[:40, :40], image[:40, :40] + 1)
    flat = image.astype(np.float64)
    with pytest.raises(InputError):
        quality.edge_score(flat, flat + 1)  # a constant correction: nothing to compare with


# -- range excess -------------------------------------------------------------------------
def test_range_excess_in_units_of_the_noise(image):
    out = gaussian_filter(image, 1.5)
    assert quality.range_excess(out, image) == 0.0
    sigma = quality.estimate_noise_sigma(image)
    assert sigma == pytest.approx(20, rel=0.1)
    over = out.copy()
    over[5, 7] = image.max() + 3 * sigma
    assert quality.range_excess(over, image) == pytest.approx(3.0)
    under = out.copy()
    under[9, 2] = image.min() - 0.5 * sigma
    assert quality.range_excess(under, image) == pytest.approx(0.5)
    assert quality.range_excess(3 * under + 1, 3 * image + 1) == pytest.approx(0.5, rel=1e-3)
    assert quality.range_excess(under, image, sigma=2 * sigma) == pytest.approx(0.25)
    with pytest.raises(InputError):
        quality.range_excess(out, image, sigma=0)


def test_the_measures_are_exported():
    for name in ("band_power_ratio", "seam_score", "edge_score", "range_excess", "tile_stride",
                 "grid_strides", "SEAM_GOAL", "EDGE_GOAL", "MID_BAND", "LOW_BAND"):
        assert name in quality.__all__
    assert all(hasattr(quality, name) for name in quality.__all__)

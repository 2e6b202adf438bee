"""Quality criteria that need no clean reference: for real micrographs and tiling.

Issue 10's criteria for a denoiser on real images, each a ratio of an output to its input
measured on the same intensity scale (both on [0, 255], or both in file units):

:func:`checkerboard_ratio`
    power on the Nyquist lines (k_x = ±1/2 or k_y = ±1/2 cycles/px) of the output over the
    input's (:func:`cryoem_denoise.evaluation.metrics.nyquist_power`). A stride-2 transposed
    convolution leaves its checkerboard on those lines; the goal is ≤ 1 (nothing added
    there).
:func:`high_frequency_ratio`
    power at ``|k| > cutoff`` cycles/px (default 0.3; mostly noise in a micrograph) of the
    output over the input's (:func:`cryoem_denoise.evaluation.metrics.high_frequency_power`); the
    goal is ≤ 0.5 (the denoiser removes at least half of it).
:func:`tiling_disagreement`
    how much a tiled denoiser's result depends on where its tile grid falls: the same field
    denoised with the grid offset by ``shift`` pixels, RMS of the difference over RMS of the
    denoising correction. The goal is ≤ 0.05.

Issue 18's measures for whole real micrographs, each of the correction ``image - output``
or of the output beside its input:

:func:`band_power_ratio`
    power in a radial band of spatial frequency of the output over the input's: in the mid
    band 0.05-0.2 cycles/px (mostly noise) the goal is ≤ 0.3, in the lowest band
    0.005-0.02 cycles/px (ice gradients, carbon, large particles) ≥ 0.5.
:func:`seam_score`
    power of the correction's column-mean and row-mean profiles (of strips) at the
    harmonics of the tile period over that at the frequencies around them; ≈ 1 with no
    seams, goal ≤ 1.2 (:func:`tile_stride` and :func:`grid_strides` give a tiling's period).
:func:`edge_score`
    RMS of the correction's 16-px block means along the image border over that in the
    interior: a dark or bright band along the edges; ≈ 1 for a whole-image filter, goal
    ≤ 1.5.
:func:`range_excess`
    how far the output goes beyond the input's range, in units of the input's noise σ;
    goal ≤ 1.

:func:`model_denoise_fn` wraps a :class:`~cryoem_denoise.inference.denoiser.Denoiser` as the
``image -> image`` function these take, with one noise sigma for every call (a model with
a noise-level input would otherwise estimate it per call, from a region that moves with
the shift).
"""

from dataclasses import dataclass

import numpy as np

from cryoem_denoise.data.noise import estimate_sigma
from cryoem_denoise.errors import ConfigError, InputError
from cryoem_denoise.evaluation.metrics import band_power, high_frequency_power, nyquist_power
from cryoem_denoise.inference.tiling import tile_positions

__all__ = [
    "CHECKERBOARD_GOAL", "HIGH_FREQUENCY_GOAL", "TILING_GOAL", "MID_BAND", "MID_BAND_GOAL",
    "LOW_BAND", "LOW_BAND_GOAL", "SEAM_GOAL", "EDGE_GOAL", "RANGE_GOAL", "BAND_TAPER",
    "checkerboard_ratio", "high_frequency_ratio", "TilingComparison", "tiling_comparison",
    "tiling_disagreement", "band_power_ratio", "tile_stride", "grid_strides", "seam_score",
    "edge_score", "range_excess", "estimate_noise_sigma", "model_denoise_fn",
]

#: Goals for real micrographs and tiling: no checkerboard, no high-frequency excess, tile
#: grids that agree (docs/results/quality.md).
CHECKERBOARD_GOAL = 1.0
HIGH_FREQUENCY_GOAL = 0.5
TILING_GOAL = 0.05

#: Issue 18's goals on whole real micrographs (docs/results/quality.md): the mid band
#: (cycles/px) loses most of its power, the lowest band keeps at least half, no tile grid in
#: the correction, no band along the border, no output beyond the input's range by more
#: than its noise σ.
MID_BAND = (0.05, 0.2)
MID_BAND_GOAL = 0.3
LOW_BAND = (0.005, 0.02)
LOW_BAND_GOAL = 0.5
SEAM_GOAL = 1.2
EDGE_GOAL = 1.5
RANGE_GOAL = 1.0
#: Fraction of each axis in the cosine edge of the window :func:`band_power_ratio` applies.
BAND_TAPER = 0.1


def _same_shape(output, image):
    output = np.asarray(output, np.float64)
    image = np.asarray(image, np.float64)
    if output.shape != image.shape or output.ndim != 2:
        raise InputError(f"need two 2D images of one shape, got {output.shape} and {image.shape}")
    return output, image


def _ratio(num, den, what):
    if not den > 0:
        raise InputError(f"the input has no {what} power; the ratio is undefined")
    return float(num / den)


def checkerboard_ratio(output, image):
    """Nyquist-line power of ``output`` over that of its input ``image``.

    Parameters
    ----------
    output : array_like
        The denoised 2D image.
    image : array_like
        The image it was denoised from, on the same intensity scale.

    Returns
    -------
    float
        > 1 when the output has more power than the input on the lines k_x = ±1/2 or
        k_y = ±1/2 cycles/px, where a stride-2 checkerboard lies; a denoiser that adds none
        gives ≤ 1 (the goal, :data:`CHECKERBOARD_GOAL`).

    Raises
    ------
    InputError
        Images of different shapes or not 2D, or an input with no power on those lines.
    """
    output, image = _same_shape(output, image)
    return _ratio(nyquist_power(output), nyquist_power(image), "Nyquist-line")


def high_frequency_ratio(output, image, cutoff=0.3):
    """Power at ``|k| > cutoff`` cycles/px of ``output`` over that of its input ``image``.

    Parameters
    ----------
    output : array_like
        The denoised 2D image.
    image : array_like
        The image it was denoised from, on the same intensity scale.
    cutoff : float
        Radial spatial frequency in cycles/px, in (0, 0.5·√2).

    Returns
    -------
    float
        The fraction of the input's high-frequency power left (goal ≤ 0.5,
        :data:`HIGH_FREQUENCY_GOAL`).

    Raises
    ------
    InputError
        Images of different shapes or not 2D, or an input with no power above ``cutoff``.
    ConfigError
        A cutoff outside (0, √2 / 2).
    """
    if not (np.isfinite(cutoff) and 0 < cutoff < np.sqrt(0.5)):
        raise ConfigError(f"cutoff must be in (0, {np.sqrt(0.5):.3f}) cycles/px, got {cutoff:g}")
    output, image = _same_shape(output, image)
    return _ratio(high_frequency_power(output, cutoff), high_frequency_power(image, cutoff),
                  "high-frequency")


@dataclass
class TilingComparison:
    """The two results of :func:`tiling_comparison` on their common region.

    Attributes
    ----------
    image : ndarray
        The input on the compared region.
    a, b : ndarray
        Output with the grid as it falls, and with the grid offset by ``shift``.
    shift, margin : int
    """

    image: np.ndarray
    a: np.ndarray
    b: np.ndarray
    shift: int
    margin: int

    @property
    def difference(self):
        """``a - b``."""
        return self.a - self.b

    @property
    def rms_difference(self):
        """RMS of ``a - b``."""
        return float(np.sqrt(np.mean(np.square(self.difference))))

    @property
    def rms_correction(self):
        """RMS of ``a - image``: how much the denoiser changed the image."""
        return float(np.sqrt(np.mean(np.square(self.a - self.image))))

    @property
    def ratio(self):
        """``rms_difference / rms_correction`` (goal ≤ :data:`TILING_GOAL`)."""
        return _ratio(self.rms_difference, self.rms_correction, "correction")


def tiling_comparison(denoise_fn, image, shift, margin=0):
    """Denoise ``image`` twice, the second time with the tile grid offset by ``shift``.

    Run A denoises ``image`` as it is. Run B denoises an image of the same shape whose
    content is moved by ``shift`` pixels down and right: ``shift`` reflected rows and
    columns in front, the last ``shift`` rows and columns dropped. A tiler that places
    its tiles by the image's shape (as :mod:`cryoem_denoise.inference.tiling` does) lays the same
    grid over both, so relative to the content B's grid is offset by ``shift`` pixels
    along both axes; with ``shift = tile / 2`` B's tile seams fall on A's tile centres.
    Both runs get the same input values (same scale: no per-image normalization
    differs), so a pixelwise denoiser gives identical results.

    Parameters
    ----------
    denoise_fn : callable
        ``denoise_fn(image) -> output`` of the same shape (e.g. :func:`model_denoise_fn`).
    image : array_like
        2D image, on the scale ``denoise_fn`` expects (already scaled to [0, 255] for a
        :class:`~cryoem_denoise.inference.denoiser.Denoiser`).
    shift : int
        Grid offset in pixels, ``1 <= shift < min(image.shape) / 2``.
    margin : int
        Pixels left out at each side of the common region (``image[:-shift, :-shift]``):
        0 compares everything, including the image edge (always a tile edge in A, inside
        the image in B, and the reverse at the far edge).

    Returns
    -------
    TilingComparison

    Raises
    ------
    ConfigError
        A shift or margin that leaves nothing to compare.
    InputError
        An image that is not 2D, or an output of another shape.
    """
    img = np.asarray(image, np.float32)
    if img.ndim != 2:
        raise InputError(f"need a 2D image, got shape {img.shape}")
    shift, margin = int(shift), int(margin)
    if not 1 <= shift < min(img.shape) / 2:
        raise ConfigError(f"shift must be in [1, {min(img.shape) / 2:g}), got {shift}")
    ny, nx = img.shape[0] - shift, img.shape[1] - shift
    if margin < 0 or 2 * margin >= min(ny, nx):
        raise ConfigError(f"margin {margin} leaves nothing of the {ny}x{nx} common region")
    moved = np.pad(img, ((shift, 0), (shift, 0)), mode="reflect")[:img.shape[0], :img.shape[1]]
    out_a = np.asarray(denoise_fn(img), np.float64)
    out_b = np.asarray(denoise_fn(moved), np.float64)
    for out in (out_a, out_b):
        if out.shape != img.shape:
            raise InputError(f"denoise_fn returned shape {out.shape} for an image of {img.shape}")
    # pixel (y, x) of the image is (y, x) in A and (y + shift, x + shift) in B
    region = (slice(margin, ny - margin), slice(margin, nx - margin))
    moved_region = (slice(shift + margin, shift + ny - margin),
                    slice(shift + margin, shift + nx - margin))
    return TilingComparison(image=img[region].astype(np.float64), a=out_a[region],
                            b=out_b[moved_region], shift=shift, margin=margin)


def tiling_disagreement(denoise_fn, image, shift, margin=0):
    """RMS(A − B) / RMS(A − input) for the same field under two tile grids.

    A and B are ``denoise_fn``'s outputs with the grid as it falls and offset by ``shift``
    pixels (see :func:`tiling_comparison`, which also gives the difference map). 0 for any
    pixelwise function; a tiled network whose tiles disagree at their seams or whose
    result depends on the position within a tile gives more. Goal: ≤ 0.05
    (:data:`TILING_GOAL`).

    Parameters
    ----------
    denoise_fn : callable
        ``denoise_fn(image) -> output`` of the same shape.
    image : array_like
        2D image on the scale ``denoise_fn`` expects.
    shift : int
        Grid offset in pixels (half a tile puts one grid's seams on the other's centres).
    margin : int
        Pixels left out at each side of the compared region.

    Returns
    -------
    float
    """
    return tiling_comparison(denoise_fn, image, shift, margin).ratio


def band_power_ratio(output, image, low, high, taper=BAND_TAPER):
    """Power at ``low < |k| <= high`` cycles/px of ``output`` over that of its input.

    Both images get the same cosine-edged window (:func:`~cryoem_denoise.evaluation.metrics.
    band_power`), so that the jump between opposite edges does not count as power along
    the spectrum's axes.

    Parameters
    ----------
    output : array_like
        The denoised 2D image.
    image : array_like
        The image it was denoised from, on the same intensity scale.
    low, high : float
        The band in cycles/px, ``0 <= low < high``: :data:`MID_BAND` (goal ≤
        :data:`MID_BAND_GOAL`) or :data:`LOW_BAND` (goal ≥ :data:`LOW_BAND_GOAL`).
    taper : float
        The window's cosine edge as a fraction of each axis (0: none).

    Returns
    -------
    float
        The fraction of the input's power in the band that the output keeps.

    Raises
    ------
    InputError
        Images of different shapes or not 2D, or an input with no power in the band.
    ConfigError
        A band that is empty or negative.
    """
    if not (np.isfinite(low) and 0 <= low < high):
        raise ConfigError(f"need a band 0 <= low < high cycles/px, got {low:g}-{high:g}")
    output, image = _same_shape(output, image)
    return _ratio(band_power(output, low, high, taper), band_power(image, low, high, taper),
                  f"{low:g}-{high:g} cycles/px")


def tile_stride(length, tile, overlap):
    """Mean distance between neighbouring tiles along an axis of ``length`` pixels.

    Tiles are placed as :func:`cryoem_denoise.inference.tiling.tile_positions` places them:
    first at 0, last at the edge, evenly spread in between, so the stride is close to
    ``tile - overlap`` but not exactly it (e.g. 415.75 px for 3838 px, tile 512, overlap 64).
    For a grid that pads the image first (a tile margin), pass the padded length, or take
    the strides from the grid itself (:func:`grid_strides`).

    Returns
    -------
    float or None
        ``None`` when one tile covers the axis (no seams).
    """
    starts = tile_positions(int(length), int(tile), int(overlap))
    return float(np.diff(starts).mean()) if len(starts) > 1 else None


def grid_strides(grid):
    """``(stride_y, stride_x)`` of a :class:`~cryoem_denoise.inference.tiling.TileGrid`.

    Read from the grid's tile starts (``grid.ys``, ``grid.xs``), so padding or margins the
    grid adds are accounted for; ``None`` on an axis one tile covers.
    """
    return tuple(float(np.diff(s).mean()) if len(s) > 1 else None for s in (grid.ys, grid.xs))


def _seam_ratio(profiles, period, harmonics, width):
    """Mean over harmonics of the harmonic-over-neighbours power of ``profiles`` (``(k, n)``).

    The profiles are cut to the whole number ``m`` of periods that fits from half a period
    in (``round(m * period)`` samples), so that a pattern repeating every ``period`` pixels
    puts all its power on the bins ``m, 2m, 3m, ...`` and none between: tiles start at the
    image's first pixel (:func:`~cryoem_denoise.inference.tiling.tile_positions`), so their
    seams lie near multiples of the period and each cut period holds one. Each profile is
    detrended (least-squares line) and their power spectra averaged. Harmonic ``h`` is bin ``h m``; its neighbours
    are the bins within ``width`` of it that are no harmonic (and not bins 0 and 1). A
    spectrum that rises or falls steeply there (the correction of a blur rises as k⁴) would
    bias a plain mean of the neighbours, so both are divided by a power law fitted to the
    neighbours in log-log first. ``None`` when fewer than two periods fit or no harmonic
    below Nyquist has two neighbours.
    """
    start = int(period / 2)
    m = int((profiles.shape[1] - start) // period)
    if m < 2:
        return None
    n = int(round(m * period))
    cut = profiles[:, start:start + n]
    x = np.arange(n, dtype=np.float64)
    slope, intercept = np.polyfit(x, cut.T, 1)
    detrended = cut - (slope[:, None] * x + intercept[:, None])
    power = np.mean(np.abs(np.fft.rfft(detrended, axis=1)) ** 2, axis=0)
    bins = np.arange(len(power))
    between = (bins % m != 0) & (bins >= 2) & (power > 0)
    ratios = []
    for c in m * np.arange(1, int(harmonics) + 1):
        if c >= len(power) - 1:
            break
        near = between & (np.abs(bins - c) <= width)
        if near.sum() < 2:
            continue
        b, a = np.polyfit(np.log(bins[near]), np.log(power[near]), 1)
        law = np.exp(a + b * np.log(bins[near]))
        ratios.append(power[c] / np.exp(a + b * np.log(c)) / np.mean(power[near] / law))
    return float(np.mean(ratios)) if ratios else None


def seam_score(output, image, period, harmonics=24, bands=32, width=6):
    """How strongly the correction ``image - output`` repeats at the tiling period.

    A tiled denoiser whose tiles disagree at their edges leaves a grid in the correction,
    constant along each seam. Mean profiles keep it and average the rest away: the
    correction is cut into ``bands`` strips along each axis and each strip averaged across
    its width (column means of horizontal strips: profiles along x, for the seams between
    tile columns; row means of vertical strips: along y). Each profile is cut to a whole
    number of periods and detrended, the strips' power spectra are averaged, and at each of
    the first ``harmonics`` harmonics of 1 / ``period`` the power is divided by that of the
    neighbouring frequencies (up to ``width`` bins away, no harmonic; both relative to a
    power law fitted to the neighbours). The score is the mean of these ratios over the
    harmonics, the larger of the two axes'. A filter with no seams gives ≈ 1 (1.02 ± 0.03
    for white or blurred noise); a grid gives ≫ 1. Goal: ≤ :data:`SEAM_GOAL`.

    Strips, not one mean over the whole image, and many harmonics make the score stable:
    the power of one profile at one frequency scatters by 100 % around its mean. What the
    score sees is the part of a seam that is the same along it (an offset or a ridge at
    every tile edge); a disagreement whose sign follows the image's content averages out.
    At least two periods must fit in the image after the first half period (a 1024-px
    period needs 2560 px).

    Parameters
    ----------
    output : array_like
        The denoised 2D image.
    image : array_like
        Its input, on the same intensity scale.
    period : float or tuple of float
        Tile period (stride) in pixels, one for both axes or ``(period_y, period_x)``
        (:func:`tile_stride`, :func:`grid_strides`); ``None`` on an axis skips it.
    harmonics : int
        Harmonics of the tile frequency averaged (those below Nyquist).
    bands : int
        Strips per axis whose profiles' spectra are averaged (at most the image side).
    width : int
        Bins on each side of a harmonic whose power is its reference.

    Returns
    -------
    float or None
        ``None`` when neither axis can be scored (a period longer than half the image, or
        ``None`` on both axes).

    Raises
    ------
    InputError
        Images of different shapes or not 2D.
    ConfigError
        A period under 4 px, or fewer than one harmonic, band or reference bin.
    """
    output, image = _same_shape(output, image)
    periods = tuple(period) if isinstance(period, (tuple, list)) else (period, period)
    if len(periods) != 2:
        raise ConfigError(f"need one period or (period_y, period_x), got {period!r}")
    if min(int(harmonics), int(bands), int(width)) < 1:
        raise ConfigError(f"need harmonics, bands and width of at least 1, got {harmonics}, "
                          f"{bands}, {width}")
    for p in periods:
        if p is not None and not (np.isfinite(p) and p >= 4):
            raise ConfigError(f"the tile period must be at least 4 px, got {p:g}")
    difference = image - output
    ratios = []
    for axis, p in enumerate(periods):  # axis 0: seams between tile rows, profiles along y
        if p is None:
            continue
        strips = np.array_split(difference, min(int(bands), difference.shape[1 - axis]),
                                axis=1 - axis)
        profiles = np.stack([strip.mean(axis=1 - axis) for strip in strips])
        r = _seam_ratio(profiles, p, int(harmonics), int(width))
        if r is not None:
            ratios.append(r)
    return max(ratios) if ratios else None


def _blocks(a, block):
    """Means of the ``block`` × ``block`` squares that tile ``a`` from its top-left corner
    (a remainder of fewer than ``block`` rows or columns is left out), flattened."""
    ny, nx = (n // block * block for n in a.shape)
    return a[:ny, :nx].reshape(ny // block, block, nx // block, block).mean(axis=(1, 3)).ravel()


def edge_score(output, image, width=16, block=None):
    """Strength of the correction ``image - output`` along the border over the interior.

    The correction is averaged over squares of ``block`` pixels: those in the band
    ``width`` pixels deep along the four sides (the border) and those in the rest (the
    interior). The score is the RMS of the border squares' means about the interior's mean
    over the RMS of the interior squares' means about it. Averaging keeps an offset (a dark
    or bright band along the edges) and removes most of the noise the correction holds, so
    a band a few grey levels deep shows even where the correction's pixels vary by tens. A
    filter that treats the border like the interior (e.g. a blur with reflecting
    boundaries) gives ≈ 1. Goal: ≤ :data:`EDGE_GOAL`.

    Parameters
    ----------
    output : array_like
        The denoised 2D image.
    image : array_like
        Its input, on the same intensity scale.
    width : int
        Depth of the border band in pixels.
    block : int, optional
        Side of the squares, a divisor of ``width`` (default: ``width``, one square deep);
        1 compares the RMS of the correction's pixels in the band with that inside.

    Returns
    -------
    float

    Raises
    ------
    InputError
        Images of different shapes or not 2D, too small for the band and one interior
        square, or a correction that is constant inside.
    ConfigError
        A width under 1 or a block that does not divide it.
    """
    width = int(width)
    block = width if block is None else int(block)
    if width < 1 or block < 1 or width % block:
        raise ConfigError(f"need a width of at least 1 px and a block dividing it, got "
                          f"{width}, {block}")
    output, image = _same_shape(output, image)
    d = image - output
    ny, nx = d.shape
    if min(ny, nx) < 2 * width + block:
        raise InputError(f"a {ny}x{nx} image is too small for a {width}-px border band")
    interior = _blocks(d[width:ny - width, width:nx - width], block)
    border = np.concatenate([_blocks(side, block) for side in (
        d[:width], d[ny - width:], d[width:ny - width, :width], d[width:ny - width, nx - width:])])
    centre = interior.mean()
    spread = np.sqrt(np.mean(np.square(interior - centre)))
    return _ratio(np.sqrt(np.mean(np.square(border - centre))), spread, "interior correction")


def range_excess(output, image, sigma=None):
    """How far ``output`` goes beyond the range of ``image``, in units of its noise σ.

    ``max(max(output) - max(image), min(image) - min(output), 0) / sigma``: 0 when the
    output stays within the input's range, ≤ 1 (the goal, :data:`RANGE_GOAL`) when it
    leaves it by no more than the noise. Ringing or an offset that pushes pixels past the
    darkest or brightest input pixel shows here.

    Parameters
    ----------
    output : array_like
        The denoised 2D image.
    image : array_like
        Its input, on the same intensity scale.
    sigma : float, optional
        The input's noise σ in its units; estimated from ``image`` when not given
        (:func:`estimate_noise_sigma`).

    Returns
    -------
    float

    Raises
    ------
    InputError
        Images of different shapes or not 2D, or a σ that is not positive.
    """
    output, image = _same_shape(output, image)
    sigma = estimate_noise_sigma(image) if sigma is None else float(sigma)
    if not (np.isfinite(sigma) and sigma > 0):
        raise InputError(f"the noise sigma must be positive, got {sigma:g}")
    excess = max(output.max() - image.max(), image.min() - output.min(), 0.0)
    return float(excess / sigma)


def estimate_noise_sigma(image):
    """Noise sigma of an image in its own units (:func:`cryoem_denoise.data.noise.estimate_sigma`)."""
    return float(estimate_sigma(np.asarray(image, np.float32)))


def model_denoise_fn(denoiser, sigma=None):
    """``image -> output`` on [0, 255] through ``denoiser.denoise_scaled``.

    Parameters
    ----------
    denoiser : Denoiser
    sigma : float, optional
        Noise sigma on [0, 255] passed to every call (models with a noise-level input);
        ``None`` lets it estimate per image.
    """
    return lambda image: denoiser.denoise_scaled(np.asarray(image, np.float32), noise_level=sigma)

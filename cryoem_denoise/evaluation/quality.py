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

:func:`model_denoise_fn` wraps a :class:`~cryoem_denoise.inference.denoiser.Denoiser` as the
``image -> image`` function these take, with one noise sigma for every call (a model with
a noise-level input would otherwise estimate it per call, from a region that moves with
the shift).
"""

from dataclasses import dataclass

import numpy as np

from cryoem_denoise.data.noise import estimate_sigma
from cryoem_denoise.errors import ConfigError, InputError
from cryoem_denoise.evaluation.metrics import high_frequency_power, nyquist_power

#: Goals for real micrographs and tiling: no checkerboard, no high-frequency excess, tile
#: grids that agree (docs/results/quality.md).
CHECKERBOARD_GOAL = 1.0
HIGH_FREQUENCY_GOAL = 0.5
TILING_GOAL = 0.05


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

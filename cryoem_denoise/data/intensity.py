"""To and from the paper's [0, 255] intensity scale.

The paper scales each float32 MRC image to [0, 255] before adding noise and denoising.
:func:`to_unit255` does that per image and returns the :class:`Affine` it used, so results
can be mapped back to the file's own units with :meth:`Affine.inverse`.

Three methods:

``'minmax'`` (default, the paper's reading)
    the image minimum goes to 0 and the maximum to 255.
``'percentile'``
    the ``low`` and ``high`` percentiles go to 0 and 255 and pixels outside are clipped;
    robust to hot pixels and dead columns on real detectors.
``'robust'`` (for real micrographs)
    the median goes to :data:`ROBUST_CENTRE` (160) and one robust standard deviation
    (MAD x 1.4826) to :data:`ROBUST_SPREAD` (45) units, so ``low = median - 3.56 s`` and
    ``high = median + 2.11 s``. That is where the model's training inputs are: min-max
    scaled simulated fields have a median of 145-190 (about 160) and a robust std of only
    3-6, so a noisy training input has a robust std of about its noise sigma, 10-80. A real
    micrograph is mostly noise, so its noise lands at up to 45, the middle of that range,
    whatever its hot pixels, dark contamination or dead regions (up to a few tens of per cent
    of the area move the median and MAD little; they set ``min``/``max`` and the percentiles).
    The statistics come from a stride subsample of at most ``2**18`` pixels
    (:func:`robust_stats`; the median's standard error is then 0.25 % of the spread), a few
    milliseconds even on a memory-mapped 11k x 11k section.
    Nothing is clipped: pixels far outside the bulk (a hot pixel at 50 robust std lands near
    2400) reach the model as they are and affect only their neighbourhood in its output, and
    the map stays the exact affine :meth:`Affine.inverse` undoes, in ``fit`` and ``apply``
    alike.
"""

from dataclasses import dataclass

import numpy as np

from cryoem_denoise.errors import ConfigError, InputError

SCALE_MAX = 255.0
METHODS = ("minmax", "percentile", "robust")
#: ``'robust'``: the [0, 255] value the image median is mapped to (simulated training fields,
#: min-max scaled, have medians of 145-190).
ROBUST_CENTRE = 160.0
#: ``'robust'``: the [0, 255] units one robust standard deviation is mapped to, the middle of
#: the noise sigmas 10-80 the model trains on.
ROBUST_SPREAD = 45.0
#: ``'robust'``: at most this many pixels (a stride subsample) enter the median and MAD.
ROBUST_MAX_PIXELS = 2 ** 18
_MAD_TO_STD = 1.482602218505602  # 1 / Phi^-1(3/4): MAD -> std of a Gaussian


@dataclass(frozen=True)
class Affine:
    """``scaled = (value - low) * 255 / (high - low)``: the file-units → [0, 255] map."""

    low: float
    high: float

    @property
    def gain(self):
        return SCALE_MAX / (self.high - self.low)

    def forward(self, values):
        """File units → [0, 255] (float32, not clipped)."""
        return ((np.asarray(values, dtype=np.float32) - np.float32(self.low))
                * np.float32(self.gain)).astype(np.float32, copy=False)

    def inverse(self, scaled):
        """[0, 255] → file units (float32)."""
        return (np.asarray(scaled, dtype=np.float32) / np.float32(self.gain)
                + np.float32(self.low)).astype(np.float32, copy=False)

    def sigma_to_units(self, sigma):
        """A noise sigma on the [0, 255] scale expressed in file units."""
        return sigma / self.gain


def stride_sample(image, max_pixels=ROBUST_MAX_PIXELS):
    """A regular stride subsample of ``image`` with at most ``max_pixels`` pixels (a copy).

    Every ``s``-th pixel along each axis, ``s`` the smallest stride that fits: the pixels
    keep their own statistics (binning would average the noise away), and on a memory map
    only every ``s``-th row is read. An image that fits is returned whole.
    """
    image = np.asanyarray(image)
    stride = _stride(image.shape, max_pixels)
    return np.array(image[(slice(None, None, stride),) * image.ndim])


def _stride(shape, max_pixels):
    stride = 1
    while np.prod(shape) and np.prod([-(-n // stride) for n in shape]) > max_pixels:
        stride += 1
    return stride


def robust_stats(image, max_pixels=ROBUST_MAX_PIXELS):
    """``(centre, spread)`` of an image: the median and a robust standard deviation.

    The spread is the median absolute deviation x 1.4826 (the std of Gaussian pixels),
    falling back to the plain std where more than half the pixels share one value (sparse
    electron counts); both on :func:`stride_sample` ``(image, max_pixels)``. A few hot pixels,
    dark contamination or dead regions covering up to a few tens of per cent of the image
    move them little.

    Raises
    ------
    InputError
        An empty image, non-finite pixels in the sample, or a constant sample.
    """
    sample = stride_sample(image, max_pixels).astype(np.float64, copy=False).ravel()
    if sample.size == 0:
        raise InputError("empty image")
    if not np.isfinite(sample).all():
        raise InputError("image has non-finite (NaN or Inf) pixels")
    centre = float(np.median(sample))
    spread = _MAD_TO_STD * float(np.median(np.abs(sample - centre)))
    if not spread > 0:
        spread = float(sample.std())
    if not spread > 0:
        raise InputError(f"constant image (all pixels {centre:g}); nothing to scale")
    return centre, spread


def intensity_range(image, method="minmax", percentiles=(0.1, 99.9)):
    """The ``(low, high)`` file-unit values that map to 0 and 255.

    ``'robust'`` reads only a stride subsample of the image (see :func:`robust_stats`);
    the other methods read every pixel.

    Raises
    ------
    InputError
        If the image has non-finite pixels or no contrast in the chosen range.
    ConfigError
        For an unknown method or percentiles outside 0 <= low < high <= 100.
    """
    if method == "robust":
        centre, spread = robust_stats(image)
        units = spread / ROBUST_SPREAD  # file units per [0, 255] unit
        return centre - ROBUST_CENTRE * units, centre + (SCALE_MAX - ROBUST_CENTRE) * units
    image = np.asarray(image)
    if image.size == 0:
        raise InputError("empty image")
    if image.dtype.kind == "f" and not np.isfinite(image).all():
        raise InputError("image has non-finite (NaN or Inf) pixels")
    if method == "minmax":
        low, high = float(image.min()), float(image.max())
    elif method == "percentile":
        p_low, p_high = percentiles
        if not 0 <= p_low < p_high <= 100:
            raise ConfigError(f"percentiles must satisfy 0 <= low < high <= 100, got {percentiles}")
        low, high = (float(v) for v in np.percentile(image, [p_low, p_high]))
    else:
        raise ConfigError(f"unknown intensity method {method!r} (choose {', '.join(METHODS)})")
    if not high > low:
        raise InputError(f"constant image (all pixels {low:g} in the scaling range); nothing to scale")
    return low, high


def to_unit255(image, method="minmax", percentiles=(0.1, 99.9)):
    """Scale one image to [0, 255] float32; return ``(scaled, affine)``.

    With ``method='percentile'`` the result is clipped to [0, 255]; with ``'minmax'`` it
    spans [0, 255]; with ``'robust'`` it is not clipped and pixels far from the bulk fall
    outside [0, 255].
    """
    affine = Affine(*intensity_range(image, method, percentiles))
    scaled = affine.forward(image)
    if method == "percentile":
        np.clip(scaled, 0.0, SCALE_MAX, out=scaled)
    return scaled, affine


def background(image, scale=512.0, max_pixels=2 ** 22):
    """The smooth background of a 2D image (ice thickness gradient, uneven illumination).

    Not used by any method: a caller that wants it subtracts it before scaling and denoising
    and adds the same array back to the result, so the output's units are unchanged.
    Medians of blocks ``scale / 4`` pixels on a side (of a :func:`stride_sample` of at most
    ``max_pixels``) are interpolated bilinearly back to the full size (extrapolated linearly
    beyond the outer block centres), so a plane is returned as it is. Medians ignore hot
    pixels and contamination covering less than half a block; a larger contaminated area is
    partly followed as background.

    Parameters
    ----------
    image : array_like
        One 2D image (a memory map is read only through the stride sample).
    scale : float
        Smallest feature size, in pixels, treated as background; > 4.
    max_pixels : int
        Pixels of the stride sample the block medians come from.

    Returns
    -------
    ndarray of float32
        The background, shape of ``image``, in its units.

    Raises
    ------
    InputError
        An image that is not 2D or has non-finite pixels in the sample.
    ConfigError
        A scale of 4 pixels or less.
    """
    image = np.asanyarray(image)
    if image.ndim != 2 or image.size == 0:
        raise InputError(f"background needs one non-empty 2D image, got shape {image.shape}")
    if not (np.isfinite(scale) and scale > 4):
        raise ConfigError(f"background scale must be more than 4 pixels, got {scale:g}")
    stride = _stride(image.shape, max_pixels)
    sample = np.asarray(image[::stride, ::stride], dtype=np.float64)
    if not np.isfinite(sample).all():
        raise InputError("image has non-finite (NaN or Inf) pixels")
    block = max(1, int(round(scale / 4 / stride)))  # in sample pixels
    gy, gx = -(-sample.shape[0] // block), -(-sample.shape[1] // block)
    grid = np.empty((gy, gx))
    for i in range(gy):
        band = sample[i * block:(i + 1) * block]
        for j in range(gx):
            grid[i, j] = np.median(band[:, j * block:(j + 1) * block])
    rows = _linear_weights(image.shape[0], gy, block, stride, sample.shape[0])
    cols = _linear_weights(image.shape[1], gx, block, stride, sample.shape[1])
    return (rows @ grid).astype(np.float32) @ cols.T.astype(np.float32)


def _linear_weights(n, cells, block, stride, n_sample):
    """``(n, cells)`` linear inter- and extrapolation weights from cell centres to pixels."""
    # centre of each cell in full-size pixels (the last cell may be shorter)
    starts = np.arange(cells) * block
    ends = np.minimum(starts + block, n_sample)
    centres = (starts + ends - 1) / 2 * stride
    weights = np.zeros((n, cells))
    if cells == 1:
        weights[:, 0] = 1.0
        return weights
    pos = np.arange(n, dtype=np.float64)
    right = np.clip(np.searchsorted(centres, pos, side="right"), 1, cells - 1)
    left = right - 1
    t = (pos - centres[left]) / (centres[right] - centres[left])
    weights[np.arange(n), left] = 1 - t
    weights[np.arange(n), right] += t
    return weights

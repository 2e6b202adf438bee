"""Fourier resampling: bring an image to the pixel sizes a model was trained on, and back.

A super-resolution micrograph (0.5-0.7 Å/px) is binned in Fourier space (the spectrum
cropped, as motion-correction programs bin) and a coarsely binned one (3-5 Å/px) padded in
Fourier space, so that the model sees its features at the scale it was trained on. The
result is resampled back to the input's size: the input's pixel size and shape are kept.
"""

import math

import numpy as np
from scipy import fft as sp_fft

__all__ = ["binning_factor", "fourier_resize"]


def _axis_keep(n_from, n_to):
    """Indices of the ``fft`` bins kept (or filled) when an axis goes from ``n_from`` to
    ``n_to`` samples: the ``min`` of the two's lowest frequencies, positive and negative."""
    n = min(n_from, n_to)
    positive, negative = (n + 1) // 2, n // 2
    return np.r_[0:positive, n_from - negative:n_from], np.r_[0:positive, n_to - negative:n_to]


def fourier_resize(image, shape):
    """Resample a 2D image to ``shape`` by cropping or zero-padding its spectrum.

    The mean is kept (and a band-limited image's values); float32 out. A crop removes the
    frequencies the new size cannot hold (binning without aliasing); a pad adds none
    (band-limited interpolation). An image already of ``shape`` is returned as it is (as
    float32).
    """
    image = np.asarray(image, np.float32)
    ny, nx = image.shape
    my, mx = (int(s) for s in shape)
    if (my, mx) == (ny, nx):
        return image
    spectrum = sp_fft.rfft2(image)
    rows_from, rows_to = _axis_keep(ny, my)
    cols = min(nx // 2, mx // 2) + 1
    resized = np.zeros((my, mx // 2 + 1), np.complex64)
    resized[rows_to, :cols] = spectrum[rows_from, :cols]
    out = sp_fft.irfft2(resized, (my, mx))
    out *= np.float32(my * mx / (ny * nx))
    return out.astype(np.float32, copy=False)


def binning_factor(pixel_size, trained):
    """By how much to scale the pixel size into the ``trained = (low, high)`` range (Å).

    Super-resolution pixels (below ``low``) are binned by the smallest whole factor that
    reaches ``low`` (2 for 0.5-0.7 Å against 0.7); pixels coarser than ``high`` are
    interpolated to exactly ``high`` (a factor below 1). 1: the pixel size is inside the
    range, or unknown.
    """
    if pixel_size is None or trained is None or not pixel_size > 0:
        return 1.0
    low, high = trained
    if pixel_size < low:
        return float(math.ceil(low / pixel_size - 1e-9))
    if pixel_size > high:
        return high / pixel_size
    return 1.0

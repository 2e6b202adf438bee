"""A micrograph's noise power spectrum, measured, and the filters that whiten and re-colour it.

Detectors colour the noise of real micrographs: a counting detector's pixel response, the
binning of super-resolution frames and dose weighting all make the noise power fall toward
Nyquist (``epu2.9_example.mrc``: about a third of its 0.1-cycles/px level at Nyquist after
2x binning). A model trained on white noise reads such noise, by its finest scale, as weak, and
keeps the rest as structure. ``apply`` therefore measures each file's noise spectrum
(:func:`estimate_noise_spectrum`), whitens the image before the model (its noise then has the
flat spectrum the model was trained on) and re-colours the result after it
(:class:`NoiseSpectrum`'s :meth:`~NoiseSpectrum.whitening` filter and its inverse); the
signal goes through both filters and comes back unchanged.

The estimate is Welch's: the mean periodogram of Hann-windowed segments of
:data:`SEGMENT`² pixels, averaged over rings of equal spatial frequency and smoothed in log
power over :data:`SMOOTH_BINS` rings. In a cryo-EM image the noise dominates the power away
from the lowest frequencies; below :data:`LOW_CUTOFF` cycles/px, where particles and ice
gradients dominate, the noise is taken as flat at its level there. Checked on simulated
fields with noise of known spectra (``tests/test_conditioning.py``): within 10 % of the true
noise power at every frequency from the cutoff to Nyquist.
"""

from dataclasses import dataclass

import numpy as np
from scipy import fft as sp_fft
from scipy.ndimage import uniform_filter1d

from cryoem_denoise.data.detector import (
    WHITENING_CUTOFF,
    WHITENING_MAX_GAIN,
    frequencies,
    whitening_gain,
)
from cryoem_denoise.errors import InputError

__all__ = ["LOW_CUTOFF", "NoiseSpectrum", "estimate_noise_spectrum", "radial_frequency"]

#: Side of the Welch segments (pixels); an image smaller than it is one segment.
SEGMENT = 256
#: At most this many segments (evenly spread) of each image enter an estimate.
MAX_SEGMENTS = 100
#: Spatial frequency (cycles/px) below which the noise is taken as flat at its level there
#: (training's whitened transfers use the same value).
LOW_CUTOFF = WHITENING_CUTOFF
#: Rings (of width 1/SEGMENT) the radial profile is smoothed over, in log power.
SMOOTH_BINS = 5
#: Noise whose power varies by less than this factor from the cutoff to Nyquist is white:
#: it is not whitened (detectors colour it far more: about 3x for ``epu2.9_example.mrc``).
WHITE_TOLERANCE = 1.35
#: The whitening filter's gain is kept within [1/MAX_GAIN, MAX_GAIN] (noise power within 100x).
MAX_GAIN = WHITENING_MAX_GAIN


def radial_frequency(shape, real=False):
    """``|k|`` (cycles/px) on the FFT grid of ``shape`` (the ``rfft2`` grid if ``real``)."""
    return np.hypot(*frequencies(shape, real))


@dataclass(frozen=True)
class NoiseSpectrum:
    """A radial noise power spectrum.

    Attributes
    ----------
    frequency : ndarray
        Ring centres, cycles/px, from 0 to the corner of the frequency square.
    power : ndarray
        Noise power at each ring, in the image's units squared per pixel (white noise of
        standard deviation ``s`` has power ``s**2`` at every frequency).
    measured : ndarray
        The measured (smoothed) power of the image at each ring, noise and signal.
    cutoff : float
        Below this frequency ``power`` is flat at its value there.
    """

    frequency: np.ndarray
    power: np.ndarray
    measured: np.ndarray
    cutoff: float = LOW_CUTOFF

    def at(self, k):
        """Noise power at spatial frequencies ``k`` (cycles/px)."""
        return np.interp(k, self.frequency, self.power)

    @property
    def nyquist_ratio(self):
        """Noise power at Nyquist (0.5 cycles/px) over its level at the cutoff: 1 for white
        noise, below 1 where the detector or dose weighting damp the fine scales."""
        return float(self.at(0.5) / self.at(self.cutoff))

    @property
    def is_white(self):
        """Whether the noise is white within :data:`WHITE_TOLERANCE` between the cutoff and
        Nyquist (the estimate of a few small boxes varies by 20 %)."""
        band = self.power[(self.frequency >= self.cutoff) & (self.frequency <= 0.5)]
        return bool(band.size == 0 or band.max() <= WHITE_TOLERANCE * band.min())

    def whitening(self, shape):
        """The filter (on the ``rfft2`` grid of ``shape``) that makes this noise white at
        its level at the cutoff; frequencies below the cutoff pass unchanged, its gain is
        kept within ``[1/MAX_GAIN, MAX_GAIN]``."""
        level = self.at(self.cutoff)
        power = self.at(radial_frequency(shape, real=True))
        return whitening_gain(power, level).astype(np.float32)

    def summary(self):
        """One line: the noise level and its colour."""
        colour = ("white" if self.is_white else
                  f"coloured: {self.nyquist_ratio:.2f} of its {self.cutoff:g}-cycles/px power at Nyquist")
        return (f"noise level {np.sqrt(self.at(self.cutoff)):.3g} (the root of its power at "
                f"{self.cutoff:g} cycles/px), {colour}")


def _segments(image, side):
    """Up to :data:`MAX_SEGMENTS` non-overlapping ``side``² segments spread evenly."""
    ny, nx = image.shape
    per_axis = max(1, int(np.sqrt(MAX_SEGMENTS)))
    ys = np.unique(np.linspace(0, ny - side, min(per_axis, max(ny // side, 1))).round().astype(int))
    xs = np.unique(np.linspace(0, nx - side, min(per_axis, max(nx // side, 1))).round().astype(int))
    return [(y, x) for y in ys for x in xs]


def estimate_noise_spectrum(images, cutoff=LOW_CUTOFF):
    """Measure the noise power spectrum of one or more 2D images of one noise.

    Parameters
    ----------
    images : ndarray or sequence of ndarray
        A 2D image, or several (sections of one file) whose periodograms are averaged. A
        memory map is fine: only the segments are read.
    cutoff : float
        Frequency (cycles/px) below which the noise is taken as flat.

    Returns
    -------
    NoiseSpectrum

    Raises
    ------
    InputError
        Images smaller than 16 x 16, or with non-finite pixels.
    """
    images = [images] if np.ndim(images) == 2 else list(images)
    side = min(SEGMENT, *(min(im.shape) for im in images))
    side -= side % 2
    if side < 16:
        raise InputError(f"image of shape {images[0].shape} is too small to measure its noise spectrum")
    window = np.outer(np.hanning(side), np.hanning(side))
    total, count = np.zeros((side, side)), 0
    for image in images:
        for y, x in _segments(image, side):
            segment = np.asarray(image[y:y + side, x:x + side], np.float64)
            if not np.isfinite(segment).all():
                raise InputError("image has non-finite (NaN or Inf) pixels")
            total += np.abs(sp_fft.fft2((segment - segment.mean()) * window)) ** 2
            count += 1
    periodogram = total / (count * (window ** 2).sum())
    k = radial_frequency((side, side))
    edges = np.arange(0.0, np.sqrt(0.5) + 1.0 / side, 1.0 / side)
    ring = np.minimum(np.digitize(k.ravel(), edges) - 1, len(edges) - 2)
    counts = np.bincount(ring, minlength=len(edges) - 1)
    power = np.bincount(ring, periodogram.ravel(), len(edges) - 1)
    keep = counts > 0
    centres = ((edges[:-1] + edges[1:]) / 2)[keep]
    measured = power[keep] / counts[keep]
    measured[0] = measured[1] if len(measured) > 1 else measured[0]  # the mean was removed
    floor = max(measured.max(), 1e-30) * 1e-12
    smooth = np.exp(uniform_filter1d(np.log(np.maximum(measured, floor)), SMOOTH_BINS, mode="nearest"))
    noise = np.where(centres < cutoff, np.interp(cutoff, centres, smooth), smooth)
    return NoiseSpectrum(frequency=centres, power=noise, measured=smooth, cutoff=float(cutoff))

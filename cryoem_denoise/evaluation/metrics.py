"""Image-quality metrics on the paper's [0, 255] scale.

MAE, MSE, RMSE (the paper's "PMSE": its Table 1 has PMSE² = MSE), PSNR with peak 255
(Eq. 2, n = 8 bits) and SSIM (Eq. 4). SSIM follows Wang et al. (2004), the paper's
reference [8]: an 11×11 Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03, population
covariances (``gaussian=False`` gives scikit-image's default 7×7 uniform window instead).

With no clean reference, :func:`frc` and :func:`frc_resolution` give the field's
no-reference figure: the Fourier ring correlation of two independent views of the same
signal (two frame halves, or their denoised versions) and where it falls below 0.143.
"""

from dataclasses import dataclass

import numpy as np
from scipy import fft
from scipy.signal.windows import tukey
from skimage.metrics import structural_similarity

from cryoem_denoise.data.detector import frequencies
from cryoem_denoise.errors import ConfigError, InputError

DATA_RANGE = 255.0
#: Metric names in the order of the paper's Table 1 (RMSE is its "PMSE").
NAMES = ("mae", "mse", "rmse", "psnr", "ssim")
#: Whether a higher value is better, per metric.
HIGHER_IS_BETTER = {"mae": False, "mse": False, "rmse": False, "psnr": True, "ssim": True}


def _pair(reference, image):
    ref = np.asarray(reference, dtype=np.float64)
    img = np.asarray(image, dtype=np.float64)
    if ref.shape != img.shape:
        raise ValueError(f"shapes differ: reference {ref.shape}, image {img.shape}")
    return ref, img


def mae(reference, image):
    """Mean absolute error."""
    ref, img = _pair(reference, image)
    return float(np.mean(np.abs(ref - img)))


def mse(reference, image):
    """Mean squared error (Eq. 3)."""
    ref, img = _pair(reference, image)
    return float(np.mean(np.square(ref - img)))


def rmse(reference, image):
    """Root mean squared error (the paper's PMSE)."""
    return float(np.sqrt(mse(reference, image)))


def psnr(reference, image, data_range=DATA_RANGE):
    """Peak signal-to-noise ratio in dB (Eq. 2); ``inf`` for identical images."""
    err = mse(reference, image)
    if err == 0:
        return float("inf")
    return float(10.0 * np.log10(data_range ** 2 / err))


def ssim(reference, image, data_range=DATA_RANGE, gaussian=True):
    """Structural similarity (Eq. 4), mean over the image.

    Images smaller than the 11x11 window use a uniform window as large as fits (odd, >= 3).
    """
    ref, img = _pair(reference, image)
    side = min(ref.shape)
    if side < 11:
        win = max(3, side if side % 2 else side - 1)
        return float(structural_similarity(ref, img, data_range=data_range, win_size=win))
    if gaussian:
        return float(structural_similarity(ref, img, data_range=data_range, gaussian_weights=True,
                                           sigma=1.5, use_sample_covariance=False))
    return float(structural_similarity(ref, img, data_range=data_range))


def all_metrics(reference, image):
    """Every metric of :data:`NAMES` as a dict."""
    return {"mae": mae(reference, image), "mse": mse(reference, image),
            "rmse": rmse(reference, image), "psnr": psnr(reference, image),
            "ssim": ssim(reference, image)}


# -- Fourier ring correlation --------------------------------------------------------------
#: The usual FRC threshold (Rosenthal & Henderson 2003's 0.143, for two half-data images).
FRC_THRESHOLD = 0.143
#: Default fraction of each axis in the cosine edge of the apodization window.
FRC_TAPER = 0.1


def _frc_pair(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise InputError(f"FRC needs two images of the same shape, got {a.shape} and {b.shape}")
    if a.ndim != 2 or min(a.shape) < 8:
        raise InputError(f"FRC needs 2D images of at least 8x8 pixels, got shape {a.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise InputError("FRC needs finite pixels")
    return a, b


def _apodize(image, taper):
    """``image`` less its mean, times a separable Tukey (cosine-edged) window."""

    if not (np.isfinite(taper) and 0 <= taper <= 1):
        raise ConfigError(f"FRC taper must be in [0, 1], got {taper:g}")
    window = np.outer(tukey(image.shape[0], taper), tukey(image.shape[1], taper))
    return (image - image.mean()) * window


def _rings(shape):
    """Ring index of each ``rfft2`` coefficient, the coefficient's weight, and ring count.

    Rings are ``1 / min(shape)`` cycles/px wide; the weight counts the rfft's half-plane
    columns twice (their conjugates are left out).
    """
    ny, nx = shape
    n = min(shape)
    fy = np.fft.fftfreq(ny)[:, None]
    fx = np.fft.rfftfreq(nx)[None, :]
    ring = np.rint(np.sqrt(fx * fx + fy * fy) * n).astype(np.int64)
    weight = np.full(fx.shape, 2.0)
    weight[0, 0] = 1.0
    if nx % 2 == 0:
        weight[0, -1] = 1.0
    return np.broadcast_to(ring, (ny, fx.shape[1])), np.broadcast_to(weight, ring.shape), n


def frc(a, b, taper=FRC_TAPER):
    """Fourier ring correlation of two images.

    ``FRC(k) = Re sum F_a conj(F_b) / sqrt(sum |F_a|^2 sum |F_b|^2)`` over the ring of
    spatial frequency ``k``; rings are ``1 / min(ny, nx)`` cycles/px wide, from the first
    ring after the origin up to Nyquist (0.5 cycles/px). Each image has its mean removed
    and is multiplied by a cosine-edged (Tukey) window before the FFT: the FFT treats an
    image as periodic, and the jump between opposite edges, which two views of the same
    field share, would otherwise add a correlated cross of power at every frequency.

    Parameters
    ----------
    a, b : array_like
        Two 2D images of the same shape (at least 8x8), any scale.
    taper : float
        Fraction of each axis inside the window's cosine edge (0: no window, 1: Hann).

    Returns
    -------
    frequency : ndarray
        Ring centres in cycles per pixel, ``k / min(ny, nx)`` for ``k = 1 .. min // 2``.
    values : ndarray
        FRC per ring, in [-1, 1]; 0 for a ring where either image has no power.

    Raises
    ------
    InputError
        Images of different shapes, not 2D, smaller than 8x8 or not finite.
    ConfigError
        A taper outside [0, 1].
    """

    a, b = _frc_pair(a, b)
    fa = fft.rfft2(_apodize(a, taper))
    fb = fft.rfft2(_apodize(b, taper))
    ring, weight, n = _rings(a.shape)
    keep = (ring >= 1) & (ring <= n // 2)
    idx, w = ring[keep], weight[keep]
    fa, fb = fa[keep], fb[keep]
    size = n // 2 + 1
    cross = np.bincount(idx, weights=w * (fa * fb.conj()).real, minlength=size)[1:]
    pa = np.bincount(idx, weights=w * np.abs(fa) ** 2, minlength=size)[1:]
    pb = np.bincount(idx, weights=w * np.abs(fb) ** 2, minlength=size)[1:]
    denom = np.sqrt(pa * pb)
    values = np.divide(cross, denom, out=np.zeros_like(cross), where=denom > 0)
    return np.arange(1, size) / n, values


@dataclass(frozen=True)
class FrcResolution:
    """Where an FRC curve first falls below its threshold.

    Attributes
    ----------
    frequency : float or None
        Spatial frequency of the crossing in cycles/px (linear between the rings around
        it); None when the curve stays above the threshold up to Nyquist.
    threshold : float
    pixel_size : float or None
        Å per pixel, when known.
    """

    frequency: float | None
    threshold: float = FRC_THRESHOLD
    pixel_size: float | None = None

    @property
    def beyond_nyquist(self):
        """Whether the curve never crosses: the resolution is finer than 2 pixels."""
        return self.frequency is None

    @property
    def resolution(self):
        """The crossing as a resolution in Å (None beyond Nyquist or without pixel size)."""
        if self.frequency is None or self.pixel_size is None:
            return None
        return self.pixel_size / self.frequency

    def __str__(self):
        if self.beyond_nyquist:
            limit = f"2 px = {2 * self.pixel_size:.3g} Å" if self.pixel_size else "2 px"
            return f"beyond Nyquist (FRC above {self.threshold:g} up to 0.5 cycles/px, {limit})"
        if self.pixel_size:
            return f"{self.resolution:.3g} Å ({self.frequency:.3g} cycles/px)"
        return f"{1 / self.frequency:.3g} px ({self.frequency:.3g} cycles/px)"

    def to_dict(self):
        """JSON-ready: frequency (cycles/px), resolution (Å), threshold, pixel size, flag."""
        return {"frequency": self.frequency, "resolution_a": self.resolution,
                "threshold": self.threshold, "pixel_size": self.pixel_size,
                "beyond_nyquist": self.beyond_nyquist}


def resolution_from_curve(frequency, values, pixel_size=None, threshold=FRC_THRESHOLD):
    """The first crossing of ``threshold`` by an FRC curve (see :func:`frc_resolution`)."""
    if not (np.isfinite(threshold) and 0 < threshold < 1):
        raise ConfigError(f"FRC threshold must be in (0, 1), got {threshold:g}")
    if pixel_size is not None and not (np.isfinite(pixel_size) and pixel_size > 0):
        raise ConfigError(f"pixel size must be positive, got {pixel_size:g}")
    frequency, values = np.asarray(frequency, float), np.asarray(values, float)
    below = np.flatnonzero(values < threshold)
    if not len(below):
        return FrcResolution(None, threshold, pixel_size)
    i = int(below[0])
    if i == 0:  # already below at the coarsest ring
        return FrcResolution(float(frequency[0]), threshold, pixel_size)
    f0, f1, v0, v1 = frequency[i - 1], frequency[i], values[i - 1], values[i]
    crossing = f0 + (v0 - threshold) / (v0 - v1) * (f1 - f0)
    return FrcResolution(float(crossing), threshold, pixel_size)


def frc_resolution(a, b, pixel_size=None, threshold=FRC_THRESHOLD, taper=FRC_TAPER):
    """FRC resolution of two images: where their FRC first falls below ``threshold``.

    For two independent half-data images of one field, 0.143 is where the full data's
    own FRC with the truth is 0.5 (Rosenthal & Henderson, 2003). The crossing is
    interpolated linearly between the rings around it.

    Parameters
    ----------
    a, b : array_like
        Two 2D images of the same shape (see :func:`frc`).
    pixel_size : float, optional
        Å per pixel, to give the resolution in Å.
    threshold : float
        In (0, 1).
    taper : float
        Apodization edge, see :func:`frc`.

    Returns
    -------
    FrcResolution
        ``str()`` reads e.g. ``"6.1 Å (0.328 cycles/px)"`` or ``"beyond Nyquist (...)"``.

    Raises
    ------
    InputError
        Images of different shapes, not 2D, smaller than 8x8 or not finite.
    ConfigError
        A threshold outside (0, 1), a pixel size that is not positive, a bad taper.
    """
    frequency, values = frc(a, b, taper)
    return resolution_from_curve(frequency, values, pixel_size, threshold)


def _power_spectrum(image, taper=0.0):
    a = np.asarray(image, np.float64)
    if a.ndim != 2:
        raise InputError(f"spectral power needs a 2D image, got shape {a.shape}")
    f = np.fft.fft2(_apodize(a, taper) if taper else a - a.mean())
    return np.abs(f) ** 2 / a.size


def nyquist_power(image):
    """Mean power on the Nyquist lines (k_y = 1/2 or k_x = 1/2 cycles/px) of an image.

    A stride-2 transposed convolution leaves its checkerboard there: the ratio of an
    output's value to its input's shows an added pattern (> 1) or its absence (<= 1).
    """
    p = _power_spectrum(image)
    ny, nx = p.shape
    lines = [p[ny // 2, :], p[:, nx // 2]]  # for odd sizes the nearest rows to Nyquist
    return float(np.mean(np.concatenate(lines)))


def band_power(image, low, high, taper=0.0):
    """Total power at radial spatial frequencies ``low < |k| <= high`` cycles/px.

    Parameters
    ----------
    image : array_like
        2D image; its mean is removed first.
    low, high : float
        The band's edges in cycles/px (``high`` may be ``inf``).
    taper : float
        Fraction of each axis inside a cosine-edged (Tukey) window applied before the FFT
        (as :func:`frc`'s); 0 (the default) applies none. A window keeps the jump between
        opposite edges, which the FFT sees as part of a periodic image, from spreading
        power along the axes of the spectrum.

    Returns
    -------
    float
    """
    p = _power_spectrum(image, taper)
    k = np.hypot(*frequencies(p.shape))
    return float(p[(k > low) & (k <= high)].sum())


def high_frequency_power(image, cutoff=0.3):
    """Total power at spatial frequencies ``|k| > cutoff`` cycles/px (mostly noise in
    cryo-EM images: a denoiser should remove most of it)."""
    return band_power(image, cutoff, np.inf)

"""Detector transfers: how a camera colours shot noise, as a family of simple models.

Real micrographs do not carry the paper's white Gaussian noise: the detector's point spread,
super-resolution binning and dose weighting colour it. Each member of this module's family
turns the expected electron counts of a clean field
(:func:`cryoem_denoise.data.noise.expected_counts`) into a noisy image by *simulating* the
process (Poisson counts, frames, binning at twice the resolution), and states in closed
form what that process does on average:

* the **signal transfer** (MTF) ``mtf(ky, kx, dose)``: the factor by which the clean
  field's Fourier coefficient at spatial frequency ``(ky, kx)`` reaches the noise-free
  detector image (for the binned members, the part that is not aliased);
* the **noise power spectrum** (NPS) ``nps(ky, kx, dose)``: ``E|FFT(noise)|² / pixels`` of the
  noisy image, for a flat field at ``dose``, so that white noise of variance ``v`` has
  ``NPS = v`` at every frequency;
* from the two, the detective quantum efficiency ``DQE = MTF² dose / NPS`` (:func:`dqe`).

Frequencies are in cycles per *output* pixel (``numpy.fft.fftfreq``), doses in electrons per
output pixel, images in electrons per output pixel (a flat field at ``dose`` gives a mean of
``dose``). :func:`apply_detector` returns the noisy image and its expectation given the clean
field (the clean field through the transfer: a training target);
:func:`noise_power_spectrum` and :func:`signal_transfer` evaluate the closed forms on an
image's FFT grid. Filtering is periodic (FFT), so a field's edges wrap, for the noisy image
and the target alike.

Members
-------
:class:`White`
    The paper's degradation model as a detector: no point spread (MTF 1), additive white
    Gaussian noise of the shot noise's variance (``dose``), independent of the signal.
:class:`Counting`
    An electron-counting detector (Gatan K2/K3, Thermo Fisher Falcon 4 and its EER mode).
    Electrons arrive as a Poisson process whose intensity is the band-limited clean field;
    each is recorded at its arrival point displaced by a Gaussian localisation error of
    ``blur`` pixels (rms per axis) and counted in the pixel it lands in, so the mean image is
    the field filtered by ``sinc(kx) sinc(ky) exp(-2 π² blur² |k|²)``, while the counts stay
    independent Poisson: displacing points of a Poisson process keeps it Poisson, which is
    why a counting detector's NPS is much flatter than its MTF². A fraction ``efficiency``
    of the electrons is counted (coincidence loss and missed events, as a flat thinning: the
    dose-rate dependence and the short-range anticorrelation that coincidence loss also
    causes are not modelled); a fraction ``sharing`` of the counted electrons is counted a
    second time in one of the four neighbouring pixels (charge sharing across a pixel
    border), which correlates neighbours and raises the NPS at low frequency. With
    ``c(k) = (cos 2π kx + cos 2π ky) / 2`` and ``q = sharing``, ``η = efficiency``, the
    image divided by the mean gain ``η (1 + q)``::

        MTF(k) = sinc(kx) sinc(ky) exp(-2 π² blur² |k|²) (1 + q c(k)) / (1 + q)
        NPS(k) = dose (1 + q + 2 q c(k)) / (η (1 + q)²)
        DQE(0) = η (1 + q)² / (1 + 3 q)

    The parameter ranges of :data:`RANGES` are **approximate**. Over them DQE(0) spans
    0.73-0.93, the MTF at the Nyquist frequency along an axis 0.36-0.59 and the DQE there
    0.12-0.34, and the NPS falls by at most 21 % from zero frequency to Nyquist along an
    axis (41 % at the corner). They are meant to bracket the counting-mode curves reported
    at 300 keV by McMullan, Faruqi, Clare & Henderson (2014) "Comparison of optimal
    performance at 300 keV of three direct electron detectors for use in low dose electron
    microscopy", *Ultramicroscopy* 147:156-163, and by Ruskin, Yu & Grigorieff (2013)
    "Quantitative characterization of electron detectors for transmission electron
    microscopy", *J. Struct. Biol.* 184:385-393. They come from a rough recollection of the
    values those papers report, are not fits to their measured curves and have not been
    checked against them number by number: check before relying on them. The counted
    fraction near 0.9 is the sensitivity users report for a K2 in counted mode (Leginon's
    K2 notes). Sub-pixel event localisation of real super-resolution counting, and an
    integrating detector's point spread, are outside the model.
:class:`SuperResolution`
    Super-resolution frames binned 2x. The field (given at twice the output resolution,
    half the output pixel size) is recorded by a :class:`Counting` detector at that
    resolution (parameters in super-resolution pixels) and binned, as motion-correction
    programs bin, either

    * ``binning='average'``: summing each 2 x 2 block in real space. Signal: the
      super-resolution MTF times ``cos(π kx / 2) cos(π ky / 2)`` (a two-pixel box), and the
      frequencies above the new Nyquist alias back; noise: the four aliases of the
      super-resolution NPS, ``NPS(k) = ¼ Σ_a 16 cos²(π f_x) cos²(π f_y) NPS_s(f)`` over
      ``f = k/2 + a``, ``a ∈ {0, ½}²`` (white noise stays white);
    * ``binning='fourier'``: cropping the Fourier transform to the new size. Signal and
      noise keep their super-resolution shape up to the new Nyquist frequency and stop
      there (``NPS(k) = 4 NPS_s(k/2)``); an even output's Nyquist row and column are zero
      (the real image's Nyquist coefficient cannot hold the input's complex one), so the
      cut-off is just below Nyquist.

    The output has half the input's pixels along each axis and holds the electrons of its
    2 x 2 block (the mean of a flat field is ``dose`` per output pixel).
:class:`DoseWeighted`
    A dose-weighted sum of ``frames`` movie frames, each recorded by a :class:`Counting`
    detector with independent shot noise at ``dose / frames``. Radiation damage attenuates
    the signal of frame ``f`` by ``A_f(k) = exp(-N_f / (2 N_e(k)))``, where ``N_f`` is the
    exposure (e/Å²) at the middle of the frame and ``N_e`` the critical exposure of Grant &
    Grigorieff (2015) "Measuring the optimal exposure for single particle cryo-EM using a
    2.6 Å reconstruction of rotavirus VP6", *eLife* 4:e06980, measured at 300 kV::

        N_e(k) = 0.245 k^-1.665 + 2.81        (k in 1/Å, N_e in e/Å²)

    so a pixel size (Å) is needed, and the exposure is ``dose / pixel_size²``. The frames
    are summed in Fourier space with their optimal weights ``w_f(k) = A_f(k)`` (weights of
    1 at zero frequency, where nothing decays), so the noise power *falls* with frequency:
    ``NPS(k) = NPS_det(k) Σ_f A_f(k)² / frames`` and ``MTF(k) = MTF_det(k) Σ_f A_f(k)² /
    frames``. With ``restore_power`` the weights are divided by
    ``sqrt(Σ_f A_f(k)² / frames)``, as Grant & Grigorieff's program restores the noise
    power, which leaves the NPS that of one full-dose frame. The frames are simulated one by
    one (not the closed form); the closed forms above are exact for it.

Conventions for other tools: BM3D's ``sigma_psd`` (the ``bm3d`` package) is the PSD on the
full FFT grid *times the number of pixels*, on its [0, 1] scale: for an image mapped to
[0, 255] by ``a * electrons + b``, pass ``noise_power_spectrum(det, shape, dose) * a**2 *
ny * nx / 255**2``.
"""

from dataclasses import dataclass, field, fields
from typing import ClassVar

import numpy as np

from cryoem_denoise.data.noise import DEFAULT_CONTRAST, check_dose, expected_counts
from cryoem_denoise.errors import ConfigError, InputError

__all__ = [
    "KINDS", "RANGES", "WHITENING_CUTOFF", "WHITENING_MAX_GAIN", "Counting", "DoseWeighted", "SuperResolution", "White", "apply_detector",
    "bin_sum", "critical_exposure", "describe", "dqe", "draw_detector", "fourier_crop",
    "frequencies", "noise_power_spectrum", "signal_transfer", "whitened_transfer",
    "whitening_gain",
]

#: Parameter ranges :func:`draw_detector` draws from, uniformly (approximate: see the module
#: docstring). ``super_counting`` holds the super-resolution detector's parameters, in
#: super-resolution pixels; ``restore_power`` is the chance of a power-restoring dose weighting.
RANGES = {
    "counting": {"blur": (0.1, 0.3), "sharing": (0.02, 0.15), "efficiency": (0.8, 0.95)},
    "super_counting": {"blur": (0.2, 0.6), "sharing": (0.05, 0.25), "efficiency": (0.8, 0.95)},
    "dose_weighted": {"frames": (20, 60), "restore_power": 0.25},
}

#: Whitening (``apply``'s, :mod:`cryoem_denoise.inference.spectrum`, and training's): below
#: this spatial frequency (cycles/px) the noise is taken as flat at its level there, where
#: particles and ice gradients dominate a micrograph's power.
WHITENING_CUTOFF = 0.1
#: The whitening filter's gain is kept within [1/MAX_GAIN, MAX_GAIN] (noise power within 100x).
WHITENING_MAX_GAIN = 10.0

#: Grant & Grigorieff (2015) critical exposure at 300 kV: ``a k^b + c`` e/Å², k in 1/Å.
_CRITICAL_EXPOSURE = (0.245, -1.665, 2.81)


# -- frequency grids -------------------------------------------------------------------------
def frequencies(shape, real=False):
    """``(ky, kx)`` in cycles per pixel on an image's FFT grid, broadcastable.

    Parameters
    ----------
    shape : tuple of int
        ``(ny, nx)``.
    real : bool
        The ``rfft2`` grid (``nx // 2 + 1`` columns) instead of the full ``fft2`` one.
    """
    ny, nx = shape[-2:]
    kx = np.fft.rfftfreq(nx) if real else np.fft.fftfreq(nx)
    return np.fft.fftfreq(ny)[:, None], kx[None, :]


def _filter(image, transfer):
    """``image`` (last two axes) filtered by ``transfer`` on its ``rfft2`` grid (periodic)."""
    return np.fft.irfft2(np.fft.rfft2(image) * transfer, s=image.shape[-2:])


def _neighbour_mean(ky, kx):
    """``c(k)``: the Fourier transform of the mean over the four nearest neighbours."""
    return 0.5 * (np.cos(2 * np.pi * kx) + np.cos(2 * np.pi * ky))


# -- the members -----------------------------------------------------------------------------
@dataclass(frozen=True)
class White:
    """The paper's noise as a detector: MTF 1, white Gaussian noise of variance ``dose``."""

    kind: ClassVar[str] = "white"
    bin: ClassVar[int] = 1

    def mtf(self, ky, kx, dose=1.0):
        """Signal transfer at ``(ky, kx)`` cycles/px: 1."""
        return np.ones(np.broadcast(ky, kx).shape)

    def nps(self, ky, kx, dose=1.0):
        """Noise power at ``(ky, kx)`` cycles/px: ``dose`` (e²/px)."""
        return np.full(np.broadcast(ky, kx).shape, float(dose))

    def record(self, lam, rng):
        """``(noisy, mean)`` of expected counts ``lam``: ``lam`` plus N(0, mean(lam))."""
        level = np.sqrt(lam.mean(axis=(-2, -1), keepdims=True))
        return lam + level * rng.standard_normal(lam.shape), lam


@dataclass(frozen=True)
class Counting:
    """An electron-counting detector (see the module docstring for the model).

    Parameters
    ----------
    blur : float
        Rms localisation error of an electron event per axis, in pixels (>= 0).
    sharing : float
        Fraction of counted electrons counted again in a neighbouring pixel, in [0, 1].
    efficiency : float
        Fraction of electrons counted, in (0, 1].
    """

    blur: float = 0.2
    sharing: float = 0.08
    efficiency: float = 0.9
    kind: ClassVar[str] = "counting"
    bin: ClassVar[int] = 1

    def __post_init__(self):
        if not (np.isfinite(self.blur) and self.blur >= 0):
            raise ConfigError(f"counting blur must be >= 0 pixels, got {self.blur:g}")
        if not 0 <= self.sharing <= 1:
            raise ConfigError(f"counting sharing must be in [0, 1], got {self.sharing:g}")
        if not 0 < self.efficiency <= 1:
            raise ConfigError(f"counting efficiency must be in (0, 1], got {self.efficiency:g}")

    def point_spread(self, ky, kx):
        """The pixel aperture and the localisation error: ``sinc sinc exp(-2π²blur²|k|²)``."""
        spread = np.exp(-2 * np.pi ** 2 * self.blur ** 2 * (kx ** 2 + ky ** 2))
        return np.sinc(kx) * np.sinc(ky) * spread

    def mtf(self, ky, kx, dose=1.0):
        """Signal transfer at ``(ky, kx)`` cycles/px (1 at zero frequency)."""
        q = self.sharing
        return self.point_spread(ky, kx) * (1 + q * _neighbour_mean(ky, kx)) / (1 + q)

    def nps(self, ky, kx, dose=1.0):
        """Noise power at ``(ky, kx)`` cycles/px for a flat field at ``dose`` e/px."""
        q, eta = self.sharing, self.efficiency
        return dose * (1 + q + 2 * q * _neighbour_mean(ky, kx)) / (eta * (1 + q) ** 2)

    def record(self, lam, rng):
        """``(noisy, mean)`` of expected counts ``lam`` (e/px), both in electrons per pixel.

        Poisson counts of the point-spread-filtered field, thinned by ``efficiency``; the
        shared electrons are drawn as four independent Poisson fields (one per neighbour
        direction), each counted at its pixel and again at the neighbour.
        """
        q, eta = self.sharing, self.efficiency
        ky, kx = frequencies(lam.shape, real=True)
        mean = np.clip(_filter(lam, self.point_spread(ky, kx)), 0.0, None)
        counts = rng.poisson(eta * (1 - q) * mean).astype(np.float64)
        for axis, step in ((-1, 1), (-1, -1), (-2, 1), (-2, -1)):
            shared = rng.poisson(eta * q / 4 * mean)
            counts += shared + np.roll(shared, step, axis=axis)
        expected = _filter(mean, 1 + q * _neighbour_mean(ky, kx))
        return counts / (eta * (1 + q)), expected / (1 + q)


@dataclass(frozen=True)
class SuperResolution:
    """Super-resolution frames binned 2x (see the module docstring).

    Parameters
    ----------
    detector : Counting or White
        The detector at super-resolution, its parameters in super-resolution pixels.
    binning : {'average', 'fourier'}
        Real-space 2 x 2 sums or Fourier cropping.
    """

    detector: Counting = field(default_factory=lambda: Counting(blur=0.4, sharing=0.15))
    binning: str = "average"
    kind: ClassVar[str] = "super_resolution"
    bin: ClassVar[int] = 2
    BINNINGS: ClassVar[tuple] = ("average", "fourier")

    def __post_init__(self):
        if self.binning not in self.BINNINGS:
            raise ConfigError(f"unknown binning {self.binning!r} "
                              f"(choose {', '.join(self.BINNINGS)})")

    def mtf(self, ky, kx, dose=1.0):
        """Signal transfer at ``(ky, kx)`` cycles per output pixel (the unaliased part)."""
        inner = self.detector.mtf(ky / 2, kx / 2, dose / 4)
        if self.binning == "average":
            return inner * np.cos(np.pi * ky / 2) * np.cos(np.pi * kx / 2)
        return inner * _below_nyquist(ky, kx)

    def nps(self, ky, kx, dose=1.0):
        """Noise power at ``(ky, kx)`` cycles per output pixel, ``dose`` e per output pixel."""
        fy, fx = ky / 2, kx / 2
        if self.binning == "fourier":
            return 4 * self.detector.nps(fy, fx, dose / 4) * _below_nyquist(ky, kx)
        total = 0.0
        for ay in (0.0, 0.5):
            for ax in (0.0, 0.5):
                gain = 16 * np.cos(np.pi * (fy + ay)) ** 2 * np.cos(np.pi * (fx + ax)) ** 2
                total = total + gain * self.detector.nps(fy + ay, fx + ax, dose / 4)
        return total / 4

    def record(self, lam, rng):
        """``(noisy, mean)`` at half the size of ``lam`` (expected counts at super-resolution)."""
        noisy, mean = self.detector.record(lam, rng)
        return self.downsample(noisy), self.downsample(mean)

    def downsample(self, image):
        """``image`` binned 2x by this member's method (electrons of each 2 x 2 block)."""
        if self.binning == "average":
            return bin_sum(image)
        return fourier_crop(image)


def _below_nyquist(ky, kx):
    """1 strictly inside the Nyquist square, 0 on its edge (cycles per pixel)."""
    return ((np.abs(ky) < 0.5) & (np.abs(kx) < 0.5)).astype(float)


def bin_sum(image):
    """Sum of each 2 x 2 block of the last two axes (both even)."""
    *lead, ny, nx = image.shape
    return image.reshape(*lead, ny // 2, 2, nx // 2, 2).sum(axis=(-3, -1))


def fourier_crop(image):
    """``image`` (last two axes even) Fourier-cropped to half its size, holding the sum of
    each 2 x 2 block's electrons at zero frequency; frequencies at and beyond the new
    Nyquist are dropped."""
    *lead, ny, nx = image.shape
    oy, ox = ny // 2, nx // 2
    h, w = (oy - 1) // 2, (ox - 1) // 2  # highest frequencies kept, strictly below Nyquist
    spectrum = np.fft.rfft2(image)
    out = np.zeros((*lead, oy, ox // 2 + 1), complex)
    out[..., :h + 1, :w + 1] = spectrum[..., :h + 1, :w + 1]
    if h:
        out[..., oy - h:, :w + 1] = spectrum[..., ny - h:, :w + 1]
    return np.fft.irfft2(out, s=(oy, ox))


def critical_exposure(k):
    """Grant & Grigorieff's (2015) critical exposure (e/Å²) at ``k`` 1/Å (300 kV); inf at 0."""
    a, b, c = _CRITICAL_EXPOSURE
    k = np.abs(np.asarray(k, float))
    return np.where(k > 0, a * np.where(k > 0, k, 1.0) ** b + c, np.inf)


@dataclass(frozen=True)
class DoseWeighted:
    """A dose-weighted sum of movie frames (see the module docstring).

    Parameters
    ----------
    pixel_size : float
        Å per pixel (the critical exposure is in 1/Å and e/Å²).
    frames : int
        Number of frames the dose is split into, evenly.
    detector : Counting or White
        The detector that records each frame.
    restore_power : bool
        Normalise the weights so the NPS is that of an unweighted sum.
    """

    pixel_size: float = 1.0
    frames: int = 40
    detector: Counting = field(default_factory=Counting)
    restore_power: bool = False
    kind: ClassVar[str] = "dose_weighted"
    bin: ClassVar[int] = 1

    def __post_init__(self):
        if not (np.isfinite(self.pixel_size) and self.pixel_size > 0):
            raise ConfigError(f"pixel size must be > 0 Å, got {self.pixel_size:g}")
        if int(self.frames) != self.frames or self.frames < 1:
            raise ConfigError(f"frames must be a positive integer, got {self.frames!r}")

    def attenuation(self, ky, kx, dose):
        """``A_f(k)``, shape ``(frames, *k)``: each frame's signal left by radiation damage."""
        exposure = dose / self.pixel_size ** 2
        middle = (np.arange(self.frames) + 0.5) * exposure / self.frames
        k = np.hypot(ky, kx) / self.pixel_size
        return np.exp(-middle.reshape(-1, *([1] * np.ndim(k))) / (2 * critical_exposure(k)))

    def weights(self, ky, kx, dose):
        """``w_f(k)``, shape ``(frames, *k)``: the frames' weights in the sum."""
        a = self.attenuation(ky, kx, dose)
        if self.restore_power:
            a = a / np.sqrt(np.mean(a ** 2, axis=0))
        return a

    def mtf(self, ky, kx, dose=1.0):
        """Signal transfer at ``(ky, kx)`` cycles/px: detector x damage x weights."""
        gain = np.mean(self.weights(ky, kx, dose) * self.attenuation(ky, kx, dose), axis=0)
        return self.detector.mtf(ky, kx, dose) * gain

    def nps(self, ky, kx, dose=1.0):
        """Noise power at ``(ky, kx)`` cycles/px for a flat field at ``dose`` e/px."""
        return self.detector.nps(ky, kx, dose) * np.mean(self.weights(ky, kx, dose) ** 2, axis=0)

    def record(self, lam, rng):
        """``(noisy, mean)`` of expected counts ``lam``: frames recorded one by one, damaged,
        each with its own shot noise, and summed with their weights in Fourier space."""
        ky, kx = frequencies(lam.shape, real=True)
        dose = float(lam.mean())
        damage = self.attenuation(ky, kx, dose)
        weights = self.weights(ky, kx, dose)
        clean = np.fft.rfft2(lam)
        noisy_sum, mean_sum = 0, 0
        for f in range(self.frames):
            frame = np.fft.irfft2(clean * damage[f], s=lam.shape[-2:]) / self.frames
            noisy, mean = self.detector.record(np.clip(frame, 0.0, None), rng)
            noisy_sum = noisy_sum + weights[f] * np.fft.rfft2(noisy)
            mean_sum = mean_sum + weights[f] * np.fft.rfft2(mean)
        shape = lam.shape[-2:]
        return np.fft.irfft2(noisy_sum, s=shape), np.fft.irfft2(mean_sum, s=shape)


#: The members :func:`draw_detector` chooses from.
KINDS = ("white", "counting", "super_average", "super_fourier", "dose_weighted")


# -- applying and describing a detector ------------------------------------------------------
def apply_detector(clean, detector, dose, rng, contrast=DEFAULT_CONTRAST):
    """A clean field recorded by ``detector`` at ``dose``: ``(noisy, target)``.

    Parameters
    ----------
    clean : array_like
        One image ``(ny, nx)`` or a stack ``(..., ny, nx)``, any scale, mapped to expected
        counts by :func:`~cryoem_denoise.data.noise.expected_counts`. For a binned member
        (``detector.bin == 2``) the field is at twice the output resolution, both sides even.
    detector : White, Counting, SuperResolution or DoseWeighted
    dose : float
        Mean electrons per *output* pixel, > 0.
    rng : numpy.random.Generator or int
        Generator (or seed); the same seed gives the same image.
    contrast : float
        Relative contrast of the expected counts.

    Returns
    -------
    noisy, target : ndarray of float32
        The recorded image and its expectation given the clean field (the field through the
        detector's transfer, no noise), in electrons per output pixel, each of shape
        ``clean.shape[:-2] + (ny // bin, nx // bin)``.

    Raises
    ------
    ConfigError
        A dose that is not positive and finite.
    InputError
        A clean field that is not at least 2D or not finite, or odd-sided for a binned member.
    """
    dose = check_dose(dose)
    clean = np.asarray(clean, np.float64)
    if detector.bin > 1 and clean.ndim >= 2 and any(s % detector.bin for s in clean.shape[-2:]):
        raise InputError(f"a {detector.kind} detector bins {detector.bin}x: the field's sides "
                         f"must be multiples of {detector.bin}, got {clean.shape[-2:]}")
    lam = expected_counts(clean, dose / detector.bin ** 2, contrast)
    noisy, target = detector.record(lam, np.random.default_rng(rng))
    return noisy.astype(np.float32), target.astype(np.float32)


def noise_power_spectrum(detector, shape, dose=1.0):
    """The expected NPS of ``detector``'s noisy images on the full ``fft2`` grid.

    Parameters
    ----------
    detector : White, Counting, SuperResolution or DoseWeighted
    shape : tuple of int
        ``(ny, nx)`` of the *noisy* image (the output, after any binning).
    dose : float
        Electrons per output pixel.

    Returns
    -------
    ndarray of float64, shape ``(ny, nx)``
        ``E|fft2(noise)|² / (ny nx)`` in electrons² per pixel, zero frequency at ``[0, 0]``;
        white noise of variance ``v`` gives ``v`` everywhere, and the mean over the grid is
        the noise variance per pixel.
    """
    ky, kx = frequencies(shape)
    return np.broadcast_to(detector.nps(ky, kx, float(dose)), tuple(shape[-2:])).copy()


def signal_transfer(detector, shape, dose=1.0):
    """The detector's MTF on the full ``fft2`` grid of the output ``shape`` (1 at ``[0, 0]``)."""
    ky, kx = frequencies(shape)
    return np.broadcast_to(detector.mtf(ky, kx, float(dose)), tuple(shape[-2:])).copy()


def dqe(detector, ky, kx, dose=1.0):
    """Detective quantum efficiency ``MTF² dose / NPS`` at ``(ky, kx)`` cycles per output pixel
    (for the binned members, of the unaliased signal)."""
    nps = detector.nps(ky, kx, dose)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(nps > 0, detector.mtf(ky, kx, dose) ** 2 * dose / nps, 0.0)


def whitening_gain(power, level):
    """The whitening filter's gain where the noise power is ``power`` and its level at the
    cutoff ``level``: ``sqrt(level / power)``, kept within ``[1/MAX_GAIN, MAX_GAIN]``."""
    power = np.maximum(np.asarray(power, np.float64), 1e-12 * level)
    return np.clip(np.sqrt(level / power), 1.0 / WHITENING_MAX_GAIN, WHITENING_MAX_GAIN)


def whitened_transfer(detector, shape, dose=1.0):
    """The signal transfer a model sees once ``apply`` has whitened the detector's image.

    ``apply`` measures a file's radial noise power spectrum, flat below
    :data:`WHITENING_CUTOFF`, and filters the image by :func:`whitening_gain` (its noise
    becomes white at its level at the cutoff). The signal goes through the detector's MTF
    and then that filter, so a model trained on white noise added to the clean field
    filtered by this transfer sees what it will be given. The radial spectrum is the
    detector's NPS averaged over rings of ``1 / max(shape)`` cycles/px.

    Parameters
    ----------
    detector : White, Counting, SuperResolution or DoseWeighted
    shape : tuple of int
        ``(ny, nx)`` of the image (output pixels).
    dose : float
        Electrons per output pixel (the dose-weighted member depends on it).

    Returns
    -------
    ndarray of float32, shape ``(ny, nx // 2 + 1)``
        On the ``rfft2`` grid; 1 at zero frequency.
    """
    ny, nx = shape[-2:]
    ky, kx = frequencies((ny, nx), real=True)
    radius = np.hypot(ky, kx)
    nps = np.broadcast_to(detector.nps(ky, kx, float(dose)), radius.shape)
    ring = np.rint(radius * max(ny, nx)).astype(int)
    counts = np.bincount(ring.ravel())
    profile = np.bincount(ring.ravel(), nps.ravel()) / np.maximum(counts, 1)
    rings = np.arange(profile.size) / max(ny, nx)
    profile = np.interp(rings, rings[counts > 0], profile[counts > 0])
    level = np.interp(WHITENING_CUTOFF, rings, profile)
    power = np.where(radius < WHITENING_CUTOFF, level, np.interp(radius, rings, profile))
    mtf = np.broadcast_to(detector.mtf(ky, kx, float(dose)), radius.shape)
    return (mtf * whitening_gain(power, level)).astype(np.float32)


def _draw_counting(rng, ranges):
    return Counting(**{name: float(rng.uniform(*span)) for name, span in ranges.items()})


def draw_detector(rng, pixel_size=1.0, kinds=KINDS):
    """A member of the family with parameters drawn uniformly from :data:`RANGES`.

    Parameters
    ----------
    rng : numpy.random.Generator or int
    pixel_size : float
        Å per output pixel (used by the dose-weighted member).
    kinds : sequence of str
        Members to choose from, evenly (:data:`KINDS`: ``white``, ``counting``,
        ``super_average``, ``super_fourier``, ``dose_weighted``).

    Returns
    -------
    White, Counting, SuperResolution or DoseWeighted
        Check ``.bin``: a super-resolution member needs a field at twice the output size.
    """
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise ConfigError(f"unknown detector kind {unknown[0] if unknown else None!r} "
                          f"(choose from {', '.join(KINDS)})")
    rng = np.random.default_rng(rng)
    kind = kinds[int(rng.integers(len(kinds)))]
    if kind == "white":
        return White()
    if kind == "counting":
        return _draw_counting(rng, RANGES["counting"])
    if kind.startswith("super_"):
        return SuperResolution(_draw_counting(rng, RANGES["super_counting"]), kind[len("super_"):])
    frames = int(rng.integers(RANGES["dose_weighted"]["frames"][0],
                              RANGES["dose_weighted"]["frames"][1] + 1))
    restore = bool(rng.random() < RANGES["dose_weighted"]["restore_power"])
    return DoseWeighted(float(pixel_size), frames, _draw_counting(rng, RANGES["counting"]), restore)


def describe(detector):
    """A JSON-ready ``dict`` of a member: its ``kind``, ``bin`` and parameters."""
    out = {"kind": detector.kind, "bin": detector.bin}
    for f in fields(detector):
        value = getattr(detector, f.name)
        out[f.name] = describe(value) if hasattr(value, "kind") else value
    return out


"""What a file's images go through before and after the model, planned once per file.

A real micrograph differs from the model's training inputs in ways that can be measured and
undone (:class:`Conditioning`):

1. hot and dead pixels (:mod:`~cryoem_denoise.inference.outliers`): replaced by their
   neighbours' median;
2. pixel size (:mod:`~cryoem_denoise.inference.resample`): a super-resolution or coarsely
   binned image is Fourier-resampled into the pixel sizes the model was trained on;
3. scale: to [0, 255] as the model scaled its noisy training inputs;
4. noise colour (:mod:`~cryoem_denoise.inference.spectrum`): the file's noise spectrum is
   measured and the image whitened, then scaled again as in 3 (the model sees white noise);

and after the model, in reverse: re-coloured, the frequencies below about ``keep_below``
cycles/px taken from the input as far as the input's signal holds them (the gain
``sqrt(1 - noise / power)``, from the measured noise spectrum and the image's own power: the
model, trained on 128-px crops, has not learned structure on scales of 50 px and more, and
must not flatten ice gradients and particle-scale contrast where the input shows them
clearly), resampled back to the input's shape and mapped to the file's units. Each step is a setting of
:class:`~cryoem_denoise.config.InferenceConfig`; with all of them off, this is the paper's
pipeline (scale, denoise, scale back).
"""

from dataclasses import dataclass, field

import numpy as np
from scipy import fft as sp_fft

from cryoem_denoise.data.detector import frequencies
from cryoem_denoise.data.intensity import Affine
from cryoem_denoise.data.noise import estimate_noise_level
from cryoem_denoise.inference.outliers import replace_outliers
from cryoem_denoise.inference.resample import binning_factor, fourier_resize
from cryoem_denoise.inference.spectrum import estimate_noise_spectrum
from cryoem_denoise.io.mrc import check_section

__all__ = ["ESTIMATE_SECTIONS", "Conditioning", "Prepared", "model_shape", "plan_conditioning"]

#: Side of the central region of each measured section that the noise spectrum and level
#: are measured on: 2048² of an 11k micrograph is still 100 segments of 256².
MEASURE_SIDE = 2048
#: Images (as the model gets them, after binning) with a side under this are not measured:
#: white noise is assumed.
MIN_SPECTRUM_SIDE = 32
#: Sections of a stack the noise level is measured on (evenly spaced), at least.
ESTIMATE_SECTIONS = 8
#: A stack of small boxes is measured on more sections than :data:`ESTIMATE_SECTIONS`, as
#: many as hold this many pixels (64 boxes of 256², 1024 of 64²).
ESTIMATE_PIXELS = 2 ** 22


@dataclass
class Prepared:
    """One section on its way through the model: its image on [0, 255] and what undoes it."""

    image: np.ndarray          # the model's input, float32 on [0, 255]
    shape: tuple               # the section's own shape
    affine: Affine             # file units -> [0, 255] (before whitening)
    white_affine: Affine       # whitened [0, 255] -> model's [0, 255] (None: not whitened)
    scaled: np.ndarray         # the resampled section on [0, 255] before whitening
    outliers: int              # pixels replaced


@dataclass
class Conditioning:
    """How one file's sections are prepared for the model and its results restored.

    Build it with :func:`plan_conditioning`.

    Attributes
    ----------
    factor : float
        Pixel-size factor: > 1 bins, < 1 interpolates, 1 leaves the size.
    spectrum : NoiseSpectrum or None
        The file's measured noise spectrum (on the [0, 255] scale of the resampled image).
    whiten : bool
        Whether the image is whitened with ``spectrum`` (else only measured).
    keep_below : float
        Frequencies (cycles/px of the model's image) taken from the input, 0: none.
    outlier_threshold : float
        Robust standard deviations beyond which isolated pixels are replaced (0: none).
    scaling : callable
        ``scaling(image) -> Affine``: the model's scaling of noisy inputs.
    first : Prepared or None
        Section 0 prepared while measuring, used once by :meth:`prepare` for index 0.
    sigma : float or None
        The noise level (on [0, 255]) of the model's input, for a noise-level model.
    """

    factor: float
    spectrum: object
    whiten: bool
    keep_below: float
    outlier_threshold: float
    scaling: object
    sigma: float = None
    #: Section 0 prepared while measuring (a :class:`Prepared`), used once by prepare.
    first: object = None
    #: The whitening filter of the last shape asked for (``(shape, gain)``): every section
    #: of a file has one shape, and prepare and restore both need it.
    _gain: tuple = field(default=None, init=False, repr=False)

    def model_shape(self, shape):
        """The shape a section of ``shape`` has when it reaches the model."""
        return model_shape(shape, self.factor)

    def _resampled(self, section):
        image = np.array(section, np.float32)  # a copy: the input is never changed
        replaced = replace_outliers(image, self.outlier_threshold)
        return fourier_resize(image, self.model_shape(image.shape)), replaced

    def _filter(self, shape):
        if not self.whiten:
            return None
        if self._gain is None or self._gain[0] != tuple(shape):
            self._gain = (tuple(shape), self.spectrum.whitening(shape))
        return self._gain[1]

    def prepare(self, section, index=None):
        """:class:`Prepared` for a 2D section (file units, a memory map is fine); ``index``
        0 is the one :func:`plan_conditioning` prepared while measuring."""
        if index == 0 and self.first is not None:
            prepared, self.first = self.first, None
            return prepared
        image, replaced = self._resampled(section)
        return self._prepared(image, replaced, self.scaling(image), tuple(section.shape))

    def _prepared(self, image, replaced, affine, shape):
        """:class:`Prepared` from a resampled section, its outlier count and its scaling."""
        scaled = affine.forward(image)
        white_affine = None
        model_input = scaled
        if self.whiten:
            whitened = _filtered(scaled, self._filter(scaled.shape))
            white_affine = self.scaling(whitened)
            model_input = white_affine.forward(whitened)
        return Prepared(model_input, shape, affine, white_affine, scaled, replaced)

    def restore(self, result, prepared):
        """The model's ``result`` (on [0, 255]) back in the section's shape and file units."""
        out = result if prepared.white_affine is None else prepared.white_affine.inverse(result)
        if self.whiten or self.keep_below > 0:
            out = self._recoloured(out, prepared.scaled)
        out = prepared.affine.inverse(out)
        if out.shape != prepared.shape:
            out = fourier_resize(out, prepared.shape)
        return out

    def _recoloured(self, out, scaled):
        """Undo the whitening and take the lowest frequencies from the input, in one pass."""
        shape = out.shape
        mean = np.float32(scaled.mean())
        spectrum = sp_fft.rfft2(out - mean)
        if self.whiten:
            spectrum /= self._filter(shape)
        if self.keep_below > 0:  # only the low frequencies' block of the spectrum changes
            rows, cols = self._low_block(shape)
            source = sp_fft.rfft2(scaled - mean)[rows, :cols]
            block = spectrum[rows, :cols]
            block += self._kept_fraction(source, shape, rows, cols) * (source - block)
            spectrum[rows, :cols] = block
        return (sp_fft.irfft2(spectrum, shape) + mean).astype(np.float32, copy=False)

    def _low_block(self, shape):
        """``(rows, cols)`` of the ``rfft2`` grid holding every frequency up to 4 x
        ``keep_below`` (beyond it the kept fraction is under 2e-5): row indices, and the
        number of leading columns."""
        ny, nx = shape
        reach = 4 * self.keep_below
        my = min(ny, int(np.ceil(reach * ny)) + 1)
        cols = min(nx // 2 + 1, int(np.ceil(reach * nx)) + 1)
        rows = np.arange(ny) if 2 * my >= ny else np.r_[0:my, ny - my:ny]
        return rows, cols

    def _kept_fraction(self, source, shape, rows, cols):
        """How much of the input each low frequency (``source``: the block ``rows``,
        ``:cols`` of the input's ``rfft2``) keeps: ``sqrt(1 - noise / power)``, the gain that
        leaves the power of the input's signal there (power spectral subtraction; Wiener's
        ``1 - noise / power`` would dim it to ``signal**2 / power``), the power averaged over
        rings one frequency step wide, rolled off above ``keep_below``; the mean is the
        input's."""
        ky, kx = frequencies(shape, real=True)
        k = np.hypot(ky[rows], kx[:, :cols])
        step = 1.0 / min(shape)
        ring = np.minimum((k / step).astype(np.int64), int(np.ceil(4 * self.keep_below / step)))
        power = np.abs(source) ** 2 / (shape[0] * shape[1])
        ring_power = (np.bincount(ring.ravel(), power.ravel())
                      / np.maximum(np.bincount(ring.ravel()), 1))
        noise = self.spectrum.at(np.minimum((np.arange(len(ring_power)) + 0.5) * step,
                                            self.spectrum.cutoff))
        gain = np.sqrt(np.clip(1.0 - noise / np.maximum(ring_power, 1e-30), 0.0, 1.0))
        fraction = (gain[ring] / (1.0 + (k / self.keep_below) ** 8)).astype(np.float32)
        fraction[0, 0] = 1.0
        return fraction


def model_shape(shape, factor):
    """``shape`` resampled by the pixel-size ``factor`` (> 1: binned), 16 px at least."""
    if factor == 1.0:
        return tuple(int(s) for s in shape)
    return tuple(max(16, int(round(s / factor))) for s in shape)


def _central(image, side):
    """The central ``side``² of an image (a copy; the whole image if it is smaller)."""
    y, x = (max(0, (n - side) // 2) for n in image.shape)
    return image[y:y + side, x:x + side].copy()


def _filtered(image, gain):
    mean = np.float32(image.mean())
    return (sp_fft.irfft2(sp_fft.rfft2(image - mean) * gain, image.shape) + mean).astype(np.float32)


def plan_conditioning(sections, scaling, *, pixel_size=None, trained_pixel_sizes=None,
                      whiten=True, resample=True, keep_below=0.0, outlier_threshold=0.0,
                      noise_level=False):
    """Measure a file and plan its :class:`Conditioning`.

    Parameters
    ----------
    sections : sequence of ndarray
        The file's 2D sections (a memory map is fine); up to :data:`ESTIMATE_SECTIONS`,
        evenly spaced, are measured.
    scaling : callable
        ``scaling(image) -> Affine``: the model's scaling of noisy inputs.
    pixel_size : float, optional
        Å per pixel; with ``trained_pixel_sizes`` and ``resample`` it sets the binning.
    whiten : bool
        Whiten with the measured noise spectrum (it is measured either way).
    noise_level : bool
        The model takes a noise level: estimate it on the prepared sections.
    """
    factor = binning_factor(pixel_size, trained_pixel_sizes) if resample else 1.0
    plan = Conditioning(factor, None, False, float(keep_below), float(outlier_threshold), scaling)
    n = len(sections)
    size = int(np.prod(sections[0].shape))
    count = min(n, max(ESTIMATE_SECTIONS, ESTIMATE_PIXELS // max(size, 1)))
    picks = np.unique(np.linspace(0, n - 1, count).round().astype(int))
    scaled = []  # the measured sections' central regions, on [0, 255] (bounded memory)
    for k in picks:
        check_section(sections[k], index=k if n > 1 else None)
        image, replaced = plan._resampled(sections[k])
        affine = plan.scaling(image)
        if k == 0:
            first = (image, replaced, affine)
        scaled.append(_central(affine.forward(image), MEASURE_SIDE))
    if min(scaled[0].shape) >= MIN_SPECTRUM_SIDE:
        plan.spectrum = estimate_noise_spectrum(scaled)
    else:  # too small to measure: its noise is taken as white, its low frequencies as noisy
        plan.keep_below = 0.0
    plan.whiten = bool(whiten) and plan.spectrum is not None and not plan.spectrum.is_white
    plan.first = plan._prepared(*first, tuple(sections[0].shape))  # picks hold section 0
    if noise_level:
        levels = []
        level_picks = np.unique(np.linspace(0, len(scaled) - 1, min(len(scaled), ESTIMATE_SECTIONS))
                                .round().astype(int))
        for i in level_picks:
            image = scaled[i]
            if picks[i] == 0 and image.shape == plan.first.image.shape:  # section 0, whole
                levels.append(estimate_noise_level(plan.first.image))  # as prepared above
                continue
            if plan.whiten:
                image = _filtered(image, plan._filter(image.shape))
                image = plan.scaling(image).forward(image)
            levels.append(estimate_noise_level(image))
        plan.sigma = float(np.median(levels))
    return plan

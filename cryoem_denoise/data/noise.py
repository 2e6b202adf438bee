"""Additive Gaussian noise, the paper's degradation model ``y = x + v``.

One definition serves NumPy, TensorFlow and JAX: for each image a sigma is drawn uniformly from
the :class:`SigmaSpec` range (or fixed, for a single value), then ``v = sigma * N(0, 1)``
per pixel, on the [0, 255] scale, and the result is not clipped (clipping would bias the
noise at dark and bright pixels). :func:`sigma_from_uniform` is the shared step.

For simulation, :func:`shot_noise` gives the noise real micrographs have instead: Poisson
electron counts at a dose per pixel, optionally as two independent half-dose exposures.
"""

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cryoem_denoise.errors import ConfigError, InputError

SIGMA_MAX = 255.0


@dataclass(frozen=True)
class SigmaSpec:
    """A noise level: fixed (``low == high``) or a uniform range, on the [0, 255] scale."""

    low: float
    high: float

    def __post_init__(self):
        for v in (self.low, self.high):
            if not (np.isfinite(v) and 0 < v <= SIGMA_MAX):
                raise ConfigError(f"noise sigma must be in (0, {SIGMA_MAX:g}], got {v:g}")
        if self.low > self.high:
            raise ConfigError(f"noise sigma range is empty: {self.low:g} > {self.high:g}")

    @classmethod
    def parse(cls, spec):
        """From ``40``, ``'40'`` or ``'10:80'``; a SigmaSpec is returned as it is."""
        if isinstance(spec, SigmaSpec):
            return spec
        if isinstance(spec, (int, float, np.floating, np.integer)):
            return cls(float(spec), float(spec))
        text = str(spec).strip()
        parts = text.split(":")
        try:
            values = [float(p) for p in parts]
        except ValueError:
            raise ConfigError(f"noise sigma must be a number or LOW:HIGH, got {text!r}") from None
        if len(values) == 1:
            return cls(values[0], values[0])
        if len(values) == 2:
            return cls(values[0], values[1])
        raise ConfigError(f"noise sigma must be a number or LOW:HIGH, got {text!r}")

    @property
    def is_fixed(self):
        return self.low == self.high

    def __str__(self):
        return f"{self.low:g}" if self.is_fixed else f"{self.low:g}:{self.high:g}"


SIGMA_DRAWS = ("uniform", "log_uniform")


def sigma_from_uniform(spec, u, draw="uniform"):
    """Map ``u`` in [0, 1) to a sigma of ``spec`` (NumPy, TensorFlow and JAX values).

    ``draw='uniform'`` spreads sigma evenly over the range; ``'log_uniform'`` evenly over
    its logarithm (``low * (high / low) ** u``), so light noise is drawn as often as heavy.
    """
    if draw == "log_uniform" and not spec.is_fixed:
        return spec.low * (spec.high / spec.low) ** u
    if draw not in SIGMA_DRAWS:
        raise ConfigError(f"unknown sigma draw {draw!r} (choose {', '.join(SIGMA_DRAWS)})")
    return spec.low + (spec.high - spec.low) * u


def add_gaussian_noise(image, spec, rng, draw="uniform"):
    """Return ``(noisy, sigma)`` for one image (NumPy).

    Parameters
    ----------
    image : ndarray
        Clean image on the [0, 255] scale.
    spec : SigmaSpec, str or float
    rng : numpy.random.Generator or int
        Generator (or seed) for the sigma draw and the noise.
    """
    spec = SigmaSpec.parse(spec)
    rng = np.random.default_rng(rng)
    sigma = float(sigma_from_uniform(spec, rng.random(), draw))
    noise = rng.standard_normal(np.shape(image), dtype=np.float32)
    return (np.asarray(image, dtype=np.float32) + np.float32(sigma) * noise), sigma


def add_protocol_noise(clean, sigma, seed, name, section=0):
    """The paper's evaluation protocol: ``clean`` + Gaussian noise of a fixed ``sigma``.

    The one definition ``apply --sigma`` and ``evaluate`` share, so the same file, section,
    sigma and seed get the same noise in both (and on every shard of a cluster job). The
    generator is seeded by ``seed``, the CRC-32 of the file ``name`` (not its folder),
    ``section`` and sigma (to 1/1000): sigmas of one image get independent noise.

    Parameters
    ----------
    clean : ndarray
        Clean image on the [0, 255] scale.
    sigma : float
        Noise sigma on the [0, 255] scale.
    seed : int
    name : str
        The file's name (a path's name part is used).
    section : int
        Section of the file.

    Returns
    -------
    ndarray
        float32, not clipped.
    """
    key = zlib.crc32(Path(str(name)).name.encode("utf-8", "surrogateescape"))
    rng = np.random.default_rng([int(seed), key, int(section), int(round(float(sigma) * 1000))])
    noise = rng.standard_normal(np.shape(clean), dtype=np.float32)
    return np.asarray(clean, np.float32) + np.float32(sigma) * noise


def add_gaussian_noise_tf(images, spec, seed, draw="uniform"):
    """TensorFlow version for a batch ``(b, h, w, c)``: one sigma per image, stateless.

    Parameters
    ----------
    images : tf.Tensor
        Clean batch on the [0, 255] scale.
    spec : SigmaSpec, str or float
    seed : tf.Tensor or tuple of two ints
        Stateless seed; the same seed gives the same noise.

    Returns
    -------
    noisy, sigma : tf.Tensor
        The noisy batch and the ``(b,)`` sigmas used.
    """
    import tensorflow as tf  # lazy: imports TensorFlow

    spec = SigmaSpec.parse(spec)
    images = tf.convert_to_tensor(images, tf.float32)
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=2)
    u = tf.random.stateless_uniform(tf.shape(images)[:1], seed=seeds[0])
    sigma = sigma_from_uniform(spec, u, draw)
    noise = tf.random.stateless_normal(tf.shape(images), seed=seeds[1])
    return images + sigma[:, None, None, None] * noise, sigma


def add_gaussian_noise_jax(images, spec, key, draw="uniform"):
    """JAX version for a batch ``(b, h, w, c)``: one sigma per image, from a PRNG key.

    Parameters
    ----------
    images : jax.Array
        Clean batch on the [0, 255] scale.
    spec : SigmaSpec, str or float
    key : jax.Array
        PRNG key; the same key gives the same noise.

    Returns
    -------
    noisy, sigma : jax.Array
        The noisy batch and the ``(b,)`` sigmas used.
    """
    import jax  # lazy: imports JAX

    spec = SigmaSpec.parse(spec)
    k_sigma, k_noise = jax.random.split(key)
    u = jax.random.uniform(k_sigma, images.shape[:1])
    sigma = sigma_from_uniform(spec, u, draw)
    noise = jax.random.normal(k_noise, images.shape, images.dtype)
    return images + sigma[:, None, None, None] * noise, sigma


# -- shot noise (simulation) -----------------------------------------------------------------
#: Default image contrast of :func:`expected_counts`: std / mean of the expected counts.
DEFAULT_CONTRAST = 0.05


def check_dose(dose):
    """``dose`` as a float; :class:`ConfigError` unless it is positive and finite."""
    try:
        dose = float(dose)
    except (TypeError, ValueError):
        raise ConfigError(f"dose must be a number of electrons per pixel, got {dose!r}") from None
    if not (np.isfinite(dose) and dose > 0):
        raise ConfigError(f"dose must be a positive number of electrons per pixel, got {dose:g}")
    return dose


def check_contrast(contrast):
    """``contrast`` as a float; :class:`ConfigError` unless it is in [0, 1]."""
    contrast = float(contrast)
    if not (np.isfinite(contrast) and 0 <= contrast <= 1):
        raise ConfigError(f"contrast must be in [0, 1], got {contrast:g}")
    return contrast


def expected_counts(clean, dose, contrast=DEFAULT_CONTRAST):
    """Expected electron counts per pixel of a clean field (the Poisson means).

    Each image (the last two axes) is standardized and put on a flat background of ``dose``
    electrons per pixel with relative contrast ``contrast``::

        lam = dose * (1 + contrast * (clean - mean(clean)) / std(clean))

    clipped at 0 (which only bites beyond ``1 / contrast`` standard deviations). So the mean
    count is ``dose`` and the contrast, std/mean of ``lam``, is ``contrast`` whatever the
    clean field's scale. This is the weak-phase picture: a cryo-EM image is a uniform beam
    modulated by a few per cent, and the clean fields of :mod:`cryoem_denoise.data.simulate` are
    min-max stretched to [0, 255], so their absolute contrast has to be put back. A plain
    ``dose * clean / mean(clean)`` would turn a stretched field's darkest pixels into zero
    electrons, a contrast no micrograph has. The per-pixel SNR of one exposure is then
    ``dose * contrast**2`` (signal variance ``(dose * contrast)**2`` over Poisson variance
    ``dose``). A constant image gives ``dose`` everywhere.

    Parameters
    ----------
    clean : array_like
        One image ``(ny, nx)`` or a stack ``(..., ny, nx)``, any scale, finite.
    dose : float
        Mean electrons per pixel, > 0 (e/Å² times the pixel size in Å squared).
    contrast : float
        Relative standard deviation of the expected counts, in [0, 1].

    Returns
    -------
    ndarray of float64
        The expected counts, same shape as ``clean``.

    Raises
    ------
    ConfigError
        A dose that is not positive and finite, a contrast outside [0, 1].
    InputError
        A clean field that is not at least 2D or not finite.
    """
    dose, contrast = check_dose(dose), check_contrast(contrast)
    clean = np.asarray(clean, dtype=np.float64)
    if clean.ndim < 2:
        raise InputError(f"a clean field must be an image or a stack, got shape {clean.shape}")
    if not np.isfinite(clean).all():
        raise InputError("the clean field has non-finite pixels")
    mean = clean.mean(axis=(-2, -1), keepdims=True)
    std = clean.std(axis=(-2, -1), keepdims=True)
    z = np.divide(clean - mean, std, out=np.zeros_like(clean), where=std > 0)
    return dose * np.clip(1.0 + contrast * z, 0.0, None)


def shot_noise(clean, dose, rng, halves=False, contrast=DEFAULT_CONTRAST):
    """Poisson electron counts of a clean field at ``dose`` electrons per pixel.

    The counts are drawn from the expected counts of :func:`expected_counts`, independently
    per pixel. With ``halves`` the exposure is split into two independent halves of half the
    dose each, as the even and odd frames of a movie: their sum is a full-dose exposure, and
    each is an unbiased, independently noisy view of the same signal (the Noise2Noise pair).

    Parameters
    ----------
    clean : array_like
        One image ``(ny, nx)`` or a stack ``(..., ny, nx)``, any scale (see
        :func:`expected_counts` for the mapping).
    dose : float
        Mean electrons per pixel of the full exposure, > 0.
    rng : numpy.random.Generator or int
        Generator (or seed); the same seed gives the same counts.
    halves : bool
        Return two half-dose exposures instead of one.
    contrast : float
        Relative contrast of the expected counts, in [0, 1].

    Returns
    -------
    ndarray of float32, or a tuple of two
        Integer counts stored as float32 (the library's pixel type), shape of ``clean``.

    Raises
    ------
    ConfigError
        A dose that is not positive and finite, a contrast outside [0, 1].
    InputError
        A clean field that is not at least 2D or not finite.
    """
    lam = expected_counts(clean, dose, contrast)
    rng = np.random.default_rng(rng)
    if not halves:
        return rng.poisson(lam).astype(np.float32)
    return rng.poisson(lam / 2).astype(np.float32), rng.poisson(lam / 2).astype(np.float32)


# -- noise level of an image -----------------------------------------------------------------
#: :func:`estimate_sigma`: at most this many pixels, in square blocks, enter the estimate.
ESTIMATE_MAX_PIXELS = 2 ** 20
_ESTIMATE_BLOCK = 256
_MAD_TO_STD = 1.482602218505602  # 1 / Phi^-1(3/4): MAD -> std of a Gaussian
_LAPLACE_GAIN = 6.0  # norm of the [1, -2, 1] x [1, -2, 1] mask: white noise sigma -> 6 sigma


def _estimate_blocks(image, max_pixels):
    """The whole image if it fits, else a regular grid of contiguous blocks (float64)."""
    ny, nx = image.shape
    if ny * nx <= max_pixels:
        return [np.asarray(image, dtype=np.float64)]
    by, bx = min(_ESTIMATE_BLOCK, ny), min(_ESTIMATE_BLOCK, nx)
    per_axis = max(1, int(np.sqrt(max_pixels / (by * bx))))
    ys = np.unique(np.linspace(0, ny - by, per_axis).round().astype(int))
    xs = np.unique(np.linspace(0, nx - bx, per_axis).round().astype(int))
    return [np.asarray(image[y:y + by, x:x + bx], dtype=np.float64) for y in ys for x in xs]


def estimate_sigma(image, max_pixels=ESTIMATE_MAX_PIXELS):
    """The standard deviation of the white Gaussian noise in one image, robust to its signal.

    The image is filtered with the separable second difference ``[1, -2, 1] x [1, -2, 1]``
    (Immerkær 1996), which removes constants, ramps and most smooth signal and turns white
    noise of std ``sigma`` into noise of std ``6 sigma``; the estimate is the median absolute
    response x 1.4826 / 6, so the remaining edges of particles, ice and contamination (a
    minority of pixels) barely count. On simulated fields plus Gaussian noise of sigma 10-80
    it is within 1 % of the truth, and about 0.5 (on [0, 255]) for a noise-free field.
    Noise that is not white (detector MTF, interpolation in motion correction) is measured
    at the finest scale only, so it reads lower than its per-pixel std.

    Images over ``max_pixels`` are estimated from a regular grid of contiguous 256 x 256
    blocks holding about ``max_pixels`` pixels (0.06 s for 4096 x 4096); contiguous, not a
    stride subsample, so that the signal stays smooth. Only those blocks are read from a
    memory map and checked for finite values.

    Parameters
    ----------
    image : array_like
        One 2D image, any scale (the estimate is on the same scale), at least 3 x 3.
    max_pixels : int
        Pixels above which blocks are sampled.

    Returns
    -------
    float
        The noise sigma, deterministic for a given image.

    Raises
    ------
    InputError
        An image that is not 2D, smaller than 3 x 3, or with non-finite pixels.
    """
    image = np.asanyarray(image)
    if image.ndim != 2:
        raise InputError(f"estimate_sigma needs one 2D image, got shape {image.shape}")
    if min(image.shape) < 3:
        raise InputError(f"image of shape {image.shape} is too small to estimate noise (3 x 3 at least)")
    responses = []
    for block in _estimate_blocks(image, int(max_pixels)):
        if not np.isfinite(block).all():
            raise InputError("image has non-finite (NaN or Inf) pixels")
        rows = block[:, :-2] - 2 * block[:, 1:-1] + block[:, 2:]
        responses.append((rows[:-2] - 2 * rows[1:-1] + rows[2:]).ravel())
    return float(_MAD_TO_STD * np.median(np.abs(np.concatenate(responses))) / _LAPLACE_GAIN)


#: Side of the central region the noise level is estimated on (fast on 11k micrographs).
ESTIMATE_SIDE = 1024


def estimate_noise_level(image, affine=None):
    """Noise sigma of an image on the [0, 255] scale, from its central region.

    Parameters
    ----------
    image : ndarray
        2D image, on [0, 255], or in file units with ``affine`` (a memory map is fine:
        only a central ``ESTIMATE_SIDE``-square is read).
    affine : Affine, optional
        File units → [0, 255].
    """
    ny, nx = image.shape
    y0, x0 = max(0, (ny - ESTIMATE_SIDE) // 2), max(0, (nx - ESTIMATE_SIDE) // 2)
    region = np.asarray(image[y0:y0 + ESTIMATE_SIDE, x0:x0 + ESTIMATE_SIDE], np.float32)
    if affine is not None:
        region = affine.forward(region)
    return float(estimate_sigma(region))

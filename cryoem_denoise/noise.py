"""Additive Gaussian noise, the paper's degradation model ``y = x + v``.

One definition serves NumPy, TensorFlow and JAX: for each image a sigma is drawn uniformly from
the :class:`SigmaSpec` range (or fixed, for a single value), then ``v = sigma * N(0, 1)``
per pixel, on the [0, 255] scale, and the result is not clipped (clipping would bias the
noise at dark and bright pixels). :func:`sigma_from_uniform` is the shared step.
"""

from dataclasses import dataclass

import numpy as np

from cryoem_denoise.errors import ConfigError

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


def sigma_from_uniform(spec, u):
    """Map ``u`` in [0, 1) to a sigma of ``spec`` (works on NumPy and TensorFlow values)."""
    return spec.low + (spec.high - spec.low) * u


def add_gaussian_noise(image, spec, rng):
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
    sigma = float(sigma_from_uniform(spec, rng.random()))
    noise = rng.standard_normal(np.shape(image), dtype=np.float32)
    return (np.asarray(image, dtype=np.float32) + np.float32(sigma) * noise), sigma


def add_gaussian_noise_tf(images, spec, seed):
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
    import tensorflow as tf

    spec = SigmaSpec.parse(spec)
    images = tf.convert_to_tensor(images, tf.float32)
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=2)
    u = tf.random.stateless_uniform(tf.shape(images)[:1], seed=seeds[0])
    sigma = sigma_from_uniform(spec, u)
    noise = tf.random.stateless_normal(tf.shape(images), seed=seeds[1])
    return images + sigma[:, None, None, None] * noise, sigma


def add_gaussian_noise_jax(images, spec, key):
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
    import jax

    spec = SigmaSpec.parse(spec)
    k_sigma, k_noise = jax.random.split(key)
    u = jax.random.uniform(k_sigma, images.shape[:1])
    sigma = sigma_from_uniform(spec, u)
    noise = jax.random.normal(k_noise, images.shape, images.dtype)
    return images + sigma[:, None, None, None] * noise, sigma

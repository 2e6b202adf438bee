"""What a clean training crop goes through before noise is added: contrast and detector.

The paper adds white Gaussian noise to each clean crop (``DataConfig.noise = 'white'``,
``contrast = '1'``). Two settings widen that to what real micrographs hold:

* ``contrast = 'LOW:HIGH'``: each crop's deviations from its mean are multiplied by a factor
  drawn log-uniformly from the range, so a crop's signal-to-noise ratio at a given sigma is
  lower by up to ``LOW**2``. A real exposure at 5 e/px, scaled to [0, 255] as ``apply``
  scales it, has a signal several times weaker than its noise, weaker than any min-max
  scaled clean field plus noise of sigma <= 90 gives; the factor makes the model meet it.
* ``noise = 'detector'``: each crop is filtered by a signal transfer drawn from a bank of
  :data:`BANK_SIZE` members of the detector family
  (:func:`cryoem_denoise.data.detector.draw_detector`: white, counting, super-resolution
  binned by averaging or by Fourier cropping, dose-weighted), each member's transfer as
  ``apply`` presents it to the model: the detector's MTF times the whitening filter that
  ``apply`` computes from the noise spectrum it measures
  (:func:`~cryoem_denoise.data.detector.whitened_transfer`). The white Gaussian noise added
  afterwards is then the detector's shot noise after that whitening, and the target is the
  crop filtered the same way: the detector's noise-free image, whitened (``apply``
  re-colours the model's output with the inverse filter). Shot noise is taken as Gaussian
  and signal-independent (a few per cent of contrast, >= 5 e/px). The members' parameters
  are drawn from :data:`cryoem_denoise.data.detector.RANGES`, the pixel size from
  :data:`PIXEL_SIZES` (the range the model's images have after ``apply``'s resampling),
  the total exposure from :data:`EXPOSURES` (typical single-particle exposures; it sets the
  dose-weighted member's weights).

Filtering is periodic, so each crop is mirrored by :data:`PAD` pixels on every side first.
One definition in NumPy (validation crops), TensorFlow (``tf.data``) and JAX (the jitted
step); the bank is a pure function of the config, so a resumed run sees the same bank.
"""

import functools

import numpy as np

from cryoem_denoise.data import detector
from cryoem_denoise.errors import ConfigError

__all__ = ["BANK_SIZE", "EXPOSURES", "NOISES", "PAD", "PIXEL_SIZES", "ContrastSpec",
           "detector_kinds", "shape_signal", "shape_signal_jax", "shape_signal_tf",
           "shapes_signal", "transfer_bank"]

#: ``DataConfig.noise``: the paper's white Gaussian noise, or a detector's, whitened.
NOISES = ("white", "detector")
#: Transfers in the bank a crop draws from.
BANK_SIZE = 256
#: Pixels each crop is mirrored by before it is filtered.
PAD = 16
#: Pixel sizes (Å) the bank's members are drawn for, uniformly.
PIXEL_SIZES = (0.7, 3.0)
#: Total exposures (e/Å²) the bank's members are drawn for, uniformly.
EXPOSURES = (30.0, 60.0)


class ContrastSpec:
    """A contrast factor: fixed ``'1'`` (the paper: crops as they are) or ``'LOW:HIGH'``
    drawn log-uniformly per crop, both in (0, 1]."""

    def __init__(self, text):
        parts = str(text).strip().split(":")
        try:
            values = [float(p) for p in parts]
        except ValueError:
            raise ConfigError(f"contrast must be a number or LOW:HIGH, got {text!r}") from None
        if len(values) not in (1, 2):
            raise ConfigError(f"contrast must be a number or LOW:HIGH, got {text!r}")
        self.low, self.high = values[0], values[-1]
        if not (0 < self.low <= self.high <= 1):
            raise ConfigError(f"contrast must lie in (0, 1] with LOW <= HIGH, got {text!r}")

    @property
    def is_one(self):
        return self.low == self.high == 1.0

    def from_uniform(self, u):
        """Map ``u`` in [0, 1) to a factor (NumPy, TensorFlow and JAX values)."""
        return self.low * (self.high / self.low) ** u


def detector_kinds(text):
    """``DataConfig.detectors`` (``'white,counting'``) as a tuple of member names."""
    return tuple(k.strip() for k in str(text).split(",") if k.strip())


def shapes_signal(data_cfg):
    """Whether ``data_cfg`` changes clean crops before noise (else the paper's crops)."""
    return data_cfg.noise == "detector" or not ContrastSpec(data_cfg.contrast).is_one


@functools.lru_cache(maxsize=4)
def _bank(side, kinds, seed):
    rng = np.random.default_rng([int(seed), 4099])
    bank = np.empty((BANK_SIZE, side, side // 2 + 1), np.float32)
    for i in range(BANK_SIZE):
        pixel_size = float(rng.uniform(*PIXEL_SIZES))
        member = detector.draw_detector(rng, pixel_size=pixel_size, kinds=kinds)
        dose = float(rng.uniform(*EXPOSURES)) * pixel_size ** 2
        bank[i] = detector.whitened_transfer(member, (side, side), dose)
    bank.setflags(write=False)
    return bank


def transfer_bank(cfg):
    """The run's transfers, ``(BANK_SIZE, tile + 2 PAD, (tile + 2 PAD) // 2 + 1)`` float32 on
    the ``rfft2`` grid of a mirrored crop; ``None`` unless ``cfg.data.noise == 'detector'``."""
    if cfg.data.noise != "detector":
        return None
    return _bank(cfg.model.tile + 2 * PAD, detector_kinds(cfg.data.detectors),
                 int(cfg.train.seed))


def shape_signal(crops, factors, transfers):
    """NumPy: ``crops`` ``(n, t, t)`` with contrast ``factors`` ``(n,)`` and, where
    ``transfers`` ``(n, t + 2 PAD, ...)`` is given, filtered by them."""
    crops = np.asarray(crops, np.float32)
    mean = crops.mean(axis=(1, 2), keepdims=True)
    out = mean + np.asarray(factors, np.float32)[:, None, None] * (crops - mean)
    if transfers is None:
        return out.astype(np.float32)
    t = crops.shape[1]
    padded = np.pad(out, ((0, 0), (PAD, PAD), (PAD, PAD)), mode="reflect")
    filtered = np.fft.irfft2(np.fft.rfft2(padded) * transfers, s=padded.shape[1:])
    return filtered[:, PAD:PAD + t, PAD:PAD + t].astype(np.float32)


def shape_signal_tf(crops, factors, transfers):
    """TensorFlow form of :func:`shape_signal` for ``(n, t, t, 1)`` crops."""
    import tensorflow as tf  # lazy: imports TensorFlow

    x = crops[..., 0]
    mean = tf.reduce_mean(x, axis=[1, 2], keepdims=True)
    x = mean + factors[:, None, None] * (x - mean)
    if transfers is not None:
        t = tf.shape(x)[1]
        padded = tf.pad(x, [[0, 0], [PAD, PAD], [PAD, PAD]], mode="REFLECT")
        side = tf.shape(padded)[1:]
        spectrum = tf.signal.rfft2d(padded) * tf.cast(transfers, tf.complex64)
        x = tf.signal.irfft2d(spectrum, fft_length=side)[:, PAD:PAD + t, PAD:PAD + t]
    return x[..., None]


def shape_signal_jax(crops, factors, transfers):
    """JAX form of :func:`shape_signal` for ``(n, t, t, 1)`` crops."""
    import jax.numpy as jnp  # lazy: imports JAX

    x = crops[..., 0]
    mean = jnp.mean(x, axis=(1, 2), keepdims=True)
    x = mean + factors[:, None, None] * (x - mean)
    if transfers is not None:
        t = x.shape[1]
        padded = jnp.pad(x, ((0, 0), (PAD, PAD), (PAD, PAD)), mode="reflect")
        spectrum = jnp.fft.rfft2(padded) * transfers
        x = jnp.fft.irfft2(spectrum, s=padded.shape[1:])[:, PAD:PAD + t, PAD:PAD + t]
    return x[..., None].astype(crops.dtype)

"""What both training steps share: the networks, their optimisers, and the saved state.

A trainer holds the generator, the critic and their optimisers, built under the run's
precision policy (and its distribution scope). The backend subclasses
(:class:`~cryoem_denoise.training.tf_step.TFTrainer`,
:class:`~cryoem_denoise.training.jax_step.JaxTrainer`) add the compiled step and the data
stream, behind one interface that the loop (:mod:`~cryoem_denoise.training.loop`) uses:

``train_step(noisy, clean)``
    one WGAN step on an explicit batch of ``n_critic * batch_size`` crops on [0, 255];
``start(image_set, start_step)`` / ``step(step)``
    the run's own data, drawn for step ``step`` (a pure function of seed and step);
``sync()``
    bring the Keras variables up to date (JAX keeps the state outside them while training);
``get_state(step)`` / ``set_state(arrays)``
    checkpoints: the same arrays, in the same order, on every backend.
"""

import abc
import contextlib

import numpy as np

from cryoem_denoise.data.pipeline import with_noise_level
from cryoem_denoise.errors import ConfigError, InputError
from cryoem_denoise.model import batch_norm
from cryoem_denoise.model.batch_norm import batch_norm_layers
from cryoem_denoise.model.losses import from_model_scale, to_model_scale
from cryoem_denoise.model.models import build_critic, build_generator
from cryoem_denoise.runtime import backend
from cryoem_denoise.runtime.precision import resolve


def make_optimizer(name, lr, beta1, mixed_float16):
    """A Keras optimizer by name; wrapped for dynamic loss scaling under float16."""
    import keras  # lazy: imports Keras

    if name == "adam":
        opt = keras.optimizers.Adam(lr, beta_1=beta1)
    elif name == "sgd":
        opt = keras.optimizers.SGD(lr)
    elif name == "rmsprop":
        opt = keras.optimizers.RMSprop(lr)
    else:
        raise ConfigError(f"unknown optimizer {name!r}")
    if mixed_float16:
        opt = keras.optimizers.LossScaleOptimizer(opt)
    return opt


class Trainer(abc.ABC):
    """Generator, critic and optimisers of a run.

    Parameters
    ----------
    cfg : FitConfig
    scope : callable, optional
        Returns the context to build variables in (a strategy's or distribution's scope).
    replicas : int
        Devices the batch is split over (for the divisibility check).
    sync_batch_norm : bool
        Synchronize BatchNorm statistics across replicas (``tf.distribute``; under JAX's
        sharded jit the statistics are those of the global batch already).
    """

    def __init__(self, cfg, scope=None, replicas=1, sync_batch_norm=False):
        import keras  # lazy: imports Keras

        self.cfg = cfg
        t = cfg.train
        if t.deterministic:
            backend.enable_determinism()
        backend.set_random_seed(t.seed)
        self.policy = resolve(t.precision)
        self.replicas = replicas
        if t.batch_size % replicas:
            raise ConfigError(f"batch size {t.batch_size} is not divisible by the "
                              f"{replicas} devices")
        previous = keras.mixed_precision.global_policy()
        keras.mixed_precision.set_global_policy(self.policy)
        try:
            with (scope or contextlib.nullcontext)():
                sync = sync_batch_norm and replicas > 1
                self.generator = build_generator(cfg.model, sync, seed=t.seed)
                if t.freeze_batch_norm:  # Keras runs a non-trainable BatchNorm in inference mode

                    for layer in batch_norm_layers(self.generator):
                        layer.trainable = False
                self.critic = build_critic(cfg.model, sync, seed=t.seed)
                fp16 = self.policy == "mixed_float16"
                self.g_opt = make_optimizer(t.g_optimizer, t.g_lr, t.adam_beta1, fp16)
                self.d_opt = make_optimizer(t.d_optimizer, t.d_lr, t.adam_beta1, fp16)
                self.g_opt.build(self.generator.trainable_variables)
                self.d_opt.build(self.critic.trainable_variables)
        finally:
            keras.mixed_precision.set_global_policy(previous)
        if not t.gradient_penalty > 0:  # WGAN-GP clips nothing
            c = t.clip
            for v in self.critic.trainable_variables:
                v.assign(keras.ops.clip(v.value, -c, c))

    # -- the interface the loop uses -----------------------------------------------------
    @abc.abstractmethod
    def train_step(self, noisy, clean):
        """One step on an explicit batch on [0, 255]; the losses as device scalars."""

    @abc.abstractmethod
    def start(self, image_set, start_step):
        """Prepare the run's own data stream, from step ``start_step`` on."""

    @abc.abstractmethod
    def step(self, step):
        """One step on the run's crops of step ``step``; the losses as device scalars."""

    @abc.abstractmethod
    def draw_batches(self, first_element, size, count):
        """``count`` batches of ``size`` noisy crops of the run's stream (generator inputs on
        [0, 255]), from element ``first_element`` on; after :meth:`start`."""

    def sync(self):
        """Make the Keras variables hold the current state (a no-op where they always do)."""

    def _variables_changed(self):
        """The Keras variables were set from outside the step (a no-op where they are the state)."""

    def load_generator_weights(self, path):
        """Start from the generator weights of another model (fine-tuning)."""
        self.sync()
        self.generator.load_weights(str(path))
        self._variables_changed()

    def recalibrate_batch_norm(self, crops):
        """Set the generator's BatchNorm moving statistics to those of ``crops`` crops
        (:func:`cryoem_denoise.model.batch_norm.recalibrate`).

        The crops are the run's own stream (same images, sigma draw and augmentation) after
        every element the run trains on, in batches of the training batch size; the training
        checkpoints keep the moving averages, so a resumed run is unchanged.
        """
        self.sync()
        t = self.cfg.train
        count = -(-crops // t.batch_size)
        first = t.steps * t.batch_size * t.n_critic
        batches = (to_model_scale(b) for b in self.draw_batches(first, t.batch_size, count))
        batch_norm.recalibrate(self.generator, batches)
        self._variables_changed()
        return count * t.batch_size

    # -- state ---------------------------------------------------------------------------
    def _state_variables(self):
        return {"generator": self.generator.variables, "critic": self.critic.variables,
                "g_opt": self.g_opt.variables, "d_opt": self.d_opt.variables}

    def get_state(self, step):
        """All variables as ``{'group/NNNN': ndarray}`` plus ``'step'``."""
        import keras  # lazy: imports Keras

        self.sync()
        arrays = {"step": np.array(step, np.int64)}
        for group, variables in self._state_variables().items():
            for i, v in enumerate(variables):
                arrays[f"{group}/{i:04d}"] = np.asarray(keras.ops.convert_to_numpy(v.value))
        return arrays

    def set_state(self, arrays, source="checkpoint"):
        """Load :meth:`get_state` arrays; return their step.

        Every array is checked before any is assigned, so arrays that do not fit leave the
        trainer as it was (and the loop can fall back to an older checkpoint).

        Raises
        ------
        InputError
            The arrays do not fit this model (another config, or a damaged checkpoint):
            missing or extra arrays, another shape, not numbers, no integer ``step``.
        """
        step = arrays.get("step")
        if step is None or np.shape(step) != () or not np.issubdtype(np.asarray(step).dtype,
                                                                      np.integer):
            raise InputError("checkpoint does not fit this model (no integer 'step')", source)
        pairs = []
        for group, variables in self._state_variables().items():
            keys = sorted(k for k in arrays if k.startswith(group + "/"))
            if len(keys) != len(variables):
                raise InputError(f"checkpoint does not fit this model ({group}: {len(keys)} "
                                 f"arrays for {len(variables)} variables)", source)
            for key, v in zip(keys, variables):
                value = np.asarray(arrays[key])
                if tuple(value.shape) != tuple(v.shape):
                    raise InputError(f"checkpoint does not fit this model ({group} variable "
                                     f"{v.path}: {value.shape} vs {tuple(v.shape)})", source)
                if not (np.issubdtype(value.dtype, np.number) or value.dtype == bool):
                    raise InputError(f"checkpoint does not fit this model ({group} variable "
                                     f"{v.path} holds {value.dtype}, not numbers)", source)
                pairs.append((v, value))
        for v, value in pairs:
            v.assign(value)
        return int(step)

    def model_input(self, noisy, sigma=None):
        """``(n, h, w)`` crops on [0, 255] as the generator's input (with the noise-level
        channel of a ``sigma_map`` model, from ``sigma``), still on [0, 255]."""
        if self.cfg.model.sigma_map:
            if sigma is None or np.isnan(np.asarray(sigma, np.float64)).any():
                raise ConfigError("this model takes a noise-level map: give each crop's sigma")
            return with_noise_level(noisy, sigma)
        return np.asarray(noisy, np.float32)[..., None]

    def denoise_batch(self, noisy, sigma=None):
        """Generator on ``(n, h, w)`` noisy crops on [0, 255] → denoised on [0, 255]."""
        import keras  # lazy: imports Keras

        self.sync()
        out = self.generator(to_model_scale(self.model_input(noisy, sigma)), training=False)
        return from_model_scale(keras.ops.convert_to_numpy(out).astype(np.float32)[..., 0])

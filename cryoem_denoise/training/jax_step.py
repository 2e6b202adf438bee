"""The JAX training step: one ``jax.jit`` function over Keras' stateless API.

The state of a run (both networks' trainable and non-trainable variables, both optimisers'
variables) lives in a pytree of arrays outside the Keras variables while training; each step
takes it and returns the next one (its buffers donated, so memory does not double). The step
is the same WGAN step as TensorFlow's (:mod:`~cryoem_denoise.training.tf_step`) and uses the
same losses (:mod:`cryoem_denoise.model.losses`): ``n_critic`` critic updates on chunks of
``batch_size`` crops, each followed by clipping every critic weight to ``[-c, c]``, then one
generator update on the last chunk (with ``gradient_penalty`` > 0, WGAN-GP: the penalty
added to the critic loss, its gradient at the interpolated images by ``jax.grad`` inside the
critic's objective, ``ε`` drawn from ``(seed, critic optimiser's iteration count)``, and no
clipping). Under ``mixed_float16`` the losses are multiplied by the
optimisers' dynamic loss scale and :class:`keras.optimizers.LossScaleOptimizer` unscales
(and skips non-finite steps).

Data never leaves the accelerator: the clean images sit there once
(:func:`cryoem_denoise.data.pipeline.device_images`) and each step draws its crops, dihedral
augmentation and noise inside the jitted function from ``(seed, element index)``
(:func:`cryoem_denoise.data.pipeline.jax_batch`), so the loop never waits on the host.

Several devices: Keras' distribution API (:class:`keras.distribution.DataParallel`): the
variables are replicated, the batch is sharded over the devices, and XLA inserts the
all-reduces (BatchNorm statistics are those of the global batch, as with synchronized
BatchNorm on TensorFlow). Several hosts: ``strategy='multiworker'`` calls
:func:`keras.distribution.initialize` (``jax.distributed``) first.
"""

import numpy as np

from cryoem_denoise.data import pipeline, training_noise
from cryoem_denoise.errors import ConfigError
from cryoem_denoise.model import losses
from cryoem_denoise.training.base import Trainer


def make_distribution(name):
    """A :class:`keras.distribution.DataParallel` over the devices, or ``None`` for one.

    ``auto`` and ``mirrored`` use every local device (``auto`` only when there are
    several), ``default`` one device, ``multiworker`` every device of every host.
    """
    import jax  # lazy: imports JAX
    import keras  # lazy: imports Keras

    if name == "multiworker":
        keras.distribution.initialize()
        return keras.distribution.DataParallel(devices=jax.devices())
    devices = jax.local_devices()
    if name == "default" or (name == "auto" and len(devices) == 1):
        return None
    if name in ("auto", "mirrored"):
        return keras.distribution.DataParallel(devices=devices)
    raise ConfigError(f"unknown strategy {name!r}")


class JaxTrainer(Trainer):
    """The WGAN step on JAX.

    Parameters
    ----------
    cfg : FitConfig
    distribution : keras.distribution.DataParallel, optional
        Defaults to :func:`make_distribution` of ``cfg.train.strategy``; ``False`` for one
        device whatever the config says.
    """

    def __init__(self, cfg, distribution=None):
        import jax  # lazy: imports JAX

        if distribution is None:
            distribution = make_distribution(cfg.train.strategy)
        self.distribution = distribution or None
        replicas = self.distribution.num_model_replicas if self.distribution else 1
        super().__init__(cfg, self.distribution.scope if self.distribution else None, replicas)
        self._scale_index = {name: self._loss_scale_index(opt)
                             for name, opt in (("g", self.g_opt), ("d", self.d_opt))}
        self._d_iterations = next(i for i, v in enumerate(self.d_opt.variables)
                                  if v is self.d_opt.iterations)
        self.state = self._collect(copy=True)
        self._stale = False  # True while the Keras variables lag behind self.state
        self._update = jax.jit(self._update_fn, donate_argnums=0)
        self._data = None
        self._data_update = None
        self._infer = None

    # -- state outside the Keras variables -----------------------------------------------
    def _groups(self):
        g, d = self.generator, self.critic
        return {"g_tv": g.trainable_variables, "g_ntv": g.non_trainable_variables,
                "d_tv": d.trainable_variables, "d_ntv": d.non_trainable_variables,
                "g_opt": self.g_opt.variables, "d_opt": self.d_opt.variables}

    def _collect(self, copy=False):
        """The variables' values; ``copy`` gives the step buffers of its own to donate."""
        return {k: [v.value.copy() if copy else v.value for v in vs]
                for k, vs in self._groups().items()}

    def sync(self):
        if self._stale:
            for key, variables in self._groups().items():
                for v, value in zip(variables, self.state[key]):
                    v.assign(value)
            self._stale = False
            # the step donates the state's buffers: keep the variables on their own copies
            self.state = self._collect(copy=True)

    def set_state(self, arrays, source="checkpoint"):
        step = super().set_state(arrays, source)
        self.state = self._collect(copy=True)
        self._stale = False
        return step

    def _variables_changed(self):
        self.state = self._collect(copy=True)

    @staticmethod
    def _loss_scale_index(opt):
        scale = getattr(opt, "dynamic_scale", None)
        if scale is None:
            return None
        return next(i for i, v in enumerate(opt.variables) if v is scale)

    def _loss_scale(self, which, opt_vars):
        index = self._scale_index[which]
        return 1.0 if index is None else opt_vars[index]

    # -- the step ------------------------------------------------------------------------
    def _critic_objective(self, d_tv, d_ntv, g_tv, g_ntv, scale, y, x, eps=None):
        cond = self.cfg.model.critic_conditional
        fake, g_ntv = self.generator.stateless_call(g_tv, g_ntv, y, training=True)
        real_s, d_ntv = self.critic.stateless_call(d_tv, d_ntv, losses.critic_input(y, x, cond),
                                                   training=True)
        fake_s, d_ntv = self.critic.stateless_call(d_tv, d_ntv,
                                                   losses.critic_input(y, fake, cond),
                                                   training=True)
        loss = losses.critic_loss(real_s, fake_s, y.shape[0])
        if eps is None:
            return loss * scale, (loss, d_ntv, g_ntv)
        penalty, d_ntv = self._penalty(d_tv, d_ntv, scale, y, x, fake, eps)
        total = loss + penalty
        return total * scale, ((total, loss, penalty), d_ntv, g_ntv)

    def _penalty(self, d_tv, d_ntv, scale, y, x, fake, eps):
        """WGAN-GP's penalty (λ included) at ``eps`` and the critic's non-trainable state;
        images on [-1, 1]."""
        import jax  # lazy: imports JAX

        cond = self.cfg.model.critic_conditional
        mixed = losses.interpolate(x, jax.lax.stop_gradient(fake), eps)

        def score(image):  # scaled like the loss: a float16 gradient does not underflow
            s, ntv = self.critic.stateless_call(d_tv, d_ntv, losses.critic_input(y, image, cond),
                                                training=True)
            return (losses.per_example_score(s).sum() * scale).astype("float32"), ntv

        grads, d_ntv = jax.grad(score, has_aux=True)(mixed)
        penalty = losses.gradient_penalty(grads.astype("float32") / scale,
                                          self.cfg.train.gradient_penalty, y.shape[0])
        return penalty, d_ntv

    def _eps(self, d_opt, size):
        """WGAN-GP's ``ε`` of a critic update: uniform, from the seed and the critic
        optimiser's iteration count (part of the state: a resumed run draws the same)."""
        import jax  # lazy: imports JAX

        key = jax.random.fold_in(jax.random.key(self.cfg.train.seed),
                                 d_opt[self._d_iterations].astype("uint32"))
        return jax.random.uniform(key, (size, 1, 1, 1), "float32")

    def gradient_penalty(self, noisy, clean, fake, eps):
        """The critic's WGAN-GP penalty (λ included) at its current weights.

        ``noisy``, ``clean`` and ``fake`` are ``(n, h, w, c)`` on [0, 255], ``eps`` is
        ``(n, 1, 1, 1)``; the mean is over these ``n`` examples. For tests and diagnostics.
        """
        import jax.numpy as jnp  # lazy: imports JAX

        y, x, f = (losses.to_model_scale(jnp.asarray(a, jnp.float32))
                   for a in (noisy, clean, fake))
        penalty, _ = self._penalty(self.state["d_tv"], self.state["d_ntv"], 1.0, y, x, f,
                                   jnp.asarray(eps, jnp.float32))
        return float(penalty)

    def _generator_objective(self, g_tv, g_ntv, d_tv, d_ntv, scale, y, x):
        cond = self.cfg.model.critic_conditional
        fake, g_ntv = self.generator.stateless_call(g_tv, g_ntv, y, training=True)
        fake_s, d_ntv = self.critic.stateless_call(d_tv, d_ntv,
                                                   losses.critic_input(y, fake, cond),
                                                   training=True)
        loss, adv, con = losses.generator_loss(fake_s, x, fake, self.cfg.train, y.shape[0],
                                               noisy=y)
        return loss * scale, (loss, adv, con, g_ntv, d_ntv)

    def _content_objective(self, g_tv, g_ntv, d_tv, d_ntv, scale, y, x):
        """Without a critic: the gray constraint alone (the L2 loss of Noise2Noise)."""
        fake, g_ntv = self.generator.stateless_call(g_tv, g_ntv, y, training=True)
        loss, adv, con = losses.content_loss(x, fake, self.cfg.train, y.shape[0], noisy=y)
        return loss * scale, (loss, adv, con, g_ntv, d_ntv)

    def _update_fn(self, state, noisy, clean):
        import jax  # lazy: imports JAX
        import jax.numpy as jnp  # lazy: imports JAX

        t = self.cfg.train
        if self.distribution is not None:
            noisy, clean = (self._shard(a) for a in (noisy, clean))
        y_all, x_all = losses.to_model_scale(noisy), losses.to_model_scale(clean)
        b = y_all.shape[0] // t.n_critic
        g_tv, g_ntv, g_opt = state["g_tv"], state["g_ntv"], state["g_opt"]
        d_tv, d_ntv, d_opt = state["d_tv"], state["d_ntv"], state["d_opt"]
        critic_grad = jax.value_and_grad(self._critic_objective, has_aux=True)
        gp = t.gradient_penalty > 0
        d_loss = jnp.zeros((), jnp.float32)
        d_critic = d_penalty = d_loss
        y, x = y_all[-b:], x_all[-b:]
        for k in range(t.n_critic if t.adversarial else 0):
            y, x = y_all[k * b:(k + 1) * b], x_all[k * b:(k + 1) * b]
            if gp:  # WGAN-GP: the penalty keeps the critic Lipschitz; nothing clipped
                (_, ((d_loss, d_critic, d_penalty), d_ntv, g_ntv)), grads = critic_grad(
                    d_tv, d_ntv, g_tv, g_ntv, self._loss_scale("d", d_opt), y, x,
                    self._eps(d_opt, b))
                d_tv, d_opt = self.d_opt.stateless_apply(d_opt, grads, d_tv)
                continue
            (_, (d_loss, d_ntv, g_ntv)), grads = critic_grad(
                d_tv, d_ntv, g_tv, g_ntv, self._loss_scale("d", d_opt), y, x)
            d_tv, d_opt = self.d_opt.stateless_apply(d_opt, grads, d_tv)
            d_tv = [jnp.clip(v, -t.clip, t.clip) for v in d_tv]
        objective = self._generator_objective if t.adversarial else self._content_objective
        (_, (g_loss, adv, con, g_ntv, d_ntv)), grads = jax.value_and_grad(
            objective, has_aux=True)(
                g_tv, g_ntv, d_tv, d_ntv, self._loss_scale("g", g_opt), y, x)
        g_tv, g_opt = self.g_opt.stateless_apply(g_opt, grads, g_tv)
        new = {"g_tv": g_tv, "g_ntv": g_ntv, "g_opt": g_opt,
               "d_tv": d_tv, "d_ntv": d_ntv, "d_opt": d_opt}
        metrics = {"g_loss": g_loss, "g_adversarial": adv, "g_content": con,
                   "d_loss": d_loss, "wasserstein": -d_loss}
        if gp:  # d_loss includes the penalty; the Wasserstein estimate does not
            metrics.update(wasserstein=-d_critic, d_penalty=d_penalty)
        return new, metrics

    def _shard(self, batch):
        import keras  # lazy: imports Keras

        layout = self.distribution.get_data_layout(batch.shape)
        return keras.distribution.distribute_tensor(batch, layout)

    def train_step(self, noisy, clean):
        """One step on an explicit batch (arrays on [0, 255]); returns device scalars."""
        import jax.numpy as jnp  # lazy: imports JAX

        self._stale = True
        self.state, metrics = self._update(self.state, jnp.asarray(noisy, jnp.float32),
                                           jnp.asarray(clean, jnp.float32))
        return metrics

    def denoise_batch(self, noisy, sigma=None):
        """Generator (inference mode, current state) on ``(n, h, w)`` crops on [0, 255]."""
        import jax  # lazy: imports JAX

        if self._infer is None:
            def infer(g_tv, g_ntv, tiles):
                out, _ = self.generator.stateless_call(
                    g_tv, g_ntv, losses.to_model_scale(tiles), training=False)
                return losses.from_model_scale(out.astype("float32"))

            self._infer = jax.jit(infer)
        tiles = self.model_input(noisy, sigma)
        out = self._infer(self.state["g_tv"], self.state["g_ntv"], tiles)
        return np.asarray(out, np.float32)[..., 0]

    # -- the run's own data, drawn on the device -------------------------------------------
    def start(self, image_set, start_step):
        """Put the run's images on the device(s) and compile the data-drawing step."""
        import jax  # lazy: imports JAX

        self._data = pipeline.device_images(image_set, self.distribution,
                                            training_noise.transfer_bank(self.cfg))
        per_step = self.cfg.train.batch_size * self.cfg.train.n_critic

        def data_update(state, data, step):
            noisy, clean = pipeline.jax_batch(data, self.cfg, step * per_step, per_step)
            return self._update_fn(state, noisy, clean)

        self._data_update = jax.jit(data_update, donate_argnums=0)

    def draw_batches(self, first_element, size, count):
        import jax  # lazy: imports JAX
        import jax.numpy as jnp  # lazy: imports JAX

        draw = jax.jit(lambda data, first: pipeline.jax_batch(data, self.cfg, first, size)[0])
        for k in range(count):
            yield draw(self._data, jnp.int32(first_element + k * size))

    def step(self, step):
        """One step on the crops of step ``step``; returns device scalars (no host wait)."""
        import jax.numpy as jnp  # lazy: imports JAX

        self._stale = True
        self.state, metrics = self._data_update(self.state, self._data, jnp.int32(step))
        return metrics

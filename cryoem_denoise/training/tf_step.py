"""The TensorFlow training step: ``tf.function``, ``GradientTape``, ``tf.distribute``.

One step on ``n_critic * batch_size`` crops:

1. for each of the ``n_critic`` chunks of ``batch_size`` crops: the critic loss
   (:func:`~cryoem_denoise.model.losses.critic_loss`), one optimiser update, then every critic
   weight clipped to ``[-c, c]``; with ``gradient_penalty`` > 0 (WGAN-GP) the loss has the
   penalty added (:func:`~cryoem_denoise.model.losses.gradient_penalty`, a nested tape for
   the gradient at the interpolated images) and nothing is clipped;
2. the generator loss (:func:`~cryoem_denoise.model.losses.generator_loss`) on the last chunk,
   one optimiser update.

Losses are averaged over the global batch, so a step on several replicas equals a step on
one; clipping runs in cross-replica context, after the all-reduced update. WGAN-GP's ``ε``
is drawn for the global batch from ``(seed, critic optimiser's iteration count)`` (stateless,
so a resumed run draws the same) and each replica takes its rows. Data comes from
:func:`cryoem_denoise.data.pipeline.training_dataset` (``tf.data``), distributed by the strategy.
"""

import os

from cryoem_denoise.data import pipeline
from cryoem_denoise.errors import ConfigError
from cryoem_denoise.model import losses
from cryoem_denoise.training.base import Trainer


def make_strategy(name):
    """A ``tf.distribute`` strategy by name (see :data:`cryoem_denoise.config.STRATEGIES`)."""
    import tensorflow as tf  # lazy: imports TensorFlow

    if name == "auto":
        if os.environ.get("TF_CONFIG"):
            name = "multiworker"
        elif len(tf.config.list_physical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            name = "default"
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ConfigError(f"unknown strategy {name!r}")


class TFTrainer(Trainer):
    """The WGAN step on TensorFlow.

    Parameters
    ----------
    cfg : FitConfig
    strategy : tf.distribute.Strategy, optional
        Defaults to :func:`make_strategy` of ``cfg.train.strategy``.
    """

    def __init__(self, cfg, strategy=None):
        import tensorflow as tf  # lazy: imports TensorFlow

        self.strategy = strategy or make_strategy(cfg.train.strategy)
        super().__init__(cfg, self.strategy.scope, self.strategy.num_replicas_in_sync,
                         sync_batch_norm=True)
        self._compiled_step = tf.function(self._train_step)
        self._batches = None

    def train_step(self, noisy, clean):
        """One step on a (distributed) batch of ``n_critic * batch_size`` crops on [0, 255]."""
        return self._compiled_step(noisy, clean)

    # -- data ----------------------------------------------------------------------------
    def start(self, image_set, start_step):
        """Draw the run's batches from ``tf.data``, beginning at ``start_step``."""
        per_step = self.cfg.train.batch_size * self.cfg.train.n_critic
        dataset = pipeline.training_dataset(image_set, self.cfg,
                                            start_element=start_step * per_step)
        self._batches = iter(self.strategy.experimental_distribute_dataset(dataset))
        self._image_set = image_set

    def draw_batches(self, first_element, size, count):
        dataset = pipeline.training_dataset(self._image_set, self.cfg, first_element, size)
        for noisy, _ in dataset.take(count):
            yield noisy.numpy()

    def step(self, step):
        """One step on the run's next batch (``step`` follows from the data position)."""
        return self.train_step(*next(self._batches))

    # -- the step ------------------------------------------------------------------------
    @staticmethod
    def _scaled(opt, loss):
        """The loss the tape differentiates: multiplied by the loss scale for float16."""
        return opt.scale_loss(loss) if hasattr(opt, "scale_loss") else loss

    def _critic_replica(self, noisy, clean):
        import tensorflow as tf  # lazy: imports TensorFlow

        cond = self.cfg.model.critic_conditional
        y, x = losses.to_model_scale(noisy), losses.to_model_scale(clean)
        with tf.GradientTape() as tape:
            fake = self.generator(y, training=True)
            real_s = self.critic(losses.critic_input(y, x, cond), training=True)
            fake_s = self.critic(losses.critic_input(y, fake, cond), training=True)
            loss = losses.critic_loss(real_s, fake_s, self.cfg.train.batch_size)
            scaled = self._scaled(self.d_opt, loss)
        variables = self.critic.trainable_variables
        self.d_opt.apply(tape.gradient(scaled, variables), variables)
        return loss

    def _critic_replica_gp(self, noisy, clean):
        """The WGAN-GP critic update: ``(loss with the penalty, critic loss, penalty)``."""
        import tensorflow as tf  # lazy: imports TensorFlow

        cond = self.cfg.model.critic_conditional
        y, x = losses.to_model_scale(noisy), losses.to_model_scale(clean)
        eps = self._replica_eps(y.shape[0])
        with tf.GradientTape() as tape:
            fake = self.generator(y, training=True)
            real_s = self.critic(losses.critic_input(y, x, cond), training=True)
            fake_s = self.critic(losses.critic_input(y, fake, cond), training=True)
            critic = losses.critic_loss(real_s, fake_s, self.cfg.train.batch_size)
            penalty = self._penalty(y, x, fake, eps, self.cfg.train.batch_size)
            loss = critic + penalty
            scaled = self._scaled(self.d_opt, loss)
        variables = self.critic.trainable_variables
        self.d_opt.apply(tape.gradient(scaled, variables), variables)
        return loss, critic, penalty

    def _replica_eps(self, local_batch):
        """This replica's rows of the global batch's ``ε`` (uniform on [0, 1])."""
        import tensorflow as tf  # lazy: imports TensorFlow

        ctx = tf.distribute.get_replica_context()
        seed = tf.stack([tf.constant(self.cfg.train.seed, tf.int64),
                         tf.cast(self.d_opt.iterations, tf.int64)])
        eps = tf.random.stateless_uniform([local_batch * ctx.num_replicas_in_sync, 1, 1, 1],
                                          seed=seed, dtype=tf.float32)
        first = tf.cast(ctx.replica_id_in_sync_group, tf.int32) * local_batch
        return eps[first:first + local_batch]

    def _penalty(self, y, x, fake, eps, global_batch):
        """WGAN-GP's penalty (λ included, this replica's share) at ``eps``; all on [-1, 1]."""
        import tensorflow as tf  # lazy: imports TensorFlow

        mixed = losses.interpolate(x, tf.stop_gradient(fake), eps)
        # float16: scale the score like the loss so its gradient does not underflow
        scale = tf.cast(getattr(self.d_opt, "dynamic_scale", 1.0), tf.float32)
        with tf.GradientTape() as inner:
            inner.watch(mixed)
            scores = self.critic(losses.critic_input(y, mixed, self.cfg.model.critic_conditional),
                                 training=True)
            total = tf.reduce_sum(losses.per_example_score(scores)) * scale
        grads = tf.cast(inner.gradient(total, mixed), tf.float32) / scale
        return losses.gradient_penalty(grads, self.cfg.train.gradient_penalty, global_batch)

    def gradient_penalty(self, noisy, clean, fake, eps):
        """The critic's WGAN-GP penalty (λ included) at its current weights, one device.

        ``noisy``, ``clean`` and ``fake`` are ``(n, h, w, c)`` on [0, 255], ``eps`` is
        ``(n, 1, 1, 1)``; the mean is over these ``n`` examples. For tests and diagnostics.
        """
        import tensorflow as tf  # lazy: imports TensorFlow

        y, x, f = (losses.to_model_scale(tf.constant(a, tf.float32)) for a in (noisy, clean, fake))
        return float(self._penalty(y, x, f, tf.constant(eps, tf.float32), len(noisy)))

    def _generator_replica(self, noisy, clean):
        import tensorflow as tf  # lazy: imports TensorFlow

        cond = self.cfg.model.critic_conditional
        y, x = losses.to_model_scale(noisy), losses.to_model_scale(clean)
        t = self.cfg.train
        with tf.GradientTape() as tape:
            fake = self.generator(y, training=True)
            if t.adversarial:
                fake_s = self.critic(losses.critic_input(y, fake, cond), training=True)
                loss, adv, con = losses.generator_loss(fake_s, x, fake, t, t.batch_size, noisy=y)
            else:
                loss, adv, con = losses.content_loss(x, fake, t, t.batch_size, noisy=y)
            scaled = self._scaled(self.g_opt, loss)
        variables = self.generator.trainable_variables
        self.g_opt.apply(tape.gradient(scaled, variables), variables)
        return loss, adv, con

    def _clip_critic(self):
        import tensorflow as tf  # lazy: imports TensorFlow

        c = self.cfg.train.clip
        for v in self.critic.trainable_variables:
            v.assign(tf.clip_by_value(v, -c, c))

    def _train_step(self, noisy, clean):
        """One WGAN step on a distributed batch of ``n_critic * batch_size`` crops."""
        import tensorflow as tf  # lazy: imports TensorFlow

        s = self.strategy
        n = self.cfg.train.n_critic
        total = tf.distribute.ReduceOp.SUM  # losses are already divided by the global batch

        def chunk(k):
            return lambda a: tf.split(a, n, axis=0)[k]

        gp = self.cfg.train.gradient_penalty > 0
        d_loss = tf.constant(0.0)
        d_critic = d_penalty = tf.constant(0.0)
        nk = s.run(chunk(n - 1), args=(noisy,)) if n > 1 else noisy
        ck = s.run(chunk(n - 1), args=(clean,)) if n > 1 else clean
        for k in range(n if self.cfg.train.adversarial else 0):
            nk = s.run(chunk(k), args=(noisy,)) if n > 1 else noisy
            ck = s.run(chunk(k), args=(clean,)) if n > 1 else clean
            if gp:  # WGAN-GP: the penalty keeps the critic Lipschitz; nothing clipped
                d_loss, d_critic, d_penalty = (
                    s.reduce(total, v, axis=None)
                    for v in s.run(self._critic_replica_gp, args=(nk, ck)))
            else:
                d_loss = s.reduce(total, s.run(self._critic_replica, args=(nk, ck)), axis=None)
                self._clip_critic()
        g, adv, con = s.run(self._generator_replica, args=(nk, ck))
        out = {"g_loss": s.reduce(total, g, axis=None),
               "g_adversarial": s.reduce(total, adv, axis=None),
               "g_content": s.reduce(total, con, axis=None),
               "d_loss": d_loss, "wasserstein": -d_loss}
        if gp:  # d_loss includes the penalty; the Wasserstein estimate does not
            out.update(wasserstein=-d_critic, d_penalty=d_penalty)
        return out

"""The trainer of the running Keras backend: the one place that asks which it is."""

from cryoem_denoise.runtime import backend

__all__ = ["make_trainer", "WGANTrainer"]


def make_trainer(cfg, distribution=None):
    """The trainer of the running Keras backend for ``cfg``.

    Parameters
    ----------
    cfg : FitConfig
    distribution : optional
        A ``tf.distribute.Strategy`` (TensorFlow) or a ``keras.distribution.DataParallel``
        (JAX; ``False`` for one device); by default from ``cfg.train.strategy``.
    """
    if backend.name() == "jax":
        from cryoem_denoise.training.jax_step import JaxTrainer  # lazy: imports JAX

        return JaxTrainer(cfg, distribution)
    from cryoem_denoise.training.tf_step import TFTrainer  # lazy: imports TensorFlow

    return TFTrainer(cfg, distribution)


#: The trainer of the running backend (kept for code that built ``WGANTrainer(cfg)``).
WGANTrainer = make_trainer

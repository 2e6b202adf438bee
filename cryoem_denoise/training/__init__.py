"""Training: the loop (:mod:`.loop`) around a backend's WGAN step.

:mod:`.base` holds what both steps share (networks, optimisers, saved state),
:mod:`.tf_step` the TensorFlow step and :mod:`.jax_step` the JAX one; the losses they both use
are in :mod:`cryoem_denoise.losses`. :func:`make_trainer` picks the step of the running
Keras backend, so the rest of the package never asks which one it is.
"""

from cryoem_denoise.losses import from_model_scale, to_model_scale  # noqa: F401
from cryoem_denoise.training.base import Trainer, make_optimizer  # noqa: F401
from cryoem_denoise.training.loop import (LOSS_FIELDS, RESUMABLE_CHANGES,  # noqa: F401
                                          check_resume_compatible, fit, inherit_from_init,
                                          init_model_dir, init_weights, prepare_data,
                                          saved_inputs)


def make_trainer(cfg, distribution=None):
    """The trainer of the running Keras backend for ``cfg``.

    Parameters
    ----------
    cfg : FitConfig
    distribution : optional
        A ``tf.distribute.Strategy`` (TensorFlow) or a ``keras.distribution.DataParallel``
        (JAX; ``False`` for one device); by default from ``cfg.train.strategy``.
    """
    from cryoem_denoise import backend

    if backend.name() == "jax":
        from cryoem_denoise.training.jax_step import JaxTrainer

        return JaxTrainer(cfg, distribution)
    from cryoem_denoise.training.tf_step import TFTrainer

    return TFTrainer(cfg, distribution)


#: The trainer of the running backend (kept for code that built ``WGANTrainer(cfg)``).
WGANTrainer = make_trainer

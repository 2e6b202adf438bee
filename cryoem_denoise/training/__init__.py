"""Training: the loop (:mod:`.loop`) around a backend's WGAN step.

:mod:`.base` holds what both steps share (networks, optimisers, saved state),
:mod:`.tf_step` the TensorFlow step and :mod:`.jax_step` the JAX one; the losses they both use
are in :mod:`cryoem_denoise.model.losses`. :func:`make_trainer` picks the step of the running
Keras backend, so the rest of the package never asks which one it is.
"""

from cryoem_denoise.model.losses import from_model_scale, to_model_scale  # noqa: F401
from cryoem_denoise.model.model_store import saved_inputs  # noqa: F401
from cryoem_denoise.training.base import Trainer, make_optimizer  # noqa: F401
from cryoem_denoise.training.loop import (  # noqa: F401
                                          LOSS_FIELDS,
                                          RESUMABLE_CHANGES,
                                          check_resume_compatible,
                                          fit,
                                          inherit_from_init,
                                          init_model_dir,
                                          init_weights,
                                          prepare_data,
)
from cryoem_denoise.training.trainers import WGANTrainer, make_trainer  # noqa: F401

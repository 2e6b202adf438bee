"""Models: the networks (:mod:`~cryoem_denoise.model.models`: generator and critic), losses
(:mod:`~cryoem_denoise.model.losses`), BatchNorm statistics
(:mod:`~cryoem_denoise.model.batch_norm`) and the model folder
(:mod:`~cryoem_denoise.model.model_store`)."""

"""Data: fetched samples and their cache (:mod:`~cryoem_denoise.data.datasets`), image
simulation (:mod:`~cryoem_denoise.data.simulate`), held-out sets
(:mod:`~cryoem_denoise.data.heldout`), noise models and estimators
(:mod:`~cryoem_denoise.data.noise`), detector transfers of shot noise
(:mod:`~cryoem_denoise.data.detector`), intensity scaling to [0, 255]
(:mod:`~cryoem_denoise.data.intensity`) and training sets (:mod:`~cryoem_denoise.data.pipeline`)."""

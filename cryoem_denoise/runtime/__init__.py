"""Runtime: the Keras backend (:mod:`~cryoem_denoise.runtime.backend`), numeric precision
(:mod:`~cryoem_denoise.runtime.precision`) and progress bars
(:mod:`~cryoem_denoise.runtime.progress`)."""

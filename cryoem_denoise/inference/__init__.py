"""Inference: the :class:`~cryoem_denoise.inference.denoiser.Denoiser` (a model with the
scaling, noise estimate and tiling it was trained with), tiling
(:mod:`~cryoem_denoise.inference.tiling`), ``apply`` over files
(:mod:`~cryoem_denoise.inference.apply_files`) and frame halves
(:mod:`~cryoem_denoise.inference.halves`)."""

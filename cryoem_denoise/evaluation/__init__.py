"""Evaluation: metrics (:mod:`~cryoem_denoise.evaluation.metrics`), no-reference quality
criteria (:mod:`~cryoem_denoise.evaluation.quality`), classical baselines
(:mod:`~cryoem_denoise.evaluation.baselines`), the paper's sigma protocol and ``evaluate``
(:mod:`~cryoem_denoise.evaluation.evaluate`), Table 2's experiments
(:mod:`~cryoem_denoise.evaluation.experiments`), the hallucination check
(:mod:`~cryoem_denoise.evaluation.hallucination`) and figures
(:mod:`~cryoem_denoise.evaluation.figures`)."""

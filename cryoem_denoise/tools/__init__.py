"""Developer tools (``python -m cryoem_denoise.tools.imports``)."""

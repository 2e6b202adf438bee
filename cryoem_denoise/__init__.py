"""cryoem-denoise: denoise cryo-EM images with the Wasserstein GAN of Ouyang et al. (2020).

The public API is a few names::

    from cryoem_denoise import Denoiser, read_image, write_image
    image, header = read_image("micrograph.mrc")
    denoised = Denoiser.load("default").denoise(image, pixel_size=header.pixel_size)
    write_image("micrograph_denoised.mrc", denoised, header)

:class:`Denoiser` (:mod:`cryoem_denoise.inference.denoiser`) owns a model's input scaling,
noise estimate, trained pixel sizes and tiling; :func:`read_image` and :func:`write_image`
(:mod:`cryoem_denoise.io.image_io`) read and write MRC, TIFF and PNG files; :func:`fit`
(:mod:`cryoem_denoise.training.loop`) trains a model folder from a
:class:`~cryoem_denoise.config.FitConfig`. Inside the library an image is a float32 array on
the paper's [0, 255] scale and a noise sigma is on that scale too; see
:mod:`cryoem_denoise.data.intensity` for the way back to a file's own units.

The names are imported on first use (PEP 562), so ``import cryoem_denoise`` (and the command
line's start-up) does not import Keras.
"""

import importlib

__version__ = "0.1.0"

__all__ = ["Denoiser", "fit", "read_image", "write_image", "ImageHeader", "__version__"]

#: Public name -> the module that defines it.
_PUBLIC = {
    "Denoiser": "cryoem_denoise.inference.denoiser",
    "fit": "cryoem_denoise.training.loop",
    "read_image": "cryoem_denoise.io.image_io",
    "write_image": "cryoem_denoise.io.image_io",
    "ImageHeader": "cryoem_denoise.io.header",
}


def __getattr__(name):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'cryoem_denoise' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))

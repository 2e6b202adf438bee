"""cryoem-denoise: denoise cryo-EM images with the Wasserstein GAN of Ouyang et al. (2020).

Inside the library an image is a float32 array on the paper's [0, 255] scale and a noise
sigma is on that scale too; see :mod:`cryoem_denoise.intensity` for the way back to a
file's own units.
"""

__version__ = "0.1.0"

"""Denoise images of any size with a trained generator.

An image is scaled to [0, 255] once, as a whole (never per tile: tiles of one image must
share one scale), cut into overlapping tiles (:mod:`cryoem_denoise.tiling`), the tiles run
through the generator in batches of fixed shape, and the results are blended into a
preallocated output, which is finally mapped back to the input's units in place. The
generator runs in inference mode: dropout off, BatchNorm with its moving statistics, so the
same input always gives the same output. Working memory is the input, the output, and one
batch of tiles; nothing grows with the number of tiles.
"""

from dataclasses import dataclass

import numpy as np

from cryoem_denoise.errors import ConfigError
from cryoem_denoise.intensity import Affine
from cryoem_denoise.tiling import Stitcher, make_grid


@dataclass
class InferenceConfig:
    """How ``apply`` runs a generator over an image."""

    tile: int = 256          # tile side; a multiple of 2**depth (larger than trained is allowed)
    overlap: int = 32        # pixels shared by neighbouring tiles, blended linearly
    batch_size: int = 8      # tiles per generator call
    precision: str = "auto"  # auto: mixed_float16 on a GPU, float32 on a CPU


class TileDenoiser:
    """A generator wrapped for tiled inference on [0, 255] images.

    Parameters
    ----------
    generator : keras.Model
        Maps ``(b, t, t, 1)`` on [-1, 1] to the same shape.
    depth : int
        The generator's encoder depth (tiles must be divisible by ``2 ** depth``).
    config : InferenceConfig
    """

    def __init__(self, generator, depth, config):
        import tensorflow as tf

        if config.tile % (2 ** depth):
            raise ConfigError(f"tile {config.tile} must be a multiple of {2 ** depth} for this model")
        if config.batch_size < 1:
            raise ConfigError("batch size must be at least 1")
        self.generator = generator
        self.config = config
        spec = tf.TensorSpec((None, config.tile, config.tile, 1), tf.float32)

        @tf.function(input_signature=[spec])
        def run(tiles):
            out = generator(tiles / 127.5 - 1.0, training=False)
            return (tf.cast(out, tf.float32) + 1.0) * 127.5

        self._run = run

    def denoise(self, image, affine=None, out=None, progress=None):
        """Denoise one 2D image; return it on [0, 255] (or in file units with ``affine``).

        Parameters
        ----------
        image : ndarray
            2D image: on [0, 255] already, or in file units (a memory map is fine) if
            ``affine`` is given; tiles are then scaled as they are cut.
        affine : Affine, optional
            File units → [0, 255]; the result is mapped back with its inverse.
        out : ndarray, optional
            Float32 array of the image's shape to write into.
        progress : callable, optional
            Called with the number of tiles done after each batch.
        """
        cfg = self.config
        grid = make_grid(image.shape, cfg.tile, cfg.overlap)
        stitcher = Stitcher(grid, out)
        positions = grid.positions()
        t = cfg.tile
        small = grid.padded_shape != grid.shape
        if small:  # sides shorter than a tile: reflect-pad (only small images get here)
            from cryoem_denoise.tiling import pad_to_grid

            source = pad_to_grid(np.asarray(image, np.float32), grid)
        else:
            source = image
        n_batch = min(cfg.batch_size, len(positions))
        batch = np.empty((n_batch, t, t, 1), np.float32)
        for start in range(0, len(positions), n_batch):
            chunk = positions[start:start + n_batch]
            for j, (y, x) in enumerate(chunk):
                batch[j, ..., 0] = source[y:y + t, x:x + t]
            if affine is not None:
                batch[:len(chunk)] = affine.forward(batch[:len(chunk)])
            result = self._run(batch).numpy()
            for j in range(len(chunk)):
                stitcher.add(result[j, ..., 0])
            if progress is not None:
                progress(len(chunk))
        result = stitcher.result()
        if affine is not None:
            result /= np.float32(affine.gain)
            result += np.float32(affine.low)
        return result


def load_denoiser(model_dir, config=None):
    """A :class:`TileDenoiser` for a model folder: ``(denoiser, fit_config)``."""
    from cryoem_denoise import model_store

    config = config or InferenceConfig()
    generator, fit_cfg = model_store.load_generator(model_dir, precision=config.precision)
    return TileDenoiser(generator, fit_cfg.model.depth, config), fit_cfg


def identity_affine():
    """The affine of an image already on [0, 255]."""
    return Affine(0.0, 255.0)

"""Denoise images of any size with a trained generator.

:class:`Denoiser` is the one object callers use: a model with the input scaling, noise
estimate, trained pixel sizes and tiling it was trained with (the CLI, notebooks,
benchmarks and a Python user alike). :class:`TileDenoiser` is its tiling engine.

An image is scaled to [0, 255] once, as a whole (never per tile: tiles of one image must
share one scale), cut into overlapping tiles (:mod:`cryoem_denoise.inference.tiling`), the tiles run
through the generator in batches of fixed shape, and the results are blended into a
preallocated output, which is finally mapped back to the input's units in place. The
generator runs in inference mode: dropout off, BatchNorm with its stored statistics, so the
same input always gives the same output. Working memory is the input, the output, and one
batch of tiles; nothing grows with the number of tiles.
"""

import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np

from cryoem_denoise.config import InferenceConfig
from cryoem_denoise.data.datasets import is_simulated
from cryoem_denoise.data.intensity import Affine, intensity_range
from cryoem_denoise.data.noise import SigmaSpec, estimate_noise_level
from cryoem_denoise.errors import (
    ConfigError,
    CryoEMDenoiseError,
    InputError,
    InputWarning,
)
from cryoem_denoise.inference.conditioning import model_shape, plan_conditioning
from cryoem_denoise.inference.resample import binning_factor
from cryoem_denoise.inference.tiling import Stitcher, make_grid, pad_to_grid
from cryoem_denoise.io.mrc import check_section
from cryoem_denoise.model import model_store
from cryoem_denoise.runtime import backend

__all__ = ["Denoiser", "InferenceConfig", "TileDenoiser", "check_noise_level", "compile_inference"]


class TileDenoiser:
    """A generator wrapped for tiled inference on [0, 255] images.

    Parameters
    ----------
    generator : keras.Model
        Maps ``(b, t, t, 1)`` on [-1, 1] to the same shape (``(b, t, t, 2)`` with a
        noise-level map as the second channel, for a ``sigma_map`` model).
    depth : int
        The generator's encoder depth (tiles must be divisible by ``2 ** depth``).
    config : InferenceConfig
    noise_level : bool
        The generator takes a noise-level map: every image needs its sigma (on [0, 255]),
        given or estimated (:func:`estimate_noise_level`).
    sigma_range : tuple of float, optional
        ``(low, high)`` sigma the model was trained on: an estimate outside it gives an
        :class:`~cryoem_denoise.errors.InputWarning` stating the estimate.
    """

    def __init__(self, generator, depth, config, noise_level=False, sigma_range=None):
        if config.tile % (2 ** depth):
            raise ConfigError(f"tile {config.tile} must be a multiple of {2 ** depth} for this model")
        if config.batch_size < 1:
            raise ConfigError("batch size must be at least 1")
        self.generator = generator
        self.config = config
        self.noise_level = bool(noise_level)
        self.sigma_range = sigma_range
        self.multiple = 2 ** depth
        self._run = compile_inference(generator, 2 if noise_level else 1, config.self_ensemble)

    def denoise(self, image, affine=None, out=None, progress=None, sigma=None):
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
        sigma : float, optional
            The image's noise sigma on [0, 255], for a model with a noise-level input;
            estimated from the image when not given.
        """
        out = np.empty(image.shape, np.float32) if out is None else out
        self.denoise_stream(1, image.shape, lambda k: (image, affine, sigma), lambda k: out,
                            progress=progress)
        if affine is not None:
            to_units(out, affine)
        return out

    def check_estimate(self, sigma):
        """Warn (:class:`InputWarning`) about an estimated sigma outside the trained range."""
        if self.sigma_range is not None and not self.sigma_range[0] <= sigma <= self.sigma_range[1]:
            low, high = self.sigma_range
            warnings.warn(InputWarning(
                f"estimated noise sigma {sigma:.1f} on [0,255] is outside the range the model "
                f"was trained on ({low:g}-{high:g}); the result may be poor"), stacklevel=4)

    def count_tiles(self, shape):
        """Tiles an image of ``shape`` is cut into."""
        return len(self.grid(shape))

    def tile_for(self, shape):
        """Tile side for images of ``shape``: the configured tile, or for an image smaller
        than it (with its margins) the smallest multiple of ``2 ** depth`` that covers it (a
        180-pixel particle runs as one 256-pixel tile, not a padded 512 one)."""
        m = self.multiple
        need = -(-(max(int(s) for s in shape) + 2 * self.config.margin) // m) * m
        return min(self.config.tile, max(need, m))

    def grid(self, shape):
        """The tile grid for images of ``shape``."""
        t = self.tile_for(shape)
        overlap = min(self.config.overlap, t // 2)
        return make_grid(shape, t, overlap, min(self.config.margin, max(overlap - 1, 0) // 2))

    def denoise_stream(self, n, shape, prepare, target, finish=None, progress=None,
                       submit=None):
        """Denoise ``n`` images of one shape, batching tiles across image boundaries.

        A stack of small particles (one tile each) thus runs ``batch_size`` particles per
        generator call, and a micrograph ``batch_size`` tiles per call.

        Parameters
        ----------
        n : int
        shape : tuple of int
            ``(ny, nx)`` of every image.
        prepare : callable
            ``prepare(k) -> (image, affine)`` or ``(image, affine, sigma)``: image ``k``
            (file units with an affine, or [0, 255] with ``None``), asked for just before
            its first tile is needed; ``sigma`` (on [0, 255]) feeds a noise-level model
            and is estimated from the image where it is missing or ``None``.
        target : callable
            ``target(k) -> array``: a writable float32 ``(ny, nx)`` array (a memory-mapped
            output section is fine) that receives image ``k``'s result on [0, 255].
        finish : callable, optional
            ``finish(k, result)`` once image ``k`` is complete (``result`` is the array
            ``target(k)`` gave, still on [0, 255]).
        progress : callable, optional
            Called with the number of tiles done after each batch.
        submit : callable, optional
            ``submit(fn, *args)`` runs ``fn(*args)``: where each batch's results are stitched
            (and ``finish`` called), in the order given, e.g. in a thread so that the model
            goes on with the next batch; by default here.
        """
        cfg = self.config
        grid = self.grid(shape)
        t = grid.tile
        # the tiles split evenly over the fewest batches of at most batch_size: 25 tiles run
        # as 13 + 12, not 16 + 9 (a padded 16); one size per stream, so JAX compiles once
        total = max(1, n * len(grid))
        n_batch = max(1, -(-total // -(-total // cfg.batch_size)))
        batch = np.empty((n_batch, t, t, 2 if self.noise_level else 1), np.float32)
        pending = []  # (stitcher, k) for each filled slot

        def tiles():
            for k in range(n):
                image, affine, *sigma = prepare(k)
                sigma = sigma[0] if sigma else None
                if self.noise_level and sigma is None:
                    sigma = estimate_noise_level(image, affine)
                    self.check_estimate(sigma)
                source = image
                if grid.padded_shape != grid.shape:  # margins or a small image: reflect-pad
                    source = np.asarray(image, np.float32)
                    if affine is not None:
                        source = affine.forward(source)
                        affine = None
                    source = pad_to_grid(source, grid)
                stitcher = Stitcher(grid, target(k))
                for y, x in grid.positions():
                    yield k, stitcher, source[y:y + t, x:x + t], affine, sigma

        def stitch(denoised, slots):
            for j, (stitcher, k) in enumerate(slots):
                stitcher.add(denoised[j, ..., 0])
                if stitcher.done:
                    image = stitcher.result()  # flushes the last band into the target
                    if finish is not None:
                        finish(k, image)

        def flush():
            # a last, partial batch runs as the smallest power of two that holds it: less
            # compute than the full batch (a 4096² micrograph in 512² tiles is 81 tiles, 5
            # batches of 16 and 1 tile), at most log2(batch) more shapes (JAX compiles each)
            size = min(n_batch, 1 << (len(pending) - 1).bit_length())
            denoised = self._run(batch[:size])  # a new array: the batch is refilled at once
            if submit is None:
                stitch(denoised, list(pending))
            else:
                submit(stitch, denoised, list(pending))
            if progress is not None:
                progress(len(pending))
            pending.clear()

        for k, stitcher, tile, affine, sigma in tiles():
            j = len(pending)
            batch[j, ..., 0] = tile
            if affine is not None:
                batch[j, ..., 0] = affine.forward(batch[j, ..., 0])
            if self.noise_level:
                batch[j, ..., 1] = sigma
            pending.append((stitcher, k))
            if len(pending) == n_batch:
                flush()
        if pending:
            flush()


def _self_ensemble(net, tiles):
    """Mean of ``net`` over the 8 rotations and mirrors of square ``tiles``, each undone
    (``keras.ops``: traced into the backend's compiled function)."""
    from keras import ops  # lazy: imports Keras

    total = 0.0
    for mirror in (False, True):
        x = ops.flip(tiles, axis=2) if mirror else tiles
        part = 0.0
        for turns in range(4):
            y = net(x)
            for _ in range(turns):  # undo the turns: rotate back clockwise
                y = ops.flip(ops.transpose(y, (0, 2, 1, 3)), axis=2)
            part = part + y
            x = ops.flip(ops.transpose(x, (0, 2, 1, 3)), axis=1)  # one more quarter turn
        total = total + (ops.flip(part, axis=2) if mirror else part)
    return total / 8.0


def compile_inference(generator, channels=1, self_ensemble=False):
    """``run(tiles) -> denoised``: the generator compiled for ``(b, t, t, channels)`` tiles.

    Tiles go in and come out as NumPy float32 on [0, 255] (a noise-level channel too: the
    model's [-1, 1] mapping applies to every channel, as in training); the result has one
    channel. ``self_ensemble``: the mean over the tiles' 8 rotations and mirrors (square
    tiles).
    TensorFlow: a ``tf.function`` (traced once for any tile size); JAX: ``jax.jit`` of the
    stateless call, compiled once per tile size (inference mode: dropout off, BatchNorm's
    stored statistics).
    """
    def ensemble(net, tiles):
        return _self_ensemble(net, tiles) if self_ensemble else net(tiles)

    if backend.name() == "jax":
        import jax  # lazy: imports JAX
        import jax.numpy as jnp  # lazy: imports JAX

        trainable = [v.value for v in generator.trainable_variables]
        fixed = [v.value for v in generator.non_trainable_variables]

        @jax.jit
        def run_jax(tv, ntv, tiles):
            def net(x):
                out, _ = generator.stateless_call(tv, ntv, x, training=False)
                return out.astype(jnp.float32)

            return (ensemble(net, tiles / 127.5 - 1.0) + 1.0) * 127.5

        return lambda tiles: np.asarray(run_jax(trainable, fixed, tiles))

    import tensorflow as tf  # lazy: imports TensorFlow

    spec = tf.TensorSpec((None, None, None, channels), tf.float32)

    @tf.function(input_signature=[spec])
    def run_tf(tiles):
        out = ensemble(lambda x: tf.cast(generator(x, training=False), tf.float32),
                       tiles / 127.5 - 1.0)
        return (out + 1.0) * 127.5

    return lambda tiles: run_tf(tiles).numpy()


def to_units(image, affine):
    """Map a [0, 255] float32 array back to file units, in place."""
    image /= np.float32(affine.gain)
    image += np.float32(affine.low)
    return image


def check_noise_level(noise_level, model_takes_it):
    """Raise :class:`ConfigError` for a noise level (sigma on [0, 255]) a model cannot take."""
    if noise_level is None:
        return
    if not model_takes_it:
        raise ConfigError("--noise-level is for models trained with a noise-level input "
                          "(fit --sigma-map); this model has none")
    if not (np.isfinite(noise_level) and 0 < noise_level <= 255):
        raise ConfigError(f"--noise-level must be in (0, 255] (sigma on the [0,255] scale), "
                          f"got {noise_level:g}")


class Denoiser:
    """A trained model with everything it expects of its input.

    The one object any caller uses to denoise an array: it owns the model's input scaling
    (the affine from a file's units to [0, 255] it was trained with), its noise-level
    estimate (for models with a noise-level input), the pixel sizes it was trained on, and
    the tiling (:class:`TileDenoiser`).

    Parameters
    ----------
    generator : keras.Model
    config : FitConfig
        The configuration the model was trained with (its ``config.json``).
    inference : InferenceConfig, optional
        Tiling, batch and precision, and what a real image goes through around the model
        (:mod:`~cryoem_denoise.inference.conditioning`).
    model_dir : Path, optional
        The model folder it came from.
    trained_pixel_sizes : tuple of float, optional
        ``(low, high)`` pixel sizes (Å) of the training images, where known.

    Examples
    --------
    >>> from cryoem_denoise import Denoiser, read_image
    >>> image, header = read_image("micrograph.mrc")                       # doctest: +SKIP
    >>> denoised = Denoiser.load("default").denoise(image, pixel_size=header.pixel_size)  # doctest: +SKIP
    """

    def __init__(self, generator, config, inference=None, model_dir=None,
                 trained_pixel_sizes=None):
        self.config = config
        self.inference = inference or InferenceConfig()
        self.model_dir = None if model_dir is None else Path(model_dir)
        self.trained_pixel_sizes = trained_pixel_sizes
        spec = SigmaSpec.parse(config.data.sigma)
        self.tiles = TileDenoiser(generator, config.model.depth, self.inference,
                                  noise_level=config.model.sigma_map,
                                  sigma_range=(spec.low, spec.high))

    @classmethod
    def load(cls, model="default", inference=None, **options):
        """Load a model folder (``"default"``: the shipped model).

        Parameters
        ----------
        model : str or Path
            ``"default"`` or a model folder written by ``fit``.
        inference : InferenceConfig, optional
        **options
            :class:`InferenceConfig` fields that override ``inference`` (``tile``,
            ``overlap``, ``margin``, ``whiten``, ``resample``, ``keep_below``, ``outliers``,
            ``batch_size``, ``precision``, ``self_ensemble``).
        """
        inference = replace(inference, **options) if inference else InferenceConfig(**options)
        folder = model_store.default_model_dir() if str(model) == "default" else Path(model)
        generator, fit_cfg = model_store.load_generator(folder, precision=inference.precision)
        return cls(generator, fit_cfg, inference, folder, _trained_pixel_sizes(folder, fit_cfg))

    @property
    def takes_noise_level(self):
        """Whether the model has a noise-level input (sigma on [0, 255])."""
        return self.tiles.noise_level

    @property
    def sigma_range(self):
        """``(low, high)`` noise sigma (on [0, 255]) the model was trained on."""
        return self.tiles.sigma_range

    def affine(self, image, noisy=True):
        """The :class:`Affine` from ``image``'s units to [0, 255], as the model scaled its
        training inputs (``noisy``) or clean targets."""
        return Affine(*intensity_range(image, *self.config.data.scaling(noisy=noisy)))

    def scale(self, image, noisy=True):
        """``(scaled, affine)``: ``image`` on [0, 255] as the model expects (not clipped)."""
        affine = self.affine(image, noisy)
        return affine.forward(np.asarray(image, np.float32)), affine

    def check_pixel_size(self, pixel_size):
        """Warn (:class:`InputWarning`) about a pixel size (Å) outside those trained on,
        unless images are resampled into them (``InferenceConfig.resample``)."""
        if pixel_size is None or self.trained_pixel_sizes is None or self.inference.resample:
            return
        low, high = self.trained_pixel_sizes
        if not low <= pixel_size <= high:
            warnings.warn(InputWarning(
                f"pixel size {pixel_size:.3g} Å is outside the pixel sizes the model was trained "
                f"on ({low:g}-{high:g} Å); the result may be poor (bin super-resolution "
                "images 2x first)" if pixel_size < low else
                f"pixel size {pixel_size:.3g} Å is outside the pixel sizes the model was trained "
                f"on ({low:g}-{high:g} Å); the result may be poor"), stacklevel=3)

    def denoise(self, image, *, pixel_size=None, noise_level=None, progress=None):
        """Denoise an image or a stack; return it in the input's units (float32).

        Parameters
        ----------
        image : array_like
            2D image, or ``(n, ny, nx)`` stack denoised section by section, in any units
            (a memory map is fine).
        pixel_size : float, optional
            Å per pixel: outside the pixel sizes the model was trained on, the image is
            Fourier-resampled into them and back (``InferenceConfig.resample``; off: a
            warning).
        noise_level : float, optional
            Noise sigma of the model's input on the [0, 255] scale, for models with a
            noise-level input; estimated (after whitening) when not given.
        progress : callable, optional
            Called with the number of tiles done after each batch.

        Raises
        ------
        ConfigError
            ``noise_level`` for a model without a noise-level input, or out of range.
        InputError
            Not 2D or 3D, too small, or holding NaN/infinite values.
        """
        check_noise_level(noise_level, self.takes_noise_level)
        self.check_pixel_size(pixel_size)
        data = np.asarray(image)  # a memory map stays one (no copy)
        if data.ndim not in (2, 3):
            raise InputError(f"expected a 2D image or a 3D stack, got {data.ndim} dimensions")
        sections = data.reshape((-1,) + data.shape[-2:])
        for k, section in enumerate(sections):
            check_section(section, index=k if data.ndim == 3 else None)
        plan = self.plan(sections, pixel_size, noise_level)
        sigma = plan.sigma if noise_level is None else noise_level
        if noise_level is None and plan.sigma is not None:
            self.tiles.check_estimate(plan.sigma)
        out = np.empty(sections.shape, np.float32)
        for k, section in enumerate(sections):
            prepared = plan.prepare(section, k)
            result = self.tiles.denoise(prepared.image, sigma=sigma, progress=progress)
            out[k] = plan.restore(result, prepared)
        return out.reshape(data.shape)

    def model_shape(self, shape, pixel_size=None):
        """The shape an image of ``shape`` has when it reaches the model (resampled into the
        trained pixel sizes, :class:`InferenceConfig`'s ``resample``)."""
        factor = (binning_factor(pixel_size, self.trained_pixel_sizes)
                  if self.inference.resample else 1.0)
        return model_shape(shape, factor)

    def plan(self, sections, pixel_size=None, noise_level=None):
        """Measure a file's sections and plan what they go through before and after the
        model (:class:`~cryoem_denoise.inference.conditioning.Conditioning`: outliers, pixel
        size, scaling, noise colour; the settings of :class:`InferenceConfig`).

        ``noise_level`` given: the model's noise level is not estimated.
        """
        cfg = self.inference
        return plan_conditioning(
            sections, self.affine, pixel_size=pixel_size,
            trained_pixel_sizes=self.trained_pixel_sizes, whiten=cfg.whiten,
            resample=cfg.resample, keep_below=cfg.keep_below, outlier_threshold=cfg.outliers,
            noise_level=self.takes_noise_level and noise_level is None)

    def denoise_scaled(self, image, noise_level=None, out=None, progress=None):
        """Denoise a 2D image already on [0, 255]; the result is on [0, 255] too.

        ``noise_level`` (sigma on [0, 255], e.g. known under the paper's protocol) feeds a
        model with a noise-level input and is ignored by others; estimated when ``None``.
        """
        return self.tiles.denoise(np.asarray(image, np.float32), out=out, progress=progress,
                                  sigma=noise_level)


def _trained_pixel_sizes(folder, fit_cfg):
    """``(low, high)`` Å of a model's training images: known where every training input was
    a simulated field of the cache (simulated at ``fit_cfg.simulation``'s pixel sizes)."""
    try:
        clean, noisy = model_store.saved_inputs(folder)
    except (CryoEMDenoiseError, OSError, ValueError, AttributeError):  # metadata unreadable
        return None
    if not clean or noisy or not all(is_simulated(p) for p in clean):
        return None
    return fit_cfg.simulation.range_of("pixel_size")


def identity_affine():
    """The affine of an image already on [0, 255]."""
    return Affine(0.0, 255.0)

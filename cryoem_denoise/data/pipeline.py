"""Training data: MRC files → clean images on [0, 255] → random crops → noisy/clean batches.

Clean images are read once (through :mod:`cryoem_denoise.io.mrc`), scaled per image to [0, 255]
(:mod:`cryoem_denoise.data.intensity`), reflect-padded up to the tile where a side is shorter, and
held in one flat float32 buffer. The :func:`training_dataset` is a pure function of
``(seed, element index)``: element *i* picks its image (weighted by area), crop position,
flip/rotation and noise from stateless random numbers seeded by ``(seed, i)``. So a run
resumed at step *s* simply starts at element ``s * batch``, and the same seed always gives
the same batches, whatever the number of parallel calls.

The stream has two forms from this one description: :func:`training_dataset` (``tf.data``,
for TensorFlow) and :func:`jax_batch` (drawn on the accelerator inside JAX's jitted step,
from the buffers of :func:`device_images`). They use different random-number generators,
so the same seed gives the same batches within a backend, not across backends.

Modes (``DataConfig.mode``):

* ``clean`` (the paper's protocol): Gaussian noise by :class:`~cryoem_denoise.data.noise.SigmaSpec`
  is added to each crop (:func:`~cryoem_denoise.data.noise.add_gaussian_noise_tf`); with
  ``DataConfig.contrast`` or ``noise = 'detector'`` the crop's signal is first weakened or
  filtered by a detector's whitened transfer (:mod:`cryoem_denoise.data.training_noise`), and
  that is the target;
* ``pairs``: a noisy file and its clean counterpart of the same shape, cropped identically,
  with no noise added;
* ``noise2noise``: pairs of two independent noisy halves of the same exposures, cropped
  identically; with ``swap_pairs`` either half is the input, at random per crop;
* ``self_supervised``: single noisy exposures, each turned into neighbour sub-sampled pairs
  (:func:`neighbour_pairs`, Neighbor2Neighbor) that then train like noise2noise pairs.

A held-out validation set comes from whole sections (stacks of 10 or more) or from a band
of rows at the bottom of each image (micrographs), and is never used for training.

A generator with a noise-level input (``model.sigma_map``) gets each crop's sigma in
``clean`` mode; in the paired modes the noise is not drawn but found, so each image carries
its measured sigma (:attr:`Image.sigma`): ``pairs``, the std of noisy minus clean;
``noise2noise``, the mean of the two halves' estimates; ``self_supervised``, the estimate of
the whole exposure. The estimates are those ``apply`` makes of a file
(:func:`cryoem_denoise.data.noise.estimate_noise_level`), so a model fine-tuned on real data
sees in training the noise levels it is given afterwards.
"""

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from cryoem_denoise.data.intensity import Affine, intensity_range, to_unit255
from cryoem_denoise.data.noise import (
    SigmaSpec,
    add_gaussian_noise,
    add_gaussian_noise_jax,
    add_gaussian_noise_tf,
    estimate_noise_level,
)
from cryoem_denoise.data.training_noise import (
    ContrastSpec,
    shape_signal,
    shape_signal_jax,
    shape_signal_tf,
    shapes_signal,
    transfer_bank,
)
from cryoem_denoise.errors import ConfigError, InputError
from cryoem_denoise.io import image_io, mrc


@dataclass
class Image:
    """One clean image (and optionally its noisy twin) on [0, 255]."""

    name: str
    clean: np.ndarray
    noisy: np.ndarray = None
    source: str = ""
    sigma: float = None  # noise sigma of ``noisy`` on [0, 255] (paired modes), measured


@dataclass
class ImageSet:
    """Images packed into flat buffers for graph-side cropping."""

    names: list
    flat_clean: np.ndarray
    flat_noisy: np.ndarray  # None unless paired
    offsets: np.ndarray
    heights: np.ndarray
    widths: np.ndarray
    fingerprint: str = field(default="")
    sigmas: np.ndarray = None  # float32 per image: each noisy image's sigma (paired modes)

    @property
    def paired(self):
        return self.flat_noisy is not None

    def __len__(self):
        return len(self.names)


#: Data modes without clean targets: their training images are scaled as noisy inputs are.
NOISY_MODES = ("noise2noise", "self_supervised")


def _prepare(section, data_cfg, tile, path, index):
    sec = np.asarray(section, dtype=np.float32)
    try:
        mrc.check_section(sec)
        scaled, _ = to_unit255(sec, *data_cfg.scaling(data_cfg.mode in NOISY_MODES))
    except InputError as exc:
        where = f"section {index}: " if index is not None else ""
        raise InputError(where + exc.message, path) from None
    ny, nx = scaled.shape
    min_side = int(np.ceil(data_cfg.min_side_fraction * tile))
    if min(ny, nx) < min_side:
        raise InputError(f"image is {nx}x{ny} pixels, smaller than {min_side} (the {tile}-pixel tile "
                         f"x {data_cfg.min_side_fraction:g}); use a smaller --tile", path)
    return scaled


def pad_to_tile(image, tile):
    """Reflect-pad a 2D image so both sides are at least ``tile``."""
    py, px = max(0, tile - image.shape[0]), max(0, tile - image.shape[1])
    if py or px:
        image = np.pad(image, ((0, py), (0, px)), mode="reflect")
    return image


def load_images(paths, data_cfg, tile, noisy_paths=None):
    """Read the training images on [0, 255], as ``data_cfg.mode`` says what they are.

    * ``clean``: clean targets (noise is added later); with ``noisy_paths``, pairs;
    * ``pairs`` / ``noise2noise``: ``paths`` are the targets, ``noisy_paths`` the inputs
      (for noise2noise, the two independent halves of each exposure);
    * ``self_supervised``: ``paths`` are single noisy exposures; each gives
      ``data_cfg.subsample_draws`` pairs of neighbour sub-sampled images
      (:func:`neighbour_pairs`).

    Raises
    ------
    InputError
        No files, unreadable files, non-finite or constant sections, images too small,
        pairs whose shapes or pixel sizes differ, pair lists of unequal length.
    """
    paths = list(paths)
    mode = data_cfg.mode
    if not paths:
        raise InputError("no training images given")
    if mode in ("pairs", "noise2noise") and noisy_paths is None:
        raise InputError(f"{mode} training needs a noisy file for each target (--noisy)")
    if mode == "self_supervised" and noisy_paths is not None:
        raise InputError("self-supervised training takes single noisy images, not pairs")
    if noisy_paths is not None and len(noisy_paths) != len(paths):
        raise InputError(f"{len(noisy_paths)} noisy files for {len(paths)} clean files")
    images = []
    for k, path in enumerate(paths):
        sections, header = image_io.read_sections(path)
        noisy_sections = None
        if noisy_paths is not None:
            noisy_sections, nheader = image_io.read_sections(noisy_paths[k])
            mrc.check_same_geometry(header, nheader, noisy_paths[k])
        for i, sec in enumerate(sections):
            index = i if len(sections) > 1 else None
            name = f"{Path(path).name}[{i}]" if index is not None else Path(path).name
            if mode == "self_supervised":
                images += _self_supervised_images(sec, data_cfg, tile, path, index, name, k)
                continue
            clean = _prepare(sec, data_cfg, tile, path, index)
            noisy = sigma = None
            if noisy_sections is not None:
                # the noisy image is scaled with its twin's affine: the same units
                noisy = _scale_like(noisy_sections[i], sec, data_cfg)
                sigma = _paired_sigma(noisy, clean, mode)
            images.append(Image(name, clean, noisy, str(path), sigma))
    return images


def _paired_sigma(noisy, target, mode):
    """The noise sigma of a pair's input on [0, 255] (see the module docstring)."""
    if mode == "noise2noise":  # two halves of one exposure: either may be the input
        return 0.5 * (estimate_noise_level(noisy) + estimate_noise_level(target))
    return float(np.std(noisy.astype(np.float64) - target))


#: The ordered pairs of edge-sharing pixels of a 2x2 cell (positions 0 1 / 2 3).
_NEIGHBOURS = np.array([(0, 1), (1, 0), (0, 2), (2, 0), (1, 3), (3, 1), (2, 3), (3, 2)])


def neighbour_pairs(image, rng):
    """One Neighbor2Neighbor pair ``(g1, g2)`` of an image (Huang et al., CVPR 2021).

    The image is cut into 2x2 cells; in each, one pixel and one of its edge-sharing
    neighbours are drawn at random: ``g1`` holds the first of each cell, ``g2`` the second.
    Both are half the size of the image; where its noise is independent from pixel to pixel
    (shot noise, detector noise), ``g1`` and ``g2`` carry independent noise on nearly the
    same signal, so ``g2`` is a Noise2Noise target for ``g1``.
    """
    h, w = (image.shape[0] // 2) * 2, (image.shape[1] // 2) * 2
    cells = image[:h, :w].reshape(h // 2, 2, w // 2, 2).transpose(0, 2, 1, 3).reshape(
        h // 2, w // 2, 4)
    choice = _NEIGHBOURS[rng.integers(0, len(_NEIGHBOURS), (h // 2, w // 2))]
    g1 = np.take_along_axis(cells, choice[..., :1], axis=2)[..., 0]
    g2 = np.take_along_axis(cells, choice[..., 1:], axis=2)[..., 0]
    return g1, g2


def _self_supervised_images(section, data_cfg, tile, path, index, name, file_index):
    """The neighbour sub-sampled pairs of one noisy section (scaled once, as a whole)."""
    sec = np.asarray(section, dtype=np.float32)
    side = int(np.ceil(data_cfg.min_side_fraction * tile))
    if min(sec.shape) // 2 < side:
        where = f"section {index}: " if index is not None else ""
        raise InputError(f"{where}image is {sec.shape[1]}x{sec.shape[0]} pixels; self-supervised "
                         f"training sub-samples it by 2, so it needs at least {2 * side} pixels "
                         f"a side (the {tile}-pixel tile x {data_cfg.min_side_fraction:g} x 2); "
                         "use a smaller --tile", path)
    scaled = _prepare(sec, data_cfg, 1, path, index)
    sigma = estimate_noise_level(scaled)  # what apply measures on the whole exposure
    rng = np.random.default_rng([file_index, 0 if index is None else index, 977])
    out = []
    for d in range(data_cfg.subsample_draws):
        g1, g2 = neighbour_pairs(scaled, rng)
        out.append(Image(f"{name}#{d}", g2, g1, str(path), sigma))
    return out


def _scale_like(noisy, clean, data_cfg):
    """``noisy`` by the affine that scaled its twin ``clean`` (:func:`_prepare`): one unit."""
    method, percentiles = data_cfg.scaling(data_cfg.mode in NOISY_MODES)
    return Affine(*intensity_range(np.asarray(clean), method, percentiles)).forward(noisy)


def split_validation(images, fraction, tile):
    """Split into ``(train, validation)`` image lists without overlap, file by file.

    From a file of 10 or more sections (a stack), the last ``fraction`` of them (at least
    one) is held out. From a file with fewer, a band of ``fraction`` of the rows at the
    bottom of each image is held out (at least one tile high, and only where the rest keeps
    at least one tile).
    """
    if fraction <= 0:
        return list(images), []
    by_source = {}
    for im in images:
        by_source.setdefault(im.source, []).append(im)
    train, val = [], []
    for group in by_source.values():
        if len(group) >= 10:
            n_val = max(1, int(round(len(group) * fraction)))
            train += group[:-n_val]
            val += group[-n_val:]
            continue
        for im in group:
            h = im.clean.shape[0]
            band = max(tile, int(round(h * fraction)))
            if h - band >= tile:
                cut = h - band
                train.append(replace(im, clean=im.clean[:cut],
                                     noisy=None if im.noisy is None else im.noisy[:cut]))
                val.append(replace(im, name=im.name + "[val]", clean=im.clean[cut:],
                                   noisy=None if im.noisy is None else im.noisy[cut:]))
            else:
                train.append(im)
    return train, val


def pack(images, tile):
    """Pad and pack images into an :class:`ImageSet`."""
    cleans = [pad_to_tile(im.clean, tile) for im in images]
    paired = images[0].noisy is not None
    noisies = [pad_to_tile(im.noisy, tile) for im in images] if paired else None
    heights = np.array([c.shape[0] for c in cleans], np.int64)
    widths = np.array([c.shape[1] for c in cleans], np.int64)
    sizes = heights * widths
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    flat_clean = np.concatenate([c.ravel() for c in cleans]).astype(np.float32)
    flat_noisy = np.concatenate([c.ravel() for c in noisies]).astype(np.float32) if paired else None
    digest = hashlib.sha256()
    for im, c in zip(images, cleans):
        digest.update(im.name.encode())
        digest.update(np.ascontiguousarray(c).tobytes())
    sigmas = (np.array([im.sigma for im in images], np.float32)
              if paired and all(im.sigma is not None for im in images) else None)
    return ImageSet([im.name for im in images], flat_clean, flat_noisy, offsets, heights, widths,
                    digest.hexdigest()[:16], sigmas)


def validation_set(images, cfg, seed):
    """Fixed ``(noisy, clean, sigma)`` validation crops on [0, 255].

    ``noisy`` and ``clean`` are ``(n, tile, tile)``; ``sigma`` is each crop's noise level
    (for pairs, their image's measured :attr:`Image.sigma`; ``nan`` where there is none).
    The sigmas are always drawn uniformly from the config's range, whatever ``sigma_draw``
    the run trains with, so runs that draw differently are scored on the same crops.
    """
    tile = cfg.model.tile
    n = cfg.data.validation_tiles
    if not images or n <= 0:
        return None
    rng = np.random.default_rng([seed, 7919])
    spec = SigmaSpec.parse(cfg.data.sigma)
    shaped, bank = shapes_signal(cfg.data), transfer_bank(cfg)
    contrast = ContrastSpec(cfg.data.contrast)
    noisy, clean, sigmas = [], [], []
    for j in range(n):
        im = images[j % len(images)]
        c = pad_to_tile(im.clean, tile)
        y = int(rng.integers(0, c.shape[0] - tile + 1))
        x = int(rng.integers(0, c.shape[1] - tile + 1))
        crop = c[y:y + tile, x:x + tile]
        if im.noisy is not None:
            noisy.append(pad_to_tile(im.noisy, tile)[y:y + tile, x:x + tile])
            sigmas.append(np.nan if im.sigma is None else im.sigma)
        else:
            if shaped:  # contrast and detector transfer: the target is the shaped crop
                factor = contrast.from_uniform(rng.random())
                transfer = None if bank is None else bank[rng.integers(len(bank))][None]
                crop = shape_signal(crop[None], [factor], transfer)[0]
            image, sigma = add_gaussian_noise(crop, spec, rng)
            noisy.append(image)
            sigmas.append(sigma)
        clean.append(crop)
    return (np.stack(noisy).astype(np.float32), np.stack(clean).astype(np.float32),
            np.asarray(sigmas, np.float32))


def with_noise_level(noisy, sigma):
    """Append the noise-level channel a ``sigma_map`` generator takes (NumPy).

    Parameters
    ----------
    noisy : ndarray
        ``(n, h, w)`` or ``(n, h, w, 1)`` images on [0, 255].
    sigma : float or array of shape ``(n,)``
        Noise sigma of each image, on the same [0, 255] scale.

    Returns
    -------
    ndarray
        ``(n, h, w, 2)`` float32: the images, then a constant plane of their sigma (the
        same [0, 255] units, so the model's [-1, 1] mapping applies to both channels).
    """
    noisy = np.asarray(noisy, np.float32)
    if noisy.ndim == 3:
        noisy = noisy[..., None]
    sigma = np.broadcast_to(np.asarray(sigma, np.float32), noisy.shape[:1])
    plane = np.broadcast_to(sigma[:, None, None, None], noisy.shape)
    return np.concatenate([noisy, plane], axis=-1)


def training_dataset(image_set, cfg, start_element=0, elements_per_step=None):
    """An endless ``tf.data.Dataset`` of ``(noisy, clean)`` batches on [0, 255].

    Parameters
    ----------
    image_set : ImageSet
    cfg : FitConfig
    start_element : int
        Index of the first crop (``step * elements_per_step`` to resume at ``step``).
    elements_per_step : int, optional
        Crops per yielded batch; ``cfg.train.batch_size * cfg.train.n_critic`` by default.

    Each batch has shape ``(elements_per_step, tile, tile, channels)``; with
    ``model.sigma_map`` the noisy batch has a second channel, each crop's sigma
    (:func:`with_noise_level`; for pairs, its image's ``ImageSet.sigmas``).
    """
    import tensorflow as tf  # lazy: imports TensorFlow

    tile = cfg.model.tile
    per_step = elements_per_step or cfg.train.batch_size * cfg.train.n_critic
    seed = int(cfg.train.seed)
    spec = SigmaSpec.parse(cfg.data.sigma)
    flat_clean = tf.constant(image_set.flat_clean)
    flat_noisy = tf.constant(image_set.flat_noisy) if image_set.paired else None
    offsets = tf.constant(image_set.offsets)
    heights = tf.constant(image_set.heights)
    widths = tf.constant(image_set.widths)
    logits = tf.math.log(tf.cast(image_set.heights * image_set.widths, tf.float32))[None, :]
    grid = tf.range(tile, dtype=tf.int64)
    augment = cfg.data.augment
    swap = cfg.data.swap_pairs and image_set.paired
    draw, sigma_map = cfg.data.sigma_draw, cfg.model.sigma_map
    pair_sigmas = _pair_sigmas(image_set, cfg)
    pair_sigmas = None if pair_sigmas is None else tf.constant(pair_sigmas)

    def crop(i):
        seeds = tf.random.experimental.stateless_split(tf.stack([tf.constant(seed, tf.int64), i]), 5)
        k = tf.random.stateless_categorical(logits, 1, seed=seeds[0], dtype=tf.int64)[0, 0]
        h, w = heights[k], widths[k]
        y = tf.random.stateless_uniform([], seeds[1], 0, h - tile + 1, dtype=tf.int64)
        x = tf.random.stateless_uniform([], seeds[2], 0, w - tile + 1, dtype=tf.int64)
        idx = offsets[k] + (y + grid)[:, None] * w + (x + grid)[None, :]
        images = [tf.gather(flat_clean, idx)[..., None]]
        if flat_noisy is not None:
            images.append(tf.gather(flat_noisy, idx)[..., None])
        if augment:
            rot = tf.random.stateless_uniform([], seeds[3], 0, 4, dtype=tf.int32)
            flip = tf.random.stateless_uniform([], seeds[4], 0, 2, dtype=tf.int32)
            images = [tf.image.rot90(im, rot) for im in images]
            images = [tf.cond(flip > 0, lambda im=im: tf.reverse(im, [1]), lambda im=im: im)
                      for im in images]
        images = [tf.ensure_shape(im, (tile, tile, 1)) for im in images]
        if swap:  # noise2noise: either half is the input
            u = tf.random.stateless_uniform([], tf.stack([tf.constant(seed + 2, tf.int64), i]))
            images = tf.cond(u < 0.5, lambda: images[::-1], lambda: images)
        if pair_sigmas is not None:  # the noise-level channel of the input
            images = [images[0], tf.concat([images[1], tf.ones_like(images[1]) * pair_sigmas[k]],
                                           -1)]
        return tuple(images) + (i,)

    shaped, contrast = shapes_signal(cfg.data), ContrastSpec(cfg.data.contrast)
    bank = transfer_bank(cfg)
    bank = None if bank is None else tf.constant(bank)

    def degrade(*batch):
        clean, index = batch[0], batch[-1]
        if flat_noisy is not None:
            return batch[1], clean
        if shaped:  # contrast and detector transfer per crop, from (seed + 3, element)
            keys = tf.random.experimental.stateless_split(
                tf.stack([tf.constant(seed + 3, tf.int64), index[0]]), 2)
            n = tf.shape(clean)[:1]
            factors = contrast.from_uniform(tf.random.stateless_uniform(n, keys[0]))
            transfers = None
            if bank is not None:
                pick = tf.random.stateless_uniform(n, keys[1], 0, bank.shape[0], dtype=tf.int32)
                transfers = tf.gather(bank, pick)
            clean = shape_signal_tf(clean, factors, transfers)
        noisy, sigma = add_gaussian_noise_tf(
            clean, spec, tf.stack([tf.constant(seed + 1, tf.int64), index[0]]), draw)
        if sigma_map:  # the noise-level channel (model.sigma_map)
            noisy = tf.concat([noisy, tf.ones_like(noisy) * sigma[:, None, None, None]], -1)
        return noisy, clean

    ds = tf.data.Dataset.range(start_element, np.iinfo(np.int64).max)
    ds = ds.map(crop, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(per_step, drop_remainder=True)
    ds = ds.map(degrade, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def _pair_sigmas(image_set, cfg):
    """Per-image sigmas of a paired set for a ``sigma_map`` model (float32), else ``None``.

    Raises
    ------
    ConfigError
        A ``sigma_map`` model on pairs without measured sigmas.
    """
    if not (cfg.model.sigma_map and image_set.paired):
        return None
    if image_set.sigmas is None:
        _no_pair_sigmas()
    return np.asarray(image_set.sigmas, np.float32)


def _no_pair_sigmas():
    raise ConfigError("this model takes a noise-level map, and these pairs have no measured "
                      "sigma")


# -- the same stream on the accelerator (JAX) ------------------------------------------------
#: Largest flat buffer the JAX form indexes (int32 indices without jax_enable_x64).
JAX_MAX_PIXELS = 2 ** 31 - 1


def device_images(image_set, distribution=None, transfers=None):
    """An :class:`ImageSet` as JAX arrays on the device(s), for :func:`jax_batch`.

    With a Keras ``distribution`` the buffers are replicated on every device; ``transfers``
    (:func:`~cryoem_denoise.data.training_noise.transfer_bank`) travel with them.

    Raises
    ------
    InputError
        More pixels than 32-bit indices reach (about 8 GB of float32 images).
    """
    import jax  # lazy: imports JAX
    import jax.numpy as jnp  # lazy: imports JAX

    if image_set.flat_clean.size > JAX_MAX_PIXELS:
        raise InputError(f"{image_set.flat_clean.size} training pixels are more than the JAX "
                         f"data path indexes ({JAX_MAX_PIXELS}); train on fewer images")
    areas = (image_set.heights * image_set.widths).astype(np.float64)
    data = {"clean": image_set.flat_clean,
            "offsets": image_set.offsets.astype(np.int32),
            "heights": image_set.heights.astype(np.int32),
            "widths": image_set.widths.astype(np.int32),
            "logits": np.log(areas).astype(np.float32)}
    if image_set.paired:
        data["noisy"] = image_set.flat_noisy
    if image_set.paired and image_set.sigmas is not None:
        data["sigmas"] = np.asarray(image_set.sigmas, np.float32)
    if transfers is not None:
        data["transfers"] = np.asarray(transfers, np.float32)
    if distribution is None:
        return {k: jnp.asarray(v) for k, v in data.items()}
    sharding = jax.sharding.NamedSharding(
        distribution.device_mesh.backend_mesh, jax.sharding.PartitionSpec())
    return {k: jax.device_put(v, sharding) for k, v in data.items()}


def _dihedral(rows, cols, tile, rot, flip):
    """Source coordinates of a crop turned by ``rot`` quarter turns, then mirrored."""
    import jax.numpy as jnp  # lazy: imports JAX

    last = tile - 1
    cols = jnp.where(flip > 0, last - cols, cols)
    r = jnp.select([rot == 0, rot == 1, rot == 2], [rows, cols, last - rows], last - cols)
    c = jnp.select([rot == 0, rot == 1, rot == 2], [cols, last - rows, last - cols], rows)
    return r, c


def jax_batch(data, cfg, first_element, n):
    """``(noisy, clean)`` crops ``first_element .. first_element + n - 1`` (JAX, jittable).

    The JAX form of :func:`training_dataset`, from the same description: element *i*
    draws its image (weighted by area), crop position, quarter turns and mirror from
    ``(seed, i)``; the batch's noise (one σ per crop from the σ spec) from
    ``(seed + 1, first_element)``. A pure function of its arguments, so the same seed and
    step always give the same batch, and a resumed run continues the same stream.

    Parameters
    ----------
    data : dict
        From :func:`device_images`.
    cfg : FitConfig
    first_element : int or jax.Array
    n : int
        Crops (static).

    Returns
    -------
    noisy, clean : jax.Array
        ``(n, tile, tile, 1)`` each, on [0, 255] (``noisy`` with a second channel, each
        crop's sigma, under ``model.sigma_map``).
    """
    import jax  # lazy: imports JAX
    import jax.numpy as jnp  # lazy: imports JAX

    tile = cfg.model.tile
    seed = int(cfg.train.seed)
    key = jax.random.PRNGKey(seed)
    grid = jnp.arange(tile, dtype=jnp.int32)
    rows0, cols0 = jnp.meshgrid(grid, grid, indexing="ij")
    paired = "noisy" in data
    swap_key = jax.random.PRNGKey(seed + 2)

    def crop(i):
        keys = jax.random.split(jax.random.fold_in(key, i), 5)
        k = jax.random.categorical(keys[0], data["logits"])
        h, w = data["heights"][k], data["widths"][k]
        y = jax.random.randint(keys[1], (), 0, h - tile + 1)
        x = jax.random.randint(keys[2], (), 0, w - tile + 1)
        rows, cols = rows0, cols0
        if cfg.data.augment:
            rot = jax.random.randint(keys[3], (), 0, 4)
            flip = jax.random.randint(keys[4], (), 0, 2)
            rows, cols = _dihedral(rows, cols, tile, rot, flip)
        index = data["offsets"][k] + (y + rows) * w + (x + cols)
        clean = data["clean"][index]
        if not paired:
            return clean, clean, k
        noisy = data["noisy"][index]
        if cfg.data.swap_pairs:  # noise2noise: either half is the input
            swap = jax.random.uniform(jax.random.fold_in(swap_key, i)) < 0.5
            noisy, clean = jnp.where(swap, clean, noisy), jnp.where(swap, noisy, clean)
        return noisy, clean, k

    elements = jnp.asarray(first_element, jnp.int32) + jnp.arange(n, dtype=jnp.int32)
    noisy, clean, image_index = jax.vmap(crop)(elements)
    noisy, clean = noisy[..., None], clean[..., None]
    if paired and cfg.model.sigma_map:  # the noise-level channel: each pair's measured sigma
        if "sigmas" not in data:
            _no_pair_sigmas()
        sigma = data["sigmas"][image_index]
        noisy = jnp.concatenate([noisy, jnp.ones_like(noisy) * sigma[:, None, None, None]],
                                axis=-1)
    if not paired and shapes_signal(cfg.data):  # contrast and detector transfer per crop
        keys = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed + 3), first_element))
        factors = ContrastSpec(cfg.data.contrast).from_uniform(jax.random.uniform(keys[0], (n,)))
        transfers = None
        if cfg.data.noise == "detector" and "transfers" not in data:
            raise ConfigError("noise 'detector' needs the transfer bank: device_images(..., "
                              "transfers=training_noise.transfer_bank(cfg))")
        if "transfers" in data:
            pick = jax.random.randint(keys[1], (n,), 0, data["transfers"].shape[0])
            transfers = data["transfers"][pick]
        clean = shape_signal_jax(clean, factors, transfers)
    if not paired:
        noise_key = jax.random.fold_in(jax.random.PRNGKey(seed + 1), first_element)
        noisy, sigma = add_gaussian_noise_jax(clean, cfg.data.sigma, noise_key,
                                              cfg.data.sigma_draw)
        if cfg.model.sigma_map:  # the noise-level channel
            noisy = jnp.concatenate(
                [noisy, jnp.ones_like(noisy) * sigma[:, None, None, None]], axis=-1)
    return noisy, clean

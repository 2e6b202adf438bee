"""Clean cryo-EM-like fields simulated from an atomic model or a density map.

A structure becomes a weighted point cloud: atoms (read with gemmi; weight = atomic number,
hydrogens dropped) or the voxels of a density map (weight = density above a threshold). Each
particle is the cloud under a rotation drawn uniformly from SO(3) (scipy), projected along z
by bilinear splatting onto the pixel grid and blurred to the atoms' size. Particles are
placed at random, non-overlapping positions on a smooth low-frequency "ice" background, the
field is filtered by the contrast transfer function (CTF) of a microscope with a defocus drawn
from a range (optionally astigmatic) and a B-factor envelope, and scaled to [0, 255]. Pixel
size, particle count, amplitude contrast, B-factor and ice amplitude may also be ranges drawn
per field (:meth:`cryoem_denoise.config.SimulationConfig.draw`; the broad preset
:func:`cryoem_denoise.config.broad_simulation` spans the values met in practice), and each
stack's drawn settings are recorded beside it (:func:`record_path`). These noise-free fields
are the clean targets ``fit`` trains on. :func:`simulate_to_file` can also
write them with shot noise (Poisson electron counts at a dose, one exposure or two
independent halves; :func:`cryoem_denoise.data.noise.shot_noise`), realistic noisy data with a
known truth.

CTF (weak-phase approximation; Δf > 0 is underfocus, k in 1/Å)::

    chi(k)   = pi * lambda * df * k^2 - pi/2 * Cs * lambda^3 * k^4
    CTF(k)   = -(sqrt(1 - A^2) * sin(chi) + A * cos(chi)) * exp(-B k^2 / 4)
    lambda   = 12.2643247 / sqrt(V * (1 + 0.978466e-6 * V))  Å, V in volts

Everything is seeded: the same source, config and seed give the same fields.
"""

import contextlib
import dataclasses
import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path

import gemmi
import numpy as np
from scipy.ndimage import gaussian_filter
from scipy.spatial.transform import Rotation

from cryoem_denoise.config import broad_simulation
from cryoem_denoise.data import datasets, noise
from cryoem_denoise.errors import ConfigError, InputError
from cryoem_denoise.io import image_io, mrc
from cryoem_denoise.io.atomic import atomic_output, check_output_path
from cryoem_denoise.runtime.cache import cache_dir, sha256_of
from cryoem_denoise.runtime.progress import progress_bar

MODEL_SUFFIXES = (".pdb", ".ent", ".cif", ".mmcif")


@dataclass
class PointCloud:
    """A structure as weighted points, centred, in Å."""

    xyz: np.ndarray      # (n, 3), x y z in Å, centred on the structure
    weight: np.ndarray   # (n,)
    name: str
    spacing: float = 0.0  # grid spacing of map voxels, Å (0 for atoms)

    @property
    def radius(self):
        """Largest distance of a point from the centre, Å."""
        return float(np.sqrt((self.xyz ** 2).sum(axis=1).max()))


def _plain_name(path):
    name = Path(path).name.lower()
    return name[:-3] if name.endswith(".gz") else name


def load_structure(path, threshold=None):
    """Read an atomic model (PDB/mmCIF) or a density map (MRC) as a :class:`PointCloud`.

    Raises
    ------
    InputError
        Unreadable model, a model without atoms, a map that is not 3D or has no density
        above the threshold.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("no such file", path)
    name = _plain_name(path)
    if name.endswith(MODEL_SUFFIXES):
        return _load_model(path)
    return _load_map(path, threshold)


def _load_model(path):
    try:
        st = gemmi.read_structure(str(path))
    except (RuntimeError, ValueError, OSError) as exc:
        raise InputError(f"gemmi cannot read this model ({str(exc).splitlines()[0]})", path) from None
    st.remove_hydrogens()
    if len(st) == 0:
        raise InputError("model has no atoms", path)
    xyz, z = [], []
    for chain in st[0]:
        for res in chain:
            for atom in res:
                xyz.append(atom.pos.tolist())
                z.append(atom.element.atomic_number)
    if not xyz:
        raise InputError("model has no atoms", path)
    xyz = np.asarray(xyz, np.float64)
    return PointCloud(xyz - xyz.mean(axis=0), np.asarray(z, np.float64), path.name)


def _load_map(path, threshold):
    sections, header = image_io.read_sections(path)
    if header.kind == "image" or min(header.shape) < 2:
        raise InputError(f"a density map must be 3D, this is a {header.kind} of shape "
                         f"{header.shape}", path)
    vol = sections.astype(np.float64)
    voxel = np.array(header.voxel_size[::-1], np.float64)  # z y x
    if not (voxel > 0).all():
        raise InputError("density map has no voxel size", path)
    cut = vol.mean() + vol.std() if threshold is None else threshold
    idx = np.argwhere(vol > cut)
    if not len(idx):
        raise InputError(f"no density above the threshold {cut:g}", path)
    centre = (np.array(vol.shape) - 1) / 2.0
    zyx = (idx - centre) * voxel
    return PointCloud(zyx[:, ::-1].copy(), vol[vol > cut] - cut, path.name, float(voxel.max()))


def wavelength(voltage_kv):
    """Relativistic electron wavelength in Å."""
    v = voltage_kv * 1e3
    return 12.2643247 / np.sqrt(v * (1 + 0.978466e-6 * v))


def ctf(k, defocus_a, cfg, angle_k=None, astig_a=0.0, astig_angle=0.0):
    """CTF at spatial frequencies ``k`` (1/Å), defocus in Å (underfocus positive)."""
    lam = wavelength(cfg.voltage_kv)
    cs = cfg.cs_mm * 1e7
    df = defocus_a
    if angle_k is not None and astig_a:
        df = defocus_a + astig_a * np.cos(2 * (angle_k - astig_angle))
    k2 = k * k
    chi = np.pi * lam * df * k2 - 0.5 * np.pi * cs * lam ** 3 * k2 * k2
    a = cfg.amplitude_contrast
    return -(np.sqrt(1 - a * a) * np.sin(chi) + a * np.cos(chi)) * np.exp(-cfg.b_factor * k2 / 4)


def ctf_2d(shape, pixel_size, defocus_a, cfg, astig_a=0.0, astig_angle=0.0):
    """The CTF on the ``rfft2`` grid of an image of ``shape``."""
    ky = np.fft.fftfreq(shape[0], d=pixel_size)[:, None]
    kx = np.fft.rfftfreq(shape[1], d=pixel_size)[None, :]
    k = np.sqrt(kx * kx + ky * ky)
    return ctf(k, defocus_a, cfg, np.arctan2(ky, kx), astig_a, astig_angle)


def project(cloud, rotation, pixel_size, shape, centre):
    """Project a rotated cloud along z onto a ``shape`` grid, bilinear splatting.

    ``centre`` is the ``(y, x)`` pixel the cloud's origin lands on; ``rotation`` a 3x3
    matrix applied to the points (identity: a plain sum along z).
    """
    xyz = cloud.xyz @ np.asarray(rotation).T
    u = xyz[:, 0] / pixel_size + centre[1]
    v = xyz[:, 1] / pixel_size + centre[0]
    u0, v0 = np.floor(u).astype(np.int64), np.floor(v).astype(np.int64)
    fu, fv = u - u0, v - v0
    out = np.zeros(shape[0] * shape[1], np.float64)
    for du, dv, w in ((0, 0, (1 - fu) * (1 - fv)), (1, 0, fu * (1 - fv)),
                      (0, 1, (1 - fu) * fv), (1, 1, fu * fv)):
        x, y = u0 + du, v0 + dv
        ok = (x >= 0) & (x < shape[1]) & (y >= 0) & (y < shape[0])
        out += np.bincount(y[ok] * shape[1] + x[ok], weights=(w * cloud.weight)[ok],
                           minlength=out.size)
    return out.reshape(shape)


def _ice(shape, cfg, rng):
    white = rng.standard_normal(shape)
    ky = np.fft.fftfreq(shape[0], d=cfg.pixel_size)[:, None]
    kx = np.fft.rfftfreq(shape[1], d=cfg.pixel_size)[None, :]
    filt = np.exp(-((kx * kx + ky * ky) * (cfg.ice_length ** 2)) * 2)
    ice = np.fft.irfft2(np.fft.rfft2(white) * filt, s=shape)
    return ice / (ice.std() + 1e-12)


def _positions(n, field, radius_px, rng, attempts=500):
    """Up to ``n`` centres at least ``2 * radius_px`` apart, inside the field."""
    lo, hi = radius_px, field - radius_px
    chosen = []
    for _ in range(attempts):
        if len(chosen) == n:
            break
        p = rng.uniform(lo, hi, 2)
        if all(np.hypot(*(p - q)) >= 2 * radius_px for q in chosen):
            chosen.append(p)
    return chosen


#: The largest share of the field a particle's diameter may take when a pixel-size range
#: is narrowed so that the structure fits (see :meth:`Simulator.pixel_range`).
FIT_SHARE = 0.9


class Simulator:
    """Draws clean fields of one structure; see the module docstring.

    Settings given as ranges are drawn per field (:meth:`SimulationConfig.draw`). A
    pixel-size range is narrowed from below to the sizes at which the particle takes at
    most :data:`FIT_SHARE` of the field (:meth:`pixel_range`); a single pixel size is used
    as given.

    Raises
    ------
    ConfigError
        A config that is invalid or makes the particle larger than the field.
    """

    def __init__(self, cloud, cfg):
        self.cloud = cloud
        self.cfg = cfg.validate()
        self.pixel_range = self._fitting_pixel_range()
        self._ranges = dataclasses.replace(cfg, pixel_size=self.pixel_range)

    def _fitting_pixel_range(self):
        cfg, diameter = self.cfg, 2 * self.cloud.radius
        lo, hi = cfg.range_of("pixel_size")
        if lo == hi:
            if diameter / lo >= cfg.field:
                raise ConfigError(f"the particle ({diameter:.0f} Å = {diameter / lo:.0f} px "
                                  f"at {lo:g} Å/px) does not fit the {cfg.field}-pixel field; "
                                  "raise --pixel-size or --field")
            return (lo, hi)
        smallest = diameter / (FIT_SHARE * cfg.field)
        if smallest > hi:
            raise ConfigError(f"the particle ({diameter:.0f} Å) does not fit the {cfg.field}-pixel "
                              f"field at any pixel size in {lo:g}:{hi:g} Å; raise --pixel-size or "
                              "--field")
        return (max(lo, smallest), hi)

    def _blur_px(self, pixel_size):
        # map voxels coarser than the pixel are smoothed into a continuous density
        return max(self.cfg.atom_blur, 0.6 * self.cloud.spacing) / pixel_size

    def field(self, rng):
        """One clean field on [0, 255] (float32) and the settings it was drawn with."""

        cfg = self._ranges.draw(rng)
        radius_px = self.cloud.radius / cfg.pixel_size
        pad = int(np.ceil(radius_px)) + 8  # room for CTF delocalisation and wrap-around
        size = cfg.field + 2 * pad
        signal = np.zeros((size, size))
        centres = _positions(cfg.particles, cfg.field, radius_px, rng)
        rotations = Rotation.random(len(centres), random_state=rng).as_matrix()
        for (cy, cx), rot in zip(centres, rotations):
            signal += project(self.cloud, rot, cfg.pixel_size, (size, size), (cy + pad, cx + pad))
        blur = self._blur_px(cfg.pixel_size)
        if blur > 0:
            signal = gaussian_filter(signal, blur)
        peak = signal.max() or 1.0
        signal /= peak
        signal += cfg.ice * 0.25 * _ice(signal.shape, cfg, rng)
        defocus = rng.uniform(*cfg.defocus_um) * 1e4
        astig = rng.uniform(0, cfg.astigmatism_um) * 1e4
        angle = rng.uniform(0, np.pi)
        h = ctf_2d(signal.shape, cfg.pixel_size, defocus, cfg, astig, angle)
        # weak-phase image contrast: CTF < 0 at low frequency, so particles come out dark
        image = np.fft.irfft2(np.fft.rfft2(signal) * h, s=signal.shape)
        image = image[pad:pad + cfg.field, pad:pad + cfg.field]
        lo, hi = image.min(), image.max()
        clean = ((image - lo) * (255.0 / (hi - lo))).astype(np.float32)
        return clean, {"particles": len(centres), "defocus_um": defocus / 1e4,
                       "astigmatism_um": astig / 1e4, "astigmatism_angle": angle,
                       "pixel_size": cfg.pixel_size, "b_factor": cfg.b_factor,
                       "amplitude_contrast": cfg.amplitude_contrast, "ice": cfg.ice,
                       "particles_drawn": cfg.particles}

    def fields(self, n, seed, progress=None):
        """``n`` fields ``(n, field, field)`` and their parameters; reproducible by seed."""
        out = np.empty((n, self.cfg.field, self.cfg.field), np.float32)
        params = []
        for i in range(n):
            out[i], p = self.field(np.random.default_rng([seed, i]))
            params.append(p)
            if progress is not None:
                progress(1)
        return out, params


def _cache_key(path, cfg, seed):
    text = json.dumps({"source": sha256_of(path), "cfg": cfg.to_dict(), "seed": seed},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def shot_noise_paths(out, halves=False):
    """Where :func:`simulate_to_file` writes the noisy stacks beside the clean ``out``.

    ``NAME_noisy.mrcs`` for one exposure, ``NAME_half1.mrcs`` and ``NAME_half2.mrcs`` for
    a half pair (same folder and suffix as ``out``).
    """
    out = Path(out)
    tags = ("half1", "half2") if halves else ("noisy",)
    return [out.with_name(f"{out.stem}_{tag}{out.suffix}") for tag in tags]


def _noise_rng(seed, index):
    """The shot-noise generator of field ``index``: independent of the field's own draws."""
    return np.random.default_rng([seed, index, 1])


def record_path(out):
    """The JSON record of a clean stack's per-field settings: ``NAME.fields.json`` beside
    ``NAME.mrcs``."""
    return Path(out).with_suffix(".fields.json")


def _jsonable(params):
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in params.items()}


def _write_record(path, source, cfg, seed, pixel_range, params, overwrite):
    """Write the record of a simulated stack: source, seed, config and each field's draws."""
    record = {"source": Path(source).name, "source_sha256": sha256_of(source), "seed": seed,
              "config": cfg.to_dict(), "pixel_range_used": list(pixel_range),
              "fields": [{"index": i, **_jsonable(p)} for i, p in enumerate(params)]}
    with atomic_output(path, overwrite=overwrite) as tmp:
        Path(tmp).write_text(json.dumps(record, indent=1) + "\n")


def simulate_to_file(source, out, n, cfg, seed=0, *, dose=None, halves=False, contrast=None,
                     overwrite=False, progress=False):
    """Simulate ``n`` fields of ``source`` into an MRC stack at ``out``.

    With ``dose``, the same fields are also written with shot noise
    (:func:`cryoem_denoise.data.noise.shot_noise`, electron counts) to the stacks named by
    :func:`shot_noise_paths`: one full exposure, or with ``halves`` two independent
    half-dose exposures. The clean stack, on [0, 255], is their known truth. Every output
    is checked before any work and written atomically; the labels record source, seed and
    dose, and :func:`record_path` (``NAME.fields.json``) each field's drawn settings (pixel
    size, defocus, B-factor, ...). The header's voxel size is the pixel size, or the middle
    of the range used when it is drawn per field. The same seed gives the same files.

    Parameters
    ----------
    source : path-like
        Atomic model or density map (:func:`load_structure`).
    out : path-like
        The clean stack.
    n : int
        Fields to simulate.
    cfg : SimulationConfig
    seed : int
    dose : float, optional
        Electrons per pixel of the full exposure (mean over a field), > 0.
    halves : bool
        Write two half-dose stacks instead of one noisy stack (needs ``dose``).
    contrast : float, optional
        Relative contrast of the expected counts (default
        :data:`cryoem_denoise.data.noise.DEFAULT_CONTRAST`).
    overwrite : bool
        Replace existing outputs.
    progress : bool

    Returns
    -------
    Path
        The clean stack ``out`` (the noisy ones are at :func:`shot_noise_paths`).

    Raises
    ------
    ConfigError
        Bad settings, a dose that is not positive and finite, ``halves`` without a dose.
    OutputError
        An output exists (without ``overwrite``) or cannot be written.
    InputError
        The source cannot be read.
    """

    contrast = noise.DEFAULT_CONTRAST if contrast is None else contrast
    paths = {"clean": Path(out)}
    if dose is not None:
        dose = noise.check_dose(dose)
        noise.check_contrast(contrast)
        tags = ("half1", "half2") if halves else ("noisy",)
        paths.update(zip(tags, shot_noise_paths(out, halves)))
    elif halves:
        raise ConfigError("half pairs need a dose (--dose)")
    for path in [*paths.values(), record_path(out)]:
        check_output_path(path, overwrite=overwrite)
    sim = Simulator(load_structure(source, cfg.map_threshold), cfg)
    name = Path(source).name
    voxel = float(np.mean(sim.pixel_range))
    params = []
    with contextlib.ExitStack() as stack, \
            progress_bar(n, f"simulate {name}", "field", progress) as bar:
        data = {tag: stack.enter_context(mrc.create_mrc(
            path, (n, cfg.field, cfg.field), kind="stack", voxel_size=(voxel,) * 3,
            overwrite=overwrite, label=_label(name, seed, tag, dose, contrast)))
            for tag, path in paths.items()}
        for i in range(n):
            clean, p = sim.field(np.random.default_rng([seed, i]))
            params.append(p)
            data["clean"][i] = clean
            if dose is not None:
                counts = noise.shot_noise(clean, dose, _noise_rng(seed, i), halves, contrast)
                for tag, image in zip(list(paths)[1:], counts if halves else (counts,)):
                    data[tag][i] = image
            bar.update(1)
    _write_record(record_path(out), source, cfg, seed, sim.pixel_range, params, overwrite)
    return Path(out)


def _label(source_name, seed, tag, dose, contrast):
    """An MRC header label saying what a stack holds (the dose first: labels end at 80
    characters)."""
    origin = f"simulated from {source_name}, seed {seed}"
    if tag == "clean":
        return origin
    part = {"noisy": "", "half1": " half 1 of 2", "half2": " half 2 of 2"}[tag]
    return f"shot noise {dose:g} e/px{part}, contrast {contrast:g}, {origin}"


def cached_fields(source, cfg, seed=0, cache=None, progress=False):
    """Path of a stack of ``cfg.fields`` simulated fields, generated once into the cache.

    The file name carries a hash of the source's content, the config and the seed, so a
    changed setting makes a new stack and a repeated run reuses the old one; each field's
    drawn settings are in its :func:`record_path`.
    """
    folder = Path(cache) if cache else cache_dir() / "simulated"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{Path(source).name.split('.')[0]}-{_cache_key(source, cfg, seed)}.mrcs"
    if not path.exists():
        simulate_to_file(source, path, cfg.fields, cfg, seed, progress=progress)
    return path


def split_evenly(total, parts):
    """``total`` as ``parts`` counts that differ by at most one, each at least 1."""
    base, extra = divmod(max(total, parts), parts)
    return [base + (i < extra) for i in range(parts)]


def default_training_inputs(sim_cfg=None, seed=0, progress=False):
    """The built-in training set: simulated clean fields of every training structure.

    The :data:`~cryoem_denoise.data.datasets.TRAINING_STRUCTURES` (five atomic models and two EMDB maps) share
    ``sim_cfg.fields`` fields evenly, each simulated once into the cache with its own seed
    (:func:`cached_fields`). No real micrograph (noisy, never a
    clean target) and no held-out structure is used.

    Parameters
    ----------
    sim_cfg : SimulationConfig, optional
        Simulation settings; by default the broad preset
        (:func:`cryoem_denoise.config.broad_simulation`), settings drawn per field.
    seed : int
        Structure ``i`` is simulated with seed ``seed * 1000 + i``.
    progress : bool

    Returns
    -------
    list of Path
        One MRC stack per structure.
    """
    cfg = broad_simulation() if sim_cfg is None else sim_cfg
    paths = datasets.fetch(datasets.TRAINING_STRUCTURES)
    counts = split_evenly(cfg.fields, len(datasets.TRAINING_STRUCTURES))
    return [cached_fields(paths[name], replace(cfg, fields=n), seed * 1000 + i, progress=progress)
            for i, (name, n) in enumerate(zip(datasets.TRAINING_STRUCTURES, counts))]

"""``apply`` over many files: planning outputs, denoising each file, the --sigma protocol.

For each input file (MRC, TIFF or PNG: 2D image, stack section by section, or volume as a
stack of sections) the denoised result is streamed into a memory-mapped output file (MRC or
TIFF; a PNG is one image, kept in memory) with the input's voxel size and origin, then moved
into place atomically; memory stays bounded by one batch of tiles plus the section(s) in
flight, whatever the number or size of the files. Outputs are in the input's format unless
another is asked for (:attr:`ApplyOptions.format`).

With ``sigma`` (the paper's protocol) each section is taken as the clean reference: it is
scaled to [0, 255], Gaussian noise of that sigma is added (seeded by the seed, the file name
and the section, so sharding never changes it), the noisy image is written and denoised, and
MAE/MSE/RMSE/PSNR/SSIM of the noisy and the denoised image against the reference are
tabulated (``metrics.json``, ``metrics.csv``, ``metrics.md``).

A file that cannot be read or written (bad file, full disk, ...) is reported and skipped;
the others are still written.
"""

import collections
import contextlib
import csv
import warnings
import io
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cryoem_denoise.data.noise import add_protocol_noise, estimate_noise_level
from cryoem_denoise.errors import ConfigError, CryoEMDenoiseError, InputWarning, OutputError
from cryoem_denoise.evaluation import figures, metrics
from cryoem_denoise.inference.conditioning import MIN_SPECTRUM_SIDE
from cryoem_denoise.inference.denoiser import to_units
from cryoem_denoise.inference.report import (
    COLOURED,
    ReportEntry,
    image_flags,
    spectrum_summary,
    thumbnails,
    write_report,
)
from cryoem_denoise.io import image_io, mrc
from cryoem_denoise.io.atomic import check_output_path, describe_os_error, write_text
from cryoem_denoise.io.header import ImageHeader
from cryoem_denoise.io.star import write_star
from cryoem_denoise.runtime import backend
from cryoem_denoise.runtime.progress import progress_bar

METRICS_FILES = ("metrics.json", "metrics.csv", "metrics.md")


@dataclass
class ApplyOptions:
    """What ``apply`` writes and how."""

    out_dir: Path
    suffix: str = "_denoised"
    dtype: str = "float32"
    png: bool = False
    sigma: float = None
    seed: int = 0
    overwrite: bool = False
    skip_existing: bool = False
    shard: tuple = (0, 1)
    #: Output file format (``'mrc'``, ``'tiff'``, ``'png'``); ``None``: the input's.
    format: str = None
    #: Pixel size (Å) for outputs whose input has none or a placeholder (0 or 1.0 Å).
    pixel_size: float = None
    #: Noise sigma on [0, 255] for a model with a noise-level input; ``None``: estimated
    #: per file (or ``sigma`` under the paper's protocol).
    noise_level: float = None


@dataclass
class Job:
    """One input file and the files it will produce (role → path)."""

    source: Path
    outputs: dict
    skip: bool = False
    #: The input's header, read once when planning (``None`` if it could not be read: the
    #: file then fails, with the reason, when its turn comes).
    header: ImageHeader = None
    #: Pixel size (Å) from a STAR file's optics table, for a header without one.
    pixel_size: float = None


@dataclass
class Report:
    """What a run did."""

    done: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    failed: list = field(default_factory=list)  # (path, message)
    rows: list = field(default_factory=list)    # metric rows (with --sigma)
    seconds: float = 0.0
    tiles: int = 0
    noise_levels: list = field(default_factory=list)  # FileNoise per file (noise, spectrum)
    entries: list = field(default_factory=list)  # ReportEntry per input (report.html)
    report_files: list = field(default_factory=list)  # report.html, report.csv if written


@dataclass
class FileNoise:
    """What ``apply`` measured of one file's noise and did about it (one line each).

    Attributes
    ----------
    path : Path
    level : float or None
        The noise sigma (on [0, 255]) a noise-level model was given; None for others.
    how : str or None
        ``"estimated"``, ``"given"`` or ``"known"`` (the paper's protocol).
    spectrum : NoiseSpectrum or None
        The measured noise spectrum (None under the paper's protocol).
    whitened : bool
    factor : float
        The pixel-size factor the images were resampled by (1: none).
    outliers : int
        Hot and dead pixels replaced, over all sections.
    """

    path: Path
    level: float = None
    how: str = None
    spectrum: object = None
    whitened: bool = False
    factor: float = 1.0
    outliers: int = 0
    measured: bool = False

    def line(self):
        """One line: ``name: noise sigma ..., spectrum, binning, outliers``."""
        parts = []
        if self.level is not None:
            parts.append(f"noise sigma {self.level:.1f} on [0,255] ({self.how})")
        if self.spectrum is not None:
            parts.append(self.spectrum.summary() + (", whitened" if self.whitened else ""))
        elif self.measured:
            parts.append(f"noise spectrum not measured (under {MIN_SPECTRUM_SIDE} px as the "
                         "model gets it): taken as white")
        if self.factor > 1:
            parts.append(f"binned {self.factor:g}x")
        elif self.factor < 1:
            parts.append(f"interpolated {1 / self.factor:.2f}x")
        if self.outliers:
            parts.append(f"{self.outliers} hot/dead pixel(s) replaced")
        return f"{self.path.name}: " + "; ".join(parts)


#: Sections a file's noise level is estimated from (evenly spaced; the median is used).
NOISE_LEVEL_SECTIONS = 8


def file_noise_level(sections, scale):
    """Median noise sigma (on [0, 255]) of up to :data:`NOISE_LEVEL_SECTIONS` sections.

    ``scale(k)`` gives section ``k``'s affine (file units → [0, 255]).
    """
    n = len(sections)
    picks = np.unique(np.linspace(0, n - 1, min(n, NOISE_LEVEL_SECTIONS)).round().astype(int))
    return float(np.median([estimate_noise_level(sections[k], scale(k)) for k in picks]))


def noise_level_for(denoiser, sections, scale, options, plan=None):
    """``(sigma, how)`` the model's noise-level input gets for a file, or ``(None, None)``.

    ``plan``: the file's :class:`~cryoem_denoise.inference.conditioning.Conditioning`, whose
    estimate (on the whitened image) is used; without one it is estimated here.
    """
    if not denoiser.takes_noise_level:
        return None, None
    if options.sigma is not None:
        return float(options.sigma), "known"
    if options.noise_level is not None:
        return float(options.noise_level), "given"
    if plan is not None:
        return plan.sigma, "estimated"
    return file_noise_level(sections, scale), "estimated"


def check_inference_options(tile, overlap, batch_size):
    """Raise :class:`ConfigError` for tile, overlap or batch values that cannot work."""
    if tile is not None and tile < 8:
        raise ConfigError(f"--tile must be at least 8 pixels, got {tile}")
    if overlap is not None and tile is not None and not 0 <= overlap <= tile // 2:
        raise ConfigError(f"--overlap must be between 0 and half the tile ({tile // 2}), "
                          f"got {overlap}")
    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {batch_size}")


def check_pixel_size(pixel_size):
    """Raise :class:`ConfigError` unless ``pixel_size`` is ``None`` or a plausible Å value."""
    if pixel_size is not None and not (np.isfinite(pixel_size) and 0 < pixel_size <= 1e4):
        raise ConfigError(f"--pixel-size must be a positive size in Å, got {pixel_size:g}")


#: Job-array variables of cluster schedulers: (task id, first id, task count or last id,
#: whether the third is a count).
ARRAY_SCHEDULERS = {
    "Slurm": ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_COUNT", True),
    "SGE/UGE": ("SGE_TASK_ID", "SGE_TASK_FIRST", "SGE_TASK_LAST", False),
    "LSF": ("LSB_JOBINDEX", None, "LSB_JOBINDEX_END", False),
}


def shard_from_environment(environ=None):
    """``(K, N)`` of this task of a cluster job array, from the scheduler's variables.

    Slurm: ``SLURM_ARRAY_TASK_ID`` relative to ``SLURM_ARRAY_TASK_MIN``, of
    ``SLURM_ARRAY_TASK_COUNT`` tasks (``--array=0-7`` and ``--array=1-8`` both give 8 shards;
    the array must be a contiguous range). SGE/UGE: ``SGE_TASK_ID`` from ``SGE_TASK_FIRST``
    to ``SGE_TASK_LAST`` (step 1). LSF: ``LSB_JOBINDEX`` from 1 to ``LSB_JOBINDEX_END``.

    Raises
    ------
    ConfigError
        No job array is running, or its variables are inconsistent.
    """
    env = os.environ if environ is None else environ
    for name, (task, first, last, is_count) in ARRAY_SCHEDULERS.items():
        if task not in env or last not in env:
            continue
        try:
            k = int(env[task]) - (int(env[first]) if first and first in env else
                                  (0 if name == "Slurm" else 1))
            n = int(env[last]) if is_count else int(env[last]) - (
                int(env[first]) if first and first in env else 1) + 1
        except ValueError:
            raise ConfigError(f"--shard auto: {name}'s job-array variables are not whole "
                              f"numbers ({task}={env.get(task)!r})") from None
        if not (n >= 1 and 0 <= k < n):
            raise ConfigError(f"--shard auto: {name} task {env[task]} is outside its array of "
                              f"{n} (is the array a contiguous range with step 1?)")
        return k, n
    raise ConfigError("--shard auto needs a cluster job array (Slurm's SLURM_ARRAY_TASK_ID and "
                      "SLURM_ARRAY_TASK_COUNT, SGE's SGE_TASK_ID, LSF's LSB_JOBINDEX); give "
                      "--shard K/N otherwise")


def parse_shard(text, environ=None):
    """``'K/N'`` → ``(K, N)`` with ``0 <= K < N``; ``'auto'``: from the cluster job array
    (:func:`shard_from_environment`)."""
    if str(text).strip().lower() == "auto":
        return shard_from_environment(environ)
    try:
        k, n = (int(v) for v in str(text).split("/"))
    except ValueError:
        raise ConfigError(f"--shard must look like K/N (e.g. 0/4) or be 'auto', got {text!r}") \
            from None
    if not (n >= 1 and 0 <= k < n):
        raise ConfigError(f"--shard K/N needs 0 <= K < N, got {text!r}")
    return k, n


def split_name(path):
    """``'emd_1.map.gz'`` → ``('emd_1', '.map')``: stem and extension (``.mrc`` if none)."""
    stem, ext = image_io.split_name(path)
    return stem, ext or ".mrc"


def plan_jobs(files, options, pixel_sizes=None):
    """Assign output paths, apply the shard, and check every output before any work.

    ``pixel_sizes``: file -> pixel size (Å) a STAR file gives, used where the file's own
    header has none.

    Raises
    ------
    OutputError
        An output would overwrite an input, two inputs map to one output, or an output
        exists (without ``overwrite`` or ``skip_existing``).
    """
    k, n = options.shard
    files = list(files)[k::n]
    out_dir = Path(options.out_dir)
    inputs = {Path(f).resolve() for f in files}
    jobs, seen = [], {}
    for f in files:
        stem, _ = split_name(f)
        try:
            header = image_io.read_header(f)
        except CryoEMDenoiseError:
            header = None
        fmt = options.format or (header.format if header else image_io.format_of_name(f))
        outputs = {"denoised": out_dir / image_io.output_name(stem, options.suffix, fmt, f)}
        if options.sigma is not None:
            outputs["noisy"] = out_dir / image_io.output_name(stem, "_noisy", fmt, f)
        if options.png:
            if fmt != "png":  # a PNG output is its own preview
                outputs["png"] = out_dir / f"{stem}{options.suffix}.png"
            outputs["compare"] = out_dir / f"{stem}_compare.png"
            if options.sigma is None:  # a real image: its measured noise spectrum
                outputs["spectrum"] = out_dir / f"{stem}_spectrum.png"
        for role, path in outputs.items():
            if path.resolve() in inputs:
                raise OutputError("would overwrite the input file (use another --out or --suffix)", path)
            if path.resolve() in seen:
                raise OutputError(f"both {seen[path.resolve()]} and {f} would be written here", path)
            seen[path.resolve()] = f
        # (a spectrum plot is not drawn for an image too small to measure)
        skip = options.skip_existing and all(p.exists() for role, p in outputs.items()
                                             if role != "spectrum")
        if not skip:  # with --skip-existing a partly written job is redone over its leftovers
            for path in outputs.values():
                check_output_path(path, overwrite=options.overwrite or options.skip_existing,
                                  protected=inputs)
        jobs.append(Job(Path(f), outputs, skip, header, (pixel_sizes or {}).get(f)))
    if options.sigma is not None and not options.overwrite and not options.skip_existing:
        for name in METRICS_FILES:
            check_output_path(out_dir / name, overwrite=False)
    return jobs


def _pixel_size(header, job, options):
    """The pixel size (Å) a file is denoised at: its header's, else the STAR file's or
    ``--pixel-size``; ``None`` where only a placeholder is known."""
    header = header.with_pixel_size(job.pixel_size or options.pixel_size)
    return None if header.pixel_size_is_placeholder else header.pixel_size


def measure_file(denoiser, job, options):
    """``(plan, prepared)``: a real image's :class:`~cryoem_denoise.inference.conditioning.
    Conditioning` and its first section prepared for the model, or ``None`` under the
    paper's protocol (``--sigma``). :func:`run_jobs` runs it for the next file while the
    model runs the current one."""
    if options.sigma is not None:
        return None
    with image_io.open_sections(job.source, job.header) as (sections, header):
        try:
            mrc.check_section(sections[0], job.source, 0 if header.n_sections > 1 else None)
            plan = denoiser.plan(sections, _pixel_size(header, job, options), options.noise_level)
            return plan, plan.prepare(sections[0], 0)
        except CryoEMDenoiseError as exc:
            raise exc.with_path(job.source) from None


def apply_file(denoiser, job, options, progress=None, noise_levels=None, measured=None):
    """Denoise one file as planned in ``job``; return its metric rows (with ``sigma``).

    Parameters
    ----------
    denoiser : Denoiser
        The model, with the scaling its training data had.
    progress : callable, optional
        Called with the number of tiles done after each batch.
    noise_levels : list, optional
        Receives the file's :class:`FileNoise`.
    measured : tuple, optional
        The file's :func:`measure_file`, if it ran ahead; measured here if not.
    """
    rows, _ = start_file(denoiser, job, options, progress, noise_levels, measured).complete()
    return rows


def start_file(denoiser, job, options, progress=None, noise_levels=None, measured=None,
               behind=None, report_images=False):
    """Run the model over one file; return it as an :class:`_OpenFile` to complete.

    Arguments as :func:`apply_file`'s; ``behind`` (a :class:`_Behind`): each section is
    stitched, restored and written there, in a thread, while the model goes on (else here).
    ``report_images``: :meth:`_OpenFile.complete` also returns the file's report images.
    A failure here leaves nothing behind (the output is removed) and is raised.
    """
    noise_levels = [] if noise_levels is None else noise_levels
    if measured is None:
        measured = measure_file(denoiser, job, options)
    plan, first = measured if measured is not None else (None, None)
    stack = contextlib.ExitStack()
    flow = None
    try:
        sections, header = stack.enter_context(image_io.open_sections(job.source, job.header))
        pixel_size = _pixel_size(header, job, options)
        header = header.with_pixel_size(job.pixel_size or options.pixel_size)
        if pixel_size is not None:
            denoiser.check_pixel_size(pixel_size)
        n, ny, nx = header.shape
        shape = (ny, nx) if header.kind == "image" else (n, ny, nx)
        fmt = options.format or header.format
        common = dict(kind=header.kind, dtype=image_io.default_output_dtype(header, fmt, options.dtype),
                      voxel_size=header.voxel_size, origin=header.origin,
                      overwrite=options.overwrite or options.skip_existing, protected=[job.source])
        out = stack.enter_context(image_io.create_image(
            job.outputs["denoised"], shape, fmt, label=f"denoised from {job.source.name}",
            **common)).reshape(n, ny, nx)
        noisy_out = None
        if options.sigma is not None:
            noisy_out = stack.enter_context(image_io.create_image(
                job.outputs["noisy"], shape, fmt,
                label=f"{job.source.name} + noise sigma {options.sigma:g}", **common))
            noisy_out = noisy_out.reshape(n, ny, nx)
        try:
            flow = _FileFlow(denoiser, job.source, sections, out, noisy_out, options, plan, first,
                             behind)
            level, how = noise_level_for(denoiser, sections, flow.affine_kept, options, plan)
        except CryoEMDenoiseError as exc:
            raise exc.with_path(job.source) from None
        flow.level = level
        model_shape = plan.model_shape((ny, nx)) if plan else (ny, nx)
        denoiser.tiles.denoise_stream(n, model_shape, flow.prepare, flow.target, flow.finish,
                                      progress, flow.submit)
        noise = FileNoise(job.source, level, how, plan.spectrum if plan else None,
                          bool(plan and plan.whiten), plan.factor if plan else 1.0,
                          flow.outliers, measured=plan is not None)
    except BaseException as exc:
        if flow is not None:  # sections still being written into the output: let them end
            flow.wait()
        stack.__exit__(type(exc), exc, exc.__traceback__)  # removes the partial outputs
        raise
    noise_levels.append(noise)
    return _OpenFile(denoiser, job, options, stack, flow, noise, report_images)


class _OpenFile:
    """A file the model is done with, its outputs still open (see :func:`start_file`)."""

    def __init__(self, denoiser, job, options, stack, flow, noise, report_images):
        self.denoiser, self.job, self.options = denoiser, job, options
        self.stack, self.flow, self.noise = stack, flow, noise
        self.report_images = report_images

    def complete(self):
        """Wait for the sections written behind, move the outputs into place, draw the
        previews; return ``(metric rows, report images or None)``. If a section failed,
        the outputs are removed and its error raised."""
        try:
            self.flow.wait(check=True)
        except BaseException as exc:
            self.stack.__exit__(type(exc), exc, exc.__traceback__)
            raise
        self.stack.close()  # the outputs, complete, move into place
        if self.options.png:
            _previews(self.job, self.options, self.noise)
        images = _report_images(self.denoiser, self.job) if self.report_images else None
        return self.flow.rows, images


#: With a GPU, files in each stage at once by default (:func:`stage_workers`).
GPU_WORKERS = 4


def stage_workers(denoiser):
    """Files read ahead, and completed behind, at once: ``InferenceConfig.workers``, or by
    default 1 on a CPU (the network uses every core; the stages only take from it) and
    :data:`GPU_WORKERS` with a GPU (the CPU stages set the rate)."""
    return denoiser.inference.workers or (GPU_WORKERS if backend.gpus() else 1)


#: Batches (each one batch of the model's results) and file completions queued behind the
#: model, at most (bounded memory: 16 MB per batch of 16 tiles of 512²).
BEHIND_QUEUE = 4


class _Behind:
    """One lane of work done behind the model, in one thread (each batch's results
    stitched, each section restored and written, then its file completed) while the model
    runs the next tiles; at most :data:`BEHIND_QUEUE` items wait, so memory stays bounded."""

    def __init__(self):
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cryoem-denoise-behind")
        self._queued = collections.deque()

    def submit(self, fn, *args):
        """``fn(*args)`` in the thread, in order; waits while the queue is full. Returns its
        future (the caller reads its outcome)."""
        while len(self._queued) >= BEHIND_QUEUE:
            wait([self._queued.popleft()])
        future = self._pool.submit(fn, *args)
        self._queued.append(future)
        return future

    def close(self):
        """Wait for everything submitted (outputs being completed are never cut short)."""
        self._pool.shutdown(wait=True)


class _FileFlow:
    """One file's sections on their way through :meth:`TileDenoiser.denoise_stream`.

    :meth:`prepare` hands over section ``k`` (scaled as the model expects; under the
    paper's protocol, the clean reference with noise added, the noisy image written),
    :meth:`target` gives the array its result is stitched into, and :meth:`finish` maps
    the result back to the file's units (and scores it under the protocol). Sections are
    in flight between :meth:`prepare` and :meth:`finish`.
    """

    def __init__(self, denoiser, source, sections, out, noisy_out, options, plan=None,
                 first=None, behind=None):
        self.denoiser, self.source, self.sections = denoiser, Path(source), sections
        #: Where batches are stitched and sections restored and written (a
        #: :class:`_Behind`; None: here).
        self.behind = behind
        self._written = []  # futures of the batches handed to ``behind``
        self.out, self.noisy_out, self.options = out, noisy_out, options
        #: The file's conditioning (a real image), or None (the paper's protocol).
        self.plan = plan
        self._first = first  # section 0 prepared ahead (measure_file)
        #: Hot and dead pixels replaced so far.
        self.outliers = 0
        #: The noise sigma fed to a model with a noise-level input (None: none, or estimated).
        self.level = None
        #: Metric rows (the paper's protocol).
        self.rows = []
        # a clean reference (--sigma) is scaled like the training images, a noisy input
        # like noisy images (DataConfig.noisy_intensity)
        self._noisy_input = options.sigma is None
        self._kept = {}       # affines computed for the noise estimate, used once more
        self._in_flight = {}  # k -> (affine, clean, noisy) between prepare and finish

    def affine(self, k):
        """Section ``k``'s affine to [0, 255] (one computed earlier is used once)."""
        if k in self._kept:
            return self._kept.pop(k)
        return self.denoiser.affine(self.sections[k], noisy=self._noisy_input)

    def affine_kept(self, k):
        """:meth:`affine`, kept for the section's own turn (no second intensity pass)."""
        self._kept[k] = self.affine(k)
        return self._kept[k]

    def prepare(self, k):
        section, options = self.sections[k], self.options
        try:
            if k == 0 and self._first is not None:  # checked and prepared ahead
                prepared, self._first = self._first, None
            elif self.plan is not None:
                mrc.check_section(section, self.source, k if len(self.sections) > 1 else None)
                prepared = self.plan.prepare(section, k)
            else:
                mrc.check_section(section, self.source, k if len(self.sections) > 1 else None)
                affine = self.affine(k)
        except CryoEMDenoiseError as exc:
            raise exc.with_path(self.source) from None
        if self.plan is not None:
            self.outliers += prepared.outliers
            self._in_flight[k] = prepared
            return prepared.image, None, self.level
        clean = affine.forward(section)
        if self.denoiser.config.data.intensity == "percentile":
            np.clip(clean, 0, 255, out=clean)
        noisy = add_protocol_noise(clean, options.sigma, options.seed, self.source.name, k)
        self.noisy_out[k] = affine.inverse(noisy)
        self._in_flight[k] = (affine, clean, noisy)
        return noisy, None, self.level

    def target(self, k):
        if self.plan is not None:  # restored (and resampled) by finish
            return np.empty(self._in_flight[k].image.shape, np.float32)
        # float32 outputs are stitched straight into the memory-mapped file
        if self.out.dtype == np.float32:
            return self.out[k]
        return np.empty(self.out.shape[1:], np.float32)

    def submit(self, fn, *args):
        """Run ``fn(*args)`` (a batch's stitching, then :meth:`finish` of each section it
        completes) behind the model, or here without a :class:`_Behind`."""
        if self.behind is None:
            fn(*args)
        else:
            self._written.append(self.behind.submit(fn, *args))

    def wait(self, check=False):
        """Wait for everything handed behind; ``check``: then raise the first failure."""
        errors = [future.exception() for future in self._written]
        self._written.clear()
        errors = [e for e in errors if e is not None]
        if check and errors:
            raise errors[0]

    def finish(self, k, result):
        if self.plan is not None:
            restored = self.plan.restore(result, self._in_flight.pop(k))
            with np.errstate(over="ignore"):
                self.out[k] = restored
            return
        affine, clean, noisy = self._in_flight.pop(k)
        if clean is not None:
            row = {"file": self.source.name, "section": k}
            for name, img in (("noisy", noisy), ("denoised", result)):
                for m, v in metrics.all_metrics(clean, img).items():
                    row[f"{name}_{m}"] = v
            self.rows.append(row)
        to_units(result, affine)
        if self.out.dtype != np.float32:
            with np.errstate(over="ignore"):
                self.out[k] = result


def _record_failure(report, job, exc):
    """Report ``exc`` as ``job``'s failure (one line), or raise it if it is not one a single
    file can have."""
    if isinstance(exc, CryoEMDenoiseError):
        message = str(exc.with_path(job.source))
    elif isinstance(exc, OSError):  # not foreseen as one of ours, but still only this file's
        message = f"{exc.filename or job.source}: {describe_os_error(exc)}"
    elif isinstance(exc, MemoryError):
        message = f"{job.source}: out of memory"
    else:
        raise exc
    report.failed.append((job.source, message))


def _first_section(path):
    with image_io.open_sections(path) as (sections, _):
        return np.array(sections[0], np.float32)


def _previews(job, options, noise):
    denoised = _first_section(job.outputs["denoised"])
    if "png" in job.outputs:
        figures.save_panels(job.outputs["png"], [("denoised", denoised)], overwrite=True,
                            protected=[job.source])
    source = _first_section(job.source)
    panels = [("clean (input)" if options.sigma is not None else "input", source)]
    if options.sigma is not None:
        panels.append((f"noisy (sigma {options.sigma:g})", _first_section(job.outputs["noisy"])))
    panels.append(("denoised", denoised))
    if options.sigma is None:  # what was removed: noise only, if all went well
        panels.append(("input - denoised", source - denoised, "own"))
    figures.save_panels(job.outputs["compare"], panels, overwrite=True, protected=[job.source])
    if "spectrum" in job.outputs and noise.spectrum is not None:
        figures.save_figure(figures.noise_spectrum_figure(
            noise.spectrum, f"{job.source.name}: {noise.spectrum.summary()}"),
            job.outputs["spectrum"], overwrite=True, protected=[job.source])


def run_jobs(denoiser, jobs, options, progress=False):
    """Run planned jobs; a failing file is reported in the :class:`Report` and skipped."""
    report = Report()
    todo = [j for j in jobs if not j.skip]
    report.skipped = [j.source for j in jobs if j.skip]
    total_tiles = 0
    for j in todo:
        if j.header is not None:
            shape = j.header.section_shape
            if options.sigma is None:
                shape = denoiser.model_shape(shape, _pixel_size(j.header, j, options))
            total_tiles += j.header.n_sections * denoiser.tiles.count_tiles(shape)
    started = time.perf_counter()
    bar = progress_bar(total_tiles, f"apply ({len(todo)} files)", "tile", progress)
    many = len(jobs) > 1 or options.shard[1] > 1  # a shard is part of a run over many
    images = {}  # source -> its report images, taken as it was completed
    # three stages at once: the next files are read, measured and prepared (measure_file)
    # ahead while the model runs this one, and its results are stitched, restored and
    # written and the previous files' outputs completed behind it, ``workers`` files at a
    # time in each (a file's batches and completion keep to one lane behind, in order);
    # the queues are short, so memory stays bounded and the model waits for neither
    workers = stage_workers(denoiser)
    ahead = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cryoem-denoise-ahead")
    lanes = [_Behind() for _ in range(workers)]
    completing = collections.deque()  # (job, future) of files being completed behind

    def collect():
        job, future = completing.popleft()
        try:
            rows, images[job.source] = future.result()
            report.rows.extend(rows)
            report.done.append(job.source)
        except Exception as exc:  # noqa: BLE001 - reported as this file's failure
            _record_failure(report, job, exc)
            report.noise_levels[:] = [n for n in report.noise_levels if n.path != job.source]

    try:
        pending = collections.deque(ahead.submit(measure_file, denoiser, job, options)
                                    for job in todo[:workers])
        for i, job in enumerate(todo):
            measuring = pending.popleft()
            if i + workers < len(todo):
                pending.append(ahead.submit(measure_file, denoiser, todo[i + workers], options))
            bar.set_postfix_str(job.source.name)
            lane = lanes[i % workers]
            try:
                opened = start_file(denoiser, job, options, bar.update, report.noise_levels,
                                    measuring.result(), lane, report_images=many)
            except Exception as exc:  # noqa: BLE001 - reported as this file's failure
                _record_failure(report, job, exc)
                continue
            completing.append((job, lane.submit(opened.complete)))
            while len(completing) > workers:
                collect()
        while completing:
            collect()
    finally:  # interrupted: do not wait for the next files' measurements; let files the
        # model is done with be completed
        ahead.shutdown(wait=False, cancel_futures=True)
        for lane in lanes:
            lane.close()
    bar.close()
    report.seconds = time.perf_counter() - started
    report.tiles = total_tiles
    if many and (report.done or report.skipped):  # many files: a report to scan
        report.entries = [_report_entry(denoiser, job, report, images.get(job.source))
                          for job in jobs]
        done = len(report.done) + len(report.skipped)
        try:
            k, n = options.shard
            report.report_files = write_report(
                options.out_dir, report.entries, summary=f"{done} of {len(jobs)} file(s) "
                f"denoised into {options.out_dir}, {len(report.failed)} failed, in "
                f"{report.seconds:.1f} s.", stem=f"report_shard{k}of{n}" if n > 1 else "report")
        except CryoEMDenoiseError as exc:  # the images are written; the report is extra
            warnings.warn(InputWarning(f"no report written: {exc}"), stacklevel=2)
    if options.sigma is not None and (report.rows or report.skipped):
        write_metrics(options.out_dir, report.rows, options)
    return report


def summarise(rows):
    """Per-file means and the overall mean of metric rows."""
    keys = [k for k in rows[0] if k not in ("file", "section")] if rows else []
    per_file = {}
    for r in rows:
        per_file.setdefault(r["file"], []).append(r)
    files = [{"file": f, "sections": len(rs), **{k: float(np.mean([r[k] for r in rs])) for k in keys}}
             for f, rs in per_file.items()]
    overall = {"file": "mean", "sections": len(rows),
               **{k: float(np.mean([r[k] for r in rows])) for k in keys}}
    spread = {k: float(np.std([r[k] for r in rows])) for k in keys}
    return files, overall, spread


def write_metrics(out_dir, rows, options):
    """Write metrics.json/.csv/.md for the --sigma protocol (merging rows of skipped files)."""
    out_dir = Path(out_dir)
    old = out_dir / "metrics.json"
    if options.skip_existing and old.exists():
        done = {r["file"] for r in rows}
        rows = [r for r in json.loads(old.read_text())["rows"] if r["file"] not in done] + rows
    if not rows:
        return
    files, overall, spread = summarise(rows)
    record = {"sigma": options.sigma, "seed": options.seed, "scale": "[0, 255]",
              "rows": rows, "per_file": files, "mean": overall, "std": spread}
    overwrite = options.overwrite or options.skip_existing
    write_text(out_dir / "metrics.json", json.dumps(record, indent=2) + "\n", overwrite=overwrite)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    write_text(out_dir / "metrics.csv", buf.getvalue(), overwrite=overwrite)
    write_text(out_dir / "metrics.md", metrics_markdown(files, overall, spread, options.sigma),
               overwrite=overwrite)


def metrics_markdown(files, overall, spread, sigma):
    """A Markdown table: metrics of the noisy and denoised images, per file and mean."""
    names = [("mae", "MAE ↓"), ("mse", "MSE ↓"), ("rmse", "RMSE ↓"), ("psnr", "PSNR ↑ (dB)"),
             ("ssim", "SSIM ↑")]
    lines = [f"Gaussian noise sigma = {sigma:g} on the [0, 255] scale; "
             f"{overall['sections']} image(s).", "",
             "| metric | noisy | denoised |", "|---|---|---|"]
    for key, label in names:
        lines.append(f"| {label} | {overall['noisy_' + key]:.4g} ± {spread['noisy_' + key]:.2g} "
                     f"| {overall['denoised_' + key]:.4g} ± {spread['denoised_' + key]:.2g} |")
    lines += ["", "| file | images | PSNR noisy | PSNR denoised | SSIM noisy | SSIM denoised |",
              "|---|---|---|---|---|---|"]
    for f in files:
        lines.append(f"| {f['file']} | {f['sections']} | {f['noisy_psnr']:.2f} | "
                     f"{f['denoised_psnr']:.2f} | {f['noisy_ssim']:.3f} | {f['denoised_ssim']:.3f} |")
    return "\n".join(lines) + "\n"


def star_output_paths(lists, options):
    """Where the denoised version of each STAR list goes: ``denoised_micrographs.star`` or
    ``denoised_particles.star`` in the output folder (``NAME_denoised.star`` for several
    lists; ``_shardKofN`` added in a sharded run), checked before any work.

    Raises
    ------
    OutputError
        Two lists map to one output, or an output exists (without ``overwrite`` or
        ``skip_existing``).
    """
    k, n = options.shard
    shard = f"_shard{k}of{n}" if n > 1 else ""
    paths = []
    for listed in lists:
        if len(lists) == 1:
            kind = "micrographs" if listed.column == "rlnMicrographName" else "particles"
            name = f"denoised_{kind}{shard}.star"
        else:
            name = f"{Path(listed.path).stem}{options.suffix}{shard}.star"
        path = Path(options.out_dir) / name
        if path in paths:
            raise OutputError(f"two STAR lists would be written here ({listed.path.name})", path)
        check_output_path(path, overwrite=options.overwrite or options.skip_existing)
        paths.append(path)
    return paths


def write_star_outputs(lists, paths, jobs, report, options):
    """Write each STAR list with its image column pointing at the denoised files (the rows
    of images that were not denoised are left out); return the rows written per list."""
    done = set(report.done) | set(report.skipped)
    outputs = {job.source: job.outputs["denoised"] for job in jobs if job.source in done}
    return [write_star(listed, outputs, path, overwrite=True)
            for listed, path in zip(lists, paths)]


def _report_images(denoiser, job):
    """What the report shows of a written file: ``(shape, pixel size, flags, whiteness,
    kept mid band, thumbnails)`` from the input's and the output's first section, or
    ``None`` if either cannot be read (a report row, not a reason to fail the run)."""
    try:
        with image_io.open_sections(job.source, job.header) as (sections, header):
            n, ny, nx = header.shape
            shape = f"{nx}x{ny}" + (f"x{n}" if n > 1 else "")
            size = header.with_pixel_size(job.pixel_size).pixel_size
            pixel_size = None if header.pixel_size_is_placeholder and not job.pixel_size \
                else size
            image = np.asarray(sections[0], np.float32)
        with image_io.open_sections(job.outputs["denoised"]) as (out_sections, _):
            output = np.asarray(out_sections[0], np.float32)
    except (CryoEMDenoiseError, OSError):
        return None
    flags = image_flags(image)
    trained = denoiser.trained_pixel_sizes
    if pixel_size and trained and not trained[0] <= pixel_size <= trained[1]:
        flags.append(f"pixel size outside the trained {trained[0]:g}-{trained[1]:g} Å")
    whiteness, kept = spectrum_summary(image, output)
    if whiteness < COLOURED:
        flags.append("coloured noise")
    return shape, pixel_size, flags, whiteness, kept, thumbnails(image, output)


def _report_entry(denoiser, job, report, images=None):
    """The report's row of one input (:mod:`cryoem_denoise.inference.report`); ``images``:
    its :func:`_report_images` if they were taken when the file was written."""
    failed = dict(report.failed)
    if job.source in failed:
        return ReportEntry(job.source.name, "failed", message=failed[job.source],
                           flags=["failed"])
    entry = ReportEntry(job.source.name, "skipped" if job.skip else "denoised")
    levels = {noise.path: (noise.level, noise.how) for noise in report.noise_levels
              if noise.level is not None}
    if job.source in levels:
        entry.noise_level, entry.noise_how = levels[job.source]
        low, high = denoiser.sigma_range
        if not low <= entry.noise_level <= high:
            entry.flags.append(f"noise outside the trained {low:g}-{high:g}")
    images = images or _report_images(denoiser, job)
    if images is None:
        entry.flags.append("thumbnails unavailable")
        return entry
    entry.shape, entry.pixel_size, flags, entry.whiteness, entry.kept_mid_band, \
        entry.thumbnails = images
    entry.flags += flags
    return entry

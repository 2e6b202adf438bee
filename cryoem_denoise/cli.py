"""The ``cryoem-denoise`` command line.

Thin by design: each command parses options, calls library functions, and prints. Known
problems (:class:`~cryoem_denoise.errors.CryoEMDenoiseError`) become one line on stderr
and exit status 2; ``--debug`` shows the traceback instead.
"""

import json
import sys

import click
import numpy as np

from cryoem_denoise import __version__
from cryoem_denoise.errors import CryoEMDenoiseError, InputError


def error_line(exc):
    """Print a one-line error message to stderr."""
    click.echo(f"cryoem-denoise: error: {exc}", err=True)


def report_and_continue(exc):
    """For commands that go on after a bad file: print one line, or re-raise with --debug."""
    ctx = click.get_current_context(silent=True)
    if ctx is not None and (ctx.find_root().obj or {}).get("debug"):
        raise exc
    error_line(exc)


class _Group(click.Group):
    """A click group that turns user-facing errors into one line and exit status 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except CryoEMDenoiseError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            error_line(exc)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("cryoem-denoise: interrupted", err=True)
            ctx.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cryoem-denoise")
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
@click.pass_context
def cli(ctx, debug):
    """Denoise cryo-EM images (MRC/MRCS) with a Wasserstein GAN (Ouyang et al., 2020)."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def _fmt(value):
    return f"{value:.6g}"


def _info_record(path):
    from cryoem_denoise import mrc

    with mrc.open_sections(path) as (sections, header):
        stats = mrc.pixel_statistics(sections)
        problem = None
        try:
            mrc.check_sections(sections, path)
        except InputError as exc:
            problem = exc.message
    return header, stats, problem


def _print_info(header, stats, problem):
    n, ny, nx = header.shape
    vx, vy, vz = header.voxel_size
    what = {"image": "single image", "stack": f"stack of {n} images",
            "volume": f"volume of {n} sections"}[header.kind]
    voxel = f"{_fmt(vx)} x {_fmt(vy)} A" if vx else "unknown"
    if header.kind == "volume" and vz:
        voxel += f" x {_fmt(vz)} A"
    ext = f"{header.exttyp or 'untyped'}, {header.extended_header_bytes} bytes" \
        if header.extended_header_bytes else "none"
    click.echo(header.path)
    click.echo(f"  kind:     {what}, {nx} x {ny} pixels (x by y)")
    click.echo(f"  mode:     {header.mode} ({header.dtype})")
    click.echo(f"  voxel:    {voxel}")
    click.echo(f"  extended: {ext}")
    click.echo(f"  pixels:   min {_fmt(stats['min'])}  max {_fmt(stats['max'])}  "
               f"mean {_fmt(stats['mean'])}  std {_fmt(stats['std'])}")
    click.echo(f"  valid:    {'yes' if problem is None else 'no: ' + problem}")


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per file.")
def info(files, as_json):
    """Show shape, mode, voxel size and pixel statistics of MRC FILES, and check them.

    Exit status 2 if any file is unreadable or invalid (the others are still shown).
    """
    from dataclasses import asdict

    failed = False
    for path in files:
        try:
            header, stats, problem = _info_record(path)
        except CryoEMDenoiseError as exc:
            report_and_continue(exc)
            failed = True
            continue
        if problem is not None:
            failed = True
        if as_json:
            click.echo(json.dumps({**asdict(header), "statistics": stats, "valid": problem is None,
                                   "problem": problem}))
        else:
            _print_info(header, stats, problem)
        if problem is not None:
            error_line(InputError(problem, path))
    if failed:
        sys.exit(2)


@cli.command()
@click.argument("names", nargs=-1)
@click.option("--list", "list_only", is_flag=True, help="List the sample files and their sources.")
@click.option("--cache", type=click.Path(file_okay=False),
              help="Cache folder (default: $CRYOEM_DENOISE_DATA or ~/.cache/cryoem-denoise).")
def fetch(names, list_only, cache):
    """Fetch the real sample data (micrographs, EMDB maps, 6zu5 model) into the cache.

    NAMES picks files (default: all). Files already cached and verified are not
    downloaded again; the paths are printed, one per line.
    """
    from cryoem_denoise import datasets

    if list_only:
        for s in datasets.SAMPLES.values():
            click.echo(f"{s.name:20s} {s.kind:10s} {s.source.sdist_prefix} ({s.source.licence}): "
                       f"{s.description}")
        return
    for path in datasets.fetch(names or None, cache=cache).values():
        click.echo(str(path))


# -- fit ---------------------------------------------------------------------------------
#: CLI option → (config section, field); each is applied only when given.
_FIT_OPTIONS = {
    "tile": ("model", "tile"), "ngf": ("model", "ngf"), "depth": ("model", "depth"),
    "ndf": ("model", "ndf"), "dropout": ("model", "dropout"), "residual": ("model", "residual"),
    "critic_layers": ("model", "critic_layers"),
    "critic_conditional": ("model", "critic_conditional"),
    "sigma": ("data", "sigma"), "intensity": ("data", "intensity"), "augment": ("data", "augment"),
    "validation_fraction": ("data", "validation_fraction"),
    "steps": ("train", "steps"), "batch_size": ("train", "batch_size"),
    "g_optimizer": ("train", "g_optimizer"), "g_lr": ("train", "g_lr"),
    "d_optimizer": ("train", "d_optimizer"), "d_lr": ("train", "d_lr"),
    "clip": ("train", "clip"), "n_critic": ("train", "n_critic"),
    "gray_lambda": ("train", "gray_lambda"), "gray_scale": ("train", "gray_scale"),
    "gray_reduction": ("train", "gray_reduction"), "precision": ("train", "precision"),
    "strategy": ("train", "strategy"), "seed": ("train", "seed"),
    "log_every": ("train", "log_every"), "validate_every": ("train", "validate_every"),
    "checkpoint_every": ("train", "checkpoint_every"),
    "sim_fields": ("simulation", "fields"), "pixel_size": ("simulation", "pixel_size"),
}


def _build_fit_config(base, experiment, options):
    """``base`` with a Table 2 experiment and the options that were given applied."""
    cfg = base
    if experiment:
        cfg.train.apply_experiment(experiment)
    for name, value in options.items():
        if value is None or name not in _FIT_OPTIONS:
            continue
        section, field = _FIT_OPTIONS[name]
        setattr(getattr(cfg, section), field, value)
    return cfg.validate()


def _quiet_tensorflow():
    """Import TensorFlow without its start-up notices, unless --debug."""
    ctx = click.get_current_context(silent=True)
    if not (ctx is not None and (ctx.find_root().obj or {}).get("debug")):
        from cryoem_denoise.precision import import_tensorflow_quietly

        import_tensorflow_quietly()


@cli.command()
@click.argument("inputs", nargs=-1, type=click.Path())
@click.option("--out", "-o", "out", required=True, type=click.Path(file_okay=False),
              help="Model folder to create (or to continue with --resume).")
@click.option("--noisy", multiple=True, type=click.Path(),
              help="Paired mode: a noisy file for each clean INPUT, in the same order (repeat).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="Start from this config.json (options given here override it).")
@click.option("--tiny", is_flag=True, help="Small, fast preset (64x64 tiles, 8 filters) for trials.")
@click.option("--experiment", type=click.Choice(["1011", "1010", "1009", "1005"]),
              help="Optimisers of one of the paper's Table 2 experiments.")
@click.option("--steps", type=int, help="Generator steps in all  [10000]")
@click.option("--batch-size", type=int, help="Global batch size  [4]")
@click.option("--sigma", help="Noise sigma on [0,255]: '40' or a range '10:80'  [10:80]")
@click.option("--tile", type=int, help="Training tile side  [256]")
@click.option("--ngf", type=int, help="Generator filters in the first layer  [64]")
@click.option("--depth", type=int, help="U-Net encoder blocks  [8]")
@click.option("--ndf", type=int, help="Critic filters in the first layer  [64]")
@click.option("--critic-layers", type=int, help="PatchGAN layers  [3]")
@click.option("--critic-conditional/--critic-unconditional", default=None,
              help="Critic sees the noisy input too  [conditional]")
@click.option("--dropout", type=float, help="Decoder dropout  [0.5]")
@click.option("--residual/--no-residual", default=None, help="Global residual learning  [off]")
@click.option("--g-optimizer", type=click.Choice(["adam", "sgd", "rmsprop"]), help="[adam]")
@click.option("--g-lr", type=float, help="Generator learning rate  [1e-4]")
@click.option("--d-optimizer", type=click.Choice(["adam", "sgd", "rmsprop"]), help="[sgd]")
@click.option("--d-lr", type=float, help="Critic learning rate  [1e-5]")
@click.option("--clip", type=float, help="Critic weight clipping c  [0.001]")
@click.option("--n-critic", type=int, help="Critic updates per generator update  [1]")
@click.option("--gray-lambda", type=float, help="Weight of the gray constraint  [0.1]")
@click.option("--gray-scale", type=click.Choice(["model", "unit255"]), help="[model]")
@click.option("--gray-reduction", type=click.Choice(["sum", "mean"]), help="[sum]")
@click.option("--intensity", type=click.Choice(["minmax", "percentile"]), help="[minmax]")
@click.option("--augment/--no-augment", default=None, help="Random flips and rotations  [on]")
@click.option("--validation-fraction", type=float, help="Held-out share of the data  [0.1]")
@click.option("--precision", type=click.Choice(["auto", "float32", "mixed_float16",
                                                "mixed_bfloat16"]), help="[auto]")
@click.option("--strategy", type=click.Choice(["auto", "default", "mirrored", "multiworker"]),
              help="tf.distribute strategy  [auto]")
@click.option("--seed", type=int, help="Random seed  [0]")
@click.option("--log-every", type=int, help="Steps between loss records  [500]")
@click.option("--validate-every", type=int, help="Steps between validation scores  [1000]")
@click.option("--checkpoint-every", type=int, help="Steps between checkpoints  [500]")
@click.option("--simulate", "sim_sources", multiple=True, type=click.Path(),
              help="Also train on fields simulated from this atomic model or map (repeat).")
@click.option("--sim-fields", type=int, help="Fields simulated per --simulate source  [600]")
@click.option("--pixel-size", type=float, help="Pixel size of simulated fields, Å  [2.0]")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@click.option("--overwrite", is_flag=True, help="Replace a model already in --out.")
@click.option("--stop-after", type=int, hidden=True)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def fit(inputs, out, noisy, config_file, tiny, experiment, sim_sources, resume, overwrite,
        stop_after, quiet, **options):
    """Train the WGAN denoiser on clean MRC INPUTS (files or folders) into --out.

    Noise of --sigma is added on the fly (the paper's protocol); with --noisy, pairs are
    used as they are. --simulate adds fields simulated from a structure (generated once
    into the cache). Without INPUTS or --simulate, the built-in set is used: fields
    simulated from the 6zu5 ribosome plus the two real sample micrographs.
    """
    from pathlib import Path

    from cryoem_denoise import datasets, model_store, mrc
    from cryoem_denoise.config import FitConfig, tiny_config

    _quiet_tensorflow()
    if resume:
        if config_file or tiny:
            raise click.UsageError("--resume continues the saved config; drop --config/--tiny")
        base = model_store.load_config(out)
    elif config_file:
        try:
            base = FitConfig.from_json(Path(config_file).read_text())
        except OSError as exc:
            from cryoem_denoise.errors import InputError
            raise InputError(exc.strerror or "cannot read", config_file) from None
    else:
        base = tiny_config() if tiny else FitConfig()
    cfg = _build_fit_config(base, experiment, options)
    from cryoem_denoise import training

    from cryoem_denoise.simulate import cached_fields

    noisy_paths = mrc.find_mrc_files(noisy) if noisy else None
    clean = mrc.find_mrc_files(inputs) if inputs else []
    if noisy_paths and sim_sources:
        raise click.UsageError("--simulate cannot be combined with --noisy pairs")
    for source in sim_sources:
        clean.append(cached_fields(source, cfg.simulation, cfg.train.seed, progress=not quiet))
    if resume and not clean:
        clean, noisy_paths = training.saved_inputs(out)
    elif not clean:
        click.echo("no inputs given: training on simulated 6zu5 ribosome fields and the sample "
                   "micrographs", err=True)
        clean = datasets.default_training_inputs(cfg.simulation, cfg.train.seed,
                                                 progress=not quiet)
    meta = training.fit(cfg, clean, out, noisy_paths=noisy_paths, resume=resume,
                        overwrite=overwrite, progress=not quiet, stop_after=stop_after)
    last = meta["validation"][-1] if meta["validation"] else {}
    summary = f"model in {out}: {meta['steps']} steps, {meta['train_seconds']:.0f} s"
    if last:
        summary += (f", validation PSNR {last['val_psnr']:.2f} dB (noisy {last['val_psnr_noisy']:.2f}),"
                    f" SSIM {last['val_ssim']:.3f}")
    click.echo(summary)


# -- apply -------------------------------------------------------------------------------
@cli.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--model", "-m", "model_dir", type=click.Path(),
              help="Model folder written by `fit` (default: the model shipped with the package).")
@click.option("--out", "-o", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Output folder (created if missing).")
@click.option("--sigma", type=float,
              help="Paper's protocol: add noise of this sigma (on [0,255]) to each input, taken "
                   "as the clean reference, denoise, and write noisy images and a metrics table.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the --sigma noise.")
@click.option("--png", is_flag=True, help="Also write a PNG preview and a side-by-side figure.")
@click.option("--format", "dtype", type=click.Choice(["float32", "float16"]), default="float32",
              show_default=True, help="Output pixel type.")
@click.option("--suffix", default="_denoised", show_default=True,
              help="Appended to each input's name for its output.")
@click.option("--tile", type=int, default=256, show_default=True,
              help="Tile side (a multiple of 2**depth; larger than trained is allowed).")
@click.option("--overlap", type=int, default=32, show_default=True,
              help="Pixels shared by neighbouring tiles (blended).")
@click.option("--batch-size", type=int, default=8, show_default=True, help="Tiles per batch.")
@click.option("--precision", type=click.Choice(["auto", "float32", "mixed_float16",
                                                "mixed_bfloat16"]), default="auto",
              show_default=True, help="auto: mixed_float16 on a GPU, float32 on a CPU.")
@click.option("--skip-existing", is_flag=True, help="Skip inputs whose outputs all exist.")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
@click.option("--shard", default="0/1", show_default=True,
              help="K/N: process every N-th file starting at K (0-based; for job arrays).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def apply(inputs, model_dir, out_dir, sigma, seed, png, dtype, suffix, tile, overlap, batch_size,
          precision, skip_existing, overwrite, shard, quiet):
    """Denoise MRC INPUTS (files, folders, globs) with a trained model into --out.

    2D images, .mrcs stacks (section by section) and volumes (as sections) of any size are
    tiled, denoised in batches, blended and written in the input's units with its voxel size.
    A file that cannot be read is reported and skipped (exit status 2 at the end).
    """
    from pathlib import Path

    from cryoem_denoise import apply_files, mrc
    from cryoem_denoise.denoise import InferenceConfig, load_denoiser
    from cryoem_denoise.errors import ConfigError, OutputError
    from cryoem_denoise.noise import SigmaSpec

    if sigma is not None:
        sigma = SigmaSpec.parse(sigma).low
    options = apply_files.ApplyOptions(
        out_dir=Path(out_dir), suffix=suffix, dtype=dtype, png=png, sigma=sigma, seed=seed,
        overwrite=overwrite, skip_existing=skip_existing, shard=apply_files.parse_shard(shard))
    if overwrite and skip_existing:
        raise ConfigError("choose one of --overwrite and --skip-existing")
    files = mrc.find_mrc_files(inputs)
    try:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the output folder ({exc.strerror})", out_dir) from None
    jobs = apply_files.plan_jobs(files, options)
    _quiet_tensorflow()
    denoiser, fit_cfg = load_denoiser(_default_model_or(model_dir),
                                      InferenceConfig(tile, overlap, batch_size, precision))
    report = apply_files.run_jobs(denoiser, fit_cfg.data, jobs, options, progress=not quiet)
    for path, message in report.failed:
        error_line(message)
    rate = report.tiles / report.seconds if report.seconds else 0.0
    click.echo(f"{len(report.done)} file(s) denoised into {out_dir}"
               + (f", {len(report.skipped)} skipped (outputs exist)" if report.skipped else "")
               + (f", {len(report.failed)} failed" if report.failed else "")
               + f" in {report.seconds:.1f} s ({rate:.1f} tiles/s)")
    if report.rows:
        files, overall, _ = apply_files.summarise(report.rows)
        click.echo(f"sigma {sigma:g}: PSNR {overall['noisy_psnr']:.2f} -> {overall['denoised_psnr']:.2f} dB, "
                   f"SSIM {overall['noisy_ssim']:.3f} -> {overall['denoised_ssim']:.3f} "
                   f"(metrics.md in {out_dir})")
    if report.failed:
        sys.exit(2)


# -- simulate ----------------------------------------------------------------------------
@cli.command()
@click.argument("source", type=click.Path())
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False),
              help="Output stack (.mrcs) of clean fields.")
@click.option("--n", "n_fields", type=int, default=10, show_default=True, help="Fields to simulate.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--pixel-size", type=float, default=2.0, show_default=True, help="Å per pixel.")
@click.option("--field", type=int, default=512, show_default=True, help="Field side, pixels.")
@click.option("--particles", type=int, default=6, show_default=True, help="Particles per field.")
@click.option("--voltage", type=float, default=300.0, show_default=True, help="kV.")
@click.option("--cs", type=float, default=2.7, show_default=True, help="Spherical aberration, mm.")
@click.option("--amplitude-contrast", type=float, default=0.1, show_default=True)
@click.option("--defocus", default="1.0:2.5", show_default=True,
              help="Underfocus range MIN:MAX in µm (or one value).")
@click.option("--astigmatism", type=float, default=0.05, show_default=True,
              help="Max half-difference of the two defoci, µm.")
@click.option("--b-factor", type=float, default=50.0, show_default=True, help="Envelope, Å².")
@click.option("--ice", type=float, default=0.3, show_default=True, help="Background strength.")
@click.option("--threshold", type=float, help="Density maps: voxels above this value.")
@click.option("--png", is_flag=True, help="Also write a PNG of the first fields.")
@click.option("--overwrite", is_flag=True)
@click.option("--quiet", "-q", is_flag=True)
def simulate(source, out, n_fields, seed, pixel_size, field, particles, voltage, cs,
             amplitude_contrast, defocus, astigmatism, b_factor, ice, threshold, png, overwrite,
             quiet):
    """Simulate clean cryo-EM fields from SOURCE (PDB/mmCIF model or MRC density map).

    Random orientations, non-overlapping particles on a smooth ice background, the CTF of
    the given microscope, scaled to [0, 255]; reproducible with --seed.
    """
    import time
    from pathlib import Path

    from cryoem_denoise import simulate as sim
    from cryoem_denoise.config import SimulationConfig

    try:
        parts = [float(v) for v in defocus.split(":")]
    except ValueError:
        raise click.BadParameter(f"expected MIN:MAX in µm, got {defocus!r}", param_hint="--defocus")
    lo, hi = (parts[0], parts[-1]) if len(parts) in (1, 2) else (None, None)
    if lo is None:
        raise click.BadParameter(f"expected MIN:MAX in µm, got {defocus!r}", param_hint="--defocus")
    cfg = SimulationConfig(pixel_size=pixel_size, field=field, particles=particles,
                           voltage_kv=voltage, cs_mm=cs, amplitude_contrast=amplitude_contrast,
                           defocus_um=(lo, hi), astigmatism_um=astigmatism, b_factor=b_factor,
                           ice=ice, map_threshold=threshold, fields=n_fields).validate()
    if n_fields < 1:
        raise click.BadParameter("must be at least 1", param_hint="--n")
    started = time.perf_counter()
    path = sim.simulate_to_file(source, out, n_fields, cfg, seed, overwrite=overwrite,
                                progress=not quiet)
    seconds = time.perf_counter() - started
    click.echo(f"{n_fields} field(s) of {field}x{field} px written to {path} "
               f"({n_fields / seconds:.1f} fields/s)")
    if png:
        from cryoem_denoise import figures, mrc

        with mrc.open_sections(path) as (fields, _):
            panels = [(f"field {i}", np.asarray(fields[i])) for i in range(min(3, n_fields))]
            png_path = Path(out).with_suffix(".png")
            figures.save_panels(png_path, panels, overwrite=overwrite, shared_contrast=False)
        click.echo(f"preview: {png_path}")


# -- evaluate ----------------------------------------------------------------------------
def _default_model_or(model_dir):
    from cryoem_denoise.model_store import default_model_dir

    return model_dir or default_model_dir()


@cli.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--model", "-m", "model_dir", type=click.Path(),
              help="Model folder for the 'gan' method (default: the shipped model).")
@click.option("--out", "-o", "out_dir", required=True, type=click.Path(file_okay=False))
@click.option("--sigma", "sigmas", default="10,25,40,80", show_default=True,
              help="Noise levels on [0,255], comma-separated.")
@click.option("--methods", default="gan,bm3d,ksvd,gaussian,noisy", show_default=True,
              help="Comma-separated: gan, bm3d, ksvd, gaussian, noisy.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--crop", type=int, help="Centre-crop every image to this side first.")
@click.option("--max-images", type=int, help="Use at most this many images.")
@click.option("--jobs", type=int, help="Processes for the classical methods [CPU count].")
@click.option("--quiet", "-q", is_flag=True)
def evaluate(inputs, model_dir, out_dir, sigmas, methods, seed, crop, max_images, jobs, quiet):
    """Compare the GAN with BM3D, K-SVD, Gaussian blur and the noisy input on clean INPUTS.

    Writes results.json/.csv, table.md (the paper's Table 1 layout, per sigma), fig6_*.png
    and fig10.png into --out. Finished cells are kept in cells.jsonl: rerunning the same
    command resumes an interrupted run.
    """
    from cryoem_denoise import evaluate as ev, mrc

    cfg = ev.EvaluateConfig(sigmas=tuple(ev.parse_list(sigmas, float)),
                            methods=tuple(ev.parse_list(methods)), seed=seed, crop=crop,
                            max_images=max_images, jobs=jobs).validate()
    files = mrc.find_mrc_files(inputs)
    if "gan" in cfg.methods:
        _quiet_tensorflow()
        model_dir = _default_model_or(model_dir)
    results = ev.evaluate(files, out_dir, cfg, model_dir=model_dir, progress=not quiet)
    click.echo(ev.markdown_table(results, cfg))
    click.echo(f"results in {out_dir}")


# -- experiments -------------------------------------------------------------------------
@cli.command()
@click.argument("inputs", nargs=-1)
@click.option("--out", "-o", "out_dir", required=True, type=click.Path(file_okay=False))
@click.option("--names", default="1011,1010,1009,1005", show_default=True,
              help="Which of the paper's Table 2 experiments to run.")
@click.option("--tiny", is_flag=True, help="Small, fast preset (64x64 tiles, 8 filters).")
@click.option("--steps", type=int, help="Steps per experiment (the same budget for all).")
@click.option("--batch-size", type=int)
@click.option("--sigma")
@click.option("--seed", type=int)
@click.option("--log-every", type=int)
@click.option("--validate-every", type=int)
@click.option("--quiet", "-q", is_flag=True)
def experiments(inputs, out_dir, names, tiny, quiet, **options):
    """The paper's optimiser experiments (Table 2): same data, seed and budget per setting.

    Writes OUT/expNNNN model folders, table2.md/.json, fig7.png (loss curves) and fig8.png
    (PSNR/SSIM bars). Finished experiments are reused and interrupted ones resumed.
    """
    from cryoem_denoise import datasets, mrc
    from cryoem_denoise import experiments as exps
    from cryoem_denoise.config import FitConfig, tiny_config
    from cryoem_denoise.evaluate import parse_list

    _quiet_tensorflow()
    cfg = _build_fit_config(tiny_config() if tiny else FitConfig(), None, options)
    clean = mrc.find_mrc_files(inputs) if inputs else \
        datasets.default_training_inputs(cfg.simulation, cfg.train.seed, progress=not quiet)
    results = exps.run_experiments(cfg, clean, out_dir, tuple(parse_list(names)),
                                   progress=not quiet)
    click.echo(exps.table2_markdown(results["experiments"]))
    click.echo(f"results in {out_dir}")


def main(argv=None):
    """Console entry point."""
    cli.main(args=argv, prog_name="cryoem-denoise")

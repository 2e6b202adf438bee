"""Commands that use a trained model: ``apply`` and ``evaluate``."""

import sys

import click

from cryoem_denoise.cli.common import (
    cli,
    default_model_or,
    error_line,
    exit_status,
    os_error_message,
    quiet_tensorflow,
    report_and_continue,
    warn_precision,
    warning_line,
)
from cryoem_denoise.cli.options import (
    SEED,
    config_options,
    given_options,
)
from cryoem_denoise.config import EvaluateConfig, InferenceConfig

#: ``--format`` values: file formats, and the pixel types it meant before ``--dtype``.
_FORMATS = ("mrc", "tiff", "tif", "png")
_DTYPES = ("float32", "float16")


def _format_and_dtype(fmt, dtype):
    """Resolve ``--format``/``--dtype`` (``--format float16`` is the old spelling of
    ``--dtype float16``: accepted, with a deprecation note)."""
    from cryoem_denoise.errors import ConfigError

    if fmt is not None:
        fmt = fmt.lower()
        if fmt in _DTYPES:
            warning_line(f"--format {fmt} is deprecated for the pixel type: use --dtype {fmt} "
                         "(--format now chooses the file format: mrc, tiff or png)")
            if dtype is not None and dtype != fmt:
                raise ConfigError(f"--format {fmt} and --dtype {dtype} disagree")
            return None, fmt
        if fmt not in _FORMATS:
            raise ConfigError(f"--format must be one of mrc, tiff, png (or, deprecated, a pixel "
                              f"type: float32, float16), got {fmt!r}")
        fmt = "tiff" if fmt == "tif" else fmt
    return fmt, dtype or "float32"


# -- apply -------------------------------------------------------------------------------
@cli.command()
@click.argument("inputs", nargs=-1)
@click.option("--model", "-m", "model_dir", type=click.Path(),
              help="Model folder written by `fit` (default: the model shipped with the package).")
@click.option("--out", "-o", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Output folder (created if missing).")
@click.option("--noisy-halves", "noisy_halves", nargs=2, multiple=True, type=click.Path(),
              metavar="HALF1 HALF2",
              help="Two independent halves of an exposure (even/odd frames): denoise each, "
                   "write their average and the FRC of the halves before/after (repeat).")
@click.option("--sigma", type=float,
              help="Paper's protocol: add noise of this sigma (on [0,255]) to each input, taken "
                   "as the clean reference, denoise, and write noisy images and a metrics table.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of the --sigma noise.")
@click.option("--noise-level", type=float,
              help="For a model with a noise-level input (fit --sigma-map): the inputs' noise "
                   "sigma on [0,255]  [estimated per file; with --sigma, that sigma]")
@click.option("--png", is_flag=True, help="Also write a PNG preview and a side-by-side figure.")
@click.option("--format", "fmt", metavar="mrc|tiff|png",
              help="Output file format  [the input's]. (Formerly the pixel type: "
                   "--format float16 still works and means --dtype float16.)")
@click.option("--dtype", type=click.Choice(list(_DTYPES)),
              help="Output pixel type (MRC and TIFF)  [float32]")
@click.option("--pixel-size", type=float,
              help="Pixel size in Å for inputs whose header has none or a placeholder "
                   "(0 or 1.0); a real value in the header is kept.")
@click.option("--suffix", default="_denoised", show_default=True,
              help="Appended to each input's name for its output.")
@config_options(InferenceConfig)
@click.option("--skip-existing", is_flag=True, help="Skip inputs whose outputs all exist.")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
@click.option("--shard", default="0/1", show_default=True,
              help="K/N: process every N-th file starting at K (0-based), or 'auto': K and N "
                   "from the cluster's job array (Slurm, SGE/UGE, LSF). Shards never overlap "
                   "and together cover every file.")
@click.option("--quiet", "-q", is_flag=True,
              help="No progress bar and no per-file noise lines (warnings and errors only).")
def apply(inputs, model_dir, out_dir, noisy_halves, sigma, seed, noise_level, png, fmt, dtype,
          pixel_size, suffix, skip_existing, overwrite, shard, quiet, **options):
    """Denoise image INPUTS (MRC, TIFF, PNG files, folders, globs, STAR lists) into --out.

    A RELION or cryoSPARC STAR file (micrographs: rlnMicrographName; particles:
    rlnImageName N@stack) is read with its optics tables' pixel sizes, paths relative to
    the current (project) folder; the same tables, pointing at the denoised images, are
    written to --out as denoised_micrographs.star (or denoised_particles.star).

    2D images, stacks (section by section) and volumes (as sections) of any size are
    tiled, denoised in batches, blended and written in the input's units with its voxel size,
    in the input's file format unless --format says otherwise.
    A file that cannot be read is reported (one line) and skipped; the exit status is then 3
    if others were denoised, 2 if none could be.
    """
    from pathlib import Path

    from cryoem_denoise.data.noise import SigmaSpec
    from cryoem_denoise.errors import ConfigError, InputError
    from cryoem_denoise.inference import apply_files
    from cryoem_denoise.inference.denoiser import Denoiser, check_noise_level
    from cryoem_denoise.io import image_io, star
    from cryoem_denoise.io.atomic import output_folder

    inference = InferenceConfig(**given_options(InferenceConfig, options))
    apply_files.check_inference_options(inference.tile, inference.overlap, inference.batch_size)
    apply_files.check_pixel_size(pixel_size)
    if not inputs and not noisy_halves:
        raise click.UsageError("give INPUTS or --noisy-halves HALF1 HALF2")
    if noisy_halves:
        if inputs or sigma is not None:
            raise click.UsageError("--noisy-halves takes no INPUTS and no --sigma")
        return _apply_halves(noisy_halves, model_dir, out_dir, suffix, inference, overwrite,
                             pixel_size)
    if sigma is not None:
        sigma = SigmaSpec.parse(sigma).low
    fmt, dtype = _format_and_dtype(fmt, dtype)
    if "/" in suffix or "\0" in suffix:
        raise ConfigError(f"--suffix must be a plain name part, got {suffix!r}")
    options = apply_files.ApplyOptions(
        out_dir=Path(out_dir), suffix=suffix, dtype=dtype, png=png, sigma=sigma, seed=seed,
        overwrite=overwrite, skip_existing=skip_existing, shard=apply_files.parse_shard(shard),
        format=fmt, pixel_size=pixel_size, noise_level=noise_level)
    if overwrite and skip_existing:
        raise ConfigError("choose one of --overwrite and --skip-existing")
    # STAR lists (RELION, cryoSPARC): their images, with the optics tables' pixel sizes
    lists = [star.read_star(path) for path in inputs if star.is_star_name(path)]
    others = [path for path in inputs if not star.is_star_name(path)]
    files = image_io.find_image_files(others) if others else []
    files = list(dict.fromkeys(files + [f for each in lists for f in each.files]))
    pixel_sizes = {f: size for each in lists for f, size in each.files.items() if size}
    problems = [problem for each in lists for problem in each.problems]
    if not files:  # nothing to denoise: every problem, then exit 2
        for problem in problems[:-1]:
            report_and_continue(problem)
        raise (problems[-1] if problems else InputError("the STAR file lists no images"))
    with output_folder(out_dir):
        star_paths = apply_files.star_output_paths(lists, options)
        jobs = apply_files.plan_jobs(files, options, pixel_sizes)
        for problem in problems:  # rows naming no usable image: one line each
            report_and_continue(problem)
        quiet_tensorflow()
        warn_precision(inference.precision)
        denoiser = Denoiser.load(default_model_or(model_dir), inference)
        check_noise_level(noise_level, denoiser.takes_noise_level)
        report = apply_files.run_jobs(denoiser, jobs, options, progress=not quiet)
        written = apply_files.write_star_outputs(lists, star_paths, jobs, report, options)
    _report_noise_levels(report.noise_levels, denoiser.sigma_range, quiet)
    for path, message in report.failed:
        error_line(message)
    if report.report_files:
        click.echo(f"report: {report.report_files[0]} (and .csv)")
    for each, path, rows in zip(lists, star_paths, written):
        click.echo(f"{path}: {rows} of {len(each.rows)} rows of {each.path.name}, pointing at "
                   "the denoised images")
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
    if report.failed or problems:
        sys.exit(exit_status(report.done or report.skipped, report.failed or problems))


def _report_noise_levels(levels, trained, quiet=False):
    """One line per file on its noise (the sigma a noise-level model was given, the measured
    spectrum, binning, outliers); a warning when the sigma lies outside the ``(low, high)``
    range the model was trained on."""
    low, high = trained
    for noise in levels:
        if not quiet:
            click.echo(noise.line(), err=True)
        if noise.level is not None and not low <= noise.level <= high:
            warning_line(f"{noise.path.name}: noise sigma {noise.level:.1f} on [0,255] "
                         f"({noise.how}) is outside the sigma range the model was trained on "
                         f"({low:g}-{high:g}); the result may be poor")


def _apply_halves(pairs, model_dir, out_dir, suffix, inference, overwrite, pixel_size):
    """``apply --noisy-halves``: each pair denoised half by half, averaged, FRC reported."""
    from pathlib import Path

    from cryoem_denoise.errors import CryoEMDenoiseError, InputError
    from cryoem_denoise.inference import halves
    from cryoem_denoise.inference.denoiser import Denoiser
    from cryoem_denoise.io.atomic import output_folder

    failed = 0
    with output_folder(out_dir):
        quiet_tensorflow()
        warn_precision(inference.precision)
        denoiser = Denoiser.load(default_model_or(model_dir), inference)
        for a, b in pairs:
            try:
                result = halves.denoise_half_pair(denoiser, a, b, Path(out_dir),
                                                  suffix=suffix, overwrite=overwrite,
                                                  pixel_size=pixel_size)
            except CryoEMDenoiseError as exc:
                report_and_continue(exc)
                failed += 1
                continue
            except OSError as exc:  # this pair's files only; the others go on
                report_and_continue(InputError(os_error_message(exc)))
                failed += 1
                continue
            first = result.sections[0]
            more = f" (section 0 of {len(result.sections)})" if len(result.sections) > 1 else ""
            click.echo(f"{a} + {b}: FRC 0.143 of the halves {first['raw_text']} -> denoised "
                       f"{first['denoised_text']}{more}; average in {result.output}")
    if failed:
        sys.exit(exit_status(len(pairs) - failed, failed))


# -- evaluate ----------------------------------------------------------------------------
@cli.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--model", "-m", "model_dir", type=click.Path(),
              help="Model folder for the 'gan' method (default: the shipped model).")
@click.option("--out", "-o", "out_dir", required=True, type=click.Path(file_okay=False))
@config_options(EvaluateConfig)
@click.option("--quiet", "-q", is_flag=True)
def evaluate(inputs, model_dir, out_dir, quiet, **options):
    """Compare the GAN with BM3D, K-SVD, Gaussian blur and the noisy input on clean INPUTS.

    INPUTS are image files (MRC, TIFF, PNG), folders or globs; a file that cannot be used
    is reported (one line) and left out: exit status 3 at the end.

    Writes results.json/.csv, table.md (the paper's Table 1 layout, per sigma), fig6_*.png
    and fig10.png into --out. Finished cells are kept in cells.jsonl: rerunning the same
    command resumes an interrupted run.
    """
    from cryoem_denoise.evaluation import evaluate as ev
    from cryoem_denoise.io import image_io

    values = given_options(EvaluateConfig, options)
    for name, kind in (("sigmas", float), ("methods", str)):  # comma-separated lists
        if name in values:
            values[name] = tuple(ev.parse_list(values[name], kind))
    cfg = EvaluateConfig(**values).validate()
    files = image_io.find_image_files(inputs)
    if "gan" in cfg.methods:
        quiet_tensorflow()
        model_dir = default_model_or(model_dir)
    failed = []

    def bad_file(exc):  # reported, left out; the other files are still evaluated
        failed.append(exc)
        report_and_continue(exc)

    results = ev.evaluate(files, out_dir, cfg, model_dir=model_dir, progress=not quiet,
                          on_error=bad_file)
    click.echo(ev.markdown_table(results, cfg))
    click.echo(f"results in {out_dir}" + (f" ({len(failed)} file(s) left out)" if failed else ""))
    if failed:
        sys.exit(exit_status(True, failed))  # some files were evaluated (or it raised)

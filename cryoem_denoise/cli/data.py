"""Commands about data: ``info``, ``fetch``, ``simulate``."""

import json
import sys

import click
import numpy as np

from cryoem_denoise.cli.common import cli, exit_status, os_error_message, report_and_continue
from cryoem_denoise.cli.options import COUNT, SEED, Number, config_fields, config_options, given_options
from cryoem_denoise.config import SimulationConfig
from cryoem_denoise.errors import CryoEMDenoiseError, InputError


def _fmt(value):
    return f"{value:.6g}"


def _info_record(path):
    from cryoem_denoise.io import image_io, mrc

    with image_io.open_sections(path) as (sections, header):
        stats = mrc.pixel_statistics(sections)
        problem = None
        try:
            mrc.check_sections(sections, path)
        except InputError as exc:
            problem = exc
    return header, stats, problem


def _voxel_text(header):
    vx, vy, vz = header.voxel_size
    if not vx:
        return "unknown (not in the file; give it with --pixel-size where needed)"
    voxel = f"{_fmt(vx)} x {_fmt(vy)} A"
    if header.kind == "volume" and vz:
        voxel += f" x {_fmt(vz)} A"
    if header.pixel_size_is_placeholder:
        voxel += " (looks like a placeholder: 1.0 is what programs write when they do not " \
                 "know; give the real one with --pixel-size)"
    return voxel


def _print_info(header, stats):
    from cryoem_denoise.io import image_io

    n, ny, nx = header.shape
    what = {"image": "single image", "stack": f"stack of {n} images",
            "volume": f"volume of {n} sections"}[header.kind]
    ext = f"{header.exttyp or 'untyped'}, {header.extended_header_bytes} bytes" \
        if header.extended_header_bytes else "none"
    click.echo(header.path)
    click.echo(f"  kind:     {what}, {nx} x {ny} pixels (x by y)")
    if header.format == "mrc":
        click.echo(f"  mode:     {image_io.describe(header)}")
    else:
        click.echo(f"  format:   {image_io.describe(header)}")
    click.echo(f"  voxel:    {_voxel_text(header)}")
    if header.format == "mrc":
        click.echo(f"  extended: {ext}")
    click.echo(f"  pixels:   min {_fmt(stats['min'])}  max {_fmt(stats['max'])}  "
               f"mean {_fmt(stats['mean'])}  std {_fmt(stats['std'])}")
    click.echo("  valid:    yes" + ("  (header read leniently, see the warning)"
                                    if header.permissive else ""))


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(readable=False))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per file.")
def info(files, as_json):
    """Show shape, pixel type, voxel size and pixel statistics of image FILES, and check them.

    MRC/MRCS (any mode this tool reads), TIFF and PNG files. A file that cannot be used
    gets one error line instead; the others are still shown (exit status 3 at the end, or 2
    if no file could be shown).
    """
    from dataclasses import asdict

    failed = 0
    for path in files:
        try:
            header, stats, problem = _info_record(path)
            if problem is not None:
                raise problem
        except CryoEMDenoiseError as exc:
            report_and_continue(exc)
            failed += 1
            continue
        except OSError as exc:  # this file only; the others are still shown
            report_and_continue(InputError(os_error_message(exc)))
            failed += 1
            continue
        if as_json:
            record = {**asdict(header), "statistics": stats, "valid": True,
                      "pixel_size_placeholder": header.pixel_size_is_placeholder}
            click.echo(json.dumps(record))
        else:
            _print_info(header, stats)
    if failed:
        sys.exit(exit_status(len(files) - failed, failed))


@cli.command()
@click.argument("names", nargs=-1)
@click.option("--list", "list_only", is_flag=True, help="List the sample files and their sources.")
@click.option("--cache", type=click.Path(file_okay=False),
              help="Cache folder (default: $CRYOEM_DENOISE_DATA or ~/.cache/cryoem-denoise).")
def fetch(names, list_only, cache):
    """Fetch the sample data (micrographs, EMDB maps, atomic models) into the cache.

    NAMES picks files (default: all). Files already cached and verified are not
    downloaded again; the paths are printed, one per line.
    """
    from cryoem_denoise.data import datasets

    if list_only:
        for s in datasets.SAMPLES.values():
            click.echo(f"{s.name:20s} {s.kind:10s} {s.source.sdist_prefix} ({s.source.licence}): "
                       f"{s.description}")
        return
    for path in datasets.fetch(names or None, cache=cache).values():
        click.echo(str(path))


# -- simulate ----------------------------------------------------------------------------
def _parse_range(text, hint, integer=False):
    """``'V'`` as one value or ``'LOW:HIGH'`` as a range, for a simulation option."""
    kind = int if integer else float
    try:
        parts = [kind(v) for v in text.split(":")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2):
        what = "whole numbers" if integer else "numbers"
        raise click.BadParameter(f"expected a value or LOW:HIGH ({what}), got {text!r}",
                                 param_hint=hint)
    return parts[0] if len(parts) == 1 else tuple(parts)


def _simulation_config(preset, values):
    """The preset (or the defaults) with the given settings applied; ranged settings given
    as text (``'V'`` or ``'LOW:HIGH'``) are parsed."""
    from cryoem_denoise.config import SimulationConfig, broad_simulation

    fields = config_fields(SimulationConfig, command="simulate")
    option_of = {fld.name: dest for dest, (_, fld) in fields.items()}
    for name, value in values.items():
        if name in SimulationConfig.RANGES and isinstance(value, str):
            value = _parse_range(value, "--" + option_of[name].replace("_", "-"),
                                 integer=name == "particles")
            if name == "defocus_um" and not isinstance(value, tuple):
                value = (value, value)
            values[name] = value
    return broad_simulation(**values) if preset == "broad" else SimulationConfig(**values).validate()


@cli.command()
@click.argument("source", type=click.Path())
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False),
              help="Output stack (.mrcs) of clean fields.")
@click.option("--n", "n_fields", type=COUNT, default=10, show_default=True, help="Fields to simulate.")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--preset", type=click.Choice(["broad"]),
              help="Start from a named setting: 'broad' draws pixel size 0.7:3 Å, B-factor "
                   "0:150 Å², defocus 0.3:4 µm, amplitude contrast 0.05:0.15, 2:12 particles "
                   "and ice 0:0.6 per field (the shipped model's training data); options "
                   "given here override it.")
@config_options(SimulationConfig, command="simulate")
@click.option("--dose", type=Number(float, low=0, low_open=True),
              help="Also write the fields with shot noise: Poisson electron counts at this mean "
                   "dose, electrons per pixel (e/Å² times the pixel size squared), to "
                   "NAME_noisy.mrcs.")
@click.option("--halves", is_flag=True,
              help="With --dose: two independent half-dose exposures, NAME_half1.mrcs and "
                   "NAME_half2.mrcs (even/odd frame sums), instead of NAME_noisy.mrcs.")
@click.option("--contrast", type=Number(float, low=0, high=1), default=0.05, show_default=True,
              help="With --dose: relative contrast (std/mean) of the expected counts; the "
                   "per-pixel SNR is dose x contrast².")
@click.option("--png", is_flag=True, help="Also write a PNG of the first fields.")
@click.option("--overwrite", is_flag=True)
@click.option("--quiet", "-q", is_flag=True)
def simulate(source, out, n_fields, seed, preset, dose, halves, contrast, png, overwrite, quiet,
             **options):
    """Simulate clean cryo-EM fields from SOURCE (PDB/mmCIF model or MRC density map).

    Random orientations, non-overlapping particles on a smooth ice background, the CTF of
    the given microscope, scaled to [0, 255]; reproducible with --seed. Settings given as
    LOW:HIGH ranges (or by --preset broad) are drawn per field and recorded in
    NAME.fields.json beside the stack. With --dose the same fields are also written as
    electron counts with shot noise (one exposure, or with --halves two independent
    halves); the clean stack is their known truth.
    """
    import time
    from pathlib import Path

    from cryoem_denoise.data import simulate as sim

    values = given_options(SimulationConfig, options, command="simulate")
    cfg = _simulation_config(preset, {**values, "fields": n_fields})
    if halves and dose is None:
        raise click.BadParameter("needs --dose", param_hint="--halves")
    started = time.perf_counter()
    path = sim.simulate_to_file(source, out, n_fields, cfg, seed, dose=dose, halves=halves,
                                contrast=contrast, overwrite=overwrite, progress=not quiet)
    seconds = time.perf_counter() - started
    click.echo(f"{n_fields} field(s) of {cfg.field}x{cfg.field} px written to {path} "
               f"({n_fields / seconds:.1f} fields/s)")
    if dose is not None:
        noisy = ", ".join(str(p) for p in sim.shot_noise_paths(out, halves))
        what = f"two halves of {dose / 2:g} e/px each" if halves else f"{dose:g} e/px"
        click.echo(f"shot noise ({what}, contrast {contrast:g}): {noisy}")
    if png:
        from cryoem_denoise.evaluation import figures
        from cryoem_denoise.io import image_io

        with image_io.open_sections(path) as (fields, _):
            panels = [(f"field {i}", np.asarray(fields[i])) for i in range(min(3, n_fields))]
        if dose is not None:  # the first field, clean and with its shot noise
            panels = panels[:1]
            for noisy_path in sim.shot_noise_paths(out, halves):
                with image_io.open_sections(noisy_path) as (noisy, _):
                    panels.append((noisy_path.stem, np.asarray(noisy[0])))
        png_path = Path(out).with_suffix(".png")
        figures.save_panels(png_path, panels, overwrite=overwrite, shared_contrast=False)
        click.echo(f"preview: {png_path}")

"""The ``cryoem-denoise`` command line.

Thin by design: each command parses options, calls library functions, and prints. Known
problems (:class:`~cryoem_denoise.errors.CryoEMDenoiseError`) become one line on stderr
and exit status 2; ``--debug`` shows the traceback instead.
"""

import json
import sys

import click

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


def main(argv=None):
    """Console entry point."""
    cli.main(args=argv, prog_name="cryoem-denoise")

"""The click group, error handling and helpers shared by the commands."""

import click

from cryoem_denoise import __version__
from cryoem_denoise.errors import CryoEMDenoiseError


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



def quiet_tensorflow():
    """Import TensorFlow without its start-up notices, unless --debug."""
    ctx = click.get_current_context(silent=True)
    if not (ctx is not None and (ctx.find_root().obj or {}).get("debug")):
        from cryoem_denoise.precision import import_tensorflow_quietly

        import_tensorflow_quietly()


def warn_precision(precision):
    """Say so (one line on stderr) when a precision choice is likely to be slow here."""
    from cryoem_denoise.precision import bf16_warning

    message = bf16_warning(precision)
    if message:
        click.echo(f"cryoem-denoise: warning: {message}", err=True)


def default_model_or(model_dir):
    from cryoem_denoise.model_store import default_model_dir

    return model_dir or default_model_dir()

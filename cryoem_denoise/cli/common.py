"""The click group, error handling and helpers shared by the commands.

Every error a user can cause ends as exactly one line on stderr,
``cryoem-denoise: error: ...``, and exit status 2: the project's own errors
(:class:`~cryoem_denoise.errors.CryoEMDenoiseError`) and click's usage errors alike
(``--debug`` shows the traceback of the former). Tolerated input faults
(:class:`~cryoem_denoise.errors.InputWarning`) are one ``cryoem-denoise: warning: ...`` line.
"""

import errno
import os
import signal
import sys
import threading
import warnings

import click

from cryoem_denoise import __version__
from cryoem_denoise.errors import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_SOME_FAILED,
    EXIT_TERMINATED,
    CryoEMDenoiseError,
    InputWarning,
)

#: What to do about an OS error a command did not foresee, by ``errno``.
_OS_ERROR_HINTS = {
    errno.ENAMETOOLONG: "file name too long: use a shorter name (--out, --suffix)",
    errno.EACCES: "permission denied: check the permissions of the file and its folders",
    errno.EPERM: "operation not permitted: check the permissions of the file and its folders",
    errno.ELOOP: "too many levels of symbolic links (a link loop): fix the link",
    errno.EIO: "input/output error: the disk or network file system failed; check it and "
               "run again",
    errno.ENOSPC: "no space left on device: free some space or write elsewhere (--out)",
    errno.EDQUOT: "disk quota exceeded: free some space or write elsewhere (--out)",
    errno.EROFS: "read-only file system: write elsewhere (--out)",
    errno.ENOENT: "no such file or folder",
    errno.ENOTDIR: "a part of the path is not a folder",
    errno.EISDIR: "is a folder, not a file",
    errno.EMFILE: "too many open files: raise the limit (ulimit -n) or process fewer files",
}


def printable(text):
    """``text`` safe to print anywhere: file names that are not valid UTF-8 (decoded by
    Python with surrogate escapes) come out as ``\\xNN`` escapes."""
    text = os.fsdecode(text) if isinstance(text, bytes) else str(text)
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def os_error_message(exc):
    """An ``OSError`` as one line naming its file(s) and what to do."""
    what = _OS_ERROR_HINTS.get(exc.errno) or (exc.strerror or str(exc) or type(exc).__name__)
    names = [printable(n) for n in (exc.filename, exc.filename2) if n is not None]
    return f"{' -> '.join(names)}: {what}" if names else what


def exit_status(done, failed):
    """The exit status of a command over many inputs: 0 when none failed,
    :data:`~cryoem_denoise.errors.EXIT_SOME_FAILED` when some failed and others were
    processed, :data:`~cryoem_denoise.errors.EXIT_ERROR` when none could be."""
    if not failed:
        return 0
    return EXIT_SOME_FAILED if done else EXIT_ERROR


def one_line(text):
    """``text`` on one line (line breaks become spaces), printable."""
    return " ".join(printable(text).split())


def error_line(exc):
    """Print a one-line error message to stderr."""
    click.echo(f"cryoem-denoise: error: {one_line(exc)}", err=True)


def warning_line(text):
    """Print a one-line warning to stderr."""
    click.echo(f"cryoem-denoise: warning: {one_line(text)}", err=True)


def _warnings_as_lines(previous):
    """A ``warnings.showwarning`` that prints :class:`InputWarning` as one line and hands
    other warnings to ``previous``."""

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, InputWarning):
            warning_line(message)
        else:
            previous(message, category, filename, lineno, file, line)

    return show


def usage_message(exc):
    """A click usage error as one line, with where to look for help."""
    text = one_line(exc.format_message()).rstrip(".")
    text = text[:1].lower() + text[1:]
    ctx = getattr(exc, "ctx", None)
    if ctx is None or not isinstance(exc, click.UsageError):
        return text
    where = f"{ctx.info_name}: " if ctx.parent is not None else ""
    return f"{where}{text} (see '{ctx.command_path} --help')"


def report_and_continue(exc):
    """For commands that go on after a bad file: print one line, or re-raise with --debug."""
    ctx = click.get_current_context(silent=True)
    if ctx is not None and (ctx.find_root().obj or {}).get("debug"):
        raise exc
    error_line(exc)


class Terminated(BaseException):
    """SIGTERM (a cluster's time limit, ``kill``): unwinds like an interrupt, so temporary
    files are removed on the way out."""


def _raise_terminated(signum, frame):
    raise Terminated()


class _Group(click.Group):
    """A click group that turns user-facing errors into one line and exit status 2."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True,
             **extra):
        """Run the command line; usage errors become one line and exit status 2."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _raise_terminated)
        for stream in (sys.stdout, sys.stderr):  # never crash on a name that is not UTF-8
            try:
                stream.reconfigure(errors="backslashreplace")
            except (AttributeError, ValueError):  # not a text file (a test's capture)
                pass
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.ClickException as exc:
            click.echo(f"cryoem-denoise: error: {usage_message(exc)}", err=True)
            sys.exit(2)
        except click.exceptions.Abort:
            click.echo("cryoem-denoise: interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        sys.exit(rv if isinstance(rv, int) else 0)

    def invoke(self, ctx):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("always", InputWarning)  # each is issued once per file
                warnings.showwarning = _warnings_as_lines(warnings.showwarning)
                return super().invoke(ctx)
        except CryoEMDenoiseError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            error_line(exc)
            ctx.exit(exc.exit_code)
        except OSError as exc:  # one the command did not foresee: still one line, the file named
            if ctx.obj and ctx.obj.get("debug"):
                raise
            error_line(os_error_message(exc))
            ctx.exit(EXIT_ERROR)
        except MemoryError:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            error_line("out of memory: process fewer or smaller files at a time (or a smaller "
                       "--batch-size / --tile)")
            ctx.exit(EXIT_ERROR)
        except KeyboardInterrupt:
            click.echo("cryoem-denoise: interrupted", err=True)
            ctx.exit(EXIT_INTERRUPTED)
        except Terminated:
            click.echo("cryoem-denoise: terminated", err=True)
            ctx.exit(EXIT_TERMINATED)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cryoem-denoise")
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
@click.option("--backend", type=click.Choice(["tensorflow", "jax"]),
              help="Keras backend to compute with (the same as KERAS_BACKEND)  [tensorflow]")
@click.pass_context
def cli(ctx, debug, backend):
    """Denoise cryo-EM images (MRC, TIFF, PNG): a Keras reimplementation of the Wasserstein GAN
    of Ouyang et al. (2020), and a shipped model trained with the recipe that measured best."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    if backend:
        import os

        os.environ["KERAS_BACKEND"] = backend



def quiet_tensorflow():
    """Check the Keras backend and import it without its start-up notices (unless --debug).

    Raises :class:`~cryoem_denoise.errors.ConfigError` for an unknown backend or one that is
    not installed, before any work.
    """
    from cryoem_denoise.runtime import backend

    backend.select()
    ctx = click.get_current_context(silent=True)
    if not (ctx is not None and (ctx.find_root().obj or {}).get("debug")):
        backend.import_quietly()


def warn_precision(precision):
    """Refuse mixed_float16 without a GPU; warn (one line) when bfloat16 is likely slow here."""
    from cryoem_denoise.runtime.precision import bf16_warning, check_precision

    check_precision(precision)

    message = bf16_warning(precision)
    if message:
        click.echo(f"cryoem-denoise: warning: {message}", err=True)


def default_model_or(model_dir):
    from cryoem_denoise.model.model_store import default_model_dir

    return model_dir or default_model_dir()

"""Atomic, no-clobber output files.

Every file the project writes goes through :func:`atomic_output`: the content is written to
a temporary file in the destination folder and only then moved to its name, so a crash, a
full disk or an interrupt never leaves a truncated output behind. An existing file is kept
unless ``overwrite`` is set, and a path that is one of the run's inputs is never written.
"""

import contextlib
import errno
import os
import tempfile
from pathlib import Path

from cryoem_denoise.errors import OutputError


def _same_file(a, b):
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def check_output_path(path, *, overwrite=False, protected=()):
    """Raise :class:`OutputError` if ``path`` may not be written.

    Parameters
    ----------
    path : path-like
        The output file.
    overwrite : bool
        Allow replacing an existing file (never an input).
    protected : iterable of path-like
        Input files of the run; writing over one of them is always refused.
    """
    path = Path(path)
    for p in protected:
        if _same_file(path, p):
            raise OutputError("refusing to write over an input file", path)
    if path.is_dir():
        raise OutputError("is a directory, expected a file name", path)
    if path.exists() and not overwrite:
        raise OutputError("already exists (pass --overwrite to replace it)", path)
    parent = path.parent
    if not parent.is_dir():
        raise OutputError("output folder does not exist", parent)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError("output folder is not writable", parent)


def _describe_os_error(exc):
    if exc.errno == errno.ENOSPC:
        return "no space left on device"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "permission denied"
    return exc.strerror or str(exc)


@contextlib.contextmanager
def atomic_output(path, *, overwrite=False, protected=(), suffix=".part"):
    """Yield a temporary path; on success move it to ``path``.

    ``suffix`` ends the temporary name, for writers that insist on an extension
    (Keras wants ``.weights.h5``).

    The temporary file lives beside ``path`` (same filesystem, so the final rename is
    atomic). If the body raises, or the move fails, the temporary file is removed and
    ``path`` is untouched. Without ``overwrite`` the move is a hard link, which fails if
    another process created ``path`` in the meantime.

    Raises
    ------
    OutputError
        If the output may not be written or writing fails (disk full, permissions).
    """
    path = Path(path)
    check_output_path(path, overwrite=overwrite, protected=protected)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    except OSError as exc:
        raise OutputError(_describe_os_error(exc), path) from exc
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        if overwrite:
            os.replace(tmp, path)
        else:
            _link_no_clobber(tmp, path)
    except OSError as exc:
        raise OutputError(_describe_os_error(exc), path) from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _link_no_clobber(tmp, path):
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise OutputError("already exists (pass --overwrite to replace it)", path) from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
            raise
        # Filesystems without hard links: check, then rename.
        if os.path.exists(path):
            raise OutputError("already exists (pass --overwrite to replace it)", path) from None
        os.replace(tmp, path)


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path, data, *, overwrite=False, protected=()):
    """Write ``data`` (bytes) to ``path`` atomically."""
    with atomic_output(path, overwrite=overwrite, protected=protected) as tmp:
        tmp.write_bytes(data)


def write_text(path, text, *, overwrite=False, protected=()):
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_bytes(path, text.encode("utf-8"), overwrite=overwrite, protected=protected)

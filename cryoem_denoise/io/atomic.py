"""Atomic, no-clobber output files.

Every file the project writes goes through :func:`atomic_output`: the content is written to
a temporary file in the destination folder (``.NAME.<random>.part``) and only then moved to
its name, so a crash, a full disk or an interrupt never leaves a truncated output behind. An
existing file is kept unless ``overwrite`` is set, and a path that is one of the run's inputs
is never written.

A run killed outright (SIGKILL, power loss) cannot remove its temporary file. The writer
holds an exclusive ``flock`` on it while writing, so the next run writing the same output
removes temporary files of that name that nobody holds (:func:`remove_stale_temporaries`).
Streamed (memory-mapped) outputs reserve their whole size first (:func:`reserve_space`): a
full disk is then an ``ENOSPC`` error before any pixel is written, never a SIGBUS.
"""

import contextlib
import errno
import fcntl
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


def describe_os_error(exc):
    """A short, one-line description of an ``OSError`` (``'no space left on device'``)."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "no space left on device"
    if exc.errno == errno.EROFS:
        return "read-only file system"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    return (exc.strerror or str(exc)).splitlines()[0]


_describe_os_error = describe_os_error

#: Characters of the random part of a temporary name (``tempfile.mkstemp``).
_RANDOM_CHARS = 8


def _temporary_prefix(path):
    return f".{Path(path).name}."


def remove_stale_temporaries(path, suffix=".part"):
    """Remove temporary files of ``path`` left by killed runs; return how many.

    Only files named as :func:`atomic_output` names them for this output and not locked
    by a live writer are removed.
    """
    path = Path(path)
    prefix = _temporary_prefix(path)
    removed = 0
    for name in _hidden_names(path.parent):
        if not (name.startswith(prefix) and name.endswith(suffix)
                and len(name) == len(prefix) + _RANDOM_CHARS + len(suffix)):
            continue
        removed += remove_if_unheld(os.path.join(path.parent, name))
    return removed


def remove_if_unheld(entry):
    """Remove the temporary file ``entry`` unless a live writer holds it (its ``flock``,
    taken by :func:`atomic_output`); return whether it was removed."""
    try:
        fd = os.open(entry, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.unlink(entry)
        return True
    except OSError:  # held by a live writer, or already gone
        return False
    finally:
        os.close(fd)


#: folder → names starting with '.' found in it (each folder is listed once per process:
#: temporary files of killed runs are older than this process, and a folder of thousands of
#: outputs must not be listed again for each of them).
_HIDDEN = {}


def _hidden_names(folder):
    key = os.path.realpath(folder)
    if key not in _HIDDEN:
        try:
            _HIDDEN[key] = [e.name for e in os.scandir(key) if e.name.startswith(".")]
        except OSError:
            return []
    return _HIDDEN[key]


def reserve_space(path, nbytes):
    """Allocate ``nbytes`` for the file at ``path`` so that later writes through a memory
    map cannot hit a full disk (which would kill the process with SIGBUS).

    Raises
    ------
    OSError
        ``ENOSPC`` when the space is not there.
    """
    fd = os.open(path, os.O_RDWR)
    try:
        try:
            os.posix_fallocate(fd, 0, int(nbytes))
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.EOPNOTSUPP, errno.ENOSYS):
                raise
            _fill_holes(fd, int(nbytes))
    finally:
        os.close(fd)


def _fill_holes(fd, nbytes, block=4096):
    """Where fallocate is not supported: write each block of the file explicitly."""
    size = os.fstat(fd).st_size
    for offset in range(0, nbytes, block):
        if offset >= size:
            os.pwrite(fd, b"\0" * min(block, nbytes - offset), offset)
        else:
            os.pwrite(fd, os.pread(fd, min(block, nbytes - offset), offset), offset)


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
    remove_stale_temporaries(path, suffix)
    try:
        fd, tmp = tempfile.mkstemp(prefix=_temporary_prefix(path), suffix=suffix, dir=path.parent)
    except OSError as exc:
        raise OutputError(_describe_os_error(exc), path) from exc
    # held until the end: tells other runs' clean-up that this file is being written
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
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
        os.close(fd)


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


@contextlib.contextmanager
def output_folder(path):
    """Create the folder ``path`` if needed, check that files can be made in it, and yield it.

    If this call created the folder and it is still empty when the block ends (nothing
    written, or the run failed before writing), it is removed again.

    Raises
    ------
    OutputError
        The folder cannot be created (a file of that name, no permission, read-only file
        system) or files cannot be created in it.
    """
    path = Path(path)
    created = not os.path.lexists(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputError("exists and is not a folder", path) from None
    except OSError as exc:
        raise OutputError(f"cannot create the output folder ({describe_os_error(exc)})",
                          path) from None
    try:
        with tempfile.TemporaryFile(dir=path, prefix=".cryoem-denoise-probe."):
            pass
    except OSError as exc:
        if created:
            with contextlib.suppress(OSError):
                path.rmdir()
        raise OutputError(f"output folder is not writable ({describe_os_error(exc)})",
                          path) from None
    try:
        yield path
    finally:
        if created:
            with contextlib.suppress(OSError):
                path.rmdir()  # only succeeds if nothing was written

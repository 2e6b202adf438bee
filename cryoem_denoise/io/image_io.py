"""One read/write interface for MRC, TIFF and PNG image files.

Whatever the format, a file is seen as a stack of 2D sections ``(n, ny, nx)`` with an
:class:`~cryoem_denoise.io.header.ImageHeader` (its ``format`` says which), so commands need not
care what they read:

- **MRC** (``.mrc``, ``.mrcs``, ``.map``, ...; gzip/bzip2 too): :mod:`cryoem_denoise.io.mrc`.
- **TIFF** (``.tif``, ``.tiff``): :mod:`cryoem_denoise.io.tiff`.
- **PNG**: :mod:`cryoem_denoise.io.png`.

This module decides a file's format (by its first bytes; by its name for outputs) and calls
the reader or writer of that format; the readers and writers never call back into it.

Colour (RGB) images, complex data and 1-bit images are refused with the reason. Whatever
goes wrong while reading (the operating system's errors, the decoders' many exception types,
a header that disagrees with the file) is one :class:`~cryoem_denoise.errors.InputError`
naming the file, never a traceback; ``tests/test_fuzz_images.py`` checks this on mutated
files. Folder entries that cannot be looked at (broken links, link loops, input/output
errors) are not skipped but listed, and fail with one line when read.

Writing (:func:`create_image`, :func:`write_image`) is atomic, like every output of the
project. MRC and TIFF outputs are float32 or float16, memory-mapped with their space
reserved first; a PNG holds one image, rounded to 8 or 16 bits when the values are already
integers of that range (``dtype`` ``'uint8'``/``'uint16'``), otherwise scaled min–max to
16 bits (the file's units are then not kept; MRC or TIFF keep them).
"""

import contextlib
import errno
import glob
import os
import stat
from pathlib import Path

import numpy as np

from cryoem_denoise.errors import InputError, OutputError
from cryoem_denoise.io import mrc, png, tiff
from cryoem_denoise.io.atomic import atomic_output

__all__ = ["FORMATS", "read_image", "write_image", "read_header", "open_sections",
           "read_sections", "find_image_files", "create_image", "format_of_name",
           "sniff_format", "output_name", "split_name"]

FORMATS = ("mrc", "tiff", "png")
#: The suffix an output of each format gets when the input's suffix does not fit.
DEFAULT_SUFFIX = {"mrc": ".mrc", "tiff": ".tif", "png": ".png"}
#: Pixel types MRC and TIFF outputs can have.
OUTPUT_DTYPES = mrc.OUTPUT_DTYPES


def is_image_name(name):
    """Whether a file name looks like an image file this project reads (by suffix)."""
    lower = name.lower()
    return mrc.is_mrc_name(name) or lower.endswith(tiff.SUFFIXES + png.SUFFIXES)


def format_of_name(name):
    """``'mrc'``, ``'tiff'`` or ``'png'`` from a file name (MRC if the suffix says nothing)."""
    lower = str(name).lower()
    if lower.endswith(tiff.SUFFIXES):
        return "tiff"
    if lower.endswith(png.SUFFIXES):
        return "png"
    return "mrc"


def sniff_format(path):
    """``'tiff'``, ``'png'`` or ``'mrc'`` from a file's first bytes (MRC has no magic)."""
    with open(path, "rb") as fh:
        magic = fh.read(8)
    if magic[:4] in tiff.MAGIC:
        return "tiff"
    if magic == png.MAGIC:
        return "png"
    return "mrc"


def find_image_files(inputs):
    """Files, folders and glob patterns → image file paths, in order, without repeats.

    A folder contributes its MRC and TIFF files (by suffix, sorted), not its PNG files:
    folders of micrographs often hold PNG previews (this tool's ``--png`` among them), so a
    PNG is read when it is named or matched by a pattern. A pattern with ``*``, ``?`` or
    ``[`` is expanded. A named file is taken whatever its suffix (it is checked when read).

    An entry that cannot be looked at (a broken symbolic link, a link loop, a permission or
    input/output error) is returned too, not skipped (from a folder: when its name looks
    like an image's): :func:`read_header` then fails it with one line naming the problem, so
    a data disk that is not mounted does not look like an empty success. Sub-folders are
    skipped.

    Raises
    ------
    InputError
        A path that does not exist, a pattern that matches nothing, a folder that cannot
        be listed or holds no image files.
    """
    files = []
    for item in inputs:
        text = os.fsdecode(item) if isinstance(item, bytes) else str(item)
        path = Path(text)
        pattern = any(ch in text for ch in "*?[")
        kind = _entry_kind(path)
        if kind == "dir":
            try:
                with os.scandir(path) as listing:
                    entries = sorted(Path(e.path) for e in listing)
            except OSError as exc:
                raise InputError(f"cannot list the folder ({mrc.describe_read_error(exc)})",
                                 path) from None
            found = [p for p in entries if is_image_name(p.name)
                     and format_of_name(p.name) != "png" and _entry_kind(p) != "dir"]
            if not found:
                raise InputError("folder holds no MRC files or other images (.mrc, .mrcs, "
                                 ".map, .tif, ...; PNG files are read when named)", path)
            files.extend(found)
        elif kind is not None and not pattern:
            files.append(path)  # problems (loops, broken links, ...) are named when read
        elif pattern:
            found = sorted(Path(p) for p in glob.glob(text) if _entry_kind(Path(p)) != "dir")
            if not found:
                raise InputError("pattern matches no files", text)
            files.extend(found)
        else:
            raise InputError("no such file or folder", path)
    return list(dict.fromkeys(files))


def _entry_kind(path):
    """``'dir'``, ``'file'`` (anything else that exists, special files too), ``'broken'``
    (a link or entry that cannot be looked at: :func:`read_header` says why) or ``None``
    (nothing there)."""
    try:
        st = os.stat(path)
    except OSError:
        try:
            os.lstat(path)
        except OSError as exc:
            return None if exc.errno in (errno.ENOENT, errno.ENOTDIR) else "broken"
        return "broken"
    return "dir" if stat.S_ISDIR(st.st_mode) else "file"


# -- reading -------------------------------------------------------------------------------
def read_header(path):
    """The :class:`~cryoem_denoise.io.header.ImageHeader` of an MRC, TIFF or PNG file.

    Raises
    ------
    InputError
        As :func:`cryoem_denoise.io.mrc.read_header`, and for TIFF/PNG files that cannot be
        read, hold colour, complex or 1-bit pixels, or pages of different sizes.
    """
    problem = mrc.path_problem(path)
    if problem:
        raise InputError(problem, path)
    try:
        fmt = sniff_format(path)
    except OSError as exc:
        raise InputError(mrc.describe_read_error(exc), path) from None
    if fmt == "mrc":
        return mrc.read_header(path)
    try:
        header = tiff.read_header(path) if fmt == "tiff" else png.read_header(path)
    except OSError as exc:  # the file went away or the disk failed after the checks above
        raise InputError(mrc.describe_read_error(exc), path) from None
    _check_shape(header)
    return header


def _check_shape(header):
    n, ny, nx = header.shape
    if min(n, ny, nx) <= 0:
        raise InputError(f"empty image ({nx}x{ny}x{n} pixels)", header.path)
    if nx < mrc.MIN_SIDE or ny < mrc.MIN_SIDE:
        raise InputError(f"image is {nx}x{ny} pixels; at least {mrc.MIN_SIDE}x{mrc.MIN_SIDE} "
                         "is needed", header.path)


@contextlib.contextmanager
def open_sections(path, header=None):
    """Open an image file for reading and yield ``(sections, header)``.

    ``sections`` has shape ``(n, ny, nx)`` in the file's pixel type; MRC files and
    uncompressed TIFF files are memory-mapped (read only when touched), others are read.
    Valid inside the ``with``. ``header``: the file's header if it was already read by
    :func:`read_header` (it is not read again).
    """
    header = header or read_header(path)
    if header.format == "mrc":
        with mrc.open_sections(path, header) as opened:
            yield opened
        return
    try:
        data = tiff.read_data(path) if header.format == "tiff" else png.read_data(path)
    except InputError:
        raise
    except MemoryError:
        raise InputError("too large to read into memory", path) from None
    except Exception as exc:
        what = "TIFF" if header.format == "tiff" else "PNG"
        raise InputError(f"{what} pixel data cannot be read "
                         f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})",
                         path) from None
    if data.size != int(np.prod(header.shape)):
        raise InputError(f"pixel data ({'x'.join(map(str, data.shape))}) do not match the "
                         f"header ({'x'.join(map(str, header.shape))}): damaged file, or "
                         "changed while being read", path)
    try:
        yield data.reshape(header.shape), header
    finally:
        del data


def read_sections(path):
    """Read a whole image file into memory: ``(sections, header)``."""
    with open_sections(path) as (data, header):
        return np.array(data), header


def read_image(path, dtype=np.float32):
    """Read an MRC, TIFF or PNG file: ``(image, header)``.

    ``image`` is 2D for a single image and ``(n, ny, nx)`` for a stack or volume, converted
    to ``dtype`` (``None``: the file's own pixel type); ``header`` is its
    :class:`~cryoem_denoise.io.header.ImageHeader` (pixel size, origin, kind, ...).

    Raises
    ------
    InputError
        The file cannot be read, or is not an image this package reads.
    """
    with open_sections(path) as (data, header), np.errstate(invalid="ignore"):
        image = np.array(data, dtype=dtype)  # (float16 signalling NaNs: checked by callers)
    return (image[0] if header.kind == "image" else image), header


# -- writing -------------------------------------------------------------------------------
def output_name(stem, suffix, fmt, source):
    """The output file name for ``stem + suffix`` in format ``fmt``.

    The input's own extension is kept when it is of the same format (``.mrcs`` stays
    ``.mrcs``, ``.tiff`` stays ``.tiff``); otherwise the format's usual one is used.
    """
    src_ext = split_name(source)[1]
    if format_of_name(source) == fmt and src_ext:
        return f"{stem}{suffix}{src_ext}"
    return f"{stem}{suffix}{DEFAULT_SUFFIX[fmt]}"


def split_name(path):
    """``'emd_1.map.gz'`` → ``('emd_1', '.map')``: stem and extension (compression dropped;
    ``''`` where there is no extension)."""
    name = Path(path).name
    for comp in (".gz", ".bz2"):
        if name.lower().endswith(comp):
            name = name[: -len(comp)]
    stem, dot, ext = name.rpartition(".")
    return (stem, "." + ext) if dot and stem else (name, "")


def check_output_format(fmt, shape, path=None):
    """Raise :class:`OutputError` if ``fmt`` cannot hold an image of ``shape``."""
    if fmt not in FORMATS:
        raise OutputError(f"unknown output format {fmt!r} (choose {', '.join(FORMATS)})", path)
    if fmt == "png" and len(shape) == 3 and shape[0] > 1:
        raise OutputError(f"a PNG holds one image, this one has {shape[0]} sections "
                          "(choose --format mrc or tiff)", path)


@contextlib.contextmanager
def create_image(path, shape, fmt="mrc", *, kind=None, dtype="float32", voxel_size=None,
                 origin=None, overwrite=False, protected=(), label=None):
    """Create an image file atomically and yield its writable data, ``shape`` as given.

    MRC: :func:`cryoem_denoise.io.mrc.create_mrc`. TIFF: a memory-mapped, uncompressed TIFF
    (one page per section) with its space reserved first. PNG: an in-memory float32 array
    written when the block ends (see the module notes on ``dtype``). If the block raises,
    nothing is left behind.

    Raises
    ------
    OutputError
        The format cannot hold the shape, the output exists or is an input, the disk is
        full, or values overflow the pixel type.
    """
    shape = tuple(int(v) for v in shape)
    check_output_format(fmt, shape, path)
    mrc.check_output_name(path)
    if fmt == "mrc":
        with mrc.create_mrc(path, shape, kind=kind, dtype=dtype, voxel_size=voxel_size,
                            origin=origin, overwrite=overwrite, protected=protected,
                            label=label) as data:
            yield data
        return
    if fmt == "tiff":
        with tiff.create(path, shape, kind, dtype, voxel_size, origin, overwrite, protected,
                          label) as data:
            yield data
        return
    with atomic_output(path, overwrite=overwrite, protected=protected) as tmp:
        data = np.zeros(shape, np.float32)
        yield data
        png.write(tmp, data.reshape(shape[-2:]), dtype, voxel_size, label, path)


def write_image(path, image, header=None, *, fmt=None, voxel_size=None, origin=None,
                kind=None, dtype="float32", overwrite=False, protected=(), label=None):
    """Write an in-memory image, stack or volume atomically.

    Parameters
    ----------
    path : str or Path
    image : array_like
        2D image or ``(n, ny, nx)`` sections.
    header : ImageHeader, optional
        The input's header: its voxel size, origin and kind are kept unless given.
    fmt : {'mrc', 'tiff', 'png'}, optional
        By default from the file name's suffix (MRC if it has none of TIFF or PNG).
    dtype : str
        Pixel type written (``float32``, ``float16``; PNG: ``uint8``/``uint16``).
    overwrite : bool
        Replace an existing file (never one of ``protected``).
    """
    data = np.asarray(image)
    fmt = fmt or format_of_name(str(path))
    if header is not None:
        voxel_size = header.voxel_size if voxel_size is None else voxel_size
        origin = header.origin if origin is None else origin
        kind = header.kind if kind is None and data.ndim == 3 else kind
    if data.ndim == 3 and data.shape[0] == 1 and kind in (None, "image"):
        data = data[0]
    with create_image(path, data.shape, fmt, kind=kind, dtype=dtype, voxel_size=voxel_size,
                      origin=origin, overwrite=overwrite, protected=protected,
                      label=label) as out:
        with np.errstate(over="ignore", invalid="ignore"):
            out[...] = data


def default_output_dtype(header, fmt, dtype):
    """The pixel type to write: ``dtype`` for MRC/TIFF; for PNG the input's own 8/16-bit
    type when it has one (values kept), else ``dtype`` (scaled to 16 bits)."""
    if fmt == "png" and header.dtype in ("uint8", "uint16"):
        return header.dtype
    return dtype


def describe(header):
    """The pixel type as ``info`` shows it: ``'2 (float32)'`` (MRC mode), ``'TIFF (uint16)'``."""
    if header.format == "mrc":
        return f"{header.mode} ({header.dtype})"
    return f"{header.format.upper()} ({header.dtype})"

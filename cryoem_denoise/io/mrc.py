"""Reading and writing MRC/MRCS files.

Every image source is seen as a stack of 2D sections, shape ``(n, ny, nx)``: a single image
has ``n == 1``, an image stack (``.mrcs``, space group 0) has one section per particle, and a
volume is read section by section along z. Modes 0 (int8), 1 (int16), 2 (float32),
6 (uint16) and 12 (float16) are read; FEI/EPU extended headers are skipped by ``mrcfile``
and their type is reported. Outputs are float32 (or float16 on request), carry the source's
voxel size and origin, and are written atomically through :mod:`cryoem_denoise.io.atomic`, with
their space reserved before the memory map is written (a full disk is an error, not SIGBUS).

Headers as other programs write them: many older writers leave out the ``MAP `` id, the
machine stamp or the version, and some stamp the wrong byte order. Such a file is read (with
``mrcfile``'s permissive mode) when, in one byte order, its dimensions and mode describe
exactly the bytes the file holds; one :class:`~cryoem_denoise.errors.InputWarning` says
what was tolerated. When they do not agree the file is refused with the reason (size, mode,
byte order).

:func:`read_header`, :func:`open_sections`, :func:`read_sections` and
:func:`find_mrc_files` also accept TIFF and PNG files (handed to
:mod:`cryoem_denoise.io.image_io`), so callers that read "an image file" need not care.
"""

import bz2
import contextlib
import errno
import gzip
import os
import stat
import unicodedata
import warnings
import zlib
from pathlib import Path

import mrcfile
import numpy as np

from cryoem_denoise import __version__
from cryoem_denoise.errors import InputError, InputWarning, OutputError
from cryoem_denoise.io.atomic import atomic_output, reserve_space
from cryoem_denoise.io.header import ImageHeader

#: MRC modes this project reads, with the dtype ``mrcfile`` gives them.
SUPPORTED_MODES = {0: "int8", 1: "int16", 2: "float32", 6: "uint16", 12: "float16"}
_COMPLEX_MODES = {3: "complex int16", 4: "complex float32"}
#: Every mode the MRC2014 standard defines, with bytes per pixel (101: 4-bit, packed).
_KNOWN_MODES = {0: 1, 1: 2, 2: 4, 3: 4, 4: 8, 6: 2, 12: 2, 101: 0.5}
#: Pixel sizes (Å) that programs write when they do not know the real one.
#: Smallest section side accepted (SSIM's 7x7 window needs at least this).
MIN_SIDE = 8
#: Output dtypes :func:`write_mrc` accepts.
OUTPUT_DTYPES = ("float32", "float16")
#: File names taken from a folder (and their .gz/.bz2 variants).
MRC_SUFFIXES = (".mrc", ".mrcs", ".map", ".st", ".ali", ".rec")
#: Sections per chunk when scanning pixels, to bound memory on big stacks.
_SCAN_CHUNK_PIXELS = 1 << 24


def is_mrc_name(name):
    """Whether a file name looks like an MRC file (by suffix, compressed too)."""
    name = name.lower()
    return any(name.endswith(s + c) for s in MRC_SUFFIXES for c in ("", ".gz", ".bz2"))


def path_problem(path):
    """Why ``path`` cannot be opened as a file, or ``None``: one short phrase."""
    try:
        st = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symbolic link loop"
        if exc.errno == errno.ENOENT:
            if os.path.islink(path):
                return f"broken symbolic link (to {os.readlink(path)}, which does not exist)"
            return "no such file"
        if exc.errno == errno.ENOTDIR:
            return "no such file (a part of the path is not a folder)"
        if exc.errno == errno.ENAMETOOLONG:
            return "file name too long"
        if exc.errno in (errno.EACCES, errno.EPERM):
            return "permission denied"
        return exc.strerror or str(exc)

    if stat.S_ISDIR(st.st_mode):
        return "is a directory, expected an image file"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file (a device, pipe or socket)"
    if not os.access(path, os.R_OK):
        return "permission denied"
    return None


def _check_path(path):
    path = Path(path)
    problem = path_problem(path)
    if problem:
        raise InputError(problem, path)
    return path


def compression_of(path):
    """``'gzip'``, ``'bzip2'`` or ``None``, from the file's first bytes."""
    with open(path, "rb") as fh:
        magic = fh.read(3)
    if magic[:2] == b"\x1f\x8b":
        return "gzip"
    if magic == b"BZh":
        return "bzip2"
    return None


def read_header(path):
    """Read and validate an MRC header without loading the pixels.

    Raises
    ------
    InputError
        Missing or unreadable path, a directory, not an MRC file, an unsupported or
        complex mode, a truncated file, or sections that are empty or too small.
    """
    path = _check_path(path)
    try:
        compression = compression_of(path)
    except OSError as exc:
        raise InputError(exc.strerror or "cannot read", path) from None
    permissive = False
    try:
        fields = _header_fields(path, permissive=False)
        if fields[0] not in _KNOWN_MODES:  # perhaps a machine stamp of the wrong byte order
            raise ValueError(f"Unrecognised mode '{fields[0]}'")
    except (ValueError, OSError, EOFError) as exc:
        tolerated = _tolerated_fault(path, compression, exc)
        permissive = True
        try:
            fields = _header_fields(path, permissive=True)
        except (ValueError, OSError, EOFError) as exc2:
            raise InputError(_mrcfile_message(exc2), path) from None
        _warn_once(path, tolerated)
    mode, nx, ny, nz, voxel, origin, exttyp, ext_bytes, ispg = fields
    if mode in _COMPLEX_MODES:
        raise InputError(f"complex data (mode {mode}, {_COMPLEX_MODES[mode]}) is not an image", path)
    if mode not in SUPPORTED_MODES:
        raise InputError(f"unsupported MRC mode {mode} (supported: 0, 1, 2, 6, 12)", path)
    if min(nx, ny, nz) <= 0:
        raise InputError(f"empty image ({nx}x{ny}x{nz} pixels)", path)
    if nx < MIN_SIDE or ny < MIN_SIDE:
        raise InputError(f"image is {nx}x{ny} pixels; at least {MIN_SIDE}x{MIN_SIDE} is needed", path)
    itemsize = np.dtype(SUPPORTED_MODES[mode]).itemsize
    expected = 1024 + ext_bytes + nx * ny * nz * itemsize
    size = path.stat().st_size
    what = f"{nx}x{ny}x{nz} {SUPPORTED_MODES[mode]}"
    if compression is None and size < expected:
        raise InputError(f"truncated: {size:,} bytes, the header promises {expected:,} ({what})",
                         path)
    if compression == "gzip":
        isize = _gzip_isize(path)
        if isize is not None and isize != expected % (1 << 32):
            # the size in the trailer is only the last member's: count the bytes to be sure
            actual = _gzip_length(path)
            if actual is None:
                raise InputError(f"truncated: the gzip data end early ({what} promised)", path)
            if actual < expected:
                raise InputError(f"truncated or wrong header: the gzip data hold {actual:,} "
                                 f"bytes, the header promises {expected:,} ({what})", path)
    if nz == 1:
        kind = "image"
    else:
        kind = "stack" if ispg == 0 else "volume"
    return ImageHeader(
        path=str(path), mode=mode, dtype=SUPPORTED_MODES[mode], shape=(nz, ny, nx), kind=kind,
        voxel_size=voxel, origin=origin, exttyp=exttyp, extended_header_bytes=ext_bytes,
        file_bytes=size, compression=compression, permissive=permissive,
    )


def _header_fields(path, permissive):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with mrcfile.open(path, header_only=True, permissive=permissive) as mrc:
            header = mrc.header
            if header is None:
                raise ValueError("no valid MRC header")
            ext = mrc.extended_header
            _ = ext  # reading the extended header validates its size
            return (int(header.mode), int(header.nx), int(header.ny), int(header.nz),
                    tuple(float(v) for v in mrc.voxel_size.item()),
                    tuple(float(v) for v in header.origin.item()),
                    bytes(header.exttyp).decode("ascii", "replace").strip("\x00 "),
                    int(header.nsymbt), int(header.ispg))


def _raw_header(path, compression):
    """The first 1024 bytes (decompressed), or fewer if the file is shorter."""
    if compression == "gzip":

        opener = gzip.open
    elif compression == "bzip2":

        opener = bz2.open
    else:
        opener = open
    with opener(path, "rb") as fh:
        return fh.read(1024)


def _gzip_isize(path):
    """The uncompressed size modulo 2**32 stored at the end of a gzip file."""
    try:
        with open(path, "rb") as fh:
            fh.seek(-4, os.SEEK_END)
            return int.from_bytes(fh.read(4), "little")
    except OSError:
        return None


def _gzip_length(path, chunk=1 << 22):
    """Bytes of decompressed gzip data, or ``None`` if the stream is cut short or corrupt."""

    total = 0
    try:
        with gzip.open(path, "rb") as fh:
            while True:
                block = fh.read(chunk)
                if not block:
                    return total
                total += len(block)
    except (EOFError, OSError, zlib.error):
        return None


def _stamp_order(machst):
    if machst[0] == 0x44 and machst[1] in (0x44, 0x41):
        return "<"
    if machst[0] == 0x11 and machst[1] == 0x11:
        return ">"
    return None


_ORDER_NAME = {"<": "little-endian", ">": "big-endian"}


def _read_as(raw, order):
    """The header fields that decide whether a byte order fits: dims, mode, nsymbt."""
    dt = mrcfile.dtypes.HEADER_DTYPE.newbyteorder(order)
    h = np.frombuffer(raw, dtype=dt, count=1)[0]
    return (int(h["nx"]), int(h["ny"]), int(h["nz"]), int(h["mode"]), int(h["nsymbt"]),
            bytes(h["map"]), bytes(h["machst"]), int(h["nversion"]))


def _expected_bytes(nx, ny, nz, mode, nsymbt):
    per = _KNOWN_MODES[mode]
    return 1024 + nsymbt + int(np.ceil(nx * per) * ny * nz if mode == 101 else nx * ny * nz * per)


def _tolerated_fault(path, compression, exc):
    """Decide whether a header ``mrcfile`` refused can be read anyway.

    Returns the warning text when, in one byte order, the dimensions, mode and extended
    header describe exactly the file's size (or the gzip data's size); raises
    :class:`InputError` with the precise reason otherwise.
    """
    try:
        raw = _raw_header(path, compression)
    except (OSError, EOFError, ValueError) as err:
        raise InputError(f"cannot read ({err})", path) from None
    size = os.stat(path).st_size
    if len(raw) < 1024:
        if size == 0:
            raise InputError("empty file (0 bytes)", path)
        raise InputError(f"not an MRC file: {len(raw)} bytes, shorter than an MRC header "
                         f"(1024 bytes)", path)
    if compression is None:
        data_size = size
    elif compression == "gzip":
        data_size = _gzip_isize(path)
    else:
        data_size = None  # bzip2 keeps no size; dimensions and mode must do
    stamp = _stamp_order(raw[212:216])
    fits, plausible = [], []
    for order in ("<", ">"):
        nx, ny, nz, mode, nsymbt, map_id, machst, version = _read_as(raw, order)
        if mode not in _KNOWN_MODES or min(nx, ny, nz) <= 0 or nsymbt < 0:
            continue
        expected = _expected_bytes(nx, ny, nz, mode, nsymbt)
        plausible.append((order, nx, ny, nz, mode, expected))
        if data_size is None or expected % (1 << 32) == data_size % (1 << 32) and (
                compression or expected == size):
            fits.append((order, nx, ny, nz, mode, expected))
    has_id = raw[208:211] == b"MAP"
    if not fits:
        if not plausible:
            if has_id:
                mode = _read_as(raw, stamp or "<")[3]
                raise InputError(f"unsupported MRC mode {mode} in either byte order "
                                 f"(supported: 0, 1, 2, 6, 12)", path)
            raise InputError("not an MRC file (no 'MAP ' id, and no byte order gives a known "
                             "mode and dimensions)", path)
        order, nx, ny, nz, mode, expected = next(
            (p for p in plausible if p[0] == stamp), plausible[0])
        dtype = SUPPORTED_MODES.get(mode, _COMPLEX_MODES.get(mode, f"mode {mode}"))
        how = f"{nx}x{ny}x{nz} {dtype}, read {_ORDER_NAME[order]}"
        if data_size is None:
            reason = "bzip2 data cannot be checked"
        elif data_size < expected:
            reason = f"truncated: {data_size:,} bytes, the header promises {expected:,} ({how})"
        else:
            reason = (f"file holds {data_size:,} bytes but its header describes {expected:,} "
                      f"({how})")
        if not has_id:
            reason = f"not a valid MRC file (no 'MAP ' id); {reason}"
        raise InputError(reason, path)
    order = next((f[0] for f in fits if f[0] == stamp), fits[0][0])
    nx, ny, nz, mode, nsymbt, map_id, machst, version = _read_as(raw, order)
    lacks = []
    if not has_id:
        lacks.append("the 'MAP ' id")
    if stamp is None:
        lacks.append("a machine stamp")
    if version < 20140:
        lacks.append("a version")
    parts = []
    if lacks:
        parts.append("header lacks " + (lacks[0] if len(lacks) == 1 else
                                        ", ".join(lacks[:-1]) + " and " + lacks[-1]))
    if stamp is not None and stamp != order:
        parts.append(f"byte order: the machine stamp says {_ORDER_NAME[stamp]}, "
                     f"the file is {_ORDER_NAME[order]}")
    if not parts:
        parts.append(f"non-standard header ({str(exc).splitlines()[0]})")
    return (f"{'; '.join(parts)}; read as {_ORDER_NAME[order]} {nx}x{ny}x{nz} mode {mode} "
            f"because dimensions, mode and file size agree")


#: (path, message) pairs already warned about in this process.
_WARNED = set()


def _warn_once(path, message):
    key = (os.path.abspath(path), message)
    if key in _WARNED:
        return
    _WARNED.add(key)
    warnings.warn(InputWarning(f"{path}: {message}"), stacklevel=3)


def _mrcfile_message(exc):
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if "Map ID string not found" in text or "Couldn't read enough bytes" in text:
        return "not an MRC file (no valid MRC header)"
    if "mmap length" in text or "smaller than expected" in text:
        return "truncated MRC file"
    return f"invalid MRC file ({text})"


@contextlib.contextmanager
def open_sections(path, header=None):
    """Open an MRC file for reading and yield ``(sections, header)``.

    ``sections`` is a read-only, memory-mapped array of shape ``(n, ny, nx)`` in the file's
    dtype; sections are read from disk only when touched, so a stack of thousands of
    particles or an 8k micrograph costs no memory until used. Valid inside the ``with``.
    ``header``: the file's header if it was already read (it is not read again).
    """
    header = header or read_header(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if header.compression:  # gzip/bzip2 maps (e.g. from EMDB) cannot be memory-mapped
                mrc = mrcfile.open(header.path, mode="r", permissive=header.permissive)
            else:
                mrc = mrcfile.mmap(header.path, mode="r", permissive=header.permissive)
    except MemoryError:
        raise InputError(f"too large to read into memory ({header.shape[0]}x{header.shape[1]}"
                         f"x{header.shape[2]} pixels, compressed)", header.path) from None
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(_mrcfile_message(exc), header.path) from None
    try:
        data = mrc.data
        if data is None:
            raise InputError("pixel data cannot be read", header.path)
        yield data.reshape(header.shape), header
    finally:
        mrc.close()


def read_sections(path):
    """Read a whole MRC file into memory: ``(sections, header)``, sections ``(n, ny, nx)``."""
    with open_sections(path) as (data, header):
        return np.array(data), header


def check_same_geometry(header, other, path, whose="its pair's"):
    """Raise :class:`InputError` unless ``other`` (read from ``path``) has ``header``'s shape
    and, where both headers give a real one (not 0 or 1.0 Å), its pixel size."""
    if other.shape != header.shape:
        raise InputError(f"shape {other.shape} differs from {whose} {header.shape}", path)
    if header.pixel_size_is_placeholder or other.pixel_size_is_placeholder:
        return
    pa, pb = header.pixel_size, other.pixel_size
    if abs(pa - pb) > 1e-3 * pa:
        raise InputError(f"pixel size {pb:g} Å differs from {whose} {pa:g} Å", path)


def check_section(section, path=None, index=None):
    """Raise :class:`InputError` if a 2D section holds non-finite or constant pixels."""
    where = "" if index is None else f"section {index}: "
    sec = np.asarray(section)
    if sec.dtype.kind == "f" and not np.isfinite(sec).all():
        bad = int(sec.size - np.count_nonzero(np.isfinite(sec)))
        raise InputError(f"{where}{bad} non-finite (NaN or Inf) pixels", path)
    if sec.size and sec.min() == sec.max():
        raise InputError(f"{where}constant image (every pixel is {sec.flat[0]!r}); nothing to denoise", path)


def check_sections(sections, path=None):
    """Apply :func:`check_section` to each section of a stack."""
    for i, sec in enumerate(sections):
        check_section(sec, path, index=i if len(sections) > 1 else None)


def pixel_statistics(sections):
    """Min, max, mean, std and count of non-finite pixels, scanning in chunks.

    Works on memory-mapped stacks without loading them whole; statistics ignore
    non-finite pixels.
    """
    n = sections.shape[0]
    per_chunk = max(1, _SCAN_CHUNK_PIXELS // int(np.prod(sections.shape[1:])))
    count, total, total_sq = 0, 0.0, 0.0
    lo, hi, nonfinite = np.inf, -np.inf, 0
    for start in range(0, n, per_chunk):
        chunk = np.asarray(sections[start:start + per_chunk], dtype=np.float64)
        finite = np.isfinite(chunk)
        nonfinite += int(chunk.size - np.count_nonzero(finite))
        vals = chunk[finite] if nonfinite else chunk.ravel()
        if vals.size:
            lo, hi = min(lo, vals.min()), max(hi, vals.max())
            count += vals.size
            total += vals.sum()
            total_sq += np.square(vals).sum()
    mean = total / count if count else float("nan")
    var = max(total_sq / count - mean * mean, 0.0) if count else float("nan")
    return {"min": float(lo), "max": float(hi), "mean": float(mean), "std": float(np.sqrt(var)),
            "nonfinite": nonfinite}


_MODE_OF = {"float32": 2, "float16": 12}


@contextlib.contextmanager
def create_mrc(path, shape, *, kind=None, dtype="float32", voxel_size=None, origin=None,
               overwrite=False, protected=(), label=None):
    """Create an MRC file atomically and yield its writable, memory-mapped data.

    Fill the yielded array (shape ``(ny, nx)`` or ``(n, ny, nx)``); on leaving the block the
    header statistics, voxel size, origin and labels are written and the file is moved to
    ``path``. If the block raises, or the data hold non-finite values (float16 overflow),
    nothing is left behind. Memory use is the pages being written, not the file.

    Parameters
    ----------
    path : path-like
        Output file; never one of ``protected``, and kept if it exists unless ``overwrite``.
    shape : tuple of int
        ``(ny, nx)`` for an image, ``(n, ny, nx)`` for a stack or volume.
    kind : {'image', 'stack', 'volume'}, optional
        For 3D data: ``'stack'`` (default) marks an image stack, ``'volume'`` a volume.
    dtype : {'float32', 'float16'}
    voxel_size, origin : tuple of float, optional
        ``(x, y, z)`` in Å, usually from the input's :class:`ImageHeader`.
    label : str, optional
        Text stored in the header's label field (after a cryoem-denoise version stamp).

    Raises
    ------
    OutputError
        The output exists, is an input, or cannot be written; values overflow float16.
    """
    if dtype not in OUTPUT_DTYPES:
        raise OutputError(f"unsupported output format {dtype!r} (choose {', '.join(OUTPUT_DTYPES)})", path)
    shape = tuple(int(v) for v in shape)
    with atomic_output(path, overwrite=overwrite, protected=protected) as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mrc = mrcfile.new_mmap(tmp, shape, mrc_mode=_MODE_OF[dtype], overwrite=True)
        try:
            # a sparse file written through a memory map dies of SIGBUS on a full disk
            reserve_space(tmp, os.path.getsize(tmp))
            yield mrc.data
            if not all_finite(mrc.data):
                raise OutputError("values exceed the float16 range; write float32 instead"
                                  if dtype == "float16" else "refusing to write non-finite pixels",
                                  path)
            if len(shape) == 3:
                if kind == "volume":
                    mrc.set_volume()
                else:
                    mrc.set_image_stack()
            if voxel_size is not None:
                mrc.voxel_size = tuple(voxel_size)
            if origin is not None:
                mrc.header.origin = tuple(origin)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                mrc.update_header_stats()
            mrc.add_label(f"cryoem-denoise {__version__}")
            if label:
                mrc.add_label(ascii_label(label))
        finally:
            mrc.close()


#: Letters that have a usual ASCII spelling but no decomposition.
_ASCII_SPELLINGS = str.maketrans({"µ": "u", "μ": "u", "ß": "ss", "æ": "ae", "Æ": "AE",
                                  "ø": "o", "Ø": "O", "ł": "l", "Ł": "L", "œ": "oe",
                                  "Œ": "OE", "đ": "d", "Đ": "D", "þ": "th", "Þ": "Th"})


def ascii_label(text, width=80):
    """``text`` as an MRC header label: printable ASCII (accents dropped, other characters
    as ``?``), at most ``width`` characters."""

    plain = str(text).translate(_ASCII_SPELLINGS)
    plain = unicodedata.normalize("NFKD", plain)
    plain = "".join(c for c in plain if not unicodedata.combining(c))
    return "".join(c if 32 <= ord(c) < 127 else "?" for c in plain)[:width]


def all_finite(data):
    chunk = max(1, _SCAN_CHUNK_PIXELS // max(1, int(np.prod(data.shape[-2:]))))
    flat = data.reshape((-1,) + data.shape[-2:])
    return all(np.isfinite(flat[i:i + chunk]).all() for i in range(0, len(flat), chunk))


def write_mrc(path, sections, *, voxel_size=None, origin=None, kind=None, dtype="float32",
              overwrite=False, protected=(), label=None):
    """Write an in-memory image, stack or volume atomically (see :func:`create_mrc`).

    ``sections`` is a 2D image or ``(n, ny, nx)``; a single section with ``kind`` 'image'
    (or no kind) is written as a 2D image.
    """
    data = np.asarray(sections)
    if data.ndim == 3 and data.shape[0] == 1 and kind in (None, "image"):
        data = data[0]
    with create_mrc(path, data.shape, kind=kind, dtype=dtype, voxel_size=voxel_size, origin=origin,
                    overwrite=overwrite, protected=protected, label=label) as out:
        with np.errstate(over="ignore", invalid="ignore"):
            out[...] = data

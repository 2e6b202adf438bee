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

Headers are checked against the file before the pixels are used. The extended header length
(``nsymbt``) must not be negative nor longer than the file: each has its own message, given
before ``mrcfile`` reads anything. Then the file (for gzip and bzip2 files the decompressed
data; a gzip trailer's size is trusted when it agrees, otherwise the data are counted) must
hold exactly ``1024 + nsymbt + nx*ny*nz*bytes per pixel`` bytes:

- fewer: refused as truncated, with both sizes;
- more: **refused, with the numbers and what the extra bytes probably are** (more sections
  than ``nz`` when they are a whole number of sections, an extended header that ``nsymbt``
  does not declare, or a tail after the data). None of these is read with a warning, because
  the size alone cannot tell on which side of the pixels the extra bytes lie: an undeclared
  extended header comes *before* them (reading at ``1024 + nsymbt`` would denoise header
  bytes as pixels and shift every pixel), while a tail or extra sections come *after* them
  (reading only ``nz`` sections would silently leave data out; reading them all would
  contradict the header, and a tail may mean the dimensions are wrong). A wrong guess is a
  wrong output with exit status 0, the fault this check exists to prevent; the message says
  what to fix in the header (``nz``, ``nsymbt``) or the file (its tail).

Voxel sizes that are not finite numbers or are negative are read as 0 (not given), and an
origin that is not finite as 0.

Callers that read "an image file" use :mod:`cryoem_denoise.io.image_io`, which hands MRC
files to this module and TIFF and PNG files to theirs.
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
from cryoem_denoise.io.atomic import (
    _RANDOM_CHARS,
    _temporary_prefix,
    atomic_output,
    reserve_space,
)
from cryoem_denoise.io.header import ImageHeader
from cryoem_denoise.runtime.warnings_guard import catching_warnings

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
                return _broken_link(path)
            return "no such file"
        if exc.errno == errno.ENOTDIR:
            return "no such file (a part of the path is not a folder)"
        if exc.errno == errno.ENAMETOOLONG:
            return "file name too long"
        return describe_read_error(exc)
    if stat.S_ISDIR(st.st_mode):
        return "is a directory, expected an image file"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file (a device, pipe or socket)"
    if not os.access(path, os.R_OK):
        return "permission denied"
    return None


def _broken_link(path):
    try:
        target = os.readlink(path)
    except OSError:
        return "broken symbolic link (its target does not exist)"
    return f"broken symbolic link (to {target}, which does not exist)"


def describe_read_error(exc):
    """One short phrase for an ``OSError`` met while reading an input."""
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if exc.errno == errno.EIO:
        return ("input/output error (a damaged disk, or a network or removable disk that "
                "went away?)")
    if exc.errno == errno.ELOOP:
        return "symbolic link loop"
    if exc.errno == errno.ENOENT:
        return "no such file (removed while being read?)"
    if exc.errno is None:  # raised by a decoder (gzip, bzip2), not by the system
        return _first_line(exc)
    return f"cannot read ({(exc.strerror or _first_line(exc)).lower()})"


def _first_line(exc):
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


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


#: What decoding a damaged gzip or bzip2 stream can raise.
_STREAM_ERRORS = (OSError, EOFError, ValueError, zlib.error)


def read_header(path):
    """Read and validate an MRC header without loading the pixels.

    The header is checked against the file before it is used: the extended header length
    (``nsymbt``) must be neither negative nor longer than the file, and the file (or the
    decompressed gzip/bzip2 data) must hold exactly ``1024 + nsymbt + nx*ny*nz*bytes``
    bytes, no fewer (truncated) and no more (see the module notes).

    Raises
    ------
    InputError
        Missing or unreadable path, a directory, not an MRC file, an unsupported or
        complex mode, a bad extended header length, a file shorter or longer than its header
        says, or sections that are empty or too small.
    """
    path = _check_path(path)
    try:
        compression = compression_of(path)
        size = path.stat().st_size
    except OSError as exc:
        raise InputError(describe_read_error(exc), path) from None
    raw = _read_raw_header(path, compression, size)
    sizes = _DataSize(path, compression, size)
    _check_extended_header_length(raw, sizes, path)
    permissive, tolerated = False, None
    try:
        fields = _header_fields(path, permissive=False)
        if fields[0] not in _KNOWN_MODES:  # perhaps a machine stamp of the wrong byte order
            raise ValueError(f"Unrecognised mode '{fields[0]}'")
    except MemoryError:
        raise InputError("header asks for more memory than there is", path) from None
    except Exception as exc:  # mrcfile raises many types for damaged files
        tolerated = _tolerated_fault(path, raw, sizes, exc)
        permissive = True
        try:
            fields = _header_fields(path, permissive=True)
        except MemoryError:
            raise InputError("header asks for more memory than there is", path) from None
        except Exception as exc2:
            raise InputError(_mrcfile_message(exc2, compression), path) from None
    mode, nx, ny, nz, voxel, origin, exttyp, ext_bytes, ispg = fields
    if mode in _COMPLEX_MODES:
        raise InputError(f"complex data (mode {mode}, {_COMPLEX_MODES[mode]}) is not an image", path)
    if mode not in SUPPORTED_MODES:
        raise InputError(f"unsupported MRC mode {mode} (supported: 0, 1, 2, 6, 12)", path)
    if ext_bytes < 0:  # checked on the raw header already; kept for permissive reads
        raise InputError(f"invalid extended header length: nsymbt = {ext_bytes:,} (negative)",
                         path)
    if min(nx, ny, nz) <= 0:
        raise InputError(f"empty image ({nx}x{ny}x{nz} pixels)", path)
    if nx < MIN_SIDE or ny < MIN_SIDE:
        raise InputError(f"image is {nx}x{ny} pixels; at least {MIN_SIDE}x{MIN_SIDE} is needed", path)
    problem = _size_problem(sizes, nx, ny, nz, mode, ext_bytes)
    if problem:
        raise InputError(problem, path)
    if tolerated:  # only now: a file refused above gets its one error line, no warning
        _warn_once(path, tolerated)
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
    with catching_warnings():
        warnings.simplefilter("ignore")
        with mrcfile.open(path, header_only=True, permissive=permissive) as mrc:
            header = mrc.header
            if header is None:
                raise ValueError("no valid MRC header")
            ext = mrc.extended_header
            _ = ext  # reading the extended header validates its size
            return (int(header.mode), int(header.nx), int(header.ny), int(header.nz),
                    tuple(_length(v) for v in mrc.voxel_size.item()),
                    tuple(_length(v, signed=True) for v in header.origin.item()),
                    bytes(header.exttyp).decode("ascii", "replace").strip("\x00 "),
                    int(header.nsymbt), int(header.ispg))


def _length(value, signed=False):
    """A voxel size or origin (Å) from a header: 0 (not given) where it is not a finite
    number, or is negative and should not be."""
    value = float(value)
    return value if np.isfinite(value) and (signed or value >= 0) else 0.0


def _opener(compression):
    return {"gzip": gzip.open, "bzip2": bz2.open}.get(compression, open)


def _read_raw_header(path, compression, size):
    """The first 1024 bytes (decompressed); :class:`InputError` if there are fewer."""
    try:
        with _opener(compression)(path, "rb") as fh:
            raw = fh.read(1024)
    except _STREAM_ERRORS as exc:
        raise InputError(_stream_message(exc, compression), path) from None
    if len(raw) < 1024:
        if size == 0:
            raise InputError("empty file (0 bytes)", path)
        raise InputError(f"not an MRC file: {len(raw)} bytes, shorter than an MRC header "
                         f"(1024 bytes)", path)
    return raw


def _stream_message(exc, compression):
    if isinstance(exc, OSError) and exc.errno is not None:
        return describe_read_error(exc)
    if compression is None:
        return f"cannot read ({_first_line(exc)})"
    if isinstance(exc, EOFError):
        return f"truncated: the {compression} data end early"
    return f"damaged {compression} data ({_first_line(exc)})"


class _DataSize:
    """How many bytes the MRC data hold: the file's size, or the decompressed size of a
    gzip or bzip2 file (gzip: the trailer's size when it agrees with the header's, else
    counted; bzip2 keeps no size: counted, once)."""

    def __init__(self, path, compression, file_bytes):
        self.path, self.compression, self.file_bytes = path, compression, file_bytes
        self._counted = False
        self._count = None

    def get(self, expected=None):
        """The size, or ``None`` where the compressed data cannot be read to the end."""
        if self.compression is None:
            return self.file_bytes
        if self.compression == "gzip" and expected is not None and \
                _gzip_isize(self.path) == expected % (1 << 32):
            return expected
        if not self._counted:
            self._count = _stream_length(self.path, self.compression)
            self._counted = True
        return self._count


def _gzip_isize(path):
    """The uncompressed size modulo 2**32 stored at the end of a gzip file."""
    try:
        with open(path, "rb") as fh:
            fh.seek(-4, os.SEEK_END)
            return int.from_bytes(fh.read(4), "little")
    except OSError:
        return None


def _stream_length(path, compression, chunk=1 << 22):
    """Bytes of decompressed data, or ``None`` if the stream is cut short or corrupt."""
    total = 0
    try:
        with _opener(compression)(path, "rb") as fh:
            while True:
                block = fh.read(chunk)
                if not block:
                    return total
                total += len(block)
    except _STREAM_ERRORS:
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


def _likely_order(raw):
    """The byte order ``mrcfile`` reads the header in: the machine stamp's if it gives a
    known mode, else the one that does."""
    stamp = _stamp_order(raw[212:216])
    orders = [stamp] if stamp else []
    orders += [o for o in "<>" if o not in orders]
    for order in orders:
        if _read_as(raw, order)[3] in _KNOWN_MODES:
            return order
    return None


def _section_bytes(nx, ny, mode):
    per = _KNOWN_MODES[mode]
    return int(np.ceil(nx * per)) * ny if mode == 101 else int(nx * ny * per)


def _expected_bytes(nx, ny, nz, mode, nsymbt):
    return 1024 + nsymbt + _section_bytes(nx, ny, mode) * nz


def _check_extended_header_length(raw, sizes, path):
    """Refuse a negative ``nsymbt`` or one longer than the file, before anything uses it
    (``mrcfile`` would allocate that many bytes, or misreport the fault)."""
    order = _likely_order(raw)
    if order is None:  # no known mode in either byte order: the mode check says so
        return
    nx, ny, nz, mode, nsymbt = _read_as(raw, order)[:5]
    if nsymbt < 0:
        raise InputError(f"invalid extended header length: nsymbt = {nsymbt:,} (negative)", path)
    if nsymbt == 0:
        return
    expected = _expected_bytes(nx, ny, nz, mode, nsymbt) if min(nx, ny, nz) > 0 else None
    actual = sizes.get(expected)
    if actual is not None and 1024 + nsymbt > actual:
        where = f"the {sizes.compression} data hold" if sizes.compression else "the file holds"
        raise InputError(f"invalid extended header length: nsymbt = {nsymbt:,} bytes, but "
                         f"{where} only {actual - 1024:,} after the 1,024-byte header", path)


def _layout(nx, ny, nz, mode, nsymbt):
    dtype = SUPPORTED_MODES.get(mode, _COMPLEX_MODES.get(mode, f"mode {mode}"))
    what = f"{nx}x{ny}x{nz} {dtype}"
    if nsymbt:
        what += f" after a {nsymbt:,}-byte extended header"
    return what


def _size_problem(sizes, nx, ny, nz, mode, nsymbt, how=None):
    """Why the data size disagrees with the header, or ``None``."""
    expected = _expected_bytes(nx, ny, nz, mode, nsymbt)
    actual = sizes.get(expected)
    what = _layout(nx, ny, nz, mode, nsymbt) + (f", {how}" if how else "")
    comp = sizes.compression
    if actual is None:
        return f"truncated: the {comp} data end early or are damaged ({what} promised)"
    if actual < expected:
        if comp:
            return (f"truncated or wrong header: the {comp} data hold {actual:,} bytes, the "
                    f"header promises {expected:,} ({what})")
        return f"truncated: {actual:,} bytes, the header promises {expected:,} ({what})"
    if actual > expected:
        return _extra_bytes_message(actual, expected, nx, ny, nz, mode, nsymbt, what, comp)
    return None


def _extra_bytes_message(actual, expected, nx, ny, nz, mode, nsymbt, what, comp):
    """More bytes than the header declares: name what they probably are, and refuse (the
    size alone cannot tell whether they come before the data or after them)."""
    extra = actual - expected
    causes = ["an extended header that nsymbt = 0 does not declare" if nsymbt == 0 else
              f"an extended header longer than the {nsymbt:,} bytes nsymbt declares"]
    section = _section_bytes(nx, ny, mode)
    if section and extra % section == 0:
        k = extra // section
        causes.append(f"{k:,} more section{'s' if k != 1 else ''} than nz = {nz}")
    else:
        causes.append(f"a {extra:,}-byte tail after the data")
    holds = f"the {comp} data hold" if comp else "the file holds"
    return (f"{extra:,} byte{'s' if extra != 1 else ''} more than the header declares "
            f"({holds} {actual:,}, the header "
            f"describes {expected:,}: {what}): {', or '.join(causes)}; refusing to guess")


def _tolerated_fault(path, raw, sizes, exc):
    """Decide whether a header ``mrcfile`` refused can be read anyway.

    Returns the warning text when, in one byte order, the dimensions, mode and extended
    header describe exactly the file's size (or the decompressed data's size); raises
    :class:`InputError` with the precise reason otherwise.
    """
    stamp = _stamp_order(raw[212:216])
    fits, plausible = [], []
    for order in ("<", ">"):
        nx, ny, nz, mode, nsymbt = _read_as(raw, order)[:5]
        if mode not in _KNOWN_MODES or min(nx, ny, nz) <= 0 or nsymbt < 0:
            continue
        plausible.append((order, nx, ny, nz, mode, nsymbt))
        if sizes.get(_expected_bytes(nx, ny, nz, mode, nsymbt)) == \
                _expected_bytes(nx, ny, nz, mode, nsymbt):
            fits.append(order)
    has_id = raw[208:211] == b"MAP"
    if not fits:
        if not plausible:
            if has_id:
                mode = _read_as(raw, stamp or "<")[3]
                raise InputError(f"unsupported MRC mode {mode} in either byte order "
                                 f"(supported: 0, 1, 2, 6, 12)", path)
            raise InputError("not an MRC file (no 'MAP ' id, and no byte order gives a known "
                             "mode and dimensions)", path)
        order, nx, ny, nz, mode, nsymbt = next(
            (p for p in plausible if p[0] == stamp), plausible[0])
        reason = _size_problem(sizes, nx, ny, nz, mode, nsymbt,
                               how=f"read {_ORDER_NAME[order]}")
        if reason is None:  # the size fits: the fault is elsewhere in the header
            reason = f"invalid MRC header ({_first_line(exc)})"
        if not has_id:
            reason = f"not a valid MRC file (no 'MAP ' id); {reason}"
        raise InputError(reason, path)
    order = stamp if stamp in fits else fits[0]
    nx, ny, nz, mode, _nsymbt, _map_id, _machst, version = _read_as(raw, order)
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
        parts.append(f"non-standard header ({_first_line(exc)})")
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


def _mrcfile_message(exc, compression=None):
    if isinstance(exc, OSError) and exc.errno is not None:
        return describe_read_error(exc)
    if compression and isinstance(exc, (OSError, EOFError, zlib.error)):
        return _stream_message(exc, compression)  # the decompressor's, not mrcfile's
    text = _first_line(exc)
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
        with catching_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if header.compression:  # gzip/bzip2 maps (e.g. from EMDB) cannot be memory-mapped
                mrc = mrcfile.open(header.path, mode="r", permissive=header.permissive)
            else:
                mrc = mrcfile.mmap(header.path, mode="r", permissive=header.permissive)
    except MemoryError:
        raise InputError(f"too large to read into memory ({header.shape[0]}x{header.shape[1]}"
                         f"x{header.shape[2]} pixels, compressed)", header.path) from None
    except Exception as exc:  # mrcfile, gzip, bz2 and zlib raise many types
        raise InputError(_mrcfile_message(exc, header.compression), header.path) from None
    try:
        data = mrc.data
        if data is None:
            raise InputError("pixel data cannot be read", header.path)
        larger = [str(w.message) for w in caught if "larger than expected" in str(w.message)]
        if larger or data.size != int(np.prod(header.shape)):
            # read_header refuses such files: the file changed after its header was read
            raise InputError("file size or header changed while it was being read "
                             f"({larger[0] if larger else f'{data.shape} pixels'})", header.path)
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
        with np.errstate(invalid="ignore"):  # float16 signalling NaNs: counted below
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


def _temporary_overhead(name):
    """Bytes :func:`~cryoem_denoise.io.atomic.atomic_output`'s temporary name adds to the
    output's (``.NAME.<random>.part``)."""
    return len(_temporary_prefix(name).encode()) - len(name.encode()) + _RANDOM_CHARS + \
        len(".part")


def check_output_name(path):
    """Raise :class:`OutputError` if the file system cannot hold ``path``'s name (or the
    temporary name it is first written under): one line instead of ``ENAMETOOLONG``."""
    path = Path(path)
    name = os.fsencode(path.name)
    extra = _temporary_overhead(path.name)
    try:
        limit = os.pathconf(path.parent, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    if len(name) + extra > limit:
        raise OutputError(f"file name too long ({len(name)} bytes; at most {limit - extra} "
                          f"fit: the file system's {limit} less {extra} for the temporary "
                          f"file written first): shorten --suffix or the input's name", path)
    try:
        path_max = os.pathconf(path.parent, "PC_PATH_MAX")
    except (OSError, ValueError):
        path_max = 4096
    whole = len(os.fsencode(str(path))) + extra
    if whole >= path_max:
        raise OutputError(f"path too long ({whole - extra} bytes; the limit is "
                          f"{path_max - extra - 1}): choose a shorter output folder", path)


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
    check_output_name(path)
    with atomic_output(path, overwrite=overwrite, protected=protected) as tmp:
        with catching_warnings():
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
            with catching_warnings():
                warnings.simplefilter("ignore")
                mrc.update_header_stats()
            # our labels only: mrcfile's own carries the creation time, and the same input
            # must give the same file, byte for byte (a sharded run equals an unsharded one)
            mrc.header.nlabl = 0
            mrc.header.label = b""
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

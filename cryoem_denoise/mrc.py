"""Reading and writing MRC/MRCS files.

Every image source is seen as a stack of 2D sections, shape ``(n, ny, nx)``: a single image
has ``n == 1``, an image stack (``.mrcs``, space group 0) has one section per particle, and a
volume is read section by section along z. Modes 0 (int8), 1 (int16), 2 (float32),
6 (uint16) and 12 (float16) are read; FEI/EPU extended headers are skipped by ``mrcfile``
and their type is reported. Outputs are float32 (or float16 on request), carry the source's
voxel size and origin, and are written atomically through :mod:`cryoem_denoise.atomic`.
"""

import contextlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import mrcfile
import numpy as np

from cryoem_denoise import __version__
from cryoem_denoise.atomic import atomic_output
from cryoem_denoise.errors import InputError, OutputError

#: MRC modes this project reads, with the dtype ``mrcfile`` gives them.
SUPPORTED_MODES = {0: "int8", 1: "int16", 2: "float32", 6: "uint16", 12: "float16"}
_COMPLEX_MODES = {3: "complex int16", 4: "complex float32"}
#: Smallest section side accepted (SSIM's 7x7 window needs at least this).
MIN_SIDE = 8
#: Output dtypes :func:`write_mrc` accepts.
OUTPUT_DTYPES = ("float32", "float16")
#: File names taken from a folder (and their .gz/.bz2 variants).
MRC_SUFFIXES = (".mrc", ".mrcs", ".map", ".st", ".ali", ".rec")
#: Sections per chunk when scanning pixels, to bound memory on big stacks.
_SCAN_CHUNK_PIXELS = 1 << 24


@dataclass(frozen=True)
class MrcHeader:
    """The facts about an MRC file a user needs.

    Attributes
    ----------
    path : str
    mode : int
        MRC mode number.
    dtype : str
        NumPy dtype of the stored pixels.
    shape : tuple of int
        ``(n, ny, nx)``: sections and section size.
    kind : {'image', 'stack', 'volume'}
    voxel_size : tuple of float
        ``(x, y, z)`` in Å; 0 where the file does not say.
    origin : tuple of float
        ``(x, y, z)`` in Å.
    exttyp : str
        Extended-header type (``'FEI1'``, ``'FEI2'``, ... or ``''``).
    extended_header_bytes : int
    file_bytes : int
    """

    path: str
    mode: int
    dtype: str
    shape: tuple
    kind: str
    voxel_size: tuple
    origin: tuple
    exttyp: str
    extended_header_bytes: int
    file_bytes: int
    compression: str = None

    @property
    def n_sections(self):
        return self.shape[0]

    @property
    def section_shape(self):
        return self.shape[1:]

    @property
    def pixel_size(self):
        """Pixel size in Å (x), or ``None`` if the header does not give one."""
        return self.voxel_size[0] or None


def is_mrc_name(name):
    """Whether a file name looks like an MRC file (by suffix, compressed too)."""
    name = name.lower()
    return any(name.endswith(s + c) for s in MRC_SUFFIXES for c in ("", ".gz", ".bz2"))


def find_mrc_files(inputs):
    """Files, folders and glob patterns → MRC file paths, in order, without repeats.

    A folder contributes its MRC files (by suffix, sorted); a pattern with ``*``, ``?`` or
    ``[`` is expanded. A named file is taken whatever its suffix (it is checked when read).

    Raises
    ------
    InputError
        A path that does not exist, a pattern that matches nothing, or a folder without
        MRC files.
    """
    import glob

    files = []
    for item in inputs:
        text = str(item)
        path = Path(text)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and is_mrc_name(p.name))
            if not found:
                raise InputError("folder holds no MRC files (.mrc, .mrcs, .map, ...)", path)
            files.extend(found)
        elif path.exists():
            files.append(path)
        elif any(ch in text for ch in "*?["):
            found = sorted(Path(p) for p in glob.glob(text) if Path(p).is_file())
            if not found:
                raise InputError("pattern matches no files", text)
            files.extend(found)
        else:
            raise InputError("no such file or folder", path)
    return list(dict.fromkeys(files))


def _check_path(path):
    path = Path(path)
    if not path.exists():
        raise InputError("no such file", path)
    if path.is_dir():
        raise InputError("is a directory, expected an MRC file", path)
    if not os.access(path, os.R_OK):
        raise InputError("permission denied", path)
    return path


def _compression(path):
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
        compression = _compression(path)
    except OSError as exc:
        raise InputError(exc.strerror or "cannot read", path) from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with mrcfile.open(path, header_only=True, permissive=False) as mrc:
                header = mrc.header
                ext = mrc.extended_header
                mode = int(header.mode)
                nx, ny, nz = int(header.nx), int(header.ny), int(header.nz)
                voxel = tuple(float(v) for v in mrc.voxel_size.item())
                origin = tuple(float(v) for v in mrc.header.origin.item())
                exttyp = bytes(header.exttyp).decode("ascii", "replace").strip("\x00 ")
                ext_bytes = int(header.nsymbt)
                ispg = int(header.ispg)
                _ = ext  # reading the extended header validates its size
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(_mrcfile_message(exc), path) from None
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
    if compression is None and size < expected:
        raise InputError(f"truncated: {size} bytes, the header promises {expected}", path)
    if nz == 1:
        kind = "image"
    else:
        kind = "stack" if ispg == 0 else "volume"
    return MrcHeader(
        path=str(path), mode=mode, dtype=SUPPORTED_MODES[mode], shape=(nz, ny, nx), kind=kind,
        voxel_size=voxel, origin=origin, exttyp=exttyp, extended_header_bytes=ext_bytes,
        file_bytes=size, compression=compression,
    )


def _mrcfile_message(exc):
    text = str(exc)
    if "Map ID string not found" in text or "Couldn't read enough bytes" in text:
        return "not an MRC file (no valid MRC header)"
    if "mmap length" in text or "smaller than expected" in text:
        return "truncated MRC file"
    return f"invalid MRC file ({text})"


@contextlib.contextmanager
def open_sections(path):
    """Open an MRC file for reading and yield ``(sections, header)``.

    ``sections`` is a read-only, memory-mapped array of shape ``(n, ny, nx)`` in the file's
    dtype; sections are read from disk only when touched, so a stack of thousands of
    particles or an 8k micrograph costs no memory until used. Valid inside the ``with``.
    """
    header = read_header(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if header.compression:  # gzip/bzip2 maps (e.g. from EMDB) cannot be memory-mapped
                mrc = mrcfile.open(header.path, mode="r", permissive=False)
            else:
                mrc = mrcfile.mmap(header.path, mode="r", permissive=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(_mrcfile_message(exc), header.path) from None
    try:
        data = mrc.data
        yield data.reshape(header.shape), header
    finally:
        mrc.close()


def read_sections(path):
    """Read a whole MRC file into memory: ``(sections, header)``, sections ``(n, ny, nx)``."""
    with open_sections(path) as (data, header):
        return np.array(data), header


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
        ``(x, y, z)`` in Å, usually from the input's :class:`MrcHeader`.
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
            yield mrc.data
            if not _all_finite(mrc.data):
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
                mrc.add_label(label[:80])
        finally:
            mrc.close()


def _all_finite(data):
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

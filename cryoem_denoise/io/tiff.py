"""TIFF files (read and written with ``tifffile``): a single image or a multi-page stack.

Every page the same size; 8-, 16- or 32-bit integers or 16-, 32- or 64-bit floats, any
compression ``tifffile`` reads; uncompressed files are memory-mapped. The pixel size is taken
from this project's own metadata or from ImageJ's (``unit`` Å, nm or µm); plain TIFF
resolution tags (usually 72 dpi) are not a pixel size and are ignored. Outputs are
uncompressed, memory-mapped, float32 or float16, written atomically with their space
reserved first.

Damaged files are refused before their pixels are decoded when the pages' data cannot hold
the declared image (uncompressed: fewer bytes than it needs; compressed: more than
:data:`_MAX_RATIO` times the file's size), and when the chain of pages loops (``tifffile``
would not return). ``tifffile``'s log messages about damaged files are kept off stderr.
"""

import contextlib
import logging
import os
import struct
import warnings

import numpy as np
import tifffile

from cryoem_denoise.errors import InputError, OutputError
from cryoem_denoise.io import mrc
from cryoem_denoise.io.atomic import atomic_output, reserve_space
from cryoem_denoise.io.header import ImageHeader, check_pixel_type
from cryoem_denoise.runtime.warnings_guard import catching_warnings

__all__ = ["MAGIC", "SUFFIXES", "read_header", "read_data", "create"]

SUFFIXES = (".tif", ".tiff")
MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")

#: ImageJ length units → Å.
_UNIT_TO_A = {"a": 1.0, "å": 1.0, "\u212b": 1.0, "angstrom": 1.0, "nm": 10.0, "nanometer": 10.0,
              "um": 1e4, "µm": 1e4, "\u03bcm": 1e4, "micron": 1e4, "microns": 1e4}


def _error(exc):
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"not a readable TIFF file ({text})"


#: A compressed TIFF whose pixels would take more than this many times its size (and more
#: than :data:`_SMALL` bytes) is refused before it is decoded: deflate cannot compress
#: beyond about 1,032:1 nor LZW beyond about 2,730:1, so such a header has wrong
#: dimensions, and decoding it would allocate memory the file cannot fill.
_MAX_RATIO = 4096
_SMALL = 1 << 24


@contextlib.contextmanager
def _quiet():
    """Keep ``tifffile``'s log messages and warnings about damaged files off stderr (the
    problem is raised as one :class:`InputError` instead)."""
    logger = logging.getLogger("tifffile")
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        with catching_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _page_loop(path, size):
    """The offset of a page (IFD) that the chain of pages comes back to, or ``None``.

    ``tifffile`` loops for ever on some such chains, so they are refused before it reads
    the file. Chains that end early or point outside the file are left to ``tifffile``.
    """
    with open(path, "rb") as fh:
        head = fh.read(16)
        if len(head) < 8:
            return None
        order = "<" if head[:2] == b"II" else ">"
        big = struct.unpack(order + "H", head[2:4])[0] == 43
        count_fmt, entry, offset_fmt = ("Q", 20, "Q") if big else ("H", 12, "I")
        if big:
            if len(head) < 16:
                return None
            offset = struct.unpack(order + "Q", head[8:16])[0]
        else:
            offset = struct.unpack(order + "I", head[4:8])[0]
        count_size, offset_size = struct.calcsize(count_fmt), struct.calcsize(offset_fmt)
        seen = set()
        while offset:
            if offset in seen:
                return offset
            seen.add(offset)
            if offset + count_size > size:
                return None
            fh.seek(offset)
            raw = fh.read(count_size)
            if len(raw) < count_size:
                return None
            count = struct.unpack(order + count_fmt, raw)[0]
            where = offset + count_size + count * entry
            if where + offset_size > size:
                return None
            fh.seek(where)
            offset = struct.unpack(order + offset_fmt, fh.read(offset_size))[0]
    return None


def read_header(path):
    """The :class:`ImageHeader` of a TIFF file (:class:`InputError` if it cannot be used)."""
    size = os.path.getsize(path)
    loop = _page_loop(path, size)
    if loop is not None:
        raise InputError(f"damaged TIFF: its list of pages loops back to the page at byte "
                         f"{loop:,}", path)
    try:
        with _quiet(), tifffile.TiffFile(path) as tif:
            series = tif.series
            if not series:
                raise InputError("TIFF file holds no images", path)
            first = series[0]
            if len({(tuple(s.shape), s.axes, s.dtype) for s in series}) > 1:
                shapes = sorted({tuple(s.shape) for s in series})
                raise InputError(f"TIFF holds {len(series)} images of different sizes or types "
                                 f"({', '.join('x'.join(map(str, s)) for s in shapes[:3])}); "
                                 "one stack of equal pages is needed", path)
            axes, shape, dtype = first.axes, tuple(first.shape), first.dtype
            if len(series) > 1:  # pages written one by one: a stack of equal series
                shape, axes = (len(series),) + shape, "Q" + axes
            last = tif.pages[len(tif.pages) - 1]
            ends = [o + c for o, c in zip(last.dataoffsets, last.databytecounts)]
            meta = _metadata(tif)
            compressed = any(int(s.keyframe.compression) != 1 for s in series)
            stored = _stored_bytes(series, size)
    except InputError:
        raise
    except MemoryError:
        raise InputError("TIFF header asks for more memory than there is", path) from None
    except Exception as exc:  # tifffile raises many types for damaged files
        raise InputError(_error(exc), path) from None
    if ends and max(ends) > size:
        raise InputError(f"truncated: {size:,} bytes, the TIFF pages need {max(ends):,}", path)
    if dtype is None:
        raise InputError("TIFF pixel type not readable (damaged header)", path)
    if "S" in axes and shape[axes.index("S")] > 1:
        raise InputError(f"colour image ({shape[axes.index('S')]} samples per pixel); "
                         "a grey-level image is needed", path)
    dtype = check_pixel_type(dtype, path, "TIFF")
    what = f"{'x'.join(map(str, shape))} {dtype}"
    needed = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if not compressed and needed > stored:
        raise InputError(f"truncated or wrong dimensions: the TIFF pages hold {stored:,} bytes "
                         f"of pixels, {what} needs {needed:,}", path)
    if compressed and needed > max(_SMALL, _MAX_RATIO * size):
        raise InputError(f"wrong dimensions or damaged file: {what} is {needed:,} bytes, more "
                         f"than {size:,} compressed bytes can hold", path)
    shape = tuple(v for v, a in zip(shape, axes) if a != "S")
    axes = axes.replace("S", "")
    if len(shape) < 2:
        raise InputError(f"not an image (shape {shape})", path)
    ny, nx = shape[-2:]
    n = int(np.prod(shape[:-2], dtype=np.int64)) if len(shape) > 2 else 1
    kind = meta.get("kind") or ("image" if n == 1 else ("volume" if "Z" in axes else "stack"))
    px = _length(meta.get("pixel_size", 0.0))
    pz = _length(meta.get("pixel_size_z", px if kind == "volume" else 0.0))
    origin = tuple(_length(v, signed=True) for v in meta.get("origin", (0.0, 0.0, 0.0)))
    origin = (origin + (0.0, 0.0, 0.0))[:3]
    return ImageHeader(path=str(path), mode=None, dtype=str(dtype), shape=(n, ny, nx),
                       kind=kind if n > 1 else "image", voxel_size=(px, px, pz),
                       origin=origin, exttyp="", extended_header_bytes=0, file_bytes=size,
                       format="tiff")


def _stored_bytes(series, size):
    """Bytes of pixel data the pages' strips or tiles hold (for contiguous series, what the
    file holds after the data's start)."""
    total = 0
    for s in series:
        offset = getattr(s, "dataoffset", None)
        if offset is not None:
            total += max(0, size - int(offset))
        else:
            total += sum(int(c) for p in s.pages if p is not None for c in p.databytecounts)
    return total


def _length(value, signed=False):
    """A pixel size or origin (Å) from metadata: 0 (not given) where it is not a finite
    number, or is negative and should not be."""
    try:
        value = float(value)
    except (TypeError, ValueError, OverflowError):
        return 0.0
    return value if np.isfinite(value) and (signed or value >= 0) else 0.0


def _plausible(px):
    return 0.01 <= px <= 1e4


#: What odd metadata values can raise: they are then ignored (the pixels are still read).
_BAD_VALUE = (TypeError, ValueError, OverflowError, ZeroDivisionError, AttributeError,
              KeyError, IndexError)


def _metadata(tif):
    """Pixel size (Å), kind and origin from this project's JSON or ImageJ's metadata
    (values that are not numbers are ignored)."""
    meta = {}
    try:
        ours = tif.shaped_metadata
    except Exception:
        ours = None
    if ours and isinstance(ours[0], dict) and "pixel_size" in ours[0]:
        d = ours[0]
        with contextlib.suppress(*_BAD_VALUE):
            meta["pixel_size"] = float(d["pixel_size"])
            if d.get("kind") in ("image", "stack", "volume"):
                meta["kind"] = d["kind"]
            if "origin" in d:
                meta["origin"] = tuple(float(v) for v in d["origin"])[:3]
        return meta
    try:
        ij = tif.imagej_metadata
    except Exception:
        ij = None
    if not isinstance(ij, dict):
        return meta
    with contextlib.suppress(*_BAD_VALUE):
        unit = str(ij.get("unit", "")).strip().lower()
        scale = _UNIT_TO_A.get(unit)
        xres = tif.pages[0].tags.get("XResolution")
        if scale and xres is not None:
            num, den = xres.value
            if num:
                px = scale * den / num
                if _plausible(px):
                    meta["pixel_size"] = px
                    if "spacing" in ij:
                        meta["pixel_size_z"] = float(ij["spacing"]) * scale
    return meta


def read_data(path):
    """The pixels of a TIFF file: memory-mapped where it is uncompressed and contiguous."""
    with _quiet():
        with tifffile.TiffFile(path) as tif:
            several = len(tif.series) > 1
        if not several:
            try:
                return tifffile.memmap(path, mode="r")
            except (ValueError, OSError):  # compressed or not contiguous: read it
                pass
        with tifffile.TiffFile(path) as tif:
            if len(tif.series) == 1:
                return tif.series[0].asarray()
            return np.stack([s.asarray() for s in tif.series])


@contextlib.contextmanager
def create(path, shape, kind, dtype, voxel_size, origin, overwrite, protected, label):
    """Create a memory-mapped TIFF atomically and yield its data (one page per section)."""
    if dtype not in mrc.OUTPUT_DTYPES:
        raise OutputError(f"unsupported output pixel type {dtype!r} "
                          f"(choose {', '.join(mrc.OUTPUT_DTYPES)})", path)
    meta = {"kind": kind or ("image" if len(shape) == 2 else "stack"),
            "pixel_size": float(voxel_size[0]) if voxel_size is not None else 0.0,
            "origin": [float(v) for v in origin] if origin is not None else [0.0, 0.0, 0.0]}
    if label:
        meta["label"] = mrc.ascii_label(label, 200)
    extra = {}
    px = meta["pixel_size"]
    if px and _plausible(px):
        extra = {"resolution": (1e8 / px, 1e8 / px), "resolutionunit": "CENTIMETER"}
    with atomic_output(path, overwrite=overwrite, protected=protected) as tmp:
        size = int(np.prod(shape)) * np.dtype(dtype).itemsize
        with catching_warnings():
            warnings.simplefilter("ignore")
            data = tifffile.memmap(tmp, shape=shape, dtype=dtype, photometric="minisblack",
                                   metadata=meta, bigtiff=size > 2 ** 31, **extra)
        try:
            reserve_space(tmp, os.path.getsize(tmp))
            yield data
            if not mrc.all_finite(data):
                raise OutputError("values exceed the float16 range; write float32 instead"
                                  if dtype == "float16" else "refusing to write non-finite "
                                  "pixels", path)
            data.flush()
        finally:
            del data

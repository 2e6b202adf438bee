"""TIFF files (read and written with ``tifffile``): a single image or a multi-page stack.

Every page the same size; 8-, 16- or 32-bit integers or 16-, 32- or 64-bit floats, any
compression ``tifffile`` reads; uncompressed files are memory-mapped. The pixel size is taken
from this project's own metadata or from ImageJ's (``unit`` Å, nm or µm); plain TIFF
resolution tags (usually 72 dpi) are not a pixel size and are ignored. Outputs are
uncompressed, memory-mapped, float32 or float16, written atomically with their space
reserved first.
"""

import contextlib
import os
import warnings

import numpy as np
import tifffile

from cryoem_denoise.errors import InputError, OutputError
from cryoem_denoise.io import mrc
from cryoem_denoise.io.atomic import atomic_output, reserve_space
from cryoem_denoise.io.header import ImageHeader, check_pixel_type

__all__ = ["MAGIC", "SUFFIXES", "read_header", "read_data", "create"]

SUFFIXES = (".tif", ".tiff")
MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")

#: ImageJ length units → Å.
_UNIT_TO_A = {"a": 1.0, "å": 1.0, "\u212b": 1.0, "angstrom": 1.0, "nm": 10.0, "nanometer": 10.0,
              "um": 1e4, "µm": 1e4, "\u03bcm": 1e4, "micron": 1e4, "microns": 1e4}


def _error(exc):
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"not a readable TIFF file ({text})"


def read_header(path):
    """The :class:`ImageHeader` of a TIFF file (:class:`InputError` if it cannot be used)."""
    size = os.path.getsize(path)
    try:
        with tifffile.TiffFile(path) as tif:
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
    except InputError:
        raise
    except MemoryError:
        raise InputError("TIFF header asks for more memory than there is", path) from None
    except Exception as exc:  # tifffile raises many types for damaged files
        raise InputError(_error(exc), path) from None
    if ends and max(ends) > size:
        raise InputError(f"truncated: {size:,} bytes, the TIFF pages need {max(ends):,}", path)
    if "S" in axes and shape[axes.index("S")] > 1:
        raise InputError(f"colour image ({shape[axes.index('S')]} samples per pixel); "
                         "a grey-level image is needed", path)
    dtype = check_pixel_type(dtype, path, "TIFF")
    shape = tuple(v for v, a in zip(shape, axes) if a != "S")
    axes = axes.replace("S", "")
    if len(shape) < 2:
        raise InputError(f"not an image (shape {shape})", path)
    ny, nx = shape[-2:]
    n = int(np.prod(shape[:-2], dtype=np.int64)) if len(shape) > 2 else 1
    kind = meta.get("kind") or ("image" if n == 1 else ("volume" if "Z" in axes else "stack"))
    px = meta.get("pixel_size", 0.0)
    pz = meta.get("pixel_size_z", px if kind == "volume" else 0.0)
    origin = tuple(float(v) for v in meta.get("origin", (0.0, 0.0, 0.0)))
    return ImageHeader(path=str(path), mode=None, dtype=str(dtype), shape=(n, ny, nx),
                       kind=kind if n > 1 else "image", voxel_size=(px, px, pz),
                       origin=origin, exttyp="", extended_header_bytes=0, file_bytes=size,
                       format="tiff")


def _plausible(px):
    return 0.01 <= px <= 1e4


def _metadata(tif):
    """Pixel size (Å), kind and origin from this project's JSON or ImageJ's metadata."""
    meta = {}
    try:
        ours = tif.shaped_metadata
    except Exception:
        ours = None
    if ours and isinstance(ours[0], dict) and "pixel_size" in ours[0]:
        d = ours[0]
        with contextlib.suppress(TypeError, ValueError):
            meta["pixel_size"] = float(d["pixel_size"])
            if d.get("kind") in ("image", "stack", "volume"):
                meta["kind"] = d["kind"]
            if "origin" in d:
                meta["origin"] = tuple(float(v) for v in d["origin"])[:3]
        return meta
    ij = tif.imagej_metadata
    if ij:
        unit = str(ij.get("unit", "")).strip().lower()
        scale = _UNIT_TO_A.get(unit)
        tags = tif.pages[0].tags
        xres = tags.get("XResolution")
        if scale and xres is not None:
            num, den = xres.value
            if num:
                px = scale * den / num
                if _plausible(px):
                    meta["pixel_size"] = px
                    if "spacing" in ij:
                        with contextlib.suppress(TypeError, ValueError):
                            meta["pixel_size_z"] = float(ij["spacing"]) * scale
    return meta


def read_data(path):
    """The pixels of a TIFF file: memory-mapped where it is uncompressed and contiguous."""
    with tifffile.TiffFile(path) as tif:
        several = len(tif.series) > 1
    if not several:
        try:
            return tifffile.memmap(path, mode="r")
        except (ValueError, OSError):  # compressed or not contiguous: read it
            pass
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
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
        with warnings.catch_warnings():
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

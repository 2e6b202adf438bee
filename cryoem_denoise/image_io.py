"""One read/write interface for MRC, TIFF and PNG image files.

Whatever the format, a file is seen as a stack of 2D sections ``(n, ny, nx)`` with an
:class:`~cryoem_denoise.mrc.MrcHeader` (its ``format`` says which), so commands need not
care what they read:

- **MRC** (``.mrc``, ``.mrcs``, ``.map``, ...; gzip/bzip2 too): :mod:`cryoem_denoise.mrc`.
- **TIFF** (``.tif``, ``.tiff``; read with ``tifffile``): a single image or a multi-page
  stack (every page the same size), 8-, 16- or 32-bit integers or 16-, 32- or 64-bit floats,
  any compression ``tifffile`` reads. Uncompressed files are memory-mapped. The pixel size
  is taken from this project's own metadata or from ImageJ's (``unit`` Å, nm or µm);
  plain TIFF resolution tags (usually 72 dpi) are not a pixel size and are ignored.
- **PNG** (read and written with Pillow): one greyscale image, 8 or 16 bits.

Colour (RGB) images, complex data and 1-bit images are refused with the reason.

Writing (:func:`create_image`, :func:`write_image`) is atomic, like every output of the
project. MRC and TIFF outputs are float32 or float16, memory-mapped with their space
reserved first; a PNG holds one image, rounded to 8 or 16 bits when the values are already
integers of that range (``dtype`` ``'uint8'``/``'uint16'``), otherwise scaled min–max to
16 bits (the file's units are then not kept; MRC or TIFF keep them).
"""

import contextlib
import glob
import os
import warnings
from pathlib import Path

import numpy as np

from cryoem_denoise import mrc
from cryoem_denoise.atomic import atomic_output, reserve_space
from cryoem_denoise.errors import InputError, OutputError

FORMATS = ("mrc", "tiff", "png")
TIFF_SUFFIXES = (".tif", ".tiff")
PNG_SUFFIXES = (".png",)
#: The suffix an output of each format gets when the input's suffix does not fit.
DEFAULT_SUFFIX = {"mrc": ".mrc", "tiff": ".tif", "png": ".png"}
#: Pixel types MRC and TIFF outputs can have.
OUTPUT_DTYPES = mrc.OUTPUT_DTYPES
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_PNG_PIXEL_SIZE_KEY = "cryoem-denoise pixel size (A)"
#: ImageJ length units → Å.
_UNIT_TO_A = {"a": 1.0, "å": 1.0, "\u212b": 1.0, "angstrom": 1.0, "nm": 10.0, "nanometer": 10.0,
              "um": 1e4, "µm": 1e4, "\u03bcm": 1e4, "micron": 1e4, "microns": 1e4}


def is_image_name(name):
    """Whether a file name looks like an image file this project reads (by suffix)."""
    lower = name.lower()
    return mrc.is_mrc_name(name) or lower.endswith(TIFF_SUFFIXES + PNG_SUFFIXES)


def format_of_name(name):
    """``'mrc'``, ``'tiff'`` or ``'png'`` from a file name (MRC if the suffix says nothing)."""
    lower = str(name).lower()
    if lower.endswith(TIFF_SUFFIXES):
        return "tiff"
    if lower.endswith(PNG_SUFFIXES):
        return "png"
    return "mrc"


def sniff_format(path):
    """``'tiff'``, ``'png'`` or ``'mrc'`` from a file's first bytes (MRC has no magic)."""
    with open(path, "rb") as fh:
        magic = fh.read(8)
    if magic[:4] in _TIFF_MAGIC:
        return "tiff"
    if magic == _PNG_MAGIC:
        return "png"
    return "mrc"


def find_image_files(inputs):
    """Files, folders and glob patterns → image file paths, in order, without repeats.

    A folder contributes its MRC and TIFF files (by suffix, sorted), not its PNG files:
    folders of micrographs often hold PNG previews (this tool's ``--png`` among them), so a
    PNG is read when it is named or matched by a pattern. A pattern with ``*``, ``?`` or
    ``[`` is expanded. A named file is taken whatever its suffix (it is checked when read).

    Raises
    ------
    InputError
        A path that does not exist (or a symbolic link loop), a pattern that matches
        nothing, or a folder without image files.
    """
    files = []
    for item in inputs:
        text = os.fsdecode(item) if isinstance(item, bytes) else str(item)
        path = Path(text)
        if path.is_dir():
            try:
                entries = sorted(path.iterdir())
            except OSError as exc:
                raise InputError(f"cannot list the folder ({exc.strerror})", path) from None
            found = [p for p in entries if p.is_file() and is_image_name(p.name)
                     and format_of_name(p.name) != "png"]
            if not found:
                raise InputError("folder holds no MRC files or other images (.mrc, .mrcs, "
                                 ".map, .tif, ...; PNG files are read when named)", path)
            files.extend(found)
        elif os.path.lexists(path) and not any(ch in text for ch in "*?["):
            files.append(path)  # problems (loops, broken links, ...) are named when read
        elif any(ch in text for ch in "*?["):
            found = sorted(Path(p) for p in glob.glob(text) if Path(p).is_file())
            if not found:
                raise InputError("pattern matches no files", text)
            files.extend(found)
        else:
            raise InputError("no such file or folder", path)
    return list(dict.fromkeys(files))


# -- reading -------------------------------------------------------------------------------
def read_header(path):
    """The :class:`~cryoem_denoise.mrc.MrcHeader` of an MRC, TIFF or PNG file.

    Raises
    ------
    InputError
        As :func:`cryoem_denoise.mrc.read_header`, and for TIFF/PNG files that cannot be
        read, hold colour, complex or 1-bit pixels, or pages of different sizes.
    """
    problem = mrc.path_problem(path)
    if problem:
        raise InputError(problem, path)
    try:
        fmt = sniff_format(path)
    except OSError as exc:
        raise InputError(exc.strerror or "cannot read", path) from None
    if fmt == "mrc":
        return mrc.read_header(path)
    header = _tiff_header(path) if fmt == "tiff" else _png_header(path)
    _check_shape(header)
    return header


def _check_shape(header):
    n, ny, nx = header.shape
    if min(n, ny, nx) <= 0:
        raise InputError(f"empty image ({nx}x{ny}x{n} pixels)", header.path)
    if nx < mrc.MIN_SIDE or ny < mrc.MIN_SIDE:
        raise InputError(f"image is {nx}x{ny} pixels; at least {mrc.MIN_SIDE}x{mrc.MIN_SIDE} "
                         "is needed", header.path)


def _check_dtype(dtype, path, what):
    dtype = np.dtype(dtype)
    if dtype.kind == "c":
        raise InputError(f"complex data ({dtype}) is not an image", path)
    if dtype.kind == "b":
        raise InputError("1-bit (black and white) image; a grey-level image is needed", path)
    if dtype.kind not in "uif":
        raise InputError(f"unsupported {what} pixel type {dtype}", path)
    return dtype


def _tiff_error(exc):
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"not a readable TIFF file ({text})"


def _tiff_header(path):
    import tifffile

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
            meta = _tiff_metadata(tif)
    except InputError:
        raise
    except MemoryError:
        raise InputError("TIFF header asks for more memory than there is", path) from None
    except Exception as exc:  # tifffile raises many types for damaged files
        raise InputError(_tiff_error(exc), path) from None
    if ends and max(ends) > size:
        raise InputError(f"truncated: {size:,} bytes, the TIFF pages need {max(ends):,}", path)
    if "S" in axes and shape[axes.index("S")] > 1:
        raise InputError(f"colour image ({shape[axes.index('S')]} samples per pixel); "
                         "a grey-level image is needed", path)
    dtype = _check_dtype(dtype, path, "TIFF")
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
    return mrc.MrcHeader(path=str(path), mode=None, dtype=str(dtype), shape=(n, ny, nx),
                         kind=kind if n > 1 else "image", voxel_size=(px, px, pz),
                         origin=origin, exttyp="", extended_header_bytes=0, file_bytes=size,
                         format="tiff")


def _plausible(px):
    return 0.01 <= px <= 1e4


def _tiff_metadata(tif):
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


def _png_header(path):
    from PIL import Image, UnidentifiedImageError

    size = os.path.getsize(path)
    try:
        with Image.open(path) as img:
            mode, (nx, ny) = img.mode, img.size
            text = dict(getattr(img, "text", {}) or {})
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"not a readable PNG file ({str(exc).splitlines()[0]})", path) from None
    dtypes = {"L": "uint8", "I;16": "uint16", "I;16B": "uint16", "I": "int32", "F": "float32"}
    if mode == "1":
        raise InputError("1-bit (black and white) image; a grey-level image is needed", path)
    if mode not in dtypes:
        raise InputError(f"colour image (PNG mode {mode}); a grey-level image is needed", path)
    px = 0.0
    with contextlib.suppress(KeyError, ValueError):
        px = float(text[_PNG_PIXEL_SIZE_KEY])
    return mrc.MrcHeader(path=str(path), mode=None, dtype=dtypes[mode], shape=(1, ny, nx),
                         kind="image", voxel_size=(px, px, 0.0), origin=(0.0, 0.0, 0.0),
                         exttyp="", extended_header_bytes=0, file_bytes=size, format="png")


@contextlib.contextmanager
def open_sections(path):
    """Open an image file for reading and yield ``(sections, header)``.

    ``sections`` has shape ``(n, ny, nx)`` in the file's pixel type; MRC files and
    uncompressed TIFF files are memory-mapped (read only when touched), others are read.
    Valid inside the ``with``.
    """
    header = read_header(path)
    if header.format == "mrc":
        with mrc.open_sections(path) as opened:
            yield opened
        return
    try:
        data = _tiff_data(path) if header.format == "tiff" else _png_data(path)
    except InputError:
        raise
    except MemoryError:
        raise InputError("too large to read into memory", path) from None
    except Exception as exc:
        what = "TIFF" if header.format == "tiff" else "PNG"
        raise InputError(f"{what} pixel data cannot be read "
                         f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})",
                         path) from None
    try:
        yield data.reshape(header.shape), header
    finally:
        del data


def _tiff_data(path):
    import tifffile

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


def _png_data(path):
    from PIL import Image

    with Image.open(path) as img:
        data = np.asarray(img)
    return data.astype(np.uint16) if data.dtype.kind == "u" and data.itemsize == 2 else data


def read_sections(path):
    """Read a whole image file into memory: ``(sections, header)``."""
    with open_sections(path) as (data, header):
        return np.array(data), header


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

    MRC: :func:`cryoem_denoise.mrc.create_mrc`. TIFF: a memory-mapped, uncompressed TIFF
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
    if fmt == "mrc":
        with mrc.create_mrc(path, shape, kind=kind, dtype=dtype, voxel_size=voxel_size,
                            origin=origin, overwrite=overwrite, protected=protected,
                            label=label) as data:
            yield data
        return
    if fmt == "tiff":
        with _create_tiff(path, shape, kind, dtype, voxel_size, origin, overwrite, protected,
                          label) as data:
            yield data
        return
    with atomic_output(path, overwrite=overwrite, protected=protected) as tmp:
        data = np.zeros(shape, np.float32)
        yield data
        _write_png(tmp, data.reshape(shape[-2:]), dtype, voxel_size, label, path)


@contextlib.contextmanager
def _create_tiff(path, shape, kind, dtype, voxel_size, origin, overwrite, protected, label):
    import tifffile

    if dtype not in OUTPUT_DTYPES:
        raise OutputError(f"unsupported output pixel type {dtype!r} "
                          f"(choose {', '.join(OUTPUT_DTYPES)})", path)
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
            if not mrc._all_finite(data):
                raise OutputError("values exceed the float16 range; write float32 instead"
                                  if dtype == "float16" else "refusing to write non-finite "
                                  "pixels", path)
            data.flush()
        finally:
            del data


def _write_png(tmp, image, dtype, voxel_size, label, path):
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    image = np.asarray(image, np.float32)
    if not np.isfinite(image).all():
        raise OutputError("refusing to write non-finite pixels", path)
    if dtype in ("uint8", "uint16"):
        info = np.iinfo(dtype)
        out = np.clip(np.rint(image), info.min, info.max).astype(dtype)
    else:
        lo, hi = float(image.min()), float(image.max())
        scale = 65535.0 / (hi - lo) if hi > lo else 0.0
        out = np.rint((image - lo) * scale).astype(np.uint16)
    info = PngInfo()
    if voxel_size is not None and voxel_size[0]:
        info.add_text(_PNG_PIXEL_SIZE_KEY, f"{float(voxel_size[0]):.6g}")
    if label:
        info.add_text("Comment", mrc.ascii_label(label, 200))
    Image.fromarray(out).save(tmp, format="PNG", pnginfo=info)


def write_image(path, sections, fmt="mrc", *, voxel_size=None, origin=None, kind=None,
                dtype="float32", overwrite=False, protected=(), label=None):
    """Write an in-memory image, stack or volume atomically in format ``fmt``."""
    data = np.asarray(sections)
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

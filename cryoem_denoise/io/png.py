"""PNG files (read and written with Pillow): one greyscale image, 8 or 16 bits.

A PNG output is rounded to 8 or 16 bits when its values are already integers of that range
(``dtype`` ``'uint8'``/``'uint16'``), otherwise scaled min-max to 16 bits (the file's units
are then not kept; MRC or TIFF keep them). The pixel size travels in a text chunk.

A header that declares more pixels than the file's compressed bytes can hold (deflate
compresses at most about 1,032:1) is refused before the pixels are decoded.
"""

import contextlib
import os
import warnings

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from cryoem_denoise.errors import InputError, OutputError
from cryoem_denoise.io.header import ImageHeader
from cryoem_denoise.io.mrc import ascii_label
from cryoem_denoise.runtime.warnings_guard import catching_warnings

__all__ = ["MAGIC", "SUFFIXES", "read_header", "read_data", "write"]

SUFFIXES = (".png",)
MAGIC = b"\x89PNG\r\n\x1a\n"
#: The text chunk that holds the pixel size (Å) of a PNG this package wrote.
PIXEL_SIZE_KEY = "cryoem-denoise pixel size (A)"


#: Deflate compresses at most about 1,032:1; a PNG whose pixels would take more than this
#: many times its size (and more than :data:`_SMALL` bytes) has a wrong size in its header.
_MAX_RATIO = 1100
_SMALL = 1 << 24
_DTYPES = {"L": "uint8", "I;16": "uint16", "I;16B": "uint16", "I": "int32", "F": "float32"}


def read_header(path):
    """The :class:`ImageHeader` of a greyscale PNG file (:class:`InputError` otherwise)."""
    size = os.path.getsize(path)
    try:
        with catching_warnings():
            warnings.simplefilter("ignore")  # Pillow's DecompressionBombWarning
            with Image.open(path) as img:
                mode, (nx, ny) = img.mode, img.size
                # img.info: the text chunks before the pixels (this package writes its
                # pixel size there); img.text would decode the whole image to find more
                text = {k: v for k, v in img.info.items() if isinstance(v, str)}
    except Image.DecompressionBombError as exc:
        raise InputError(f"PNG header declares too many pixels to be real ({_first_line(exc)})",
                         path) from None
    except MemoryError:
        raise InputError("PNG header asks for more memory than there is", path) from None
    except Exception as exc:  # Pillow raises many types for damaged files
        raise InputError(f"not a readable PNG file ({_first_line(exc)})", path) from None
    if mode == "1":
        raise InputError("1-bit (black and white) image; a grey-level image is needed", path)
    if mode not in _DTYPES:
        raise InputError(f"colour image (PNG mode {mode}); a grey-level image is needed", path)
    needed = nx * ny * min(np.dtype(_DTYPES[mode]).itemsize, 2)  # PNG: 16 bits at most
    if needed > max(_SMALL, _MAX_RATIO * size):
        raise InputError(f"wrong size or damaged file: the header declares {nx}x{ny} pixels "
                         f"({needed:,} bytes), more than {size:,} compressed bytes can hold",
                         path)
    px = 0.0
    with contextlib.suppress(KeyError, ValueError, TypeError):
        px = float(text[PIXEL_SIZE_KEY])
    if not (np.isfinite(px) and px >= 0):
        px = 0.0
    return ImageHeader(path=str(path), mode=None, dtype=_DTYPES[mode], shape=(1, ny, nx),
                       kind="image", voxel_size=(px, px, 0.0), origin=(0.0, 0.0, 0.0),
                       exttyp="", extended_header_bytes=0, file_bytes=size, format="png")


def _first_line(exc):
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def read_data(path):
    """The pixels of a PNG file, ``(ny, nx)``."""
    with catching_warnings():
        warnings.simplefilter("ignore")
        with Image.open(path) as img:
            data = np.asarray(img)
    return data.astype(np.uint16) if data.dtype.kind == "u" and data.itemsize == 2 else data


def write(tmp, image, dtype, voxel_size, label, path):
    """Write ``image`` to ``tmp`` as PNG (see the module notes on ``dtype``); ``path`` is the
    final name, for messages."""
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
        info.add_text(PIXEL_SIZE_KEY, f"{float(voxel_size[0]):.6g}")
    if label:
        info.add_text("Comment", ascii_label(label, 200))
    Image.fromarray(out).save(tmp, format="PNG", pnginfo=info)

"""The neutral image header every reader hands back, whatever the file's format."""

from dataclasses import dataclass, replace

import numpy as np

from cryoem_denoise.errors import InputError

__all__ = ["ImageHeader", "PLACEHOLDER_PIXEL_SIZES", "check_pixel_type"]

#: Pixel sizes (Å) programs write when they do not know it.
PLACEHOLDER_PIXEL_SIZES = (0.0, 1.0)


@dataclass(frozen=True)
class ImageHeader:
    """The facts about an image file (MRC, TIFF or PNG) a user needs.

    Attributes
    ----------
    path : str
    mode : int or None
        MRC mode number (``None`` for TIFF and PNG).
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
    #: ``'mrc'``, ``'tiff'`` or ``'png'``.
    format: str = "mrc"
    #: Read with ``mrcfile``'s permissive mode (a tolerated header fault, see module notes).
    permissive: bool = False

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

    @property
    def pixel_size_is_placeholder(self):
        """Whether the pixel size is missing or a value programs write when they do not know
        it (0 or 1.0 Å)."""
        return float(self.voxel_size[0]) in PLACEHOLDER_PIXEL_SIZES

    def with_pixel_size(self, pixel_size):
        """The same header with ``pixel_size`` (Å) where it had none or a placeholder."""
        if pixel_size is None or not self.pixel_size_is_placeholder:
            return self
        z = self.voxel_size[2] if self.kind == "volume" and \
            float(self.voxel_size[2]) not in PLACEHOLDER_PIXEL_SIZES else pixel_size
        return replace(self, voxel_size=(float(pixel_size), float(pixel_size), float(z)))


def check_pixel_type(dtype, path, what):
    dtype = np.dtype(dtype)
    if dtype.kind == "c":
        raise InputError(f"complex data ({dtype}) is not an image", path)
    if dtype.kind == "b":
        raise InputError("1-bit (black and white) image; a grey-level image is needed", path)
    if dtype.kind not in "uif":
        raise InputError(f"unsupported {what} pixel type {dtype}", path)
    return dtype

"""To and from the paper's [0, 255] intensity scale.

The paper scales each float32 MRC image to [0, 255] before adding noise and denoising.
:func:`to_unit255` does that per image and returns the :class:`Affine` it used, so results
can be mapped back to the file's own units with :meth:`Affine.inverse`.

Two methods:

``'minmax'`` (default, the paper's reading)
    the image minimum goes to 0 and the maximum to 255.
``'percentile'``
    the ``low`` and ``high`` percentiles go to 0 and 255 and pixels outside are clipped;
    robust to hot pixels and dead columns on real detectors.
"""

from dataclasses import dataclass

import numpy as np

from cryoem_denoise.errors import ConfigError, InputError

SCALE_MAX = 255.0
METHODS = ("minmax", "percentile")


@dataclass(frozen=True)
class Affine:
    """``scaled = (value - low) * 255 / (high - low)``: the file-units → [0, 255] map."""

    low: float
    high: float

    @property
    def gain(self):
        return SCALE_MAX / (self.high - self.low)

    def forward(self, values):
        """File units → [0, 255] (float32, not clipped)."""
        return ((np.asarray(values, dtype=np.float32) - np.float32(self.low))
                * np.float32(self.gain)).astype(np.float32, copy=False)

    def inverse(self, scaled):
        """[0, 255] → file units (float32)."""
        return (np.asarray(scaled, dtype=np.float32) / np.float32(self.gain)
                + np.float32(self.low)).astype(np.float32, copy=False)

    def sigma_to_units(self, sigma):
        """A noise sigma on the [0, 255] scale expressed in file units."""
        return sigma / self.gain


def intensity_range(image, method="minmax", percentiles=(0.1, 99.9)):
    """The ``(low, high)`` file-unit values that map to 0 and 255.

    Raises
    ------
    InputError
        If the image has non-finite pixels or no contrast in the chosen range.
    ConfigError
        For an unknown method or percentiles outside 0 <= low < high <= 100.
    """
    image = np.asarray(image)
    if image.size == 0:
        raise InputError("empty image")
    if image.dtype.kind == "f" and not np.isfinite(image).all():
        raise InputError("image has non-finite (NaN or Inf) pixels")
    if method == "minmax":
        low, high = float(image.min()), float(image.max())
    elif method == "percentile":
        p_low, p_high = percentiles
        if not 0 <= p_low < p_high <= 100:
            raise ConfigError(f"percentiles must satisfy 0 <= low < high <= 100, got {percentiles}")
        low, high = (float(v) for v in np.percentile(image, [p_low, p_high]))
    else:
        raise ConfigError(f"unknown intensity method {method!r} (choose {', '.join(METHODS)})")
    if not high > low:
        raise InputError(f"constant image (all pixels {low:g} in the scaling range); nothing to scale")
    return low, high


def to_unit255(image, method="minmax", percentiles=(0.1, 99.9)):
    """Scale one image to [0, 255] float32; return ``(scaled, affine)``.

    With ``method='percentile'`` the result is clipped to [0, 255].
    """
    affine = Affine(*intensity_range(image, method, percentiles))
    scaled = affine.forward(image)
    if method == "percentile":
        np.clip(scaled, 0.0, SCALE_MAX, out=scaled)
    return scaled, affine

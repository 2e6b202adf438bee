"""Tiles with overlap, blending weights, and streaming stitching.

A 2D image of any size is covered by square tiles of side ``tile`` that overlap by at least
``overlap`` pixels. A side shorter than the tile is reflect-padded up to it. Tiles are
combined with separable weights that ramp linearly across each overlap and are normalised so
that, at every pixel, the weights of the tiles covering it sum to one; tiling an image and
stitching the untouched tiles gives it back exactly.

:class:`Stitcher` receives tiles in row-major order and writes finished rows straight into a
preallocated output, so the working memory is one band of tiles (``tile`` rows), not the
image: float64 accumulation over a band, float32 output.
"""

from dataclasses import dataclass

import numpy as np

from cryoem_denoise.errors import ConfigError


def tile_positions(length, tile, overlap):
    """Start offsets of tiles along one axis of ``length`` pixels (padded if shorter).

    The first tile starts at 0, the last ends at the edge, and the tiles in between are
    spread evenly, so every neighbouring pair overlaps by at least ``overlap``.
    """
    if length <= tile:
        return np.zeros(1, dtype=np.int64)
    stride = tile - overlap
    n = int(np.ceil((length - tile) / stride)) + 1
    return np.round(np.linspace(0, length - tile, n)).astype(np.int64)


def _axis_weights(positions, tile, overlap, length):
    """``(len(positions), tile)`` weights that sum to one at every covered pixel."""
    raw = np.ones((len(positions), tile), dtype=np.float64)
    if overlap > 0 and len(positions) > 1:
        ramp = (np.arange(tile, dtype=np.float64) + 1.0) / (overlap + 1.0)
        ramp = np.minimum(ramp, 1.0)
        for i in range(len(positions)):
            if i > 0:
                raw[i] = np.minimum(raw[i], ramp)
            if i < len(positions) - 1:
                raw[i] = np.minimum(raw[i], ramp[::-1])
    total = np.zeros(max(length, tile), dtype=np.float64)
    for p, w in zip(positions, raw):
        total[p:p + tile] += w
    return np.stack([w / total[p:p + tile] for p, w in zip(positions, raw)])


@dataclass(frozen=True)
class TileGrid:
    """Where the tiles of one 2D image go.

    Attributes
    ----------
    shape : tuple of int
        The image's ``(ny, nx)``.
    padded_shape : tuple of int
        After reflect padding of sides shorter than the tile.
    tile, overlap : int
    ys, xs : ndarray
        Tile start rows and columns in the padded image.
    """

    shape: tuple
    padded_shape: tuple
    tile: int
    overlap: int
    ys: np.ndarray
    xs: np.ndarray

    def __len__(self):
        return len(self.ys) * len(self.xs)

    def positions(self):
        """``(y, x)`` of every tile in row-major order."""
        return [(int(y), int(x)) for y in self.ys for x in self.xs]

    def weights(self):
        """``(wy, wx)``: per-tile 1D blending weights along y and x."""
        return (_axis_weights(self.ys, self.tile, self.overlap, self.padded_shape[0]),
                _axis_weights(self.xs, self.tile, self.overlap, self.padded_shape[1]))


def make_grid(shape, tile=256, overlap=32):
    """Plan the tiles for an image of ``shape = (ny, nx)``.

    Raises
    ------
    ConfigError
        If ``tile < 1`` or ``overlap`` is not in ``[0, tile / 2]``.
    """
    tile, overlap = int(tile), int(overlap)
    if tile < 1:
        raise ConfigError(f"tile size must be positive, got {tile}")
    if not 0 <= overlap <= tile // 2:
        raise ConfigError(f"overlap must be between 0 and half the tile ({tile // 2}), got {overlap}")
    ny, nx = (int(s) for s in shape)
    padded = (max(ny, tile), max(nx, tile))
    return TileGrid(shape=(ny, nx), padded_shape=padded, tile=tile, overlap=overlap,
                    ys=tile_positions(ny, tile, overlap), xs=tile_positions(nx, tile, overlap))


def pad_to_grid(image, grid):
    """Reflect-pad ``image`` (bottom and right) to ``grid.padded_shape``."""
    pad_y = grid.padded_shape[0] - image.shape[0]
    pad_x = grid.padded_shape[1] - image.shape[1]
    if pad_y == 0 and pad_x == 0:
        return image
    return np.pad(image, ((0, pad_y), (0, pad_x)), mode="reflect")


def iter_tiles(image, grid):
    """Yield the tiles of ``image`` (already padded to the grid) in row-major order."""
    t = grid.tile
    for y in grid.ys:
        for x in grid.xs:
            yield image[y:y + t, x:x + t]


class Stitcher:
    """Blend tiles, given in row-major order, into a preallocated 2D output.

    Parameters
    ----------
    grid : TileGrid
    out : ndarray, optional
        Float32 array of ``grid.shape`` to fill; allocated if not given.

    Examples
    --------
    >>> grid = make_grid(image.shape, 256, 32)
    >>> stitcher = Stitcher(grid)
    >>> for tile in iter_tiles(pad_to_grid(image, grid), grid):
    ...     stitcher.add(process(tile))
    >>> result = stitcher.result()
    """

    def __init__(self, grid, out=None):
        self.grid = grid
        self.out = np.empty(grid.shape, dtype=np.float32) if out is None else out
        if self.out.shape != tuple(grid.shape):
            raise ValueError(f"output shape {self.out.shape} does not match the grid {grid.shape}")
        self._wy, self._wx = grid.weights()
        width = grid.padded_shape[1]
        self._band = np.zeros((grid.tile, width), dtype=np.float64)
        self._band_start = 0
        self._index = 0

    def _flush(self, upto):
        """Move finished padded rows ``[band_start, upto)`` into the output."""
        n = upto - self._band_start
        if n <= 0:
            return
        rows_out = max(0, min(upto, self.grid.shape[0]) - self._band_start)
        if rows_out:
            self.out[self._band_start:self._band_start + rows_out] = \
                self._band[:rows_out, :self.grid.shape[1]]
        self._band[:-n] = self._band[n:].copy()
        self._band[-n:] = 0.0
        self._band_start = upto

    def add(self, tile):
        """Add the next tile (a ``(tile, tile)`` array) in row-major order."""
        grid = self.grid
        n_x = len(grid.xs)
        if self._index >= len(grid):
            raise ValueError("all tiles have been added already")
        r, c = divmod(self._index, n_x)
        y, x = int(grid.ys[r]), int(grid.xs[c])
        if c == 0 and y > self._band_start:
            self._flush(y)
        off = y - self._band_start
        t = grid.tile
        self._band[off:off + t, x:x + t] += (np.asarray(tile, dtype=np.float64)
                                            * self._wy[r][:, None] * self._wx[c][None, :])
        self._index += 1

    @property
    def done(self):
        """Whether every tile has been added."""
        return self._index == len(self.grid)

    def result(self):
        """The stitched image once every tile was added."""
        if self._index != len(self.grid):
            raise ValueError(f"{len(self.grid) - self._index} tiles are still missing")
        self._flush(self._band_start + self.grid.tile)
        return self.out

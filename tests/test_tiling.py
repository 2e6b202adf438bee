import numpy as np
import pytest

from cryoem_denoise.errors import ConfigError
from cryoem_denoise.inference.tiling import Stitcher, iter_tiles, make_grid, pad_to_grid, tile_positions


def _roundtrip(image, tile, overlap, margin=0):
    grid = make_grid(image.shape, tile, overlap, margin)
    stitcher = Stitcher(grid)
    for t in iter_tiles(pad_to_grid(image, grid), grid):
        stitcher.add(t)
    return stitcher.result()


@pytest.mark.parametrize("shape", [(64, 64), (65, 64), (200, 131), (30, 17), (64, 300), (9, 9),
                                   (257, 129)])
@pytest.mark.parametrize("tile,overlap,margin", [(64, 16, 0), (64, 0, 0), (32, 16, 0), (64, 32, 0),
                                                (64, 32, 8), (32, 16, 7), (64, 24, 1)])
def test_identity_roundtrip_is_exact(shape, tile, overlap, margin):
    image = np.random.default_rng(sum(shape)).normal(100, 50, shape).astype(np.float32)
    out = _roundtrip(image, tile, overlap, margin)
    assert out.dtype == np.float32 and out.shape == image.shape
    np.testing.assert_array_equal(out, image)


@pytest.mark.parametrize("length,tile,overlap", [(1000, 256, 32), (256, 256, 32), (257, 256, 64),
                                                 (100, 256, 32), (4096, 256, 48)])
def test_positions_cover_with_requested_overlap(length, tile, overlap):
    pos = tile_positions(length, tile, overlap)
    assert pos[0] == 0
    assert pos[-1] + tile >= length
    if len(pos) > 1:
        assert pos[-1] + tile == length
        assert np.all(np.diff(pos) <= tile - overlap)


def test_weights_sum_to_one():
    grid = make_grid((300, 500), 128, 24)
    wy, wx = grid.weights()
    total = np.zeros(grid.padded_shape[1])
    for x, w in zip(grid.xs, wx):
        total[x:x + 128] += w
    np.testing.assert_allclose(total, 1.0)
    assert (wy > 0).all()


def test_blending_is_smooth_across_tiles():
    # Tiles that disagree by a constant offset blend into a ramp, never a step.
    image = np.zeros((64, 200), np.float32)
    grid = make_grid(image.shape, 64, 32)
    stitcher = Stitcher(grid)
    for i, t in enumerate(iter_tiles(pad_to_grid(image, grid), grid)):
        stitcher.add(t + 10.0 * i)
    out = stitcher.result()
    assert np.abs(np.diff(out, axis=1)).max() < 10.0 / 16


def test_writes_into_given_output_and_checks_order():
    image = np.arange(100 * 90, dtype=np.float32).reshape(100, 90)
    grid = make_grid(image.shape, 32, 8)
    buf = np.zeros(image.shape, np.float32)
    stitcher = Stitcher(grid, out=buf)
    tiles = list(iter_tiles(pad_to_grid(image, grid), grid))
    with pytest.raises(ValueError, match="still missing"):
        Stitcher(grid).result()
    for t in tiles:
        stitcher.add(t)
    assert stitcher.result() is buf
    np.testing.assert_array_equal(buf, image)
    with pytest.raises(ValueError, match="already"):
        stitcher.add(tiles[0])


@pytest.mark.parametrize("tile,overlap,margin", [(0, 0, 0), (64, 40, 0), (64, -1, 0), (64, 32, 16),
                                                (64, 0, 4)])
def test_bad_grid_options(tile, overlap, margin):
    with pytest.raises(ConfigError):
        make_grid((100, 100), tile, overlap, margin)


@pytest.mark.parametrize("margin", [8, 12])
def test_margin_drops_what_a_network_gets_wrong_at_tile_edges(margin):
    # a "network" that is exact except within `margin` px of its tile's edge, where it is
    # off by 50: with the margin dropped (and the image mirrored beyond its border) the
    # result is exact, edges of the image included; without, the error shows
    image = np.random.default_rng(3).normal(0, 1, (150, 230)).astype(np.float32)
    edge = np.ones((64, 64), bool)
    edge[margin:-margin, margin:-margin] = False
    for m, exact in ((margin, True), (0, False)):
        grid = make_grid(image.shape, 64, 32, m)
        stitcher = Stitcher(grid)
        for t in iter_tiles(pad_to_grid(image, grid), grid):
            stitcher.add(np.where(edge, t + 50.0, t))
        error = np.abs(stitcher.result() - image).max()
        assert (error < 1e-4) == exact, (m, error)


def test_margin_weights_are_zero_at_tile_edges():
    grid = make_grid((300, 500), 128, 40, 12)
    assert grid.padded_shape == (324, 524)
    for w in grid.weights():
        assert (w[:, :12] == 0).all() and (w[:, -12:] == 0).all()

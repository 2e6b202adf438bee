import numpy as np
import pytest

from cryoem_denoise.inference.denoiser import Denoiser, InferenceConfig, TileDenoiser
from cryoem_denoise.errors import ConfigError
from cryoem_denoise.data.intensity import to_unit255
from cryoem_denoise.inference.tiling import make_grid

pytestmark = pytest.mark.backends  # also run on JAX by make test


def identity_denoiser(tile=64, overlap=16, batch=3):
    import keras

    inp = keras.Input((None, None, 1))
    model = keras.Model(inp, keras.layers.Activation("linear")(inp))
    return TileDenoiser(model, 6, InferenceConfig(tile=tile, overlap=overlap, batch_size=batch))


@pytest.mark.parametrize("shape", [(200, 150), (64, 64), (40, 90), (300, 65)])
def test_identity_generator_gives_the_image_back(shape):
    den = identity_denoiser()
    img = np.random.default_rng(0).uniform(0, 255, shape).astype(np.float32)
    np.testing.assert_allclose(den.denoise(img), img, atol=2e-3)


def test_scaling_is_per_image_and_returns_input_units():
    den = identity_denoiser()
    img = np.random.default_rng(1).normal(5000, 700, (180, 170)).astype(np.float32)
    _, affine = to_unit255(img)
    out = den.denoise(img, affine)
    np.testing.assert_allclose(out, img, rtol=1e-5, atol=0.05)


def test_stream_batches_small_images_together():
    den = identity_denoiser(batch=4)
    stack = np.random.default_rng(2).uniform(0, 255, (6, 40, 50)).astype(np.float32)
    calls = []
    out = np.zeros_like(stack)
    finished = []
    den.denoise_stream(6, (40, 50), lambda k: (stack[k], None), lambda k: out[k],
                       lambda k, r: finished.append(k), progress=calls.append)
    # 6 tiles in batches of at most 4: split evenly, 3 + 3, not 4 + 2 (a padded 4)
    assert calls == [3, 3] and finished == list(range(6))
    np.testing.assert_allclose(out, stack, atol=2e-3)


def test_small_images_get_the_smallest_tile_that_covers_them():
    den = identity_denoiser(tile=256, overlap=64)  # depth 6: multiples of 64; margin 16
    assert den.tile_for((10, 20)) == 64  # 20 + 2 x 16 margin
    assert den.tile_for((40, 50)) == 128
    assert den.tile_for((100, 140)) == 192
    assert den.tile_for((4096, 4096)) == 256
    grid = den.grid((10, 20))
    assert grid.tile == 64 and grid.overlap == 32 and grid.margin == 15  # under half of it
    img = np.random.default_rng(3).uniform(0, 255, (100, 180)).astype(np.float32)
    np.testing.assert_allclose(den.denoise(img), img, atol=2e-3)


def test_tile_must_fit_the_model():
    with pytest.raises(ConfigError, match="multiple of 64"):
        identity_denoiser(tile=96)


def test_trained_model_is_deterministic_and_seamless(tiny_model):
    from scipy.ndimage import gaussian_filter

    den = Denoiser.load(tiny_model, InferenceConfig(tile=64, overlap=16, batch_size=8))
    rng = np.random.default_rng(3)
    clean = gaussian_filter(rng.normal(0, 1, (448, 448)), 4)
    clean, _ = to_unit255(clean)
    noisy = (clean + rng.normal(0, 30, clean.shape)).astype(np.float32)
    a = den.denoise_scaled(noisy)
    b = den.denoise_scaled(noisy)
    np.testing.assert_array_equal(a, b)
    # seam check: the jump across tile-boundary columns/rows is no larger than elsewhere
    grid = make_grid(noisy.shape, 64, 16)
    edges = sorted({int(p) for p in grid.xs[1:]} | {int(p) + 64 for p in grid.xs[:-1]})
    dx = np.abs(np.diff(a, axis=1)).mean(axis=0)   # dx[c-1]: jump between columns c-1 and c
    dy = np.abs(np.diff(a, axis=0)).mean(axis=1)
    at = np.r_[dx[[c - 1 for c in edges]], dy[[c - 1 for c in edges]]].mean()
    mask = np.ones(len(dx), bool)
    mask[[c - 1 for c in edges]] = False
    away = np.r_[dx[mask], dy[mask]].mean()
    assert at / away <= 1.1, (at, away)


def test_self_ensemble_is_the_mean_over_the_eight_rotations_and_mirrors():
    from keras import ops

    from cryoem_denoise.inference.denoiser import _self_ensemble

    rng = np.random.default_rng(5)
    tiles = rng.normal(size=(2, 8, 8, 1)).astype(np.float32)
    weight = rng.normal(size=(1, 8, 8, 1)).astype(np.float32)  # a net that is not equivariant

    def net(x):
        return x * weight + x[:, :1, :, :]

    got = ops.convert_to_numpy(_self_ensemble(net, tiles))
    want = np.zeros_like(tiles)
    for mirror in (False, True):
        for k in range(4):
            x = np.rot90(tiles[:, :, ::-1] if mirror else tiles, k, axes=(1, 2))
            y = np.rot90(net(x), -k, axes=(1, 2))
            want += y[:, :, ::-1] if mirror else y
    np.testing.assert_allclose(got, want / 8, rtol=1e-5, atol=1e-5)
    # an equivariant net is unchanged by it
    np.testing.assert_allclose(ops.convert_to_numpy(_self_ensemble(lambda x: 2 * x, tiles)),
                               2 * tiles, rtol=1e-6)


def test_self_ensemble_option_runs_the_compiled_generator():
    import keras

    inp = keras.Input((None, None, 1))
    model = keras.Model(inp, keras.layers.Conv2D(1, 3, padding="same", use_bias=False)(inp))
    img = np.random.default_rng(6).uniform(0, 255, (100, 90)).astype(np.float32)
    plain = TileDenoiser(model, 4, InferenceConfig(tile=64, overlap=16)).denoise(img)
    ens = TileDenoiser(model, 4, InferenceConfig(tile=64, overlap=16, self_ensemble=True)).denoise(img)
    kernel = keras.ops.convert_to_numpy(model.weights[0])[..., 0, 0]
    sym = np.mean([np.rot90(k, r) for k in (kernel, kernel[:, ::-1]) for r in range(4)], axis=0)
    model.weights[0].assign(sym[..., None, None])
    symmetric = TileDenoiser(model, 4, InferenceConfig(tile=64, overlap=16)).denoise(img)
    # a linear convolution's self-ensemble is the convolution with the symmetrised kernel
    np.testing.assert_allclose(ens, symmetric, rtol=1e-4, atol=1e-3)
    assert not np.allclose(plain, ens, atol=1e-2)

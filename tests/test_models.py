import numpy as np
import pytest

from cryoem_denoise.config import ModelConfig
from cryoem_denoise.model.models import build_critic, build_generator, generator_flops, receptive_field


def test_default_generator_is_pix2pix_unet_256():
    cfg = ModelConfig()
    gen = build_generator(cfg)
    assert gen.count_params() == 54_419_713
    convs = [l for l in gen.layers if l.__class__.__name__ in ("Conv2D", "Conv2DTranspose")]
    assert len(convs) == 16 and all(l.kernel_size == (4, 4) and l.strides == (2, 2) for l in convs)
    assert sum(l.__class__.__name__ == "Dropout" for l in gen.layers) == 3
    assert generator_flops(cfg) / 1e9 == pytest.approx(11.9, abs=0.05)


def test_generator_shapes_range_and_options():
    cfg = ModelConfig(tile=64, ngf=4, depth=6)
    gen = build_generator(cfg)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 64, 64, 1)).astype(np.float32)
    y = np.asarray(gen(x, training=False))
    assert y.shape == x.shape and np.abs(y).max() <= 1
    # fully convolutional: a bigger tile works too
    assert gen(np.zeros((1, 128, 192, 1), np.float32)).shape == (1, 128, 192, 1)
    res = build_generator(ModelConfig(tile=64, ngf=4, depth=6, residual=True))
    assert res.output.dtype == "float32" and res.count_params() == gen.count_params()
    wider = build_generator(ModelConfig(tile=64, ngf=8, depth=6))
    assert wider.count_params() > gen.count_params()


def test_critic_is_a_linear_patchgan():
    cfg = ModelConfig()
    critic = build_critic(cfg)
    assert receptive_field(cfg) == 70
    scores = critic(np.random.default_rng(0).normal(0, 50, (1, 256, 256, 2)).astype(np.float32))
    assert scores.shape == (1, 30, 30, 1)
    assert critic.layers[-1].activation.__name__ == "linear"
    assert np.asarray(scores).max() > 1 or np.asarray(scores).min() < 0  # no sigmoid squashing
    uncond = build_critic(ModelConfig(critic_conditional=False))
    assert uncond.input.shape[-1] == 1


@pytest.mark.backends
@pytest.mark.parametrize("bias", [False, True])
def test_transposed_convolution_equals_keras(bias):
    """The sub-pixel form used on JAX computes Keras' transposed convolution exactly."""
    import keras
    import numpy as np

    from cryoem_denoise.model.models import Conv2DTranspose

    inp = keras.Input((None, None, 5))
    plain = keras.layers.Conv2DTranspose(3, 4, strides=2, padding="same", use_bias=bias,
                                         bias_initializer="random_normal")
    ours = Conv2DTranspose(3, 4, strides=2, padding="same", use_bias=bias)
    a, b = keras.Model(inp, plain(inp)), keras.Model(inp, ours(inp))
    b.set_weights(a.get_weights())
    x = np.random.default_rng(0).normal(size=(2, 7, 6, 5)).astype("float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(b(x)), keras.ops.convert_to_numpy(a(x)),
                               atol=1e-5)


@pytest.mark.backends
def test_resize_upsampling_and_full_resolution_add_no_checkerboard():
    """On a constant image, pix2pix's transposed convolutions leave a period-2 pattern (power
    on the Nyquist lines); nearest-neighbour resize + convolution, or a full-resolution head,
    leave (almost) none."""
    import keras
    import numpy as np

    from cryoem_denoise.evaluation.metrics import nyquist_power

    power = {}
    for up in ("transpose", "resize"):
        for full in (False, True):
            cfg = ModelConfig(tile=64, ngf=8, depth=6, upsample=up, full_resolution=full)
            gen = build_generator(cfg, seed=0)
            x = np.full((1, 128, 128, 1), 0.3, np.float32)
            out = keras.ops.convert_to_numpy(gen(x, training=False))[0, 16:-16, 16:-16, 0]
            assert out.shape == (96, 96)
            assert generator_flops(cfg) > 0
            power[up, full] = nyquist_power(out)
    assert power["resize", False] < 1e-6 * power["transpose", False]
    assert power["transpose", True] < 1e-2 * power["transpose", False]
    assert build_generator(ModelConfig()).count_params() == 54_419_713  # the paper's, unchanged

"""The generator (pix2pix U-Net) and the critic (PatchGAN with a linear output).

Both follow the original pix2pix (Isola et al., 2017) that the paper builds on:

Generator, ``unet_256`` by default
    encoder: ``depth`` blocks of 4x4 stride-2 convolutions, filters ngf x (1, 2, 4, 8, 8, ...)
    capped at ``ngf * max_mult``; LeakyReLU(0.2) before each block but the first; BatchNorm
    after each but the first (as in TensorFlow's pix2pix; PyTorch's leaves out the innermost
    too). Convolutions followed by BatchNorm have no bias, so the 1-channel default has
    54,419,713 parameters (Keras counts BatchNorm's moving statistics). Decoder: ``depth - 1`` blocks of ReLU, 4x4
    stride-2 transposed convolution, BatchNorm, dropout 0.5 on the first ``dropout_blocks``,
    then concatenation with the mirror encoder block; a last ReLU + transposed convolution to
    the image channels and tanh (or, with ``residual``, a linear noise estimate subtracted
    from the input). Images enter and leave on the [-1, 1] scale.
Critic
    pix2pix's n-layer PatchGAN (70x70 receptive field for 3 layers): 4x4 convolutions with
    1-pixel zero padding, LeakyReLU(0.2), BatchNorm after all but the first; the last layer
    is linear (no sigmoid, as WGAN requires) and gives one score per patch. By default it is
    conditional: it sees the noisy input and the candidate clean image side by side.

Weights start from N(0, 0.02) and BatchNorm scales from N(1, 0.02), as in pix2pix. They are
drawn with NumPy from the model's seed and each layer's place (:class:`SeededNormal`), so
the same seed gives the same initial weights on every backend, and building a model costs
no backend compilation (JAX compiles each shape of its own random generator: about 1.5 s
a layer on a CPU).
"""

import itertools

from cryoem_denoise.runtime import backend

backend.import_quietly()  # checks the backend; keeps its start-up notices off stderr

import keras  # noqa: E402
import numpy as np
from keras import layers


@keras.saving.register_keras_serializable("cryoem_denoise")
class SeededNormal(keras.initializers.Initializer):
    """N(mean, stddev) drawn by NumPy from ``seed`` (a sequence of ints): backend-independent.

    With ``seed=None`` the values come from NumPy's global generator (seeded by
    :func:`cryoem_denoise.runtime.backend.set_random_seed`).
    """

    def __init__(self, mean=0.0, stddev=0.02, seed=None):
        self.mean, self.stddev = float(mean), float(stddev)
        self.seed = None if seed is None else [int(s) for s in np.atleast_1d(seed)]

    def __call__(self, shape, dtype=None):
        rng = np.random.default_rng(self.seed) if self.seed is not None else np.random
        values = rng.normal(self.mean, self.stddev, tuple(shape)).astype(np.float32)
        return keras.ops.convert_to_tensor(values, dtype=dtype or "float32")

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev, "seed": self.seed}


#: Kernel rows (or columns) of a 4x4, stride-2, 'same' transposed convolution that feed the
#: even (phase 0) and odd (phase 1) output rows, for input offsets (-1, 0) and (0, +1).
_PHASE_TAPS = ((3, 1), (2, 0))


@keras.saving.register_keras_serializable("cryoem_denoise")
class Conv2DTranspose(layers.Conv2DTranspose):
    """Keras' transposed convolution, computed as four small convolutions on JAX.

    XLA's CPU backend runs a strided transposed convolution as a convolution over an input
    dilated with zeros, 4x slower than TensorFlow's kernel here. For the 4x4, stride-2,
    'same' layers of pix2pix the same result is four 2x2 convolutions of the input, one per
    output phase (even/odd row x even/odd column), interleaved ("sub-pixel" form): a
    quarter of the multiply-adds. The weights, their shapes and names are Keras' own (the
    class keeps its name, so weight files load on either backend and into models built
    with the plain layer); TensorFlow, and any other shape, uses Keras' computation.
    """

    def _subpixel(self):
        return (backend.name() == "jax" and tuple(self.strides) == (2, 2)
                and tuple(self.kernel_size) == (4, 4) and self.padding == "same"
                and tuple(self.dilation_rate) == (1, 1) and self.data_format == "channels_last")

    def call(self, inputs):
        if not self._subpixel():
            return super().call(inputs)
        ops = keras.ops
        kernel = ops.transpose(self.kernel, (0, 1, 3, 2))  # (ky, kx, in, out)
        shape = ops.shape(inputs)
        if self.filters <= self.COMBINED_MAX_FILTERS:
            out = self._one_convolution(inputs, kernel)
        else:
            out = self._four_convolutions(inputs, kernel)
        out = ops.reshape(out, (shape[0], shape[1] * 2, shape[2] * 2, self.filters))
        if self.use_bias:
            out = out + self.bias
        if self.activation is not None:
            out = self.activation(out)
        return out

    #: Up to this many filters the four phases run as one 3x3 convolution with 4x the
    #: filters (XLA:CPU is slow on convolutions with few output channels; measured 2.7x
    #: faster at 16 filters, level at 32, slower from 64).
    COMBINED_MAX_FILTERS = 32

    @staticmethod
    def _four_convolutions(inputs, kernel):
        """One 2x2 convolution per output phase: ``(n, h, 2, w, 2, out)``."""
        ops = keras.ops
        rows = []
        for a in (0, 1):
            cols = []
            for b in (0, 1):
                taps = ops.stack([ops.stack([kernel[ty, tx] for tx in _PHASE_TAPS[b]])
                                  for ty in _PHASE_TAPS[a]])  # (2, 2, in, out)
                padded = ops.pad(inputs, ((0, 0), (1 - a, a), (1 - b, b), (0, 0)))
                cols.append(ops.conv(padded, taps, strides=1, padding="valid"))
            rows.append(ops.stack(cols, axis=3))  # (n, h, w, 2[b], out)
        return ops.stack(rows, axis=2)  # (n, h, 2[a], w, 2[b], out)

    @staticmethod
    def _one_convolution(inputs, kernel):
        """All four phases as one 3x3 convolution with 4 x out filters, then interleaved."""
        ops = keras.ops
        zero = ops.zeros_like(kernel[0, 0])
        rows = []
        for kr in range(3):
            cols = []
            for kc in range(3):
                phases = []
                for a in (0, 1):
                    for b in (0, 1):
                        r, c = kr - a, kc - b
                        inside = 0 <= r <= 1 and 0 <= c <= 1
                        phases.append(kernel[_PHASE_TAPS[a][r], _PHASE_TAPS[b][c]] if inside
                                      else zero)
                cols.append(ops.stack(phases, axis=1))  # (in, 4[a, b], out)
            rows.append(ops.stack(cols))
        cin, cout = kernel.shape[2], kernel.shape[3]
        taps = ops.reshape(ops.stack(rows), (3, 3, cin, 4 * cout))
        padded = ops.pad(inputs, ((0, 0), (1, 1), (1, 1), (0, 0)))
        y = ops.conv(padded, taps, strides=1, padding="valid")  # (n, h, w, 4 * out)
        shape = ops.shape(y)
        y = ops.reshape(y, (shape[0], shape[1], shape[2], 2, 2, cout))
        return ops.transpose(y, (0, 1, 3, 2, 4, 5))  # (n, h, 2[a], w, 2[b], out)


class _Inits:
    """Initializers for one network: layer k gets seed ``(seed, salt, k)``."""

    def __init__(self, seed, salt, initialize=True):
        self.seed, self.salt, self.initialize = seed, salt, initialize
        self._count = itertools.count()

    def normal(self, mean=0.0):
        if not self.initialize:  # weights are loaded next: skip drawing them
            return keras.initializers.Constant(mean)
        seed = None if self.seed is None else (self.seed, self.salt, next(self._count))
        return SeededNormal(mean, 0.02, seed)

    def batch_norm(self, sync):
        # PyTorch momentum 0.1 == Keras momentum 0.9; pix2pix's epsilon 1e-5.
        return layers.BatchNormalization(momentum=0.9, epsilon=1e-5, synchronized=sync,
                                         gamma_initializer=self.normal(1.0))


def _filters(cfg_ngf, level, max_mult):
    return cfg_ngf * min(2 ** level, max_mult)


def _upsample(x, filters, name, use_bias, init, cfg):
    """x2 upsampling of the decoder: pix2pix's transposed convolution, or (``'resize'``)
    nearest-neighbour resizing then a 3x3 convolution, whose output has no checkerboard
    (Odena et al., "Deconvolution and checkerboard artifacts", Distill 2016)."""
    if cfg.upsample == "resize":
        x = layers.UpSampling2D(2, interpolation="nearest")(x)
        return layers.Conv2D(filters, 3, padding="same", use_bias=use_bias,
                             kernel_initializer=init.normal(), name=name)(x)
    return Conv2DTranspose(filters, 4, strides=2, padding="same", use_bias=use_bias,
                           kernel_initializer=init.normal(), name=name)(x)


def input_channels(cfg):
    """Channels the generator takes: the image's, plus one noise-level map (``sigma_map``)."""
    return cfg.channels + (1 if cfg.sigma_map else 0)


def build_generator(cfg, sync_batch_norm=False, seed=None, initialize=True):
    """The pix2pix U-Net of ``cfg`` (a :class:`~cryoem_denoise.config.ModelConfig`).

    The network is fully convolutional: it accepts any ``(h, w)`` divisible by
    ``2 ** cfg.depth``, though it is trained on ``cfg.tile`` squares. ``seed`` fixes the
    initial weights and the dropout streams; ``initialize=False`` skips drawing weights
    that are about to be loaded.
    """
    init = _Inits(seed, 1, initialize)
    inputs = keras.Input((None, None, input_channels(cfg)), name="noisy")
    x = inputs
    if cfg.full_resolution:  # features at the input's own resolution, kept for the head
        stem = layers.Conv2D(cfg.ngf, 3, padding="same", kernel_initializer=init.normal(),
                             name="stem")(x)
        x = layers.LeakyReLU(0.2)(stem)
    skips = []
    for level in range(cfg.depth):
        if level > 0:
            x = layers.LeakyReLU(0.2)(x)
        x = layers.Conv2D(_filters(cfg.ngf, level, cfg.max_mult), 4, strides=2, padding="same",
                          use_bias=False, kernel_initializer=init.normal(), name=f"enc{level + 1}")(x)
        if level > 0:
            x = init.batch_norm(sync_batch_norm)(x)
        skips.append(x)
    for i, level in enumerate(range(cfg.depth - 2, -1, -1)):
        x = layers.ReLU()(x)
        x = _upsample(x, _filters(cfg.ngf, level, cfg.max_mult), f"dec{i + 1}", False, init, cfg)
        x = init.batch_norm(sync_batch_norm)(x)
        if i < cfg.dropout_blocks and cfg.dropout > 0:
            x = layers.Dropout(cfg.dropout, seed=None if seed is None else seed + i)(x)
        x = layers.Concatenate()([x, skips[level]])
    x = layers.ReLU()(x)
    if cfg.full_resolution:
        x = _upsample(x, cfg.ngf, "up_full", False, init, cfg)
        x = init.batch_norm(sync_batch_norm)(x)
        x = layers.ReLU()(layers.Concatenate()([x, stem]))
        x = layers.Conv2D(cfg.channels, 3, padding="same", kernel_initializer=init.normal(),
                          name="out_conv")(x)
    else:
        x = _upsample(x, cfg.channels, "out_conv", True, init, cfg)
    if cfg.residual:
        noise = layers.Activation("linear", dtype="float32", name="noise")(x)
        image = inputs
        if cfg.sigma_map:  # the noise-level channel is not part of the image
            image = layers.Lambda(lambda t: t[..., :cfg.channels], name="image")(inputs)
        outputs = layers.Subtract(dtype="float32", name="denoised")(
            [layers.Activation("linear", dtype="float32")(image), noise])
    else:
        outputs = layers.Activation("tanh", dtype="float32", name="denoised")(x)
    return keras.Model(inputs, outputs, name="generator")


def build_critic(cfg, sync_batch_norm=False, seed=None):
    """The PatchGAN critic of ``cfg``: linear scores, one per patch, float32."""
    init = _Inits(seed, 2)
    channels = cfg.channels * (2 if cfg.critic_conditional else 1)
    inputs = keras.Input((None, None, channels), name="critic_input")
    x = inputs
    n = cfg.critic_layers
    for i in range(n + 1):
        stride = 2 if i < n else 1
        x = layers.ZeroPadding2D(1)(x)
        norm = i > 0 and cfg.critic_norm == "batch"
        x = layers.Conv2D(cfg.ndf * min(2 ** i, 8), 4, strides=stride, use_bias=not norm,
                          kernel_initializer=init.normal(), name=f"critic{i + 1}")(x)
        if norm:
            x = init.batch_norm(sync_batch_norm)(x)
        x = layers.LeakyReLU(0.2)(x)
    x = layers.ZeroPadding2D(1)(x)
    scores = layers.Conv2D(1, 4, strides=1, kernel_initializer=init.normal(), dtype="float32",
                           name="score")(x)
    return keras.Model(inputs, scores, name="critic")


def receptive_field(cfg):
    """Receptive field of the critic in pixels (70 for pix2pix's 3-layer PatchGAN)."""
    field = 1
    strides = [2] * cfg.critic_layers + [1, 1]
    for s in reversed(strides):
        field = (field - 1) * s + 4
    return field


def generator_flops(cfg, height=None, width=None):
    """Multiply-adds x 2 of one generator forward pass on an ``(height, width)`` image."""
    h = height or cfg.tile
    w = width or cfg.tile
    flops = 0
    cin = cfg.ngf if cfg.full_resolution else input_channels(cfg)
    sizes = []
    for level in range(cfg.depth):
        h, w = h // 2, w // 2
        cout = _filters(cfg.ngf, level, cfg.max_mult)
        flops += 2 * h * w * cout * cin * 16
        sizes.append(cout)
        cin = cout

    def up(h, w, cout, cin):  # h, w: output size
        if cfg.upsample == "resize":
            return 2 * h * w * cout * cin * 9
        return 2 * (h // 2) * (w // 2) * cout * cin * 16  # transposed conv: per input pixel

    for level in range(cfg.depth - 2, -1, -1):
        h, w = h * 2, w * 2
        cout = _filters(cfg.ngf, level, cfg.max_mult)
        flops += up(h, w, cout, cin)
        cin = cout + sizes[level]
    h, w = h * 2, w * 2
    if cfg.full_resolution:
        flops += 2 * h * w * cfg.ngf * input_channels(cfg) * 9     # stem
        flops += up(h, w, cfg.ngf, cin) + 2 * h * w * cfg.channels * 2 * cfg.ngf * 9  # head
    else:
        flops += up(h, w, cfg.channels, cin)
    return flops


def critic_flops(cfg, height=None, width=None):
    """Multiply-adds x 2 of one critic forward pass on an ``(height, width)`` image."""
    h = (height or cfg.tile) + 2
    w = (width or cfg.tile) + 2
    cin = cfg.channels * (2 if cfg.critic_conditional else 1)
    flops = 0
    n = cfg.critic_layers
    for i in range(n + 2):
        stride = 2 if i < n else 1
        cout = cfg.ndf * min(2 ** i, 8) if i <= n else 1
        h, w = (h - 4) // stride + 1, (w - 4) // stride + 1
        flops += 2 * h * w * cout * cin * 16
        cin = cout
        h, w = h + 2, w + 2
    return flops


def train_step_flops(cfg, n_critic=1):
    """Estimated FLOPs of one WGAN step per crop (backward = 2x forward convention).

    Critic update: G forward, D forward on real and fake, D backward on both (weights);
    generator update: G forward, D forward, backward through D (inputs) and G (weights).
    """
    g, d = generator_flops(cfg), critic_flops(cfg)
    critic_update = g + 2 * d + 2 * (2 * d)
    generator_update = g + d + 2 * d + 2 * g
    return n_critic * critic_update + generator_update

"""Population statistics for BatchNorm ("precise BN").

A BatchNorm layer normalises with each training batch's own mean and variance, and keeps
exponential moving averages of them for inference. With pix2pix's momentum (0.9, PyTorch's
0.1) those averages are the statistics of the last ~10 batches of 8 crops: of the innermost
layers (1x1 at the bottleneck of a 128-pixel crop) they are the means of a few dozen numbers.
The network used at inference then changes from step to step: the shipped model's validation
PSNR swung by ~2 dB within ten steps, and on the held-out set its output carried a constant
offset of ~1 grey level at sigma 10.

:func:`recalibrate` replaces the moving averages by the statistics of many crops, computed
the way training computes them: the network runs in training mode (each layer sees inputs
normalised with its batch's statistics, as during training), and every BatchNorm layer's
input mean and variance are accumulated over all crops (Wu & Johnson, "Rethinking 'Batch' in
BatchNorm", 2021, section 3: "precise BN"). No weight changes; it costs a few forward passes.
"""

import numpy as np


def batch_norm_layers(model):
    """The model's BatchNormalization layers, in order."""
    import keras  # lazy: imports Keras

    return [layer for layer in model.layers
            if isinstance(layer, keras.layers.BatchNormalization)]


def population_statistics(model, batches):
    """Mean and variance of every BatchNorm layer's input over all crops of ``batches``.

    Parameters
    ----------
    model : keras.Model
        A functional model.
    batches : iterable of array
        The model's inputs (already on its scale), ``(n, h, w, c)`` each.

    Returns
    -------
    list of (numpy.ndarray, numpy.ndarray)
        ``(mean, variance)`` per layer of :func:`batch_norm_layers`, float64, over the
        batch, rows and columns of every crop (the axes BatchNorm reduces); all crops have
        the same shape and count the same.
    """
    import keras  # lazy: imports Keras
    from keras import ops  # lazy: imports Keras

    norms = batch_norm_layers(model)
    if not norms:
        return []
    probe = keras.Model(model.input, [layer.input for layer in norms])

    def moments(features):  # per channel: the batch's mean and (centred) variance
        out = []
        for f in features:
            f = ops.cast(f, "float32")
            out.append(ops.stack([ops.mean(f, axis=(0, 1, 2)), ops.var(f, axis=(0, 1, 2))]))
        return out

    # pooled over batches: E[var_b] + Var[mean_b], each batch weighted by its crops (the
    # centred per-batch variances avoid E[x^2] - E[x]^2 cancelling in float32)
    sums, weight = None, 0
    for batch in batches:
        # training mode: the layers before each BatchNorm use batch statistics, as in training
        features = probe(batch, training=True)
        features = features if isinstance(features, (list, tuple)) else [features]
        w = int(ops.shape(batch)[0])
        stats = []
        for m in moments(features):
            mean, var = ops.convert_to_numpy(m).astype(np.float64)
            stats.append(w * np.stack([mean, var, mean ** 2]))
        sums = stats if sums is None else [a + b for a, b in zip(sums, stats)]
        weight += w
    if not weight:
        raise ValueError("no batches to compute BatchNorm statistics from")
    out = []
    for s in sums:
        mean, var, mean_sq = s / weight
        out.append((mean, var + np.maximum(mean_sq - mean ** 2, 0.0)))
    return out


def recalibrate(model, batches):
    """Set every BatchNorm layer's moving mean and variance to :func:`population_statistics`.

    Returns
    -------
    int
        The number of BatchNorm layers set.
    """
    norms = batch_norm_layers(model)
    for layer, (mean, var) in zip(norms, population_statistics(model, batches)):
        layer.moving_mean.assign(mean.astype(np.float32))
        layer.moving_variance.assign(var.astype(np.float32))
    return len(norms)

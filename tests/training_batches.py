"""Helpers the training tests share: a small noisy batch and a backend tensor as NumPy."""

import numpy as np


def noisy_batch(seed=0, n=4, tile=64):
    """``(noisy, clean)``: ``n`` uniform random ``tile``² crops on [0, 255] and the same with
    Gaussian noise of σ 30, float32, shaped ``(n, tile, tile, 1)``."""
    rng = np.random.default_rng(seed)
    clean = rng.uniform(0, 255, (n, tile, tile, 1)).astype(np.float32)
    return (clean + rng.normal(0, 30, clean.shape)).astype(np.float32), clean


def to_numpy(value):
    """A backend tensor (or anything Keras takes) as a NumPy array."""
    import keras  # lazy: imports the backend

    return keras.ops.convert_to_numpy(value)

"""Numeric precision policies and device discovery.

``auto`` means ``mixed_float16`` on a GPU (with loss scaling) and ``float32`` on a CPU;
``mixed_bfloat16`` is worth asking for on CPUs with AVX-512 BF16 or AMX, where it is about
twice as fast as float32 for the generator.
"""

import contextlib


def gpus():
    import tensorflow as tf

    return tf.config.list_physical_devices("GPU")


def resolve(precision):
    """Turn ``'auto'`` into a concrete Keras policy name."""
    if precision == "auto":
        return "mixed_float16" if gpus() else "float32"
    return precision


@contextlib.contextmanager
def precision_policy(precision):
    """Set the Keras global dtype policy for models built inside; restore it after."""
    import keras

    old = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(resolve(precision))
    try:
        yield resolve(precision)
    finally:
        keras.mixed_precision.set_global_policy(old)


def import_tensorflow_quietly():
    """Import TensorFlow with its start-up chatter (oneDNN, absl notices) kept off stderr.

    Those lines come from C++ at import time and ignore ``TF_CPP_MIN_LOG_LEVEL``, so file
    descriptor 2 is pointed at /dev/null for the import only; Python errors still surface.
    """
    import os
    import sys

    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import keras  # noqa: F401  (imports tensorflow)
            import tensorflow as tf
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    return tf

"""Which Keras backend runs the models: TensorFlow (the default) or JAX.

Keras 3 fixes its backend when it is first imported, from ``KERAS_BACKEND``. This module
checks that choice *before* Keras is imported, so an unknown name or a backend that is not
installed is one clear error instead of a traceback from deep inside Keras, and it pins the
choice in the environment so a ``~/.keras/keras.json`` cannot silently change it.

Nothing here imports TensorFlow unless TensorFlow is the backend: the JAX path never loads it.
"""

import importlib.util
import os
import random
import sys

import numpy as np

from cryoem_denoise.errors import ConfigError
from cryoem_denoise.runtime.cache import cache_dir

#: Backends the package runs on, the first one the default.
SUPPORTED = ("tensorflow", "jax")

#: The pip extra that installs each backend (CPU builds; see docs/install.md for GPUs).
_EXTRA = {"tensorflow": "cpu", "jax": "jax"}


def requested():
    """The backend asked for: ``KERAS_BACKEND`` or the default, lower-case."""
    return (os.environ.get("KERAS_BACKEND") or SUPPORTED[0]).strip().lower()


def select(name=None):
    """Check a backend choice and fix it for this process; return its name.

    Parameters
    ----------
    name : str, optional
        ``'tensorflow'`` or ``'jax'``; defaults to :func:`requested`.

    Raises
    ------
    ConfigError
        Unknown backend, backend not installed, or Keras already imported with another one.
    """
    name = (name or requested()).strip().lower()
    if name not in SUPPORTED:
        raise ConfigError(f"unknown Keras backend {name!r} (KERAS_BACKEND); "
                          f"use one of: {', '.join(SUPPORTED)}")
    try:
        found = importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise ConfigError(f"the {name} backend is asked for but {name} is not installed "
                          f"(pip install 'cryoem-denoise[{_EXTRA[name]}]')")
    if "keras" in sys.modules:
        current = sys.modules["keras"].backend.backend()
        if current != name:
            raise ConfigError(f"Keras is already running on {current}; set KERAS_BACKEND={name} "
                              "before starting")
        return name
    os.environ["KERAS_BACKEND"] = name
    return name


def name():
    """The backend Keras runs on (imports Keras, after :func:`select`)."""
    if "keras" not in sys.modules:
        select()
    import keras  # lazy: imports Keras

    return keras.backend.backend()


def import_quietly():
    """Import Keras and its backend with their start-up chatter kept off stderr.

    TensorFlow's C++ start-up notices (oneDNN, absl) ignore ``TF_CPP_MIN_LOG_LEVEL`` in part,
    so file descriptor 2 is pointed at /dev/null during the import only; Python exceptions
    still surface. Returns the backend name.
    """
    backend = select()
    if "keras" in sys.modules:
        return backend
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import keras  # noqa: F401  (imports the backend)
            if backend == "tensorflow":
                import absl.logging  # lazy: imports TensorFlow's logging

                absl.logging.set_verbosity(absl.logging.ERROR)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    if backend == "jax":
        _persistent_compilation_cache()
    return backend


def _persistent_compilation_cache():
    """Keep JAX's compiled programs between runs (XLA compiles a model in seconds to tens of
    seconds; the second ``apply`` or ``fit`` with the same shapes starts at once).

    In ``$JAX_COMPILATION_CACHE_DIR`` if set, else ``jax-cache`` in the package's cache
    folder (see :func:`cryoem_denoise.runtime.cache.cache_dir`); silently off where it cannot be
    created.
    """
    import jax  # lazy: imports JAX

    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return  # JAX reads it itself
    try:

        folder = cache_dir() / "jax-cache"
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def gpus():
    """Names of the accelerators the backend sees (GPUs; empty on a CPU-only machine)."""
    backend = name()
    if backend == "tensorflow":
        import tensorflow as tf  # lazy: imports TensorFlow

        return [d.name for d in tf.config.list_physical_devices("GPU")]
    import jax  # lazy: imports JAX

    return [str(d) for d in jax.devices() if d.platform != "cpu"]


def device_description():
    """A short record of the backend and the devices it computes on, for metadata."""
    backend = name()
    info = {"backend": backend, "gpus": gpus()}
    if backend == "jax":
        import jax  # lazy: imports JAX

        info["devices"] = [f"{d.platform}:{d.id} {getattr(d, 'device_kind', '')}".strip()
                           for d in jax.devices()]
    return info


def enable_determinism():
    """Make the backend's kernels deterministic (same seed, same weights)."""
    if name() == "tensorflow":
        import tensorflow as tf  # lazy: imports TensorFlow

        tf.config.experimental.enable_op_determinism()
    # XLA on CPU is deterministic; on GPUs JAX needs --xla_gpu_deterministic_ops, which must
    # be set before JAX starts: docs/install.md says how.


def set_random_seed(seed):
    """Seed Python, NumPy and Keras' global seed generator (model initialisation).

    :func:`keras.utils.set_random_seed` also seeds TensorFlow whenever it is installed, which
    imports it (seconds, and a second framework in memory); on JAX the same state is set
    without it.
    """
    import keras  # lazy: imports Keras

    if name() == "tensorflow":
        keras.utils.set_random_seed(seed)
        return


    try:
        from keras.src.backend.common import global_state  # lazy: imports Keras
        from keras.src.random import seed_generator  # lazy: imports Keras
        from keras.src.utils import rng_utils  # lazy: imports Keras
    except ImportError:  # a Keras that moved its internals: the public call still works
        keras.utils.set_random_seed(seed)
        return
    global_state.set_global_attribute(rng_utils.GLOBAL_RANDOM_SEED, seed)
    global_state.set_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR, None)
    random.seed(seed)
    np.random.seed(seed)

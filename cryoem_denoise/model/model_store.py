"""A model folder: everything needed to use or continue a trained model.

::

    MODEL_DIR/
      config.json            the FitConfig the model was trained with
      generator.weights.h5   generator weights (Keras), written at the end and at checkpoints
      metadata.json          versions, seed, data fingerprint, steps, validation metrics
      losses.csv             generator/critic losses every `log_every` steps
      checkpoints/           ckpt-STEP.npz: generator, critic, both optimisers, step
      logs/                  TensorBoard summaries

Loading for inference needs only the folder: :func:`load_generator` rebuilds the network
from ``config.json`` and loads ``generator.weights.h5``. Every file is written atomically.
"""

import importlib.metadata as md
import json
import os
import platform
import re
from pathlib import Path

import numpy as np

from cryoem_denoise import __version__
from cryoem_denoise.config import FitConfig
from cryoem_denoise.errors import ConfigError, InputError, OutputError
from cryoem_denoise.io.atomic import atomic_output, write_text
from cryoem_denoise.model.models import build_generator
from cryoem_denoise.runtime.backend import device_description
from cryoem_denoise.runtime.precision import (
    cpu_has_native_bf16,
    cpu_info,
    precision_policy,
)

CONFIG = "config.json"
WEIGHTS = "generator.weights.h5"
METADATA = "metadata.json"
LOSSES = "losses.csv"
CHECKPOINTS = "checkpoints"
LOGS = "logs"
_CKPT = re.compile(r"^ckpt-(\d+)\.npz$")


def default_model_dir():
    """The model folder shipped inside the package (see scripts/train_default_model.sh).

    Raises
    ------
    InputError
        If this installation has no default model.
    """
    folder = Path(__file__).resolve().parents[1] / "default_model"  # cryoem_denoise/default_model
    if not (folder / WEIGHTS).is_file():
        raise InputError("no --model given and this installation has no default model", folder)
    return folder


def check_new(model_dir, *, overwrite=False):
    """Check, without writing anything, that a new run may use ``model_dir``.

    Raises
    ------
    OutputError
        The path is a file, the folder holds a model or an unfinished run (and
        ``overwrite`` is not set), or the nearest existing folder is not writable.
    """
    model_dir = Path(model_dir)
    if model_dir.exists() and not model_dir.is_dir():
        raise OutputError("exists and is not a folder", model_dir)
    if (model_dir / CONFIG).exists() and not overwrite:
        if (model_dir / WEIGHTS).exists():
            raise OutputError("already holds a model (use --resume to continue it, or "
                              "--overwrite)", model_dir)
        if checkpoint_paths(model_dir):
            raise OutputError("holds an unfinished run (use --resume to continue it, or "
                              "--overwrite)", model_dir)
    existing = model_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.is_dir() and not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError("model folder is not writable" if existing == model_dir else
                          f"cannot create the model folder ({existing} is not writable)",
                          model_dir)
    return model_dir


def prepare_new(model_dir, *, overwrite=False):
    """Create (or check) a folder for a new training run.

    Raises
    ------
    OutputError
        The folder cannot be created or written, or already holds a model and
        ``overwrite`` is not set (see :func:`check_new`).
    """
    model_dir = check_new(model_dir, overwrite=overwrite)
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
        (model_dir / CHECKPOINTS).mkdir(exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the model folder ({exc.strerror})", model_dir) from None
    if not os.access(model_dir, os.W_OK | os.X_OK):
        raise OutputError("model folder is not writable", model_dir)
    if overwrite:
        for old in list((model_dir / CHECKPOINTS).glob("ckpt-*.npz")) + [model_dir / LOSSES]:
            old.unlink(missing_ok=True)
    return model_dir


def save_config(model_dir, cfg):
    write_text(Path(model_dir) / CONFIG, cfg.to_json(), overwrite=True)


def load_config(model_dir):
    """The :class:`FitConfig` of a model folder.

    Raises
    ------
    InputError
        Not a folder, no ``config.json``, or an invalid one.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise InputError("model folder does not exist", model_dir)
    path = model_dir / CONFIG
    if not path.is_file():
        raise InputError(f"not a model folder (no {CONFIG})", model_dir)
    try:
        return FitConfig.from_json(path.read_text()).validate()
    except ConfigError as exc:
        raise InputError(exc.message, path) from None


def save_generator(model_dir, generator):
    """Write the generator's weights atomically."""
    path = Path(model_dir) / WEIGHTS
    with atomic_output(path, overwrite=True, suffix=".weights.h5") as tmp:
        os.unlink(tmp)
        generator.save_weights(str(tmp))


def load_generator(model_dir, precision="float32"):
    """Rebuild the generator of a model folder and load its weights: ``(generator, cfg)``.

    Raises
    ------
    InputError
        The folder is not a model folder or its weights do not fit its config.
    """
    cfg = load_config(model_dir)
    weights = Path(model_dir) / WEIGHTS
    if not weights.is_file():
        raise InputError(f"model folder has no {WEIGHTS} (training not finished?)", model_dir)
    with precision_policy(precision):
        generator = build_generator(cfg.model, seed=cfg.train.seed, initialize=False)
    try:
        generator.load_weights(str(weights))
    except (ValueError, OSError) as exc:
        raise InputError(f"weights do not load: {str(exc).splitlines()[0]}", weights) from None
    return generator, cfg


def environment():
    """Versions and hardware worth recording with a result."""

    versions = {}
    for pkg in ("tensorflow", "tensorflow-cpu", "jax", "jaxlib", "keras", "numpy", "mrcfile",
                "scikit-image", "bm3d", "scipy", "gemmi"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass

    info = {"cryoem_denoise": __version__, "python": platform.python_version(),
            "platform": platform.platform(), "machine": platform.machine(),
            "cpu": cpu_info()[0] or platform.processor() or None,
            "cpu_native_bf16": cpu_has_native_bf16(),
            "cpu_count": os.cpu_count(), "packages": versions}

    info.update(device_description())  # backend, gpus (and JAX's devices)
    return info


def save_metadata(model_dir, metadata):
    write_text(Path(model_dir) / METADATA, json.dumps(metadata, indent=2, sort_keys=True) + "\n",
               overwrite=True)


def load_metadata(model_dir):
    path = Path(model_dir) / METADATA
    return json.loads(path.read_text()) if path.is_file() else {}


def saved_inputs(model_dir):
    """``(clean_paths, noisy_paths)`` a model folder was trained on (for resuming)."""
    inputs = load_metadata(model_dir).get("data", {}).get("inputs") or {}
    return inputs.get("clean") or [], inputs.get("noisy")


def checkpoint_paths(model_dir):
    """``[(step, path), ...]`` of a folder's checkpoints, oldest first."""
    folder = Path(model_dir) / CHECKPOINTS
    found = []
    if folder.is_dir():
        for p in folder.iterdir():
            m = _CKPT.match(p.name)
            if m:
                found.append((int(m.group(1)), p))
    return sorted(found)


def save_checkpoint(model_dir, step, arrays, keep=2):
    """Write ``arrays`` (name → ndarray) as checkpoint ``step``; keep the newest ``keep``."""
    path = Path(model_dir) / CHECKPOINTS / f"ckpt-{step:09d}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path, overwrite=True, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    for _, old in checkpoint_paths(model_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path):
    with np.load(path) as data:
        return {k: data[k] for k in data.files}

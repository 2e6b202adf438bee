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
from ``config.json`` and loads ``generator.weights.h5``. Every file is written atomically
(a temporary name, then a rename), and every file is checked when it is read: a damaged
one is one :class:`~cryoem_denoise.errors.InputError` line naming it, never a traceback.

What a run writes, in order, and what each state of the folder means:

1. ``metadata.json`` at step 0 (the training inputs and the data fingerprint), then
   ``config.json``. ``config.json`` is the mark of a run that can be resumed: a folder
   without it holds nothing usable (``fit --resume`` says so and to start again without
   ``--resume``), and a new run may take such a folder without ``--overwrite``.
2. Every ``log_every`` steps ``losses.csv``; every ``checkpoint_every`` steps
   ``metadata.json`` and then ``checkpoints/ckpt-STEP.npz`` (the two newest are kept).
3. At the end ``generator.weights.h5``, then ``metadata.json``.

A run killed at any moment resumes from its newest checkpoint that loads (a damaged one is
skipped with a warning), or from step 0. A killed writer leaves a temporary file
(``.NAME.<8 random characters>.part``); the next run in the folder removes it
(:func:`remove_temporaries`). A run that fails (a full disk, bad data) before its first
checkpoint removes what it wrote (:func:`discard_unusable`).

Folders that may be opened by ``fit``, ``apply`` and ``--init-from``:

* ``config.json`` required; its schema (sections, settings and their types) and values
  are checked (:meth:`~cryoem_denoise.config.FitConfig.from_json`).
* ``generator.weights.h5`` required for inference; it must be HDF5 holding exactly the
  weights of the network ``config.json`` describes (the first layer that differs is named).
* ``metadata.json`` optional for inference (only the trained pixel sizes are taken from it,
  and an unreadable one is ignored there); required to resume (the inputs, the data
  fingerprint, the validation history), where a damaged one is an error.
"""

import contextlib
import errno
import gc
import importlib.metadata as md
import io
import json
import math
import os
import platform
import re
import shutil
import sys
import warnings
from pathlib import Path

import h5py
import numpy as np

from cryoem_denoise import __version__
from cryoem_denoise.config import FitConfig
from cryoem_denoise.errors import ConfigError, InputError, InputWarning, OutputError
from cryoem_denoise.io.atomic import atomic_output, describe_os_error, remove_if_unheld, write_text
from cryoem_denoise.model.models import build_generator
from cryoem_denoise.runtime.backend import device_description
from cryoem_denoise.runtime.precision import (
    cpu_has_native_bf16,
    cpu_info,
    precision_policy,
)

try:  # the names Keras gives the layers' groups in a weights file (after models: Keras quiet)
    from keras.src.utils.naming import to_snake_case
except ImportError:  # another Keras: its own loading reports a mismatch
    to_snake_case = None

CONFIG = "config.json"
WEIGHTS = "generator.weights.h5"
METADATA = "metadata.json"
LOSSES = "losses.csv"
CHECKPOINTS = "checkpoints"
LOGS = "logs"
_CKPT = re.compile(r"^ckpt-(\d+)\.npz$")
#: Temporary files of :func:`~cryoem_denoise.io.atomic.atomic_output` for this folder's files
#: (``.NAME.<8 random characters><suffix>``).
_TEMPORARY = re.compile(r"^\.(?P<name>config\.json|metadata\.json|losses\.csv|"
                        r"generator\.weights\.h5|ckpt-\d+\.npz)\.[a-z0-9_]{8}"
                        r"(?:\.part|\.npz|\.weights\.h5)$")
#: What to do about it, at the end of a message that a run cannot be resumed.
START_AGAIN = "start it again without --resume"


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


def holds_run(model_dir):
    """Whether ``model_dir`` holds something a new run would throw away: a config with
    weights (a model) or with checkpoints (an unfinished run)."""
    model_dir = Path(model_dir)
    return (model_dir / CONFIG).exists() and ((model_dir / WEIGHTS).exists()
                                              or bool(checkpoint_paths(model_dir)))


def check_new(model_dir, *, overwrite=False):
    """Check, without writing anything, that a new run may use ``model_dir``.

    A folder holds a run when it has ``config.json`` and weights or checkpoints; without
    ``overwrite`` such a folder is refused. Any other folder may be used: what a run that
    wrote nothing usable left there (a config without checkpoints, metadata, temporary
    files) is replaced by the new run (:func:`prepare_new`).

    Raises
    ------
    OutputError
        The path is a file, the folder holds a model or an unfinished run (and
        ``overwrite`` is not set), or the nearest existing folder is not writable.
    """
    model_dir = Path(model_dir)
    if model_dir.exists() and not model_dir.is_dir():
        raise OutputError("exists and is not a folder", model_dir)
    if holds_run(model_dir) and not overwrite:
        if (model_dir / WEIGHTS).exists():
            raise OutputError("already holds a model (use --resume to continue it, or "
                              "--overwrite)", model_dir)
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

    The files of an earlier run in the folder are removed (with ``overwrite``, or where
    :func:`check_new` found nothing usable): the weights first, then the checkpoints, the
    losses, the config and the metadata, so that the folder is never a config beside
    another run's weights, whenever this is interrupted. ``logs/`` is kept.

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
        raise OutputError(f"cannot create the model folder ({describe_os_error(exc)})",
                          model_dir) from None
    if not os.access(model_dir, os.W_OK | os.X_OK):
        raise OutputError("model folder is not writable", model_dir)
    remove_temporaries(model_dir)
    old = ([model_dir / WEIGHTS] + [p for _, p in checkpoint_paths(model_dir)]
           + [model_dir / name for name in (LOSSES, CONFIG, METADATA)])
    for path in old:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot remove the earlier run's file ({describe_os_error(exc)})",
                              path) from None
    return model_dir


def remove_temporaries(model_dir):
    """Remove the temporary files killed runs left in ``model_dir`` (and its checkpoints);
    return how many. A file a live writer holds (its ``flock``) is kept."""
    removed = 0
    for folder in (Path(model_dir), Path(model_dir) / CHECKPOINTS):
        try:
            names = [e.name for e in os.scandir(folder) if _TEMPORARY.match(e.name)]
        except OSError:
            continue
        removed += sum(remove_if_unheld(folder / name) for name in names)
    return removed


def discard_unusable(model_dir, created, logs_before=None):
    """Remove what a new run that failed before its first checkpoint wrote.

    Parameters
    ----------
    model_dir : Path
    created : bool
        The run created the folder: it is removed if nothing else is left in it.
    logs_before : set of str, optional
        Names in ``logs/`` before the run (``None``: ``logs/`` did not exist).

    Nothing is removed from a folder that holds weights or checkpoints.
    """
    model_dir = Path(model_dir)
    if (model_dir / WEIGHTS).exists() or checkpoint_paths(model_dir):
        return
    remove_temporaries(model_dir)
    for name in (CONFIG, METADATA, LOSSES):
        with contextlib.suppress(OSError):
            (model_dir / name).unlink(missing_ok=True)
    logs = model_dir / LOGS
    with contextlib.suppress(OSError):
        if logs_before is None:
            shutil.rmtree(logs, ignore_errors=True)
        else:
            for entry in set(os.listdir(logs)) - set(logs_before):
                (logs / entry).unlink(missing_ok=True)
    for folder in ([model_dir / CHECKPOINTS] + ([model_dir] if created else [])):
        with contextlib.suppress(OSError):
            folder.rmdir()  # only if empty


def save_config(model_dir, cfg):
    write_text(Path(model_dir) / CONFIG, cfg.to_json(), overwrite=True)


def load_config(model_dir, resume=False):
    """The :class:`FitConfig` of a model folder.

    Parameters
    ----------
    resume : bool
        For ``fit --resume``: a missing folder or ``config.json`` means the run wrote
        nothing usable, and the message says to start it again.

    Raises
    ------
    InputError
        Not a folder, no ``config.json``, or an invalid one (not JSON, another schema, a
        value out of range: the message names the setting).
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        if resume:
            raise InputError("nothing to resume: the model folder does not exist (the run "
                             f"stopped before writing anything); {START_AGAIN}", model_dir)
        raise InputError("model folder does not exist", model_dir)
    path = model_dir / CONFIG
    if not path.is_file():
        if resume:
            raise InputError(f"nothing to resume: no {CONFIG} (the run stopped before "
                             f"writing anything usable); {START_AGAIN}", model_dir)
        raise InputError(f"not a model folder (no {CONFIG})", model_dir)
    try:
        return FitConfig.from_json(path.read_bytes())
    except OSError as exc:
        raise InputError(f"cannot read ({describe_os_error(exc)})", path) from None
    except ConfigError as exc:
        raise InputError(exc.message, path) from None


def save_generator(model_dir, generator):
    """Write the generator's weights atomically.

    Raises
    ------
    OutputError
        The disk is full or the file cannot be written (no temporary file is left).
    """
    path = Path(model_dir) / WEIGHTS
    failure = None
    with atomic_output(path, overwrite=True, suffix=".weights.h5") as tmp:
        os.unlink(tmp)  # HDF5 locks the file itself: it must not be the one atomic_output holds
        with _unraisable_ignored():
            try:
                generator.save_weights(str(tmp))
            except (OSError, RuntimeError, ValueError) as exc:
                failure = (getattr(exc, "errno", None), str(exc))
                while exc is not None:  # frees HDF5's objects of the failed file here...
                    exc.__traceback__, exc = None, exc.__context__
            gc.collect()  # ...where their own errors on closing are not printed
        if failure:
            code, text = failure  # HDF5's errors: '... errno = 28, error message = ...'
            if code is not None or "errno = 28" in text or "No space left" in text:
                raise OSError(code or errno.ENOSPC, os.strerror(code or errno.ENOSPC))
            raise OutputError(f"cannot write the weights ({text.splitlines()[0][:200]})", path)


@contextlib.contextmanager
def _unraisable_ignored():
    """Keep h5py's reports of errors on closing a file whose writes failed ('Exception
    ignored in ...' and a traceback, printed straight to stderr) off stderr for the block:
    a full disk is one line. What else the block prints is printed when it ends."""
    previous, stderr = sys.unraisablehook, sys.stderr
    sys.unraisablehook, sys.stderr = (lambda unraisable: None), io.StringIO()
    try:
        yield
    finally:
        captured = sys.stderr.getvalue()
        sys.unraisablehook, sys.stderr = previous, stderr
        if "h5py" not in captured:
            stderr.write(captured)


# -- weights ------------------------------------------------------------------------------
def _weights_in_file(path):
    """``{'layers/NAME/vars/I': (shape, dtype)}`` of a Keras ``.weights.h5`` file.

    Raises
    ------
    InputError
        Not an HDF5 file, truncated, or damaged.
    """
    found = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            found[name] = (tuple(obj.shape), obj.dtype)

    try:
        with h5py.File(path, "r") as fh:
            fh.visititems(visit)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EISDIR, errno.EIO):  # HDF5's text
            raise InputError(f"cannot read ({os.strerror(exc.errno).lower()})", path) from None
        reason = str(exc).splitlines()[0] if str(exc) else describe_os_error(exc)
        if "truncated file" in reason:
            reason = "truncated"
        elif "signature not found" in reason:
            reason = "not an HDF5 file"
        else:  # 'Unable to synchronously open file (bad superblock version number)'
            reason = "damaged HDF5: " + re.sub(r"^[^(]*\((.*)\)$", r"\1", reason)
        raise InputError(f"not a readable weights file ({reason[:160]})", path) from None
    except Exception as exc:  # noqa: BLE001 - h5py on damaged bytes raises many kinds
        raise InputError(f"damaged weights file ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:160] if str(exc) else ''})", path) from None
    return found


def _weights_of_model(model):
    """``[(file key, layer, variable)]`` of ``model`` as Keras' ``save_weights`` lays them
    out: one group per layer, named after its class (``conv2d``, ``conv2d_1``, ... in the
    model's layer order), its variables numbered in it."""
    used, out = {}, []
    for layer in model.layers:
        base = to_snake_case(type(layer).__name__)
        name = base if base not in used else f"{base}_{used[base] + 1}"
        used[base] = used.get(base, -1) + 1
        for i, v in enumerate(layer.weights):
            out.append((f"layers/{name}/vars/{i}", layer, v))
    return out


def check_weights(path, model):
    """Check that the weights file at ``path`` holds exactly ``model``'s weights.

    Raises
    ------
    InputError
        The file is not readable HDF5, or the first layer whose weights differ, with both
        shapes (``layer enc2 kernel: (4, 4, 8, 16) in the file, (4, 4, 16, 32) in the
        model``); weights of layers the model does not have.
    """
    stored = _weights_in_file(path)
    if to_snake_case is None:
        return
    expected = _weights_of_model(model)
    prefix = f"weights do not fit the network of {CONFIG} (another model's?): "
    for key, layer, v in expected:
        name = f"layer {layer.name} {v.path.rsplit('/', 1)[-1]}"
        if key not in stored:
            raise InputError(prefix + f"{name} {tuple(v.shape)} is not in the file", path)
        shape, dtype = stored.pop(key)
        if shape != tuple(v.shape):
            raise InputError(prefix + f"{name}: {shape} in the file, {tuple(v.shape)} in the "
                             "model", path)
        if not np.issubdtype(dtype, np.number):
            raise InputError(prefix + f"{name} holds {dtype}, not numbers", path)
    if stored:
        extra = sorted({k.split("/")[1] if k.count("/") >= 2 else k for k in stored})
        raise InputError(prefix + f"the file has weights of {len(extra)} layer(s) the model "
                         f"does not have ({', '.join(extra[:3])}{', ...' if len(extra) > 3 else ''})",
                         path)


def load_generator(model_dir, precision="float32"):
    """Rebuild the generator of a model folder and load its weights: ``(generator, cfg)``.

    Raises
    ------
    InputError
        The folder is not a model folder, its config is invalid, or its weights are not
        readable, do not fit its config (the first layer that differs is named) or hold
        NaN or infinite values.
    """
    import keras  # lazy: imports Keras

    cfg = load_config(model_dir)
    weights = Path(model_dir) / WEIGHTS
    if not weights.is_file():
        raise InputError(f"model folder has no {WEIGHTS} (training not finished?)", model_dir)
    with precision_policy(precision):
        generator = build_generator(cfg.model, seed=cfg.train.seed, initialize=False)
    check_weights(weights, generator)
    try:
        generator.load_weights(str(weights))
    except (ValueError, OSError, RuntimeError, KeyError, TypeError) as exc:
        first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise InputError(f"weights do not load: {first}", weights) from None
    for v in generator.weights:
        if not np.isfinite(keras.ops.convert_to_numpy(v.value)).all():
            raise InputError(f"damaged weights: {v.path} holds NaN or infinite values", weights)
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


# -- metadata -----------------------------------------------------------------------------
def save_metadata(model_dir, metadata):
    write_text(Path(model_dir) / METADATA, json.dumps(metadata, indent=2, sort_keys=True) + "\n",
               overwrite=True)


def load_metadata(model_dir):
    """A folder's ``metadata.json`` as a dict (``{}`` where there is none).

    Raises
    ------
    InputError
        The file cannot be read, is not JSON, or is not a JSON object.
    """
    path = Path(model_dir) / METADATA
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise InputError(f"cannot read ({describe_os_error(exc)})", path) from None
    except UnicodeDecodeError as exc:
        raise InputError(f"damaged: not UTF-8 text (byte {exc.start})", path) from None
    except json.JSONDecodeError as exc:
        raise InputError(f"damaged: not valid JSON ({exc.msg} at line {exc.lineno} column "
                         f"{exc.colno})", path) from None
    except (ValueError, RecursionError) as exc:
        raise InputError(f"damaged: not valid JSON ({str(exc).splitlines()[0][:80]})",
                         path) from None
    if not isinstance(meta, dict):
        raise InputError(f"damaged: a JSON object expected, got {type(meta).__name__}", path)
    return meta


def _list_of_names(value):
    return isinstance(value, list) and all(isinstance(v, str) and v for v in value)


def saved_inputs(model_dir):
    """``(clean_paths, noisy_paths)`` a model folder was trained on (for resuming):
    ``([], None)`` where the folder has no record of them.

    Raises
    ------
    InputError
        ``metadata.json`` is damaged (see :func:`load_metadata`) or its record of the
        inputs is not lists of file names.
    """
    path = Path(model_dir) / METADATA
    data = load_metadata(model_dir).get("data") or {}
    inputs = data.get("inputs") if isinstance(data, dict) else None
    if inputs is None:
        if not isinstance(data, dict):
            raise InputError("damaged: 'data' is not a JSON object", path)
        return [], None
    if not isinstance(inputs, dict):
        raise InputError("damaged: 'data.inputs' is not a JSON object", path)
    clean, noisy = inputs.get("clean") or [], inputs.get("noisy") or None
    if not _list_of_names(clean):
        raise InputError("damaged: 'data.inputs.clean' is not a list of file names", path)
    if noisy is not None and not (_list_of_names(noisy) and len(noisy) == len(clean)):
        raise InputError("damaged: 'data.inputs.noisy' is not a list of file names, one for "
                         "each clean one", path)
    return clean, noisy


def run_record(model_dir):
    """What a resumed run takes from ``metadata.json``: ``{'inputs': (clean, noisy),
    'fingerprint': str or None, 'validation': [{'step': int, ...}], 'train_seconds':
    float}`` (empty values where the folder has no metadata).

    Raises
    ------
    InputError
        ``metadata.json`` is damaged: not JSON, or one of these of the wrong type.
    """
    path = Path(model_dir) / METADATA
    meta = load_metadata(model_dir)
    clean, noisy = saved_inputs(model_dir)
    data = meta.get("data") or {}
    fingerprint = data.get("fingerprint")
    if fingerprint is not None and not isinstance(fingerprint, str):
        raise InputError("damaged: 'data.fingerprint' is not a string", path)
    history = meta.get("validation") or []
    if not (isinstance(history, list) and all(
            isinstance(h, dict) and isinstance(h.get("step"), int)
            and not isinstance(h.get("step"), bool) for h in history)):
        raise InputError("damaged: 'validation' is not a list of records with a step", path)
    seconds = meta.get("train_seconds", 0.0)
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) \
            or not math.isfinite(seconds) or seconds < 0:
        raise InputError("damaged: 'train_seconds' is not a number of seconds", path)
    return {"inputs": (clean, noisy), "fingerprint": fingerprint, "validation": history,
            "train_seconds": float(seconds)}


# -- checkpoints --------------------------------------------------------------------------
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
    """Write ``arrays`` (name → ndarray) as checkpoint ``step``; keep the newest ``keep``.

    Checkpoints of later steps are removed: they are of a run this one redoes (a resumed
    run that skipped a damaged checkpoint), and a later resume must not pick them.
    """
    path = Path(model_dir) / CHECKPOINTS / f"ckpt-{step:09d}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path, overwrite=True, suffix=".npz") as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    found = checkpoint_paths(model_dir)
    stale = [p for s, p in found if s > step] + [p for s, p in found if s <= step][:-keep]
    for old in stale:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path, step=None):
    """The arrays of checkpoint ``path`` (name → ndarray).

    Parameters
    ----------
    step : int, optional
        The step its name gives: its ``step`` array must say the same.

    Raises
    ------
    InputError
        The file cannot be read or is damaged: empty, truncated, not an ``.npz``
        archive, a member that fails its checksum, no integer ``step`` (or another one).
    """
    path = Path(path)
    arrays = None
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:  # not the content: the file cannot be read
        raise InputError(f"cannot read ({describe_os_error(exc)})", path) from None
    try:
        with fh:
            data = np.load(fh, allow_pickle=False)
            if isinstance(data, np.lib.npyio.NpzFile):
                with data:
                    arrays = {k: data[k] for k in data.files}
    except Exception as exc:  # noqa: BLE001 - NumPy and zipfile on damaged bytes raise many
        # kinds (BadZipFile, EOFError, ValueError, OSError on a bad seek, KeyError, zlib.error,
        # MemoryError, ...)
        text = str(exc).splitlines()[0][:120] if str(exc) else ""
        raise InputError(f"damaged checkpoint ({type(exc).__name__}"
                         f"{': ' + text if text else ''})", path) from None
    if arrays is None:
        raise InputError("damaged checkpoint (not an .npz archive)", path)
    saved = arrays.get("step")
    if saved is None or np.shape(saved) != () or not np.issubdtype(saved.dtype, np.integer):
        raise InputError("damaged checkpoint (no integer 'step')", path)
    if step is not None and int(saved) != step:
        raise InputError(f"damaged checkpoint (it holds step {int(saved)}, its name {step})", path)
    return arrays


def warn(message):
    """Issue an :class:`InputWarning` (the CLI prints it as one line)."""
    warnings.warn(InputWarning(message), stacklevel=3)

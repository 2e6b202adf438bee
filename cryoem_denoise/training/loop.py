"""The training loop, the same on every backend.

:func:`fit` loads the data, builds the backend's trainer (:func:`~cryoem_denoise.training.make_trainer`)
and runs its steps with progress (rate, losses, ETA), a loss CSV and TensorBoard scalars every
``log_every`` steps, validation every ``validate_every`` steps and checkpoints every
``checkpoint_every`` steps (both networks, both optimisers, the step; the data position
follows from the step because both data streams are pure functions of element index). Step
results stay on the device between log points: the loop never waits on the accelerator to
read a loss.

A run can be stopped at any moment and continued with ``resume``: from its newest checkpoint
that loads (a damaged one is skipped with a warning naming it), or from the start if it was
stopped before the first one (the folder's inputs and then its config are written before
the first step; see :mod:`~cryoem_denoise.model.model_store` for the order of every write).
A resumed run computes what the uninterrupted run would have, bit for bit. A run that fails
(a full disk, bad data) before its first checkpoint removes what it wrote; one interrupted
(Ctrl-C, SIGTERM) keeps its config and inputs, and resumes from step 0.
"""

import contextlib
import csv
import errno
import io
import json
import os
import time
from pathlib import Path

import numpy as np

from cryoem_denoise.data import pipeline
from cryoem_denoise.errors import ConfigError, InputError, OutputError
from cryoem_denoise.evaluation.metrics import psnr, ssim
from cryoem_denoise.io.atomic import write_text
from cryoem_denoise.model import model_store
from cryoem_denoise.model.models import generator_flops
from cryoem_denoise.runtime.progress import progress_bar
from cryoem_denoise.training.tensorboard import scalar_writer
from cryoem_denoise.training.trainers import make_trainer

LOSS_FIELDS = ("step", "g_loss", "g_adversarial", "g_content", "d_loss", "wasserstein",
               "images_per_s")


def _validate_metrics(trainer, val, batch=8):
    noisy, clean, sigma = val
    denoised = np.concatenate([trainer.denoise_batch(noisy[i:i + batch], sigma[i:i + batch])
                               for i in range(0, len(noisy), batch)])
    return {"val_psnr": float(np.mean([psnr(c, d) for c, d in zip(clean, denoised)])),
            "val_ssim": float(np.mean([ssim(c, d) for c, d in zip(clean, denoised)])),
            "val_psnr_noisy": float(np.mean([psnr(c, n) for c, n in zip(clean, noisy)]))}


#: Config fields that may differ when resuming (they do not change what a step computes).
RESUMABLE_CHANGES = {"train": {"steps", "log_every", "validate_every", "checkpoint_every",
                               "bn_recalibration"}}


def check_resume_compatible(saved, new):
    """Raise :class:`ConfigError` if ``new`` changes what ``saved``'s steps compute."""
    a, b = saved.to_dict(), new.to_dict()
    for section in a:
        for key in a[section]:
            if key in RESUMABLE_CHANGES.get(section, ()):
                continue
            if a[section][key] != b[section][key]:
                raise ConfigError(f"cannot resume with {section}.{key} = {b[section][key]!r}; "
                                  f"the run was started with {a[section][key]!r}")


def prepare_data(cfg, clean_paths, noisy_paths=None):
    """Load, split and pack the data of a run: ``(train_set, validation)``."""
    images = pipeline.load_images(clean_paths, cfg.data, cfg.model.tile, noisy_paths)
    train, val = pipeline.split_validation(images, cfg.data.validation_fraction, cfg.model.tile)
    return pipeline.pack(train, cfg.model.tile), pipeline.validation_set(val, cfg, cfg.train.seed)


def fit(cfg, clean_paths, model_dir, *, noisy_paths=None, resume=False, overwrite=False,
        progress=False, strategy=None, stop_after=None, time_limit=None):
    """Train a model into ``model_dir``; return its metadata dict.

    Parameters
    ----------
    cfg : FitConfig
        Ignored in part on ``resume``: the saved config is used, with ``steps`` and the
        logging intervals taken from ``cfg``; any other difference is an error.
    clean_paths : list of path-like
        MRC files (clean targets).
    noisy_paths : list of path-like, optional
        Paired noisy files (same shapes); no noise is added then.
    resume : bool
        Continue from the newest checkpoint that loads (damaged ones are skipped with a
        warning), from the start if the run was stopped before its first one or none loads.
    progress : bool
        Show a progress bar (images/s, losses, ETA) on stderr.
    strategy : optional
        Passed to :func:`~cryoem_denoise.training.make_trainer` (a ``tf.distribute`` strategy
        or a Keras distribution); by default from ``cfg.train.strategy``.
    stop_after : int, optional
        Stop (after checkpointing) once this many steps ran in this call; for tests and
        time-boxed jobs.
    time_limit : float, optional
        Seconds of training in this call: after the step that reaches it, checkpoint and
        write the generator weights (a usable model at that step; ``resume`` continues it
        to ``cfg.train.steps``).

    Raises
    ------
    InputError, OutputError, ConfigError
        Before any training time is spent: bad data, unwritable folder, resume of a run
        that wrote nothing usable, of a finished run without a usable checkpoint, from a
        damaged ``metadata.json`` or with an incompatible config. A full disk while
        training: :class:`OutputError` (before the first checkpoint, what the run wrote is
        removed again).
    """
    cfg.validate()
    model_dir = Path(model_dir)
    ckpts, record = [], None
    if cfg.train.init_from and not resume:
        init_weights(cfg)  # a bad --init-from fails before anything is read or written
    if resume:
        saved = model_store.load_config(model_dir, resume=True)
        check_resume_compatible(saved, cfg)
        record = model_store.run_record(model_dir)
        if not clean_paths:
            raise InputError(f"cannot resume: the run stopped before recording its training "
                             f"images (no {model_store.METADATA}); {model_store.START_AGAIN}, "
                             "or give its images", model_dir)
        ckpts = model_store.checkpoint_paths(model_dir)
        if not ckpts and (model_dir / model_store.WEIGHTS).exists():
            raise InputError("no checkpoint to resume from", model_dir / model_store.CHECKPOINTS)
    else:
        model_store.check_new(model_dir, overwrite=overwrite)
    train_set, val = prepare_data(cfg, clean_paths, noisy_paths)  # bad data: nothing written
    if ckpts and record["fingerprint"] and record["fingerprint"] != train_set.fingerprint:
        raise ConfigError("cannot resume on different data: the images (or their scaling) "
                          "differ from the ones the run started with")
    inputs = {"clean": [str(Path(p).resolve()) for p in clean_paths],
              "noisy": [str(Path(p).resolve()) for p in noisy_paths] if noisy_paths else None}
    created = not os.path.lexists(model_dir)
    logs = model_dir / model_store.LOGS
    logs_before = set(os.listdir(logs)) if logs.is_dir() else None
    try:
        if resume:
            model_store.remove_temporaries(model_dir)
        else:
            model_store.prepare_new(model_dir, overwrite=overwrite)
            # the inputs first: a folder with a config can always be resumed
            model_store.save_metadata(model_dir, _metadata(cfg, train_set, inputs, 0, [], 0.0))
        model_store.save_config(model_dir, cfg)
        trainer = make_trainer(cfg, strategy)
        start_step = _restore(trainer, model_dir, ckpts) if ckpts else 0
        if not start_step:
            record = None
            if cfg.train.init_from:
                trainer.load_generator_weights(init_weights(cfg))
            if resume:  # the inputs of this call, in case they were not recorded
                model_store.save_metadata(model_dir,
                                          _metadata(cfg, train_set, inputs, 0, [], 0.0))
        return _loop(trainer, cfg, train_set, val, inputs, model_dir, start_step, progress,
                     stop_after, time_limit, record)
    except Exception:
        if not resume:  # a full disk, a bad file: nothing usable is left behind
            model_store.discard_unusable(model_dir, created, logs_before)
        raise


def _restore(trainer, model_dir, ckpts):
    """Set ``trainer`` to the newest checkpoint that loads; return its step (0: none did).

    Each damaged checkpoint skipped is one warning naming it.

    Raises
    ------
    InputError
        None loads and the folder holds a finished model (starting again would replace it).
    """
    skipped = []
    for step, path in reversed(ckpts):
        try:
            trainer.set_state(model_store.load_checkpoint(path, step), path)
        except InputError as exc:
            skipped.append(exc)
            continue
        for exc in skipped:
            model_store.warn(f"{exc}: skipped, resuming from {path.name}")
        return step
    for exc in skipped:
        model_store.warn(f"{exc}: skipped")
    if (model_dir / model_store.WEIGHTS).exists():
        raise InputError("no usable checkpoint to resume from (each is damaged)",
                         model_dir / model_store.CHECKPOINTS)
    model_store.warn(f"{model_dir}: no usable checkpoint: training again from step 0")
    return 0


def init_model_dir(name):
    """The model folder ``--init-from`` names (``'default'``: the shipped model)."""
    return model_store.default_model_dir() if name == "default" else Path(name)


#: Besides the generator, what a run started from another model's generator takes from that
#: model's config: the input scaling its weights were trained for.
INHERITED_FROM_INIT = (("data", "intensity"), ("data", "noisy_intensity"),
                       ("data", "percentiles"))


def inherit_from_init(cfg, name):
    """``cfg`` set up to fine-tune model ``name``.

    It takes that model's generator and :data:`INHERITED_FROM_INIT` settings, and freezes
    BatchNorm (``train.freeze_batch_norm``, no recalibration): statistics of a few images
    of one kind, from the fine-tuning batches or recalibrated on them, re-normalise away
    what the generator learnt to read; measured on the shipped model, Noise2Noise
    fine-tuning without the freeze fell to the noisy input's PSNR within one step of
    recalibration. Call it before applying the user's explicit options, which then override.

    Raises
    ------
    InputError
        ``name`` is not a model folder.
    """
    other = model_store.load_config(init_model_dir(name))
    cfg.model = other.model
    for section, field_name in INHERITED_FROM_INIT:
        setattr(getattr(cfg, section), field_name, getattr(getattr(other, section), field_name))
    cfg.train.freeze_batch_norm, cfg.train.bn_recalibration = True, 0
    return cfg


def init_weights(cfg):
    """The generator weights a run starts from (``cfg.train.init_from``), checked to fit.

    Raises
    ------
    InputError
        Not a finished model folder.
    ConfigError
        Its generator differs from ``cfg.model``.
    """
    folder = init_model_dir(cfg.train.init_from)
    other = model_store.load_config(folder)
    diff = [k for k, v in other.model.__dict__.items()
            if k != "tile" and getattr(cfg.model, k) != v]  # the generator is fully convolutional
    if diff:
        raise ConfigError(f"--init-from {folder}: its generator differs from this run's in "
                          f"{', '.join(diff)}; drop those options to take the model's")
    weights = folder / model_store.WEIGHTS
    if not weights.is_file():
        raise InputError(f"no {model_store.WEIGHTS} (training not finished?)", folder)
    return weights


#: What the validation PSNR/SSIM of each data mode is measured against.
VALIDATION_REFERENCE = {
    "clean": "clean image", "pairs": "clean image",
    "noise2noise": "the held-out other noisy half: tracks the true error plus a constant "
                   "(the halves' noise), so compare runs, not values",
    "self_supervised": "the held-out neighbour sub-sample: tracks the true error plus a "
                       "constant (the noise), so compare runs, not values",
}


def _mean_rows(outs):
    """Means of a list of per-step metric dicts (device values) as Python floats.

    One transfer per metric: the device values are stacked where they are.
    """
    import keras  # lazy: imports Keras

    return {k: float(keras.ops.convert_to_numpy(keras.ops.mean(keras.ops.stack(
        [o[k] for o in outs])))) for k in outs[0]}


def _loop(trainer, cfg, train_set, val, inputs, model_dir, start_step, progress, stop_after,
          time_limit=None, record=None):
    """The steps from ``start_step`` on; ``record``: what the run's metadata said before
    (:func:`~cryoem_denoise.model.model_store.run_record`) when it is resumed."""
    t = cfg.train
    per_step = t.batch_size * t.n_critic
    trainer.start(train_set, start_step)
    writer = _LogWriter(model_dir / model_store.LOGS)
    try:
        meta = _steps(trainer, cfg, train_set, val, inputs, model_dir, start_step, progress,
                      stop_after, time_limit, record or {}, writer, per_step)
    except BaseException:
        with contextlib.suppress(Exception):
            writer.close()
        raise
    writer.close()
    return meta


class _LogWriter:
    """The TensorBoard scalar writer, whose failures are :class:`OutputError` lines (with
    TensorFlow installed its file errors are TensorFlow's, not ``OSError``)."""

    def __init__(self, logdir):
        self.logdir = logdir
        self._writer = self._call(scalar_writer, logdir)

    def _call(self, fn, *args):
        try:
            return fn(*args)
        except Exception as exc:
            text = str(exc)
            if not (isinstance(exc, OSError) or type(exc).__module__.startswith("tensorflow")
                    or "No space left" in text):
                raise
            if getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT) \
                    or "No space left" in text:
                raise OutputError("no space left on device", self.logdir) from None
            raise OutputError(f"cannot write the TensorBoard log ({text.splitlines()[0][:160]})",
                              self.logdir) from None

    def scalar(self, tag, value, step):
        self._call(self._writer.scalar, tag, value, step)

    def close(self):
        self._call(self._writer.close)


def _steps(trainer, cfg, train_set, val, inputs, model_dir, start_step, progress, stop_after,
           time_limit, before, writer, per_step):
    t = cfg.train
    losses_path = model_dir / model_store.LOSSES
    history = list(before.get("validation", []))
    seconds_before = before.get("train_seconds", 0.0)
    outs = []
    started = time.perf_counter()
    interval_start, interval_images = started, 0
    step = start_step
    bar = progress_bar(t.steps, "fit", "step", progress, initial=start_step)
    ran = 0
    timed_out = False
    try:
        while step < t.steps:
            outs.append(trainer.step(step))
            step += 1
            ran += 1
            interval_images += per_step
            bar.update(1)
            if step % t.log_every == 0 or step == t.steps:
                row = _mean_rows(outs)  # waits for the interval's steps to finish
                now = time.perf_counter()
                row["images_per_s"] = interval_images / max(now - interval_start, 1e-9)
                row["step"] = step
                _append_losses(losses_path, row)
                for k, v in row.items():
                    if k != "step":
                        writer.scalar(k, v, step)
                bar.set_postfix(img_s=f"{row['images_per_s']:.2f}", g=f"{row['g_loss']:.4g}",
                                d=f"{row['d_loss']:.3g}")
                outs = []
                interval_start, interval_images = now, 0
            if val is not None and (step % t.validate_every == 0 or step == t.steps):
                record = {"step": step, **_validate_metrics(trainer, val)}
                history = sorted([h for h in history if h["step"] != step] + [record],
                                 key=lambda h: h["step"])
                writer.scalar("val_psnr", record["val_psnr"], step)
                writer.scalar("val_ssim", record["val_ssim"], step)
            stopping = stop_after is not None and ran >= stop_after
            timed_out = time_limit is not None and time.perf_counter() - started >= time_limit
            stopping = stopping or timed_out
            if step % t.checkpoint_every == 0 or step == t.steps or stopping:
                # the metadata first: a run killed between the two resumes from the checkpoint
                # before, redoes this step's validation and keeps its record
                meta = _metadata(cfg, train_set, inputs, step, history,
                                 seconds_before + time.perf_counter() - started)
                model_store.save_metadata(model_dir, meta)
                model_store.save_checkpoint(model_dir, step, trainer.get_state(step))
            if stopping:
                break
    finally:
        bar.close()
    recalibrated = None
    if step >= t.steps or timed_out:  # out of time: a usable model, resumable to t.steps
        trainer.sync()
        if t.bn_recalibration:
            recalibrated = {"crops": trainer.recalibrate_batch_norm(t.bn_recalibration)}
            if val is not None:
                recalibrated["validation"] = _validate_metrics(trainer, val)
        model_store.save_generator(model_dir, trainer.generator)
    meta = _metadata(cfg, train_set, inputs, step, history,
                     seconds_before + time.perf_counter() - started)
    if recalibrated:
        meta["batch_norm_recalibration"] = recalibrated
    if timed_out and step < t.steps:  # the budget was wall time, not t.steps
        meta["stopped_at_time_limit_s"] = time_limit
    model_store.save_metadata(model_dir, meta)
    return meta


def _row_step(line):
    """The step of a loss CSV row, ``None`` for the header or a line that is not a row."""
    head = line.split(",", 1)[0]
    return int(head) if head.isascii() and head.isdigit() else None


def _append_losses(path, row):
    """Append one row to the loss CSV (rewritten atomically; it stays small).

    Rows of this step and later (a resumed run recomputes them) and lines that are not
    rows of the CSV (a damaged file) are dropped.
    """
    try:
        old = path.read_bytes().decode("utf-8", errors="replace") if path.exists() else ""
    except OSError:
        old = ""  # unreadable: written again from this row on
    header = ",".join(LOSS_FIELDS)
    kept = [line + "\n" for line in old.splitlines()
            if (step := _row_step(line)) is not None and step < row["step"]]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=LOSS_FIELDS, extrasaction="ignore", lineterminator="\n")
    w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    write_text(path, header + "\n" + "".join(kept) + buf.getvalue(), overwrite=True)


def _metadata(cfg, train_set, inputs, step, history, seconds):
    return {
        "steps": step,
        "seed": cfg.train.seed,
        "data": {"inputs": inputs, "images": train_set.names[:50], "n_images": len(train_set),
                 "fingerprint": train_set.fingerprint, "mode": cfg.data.mode,
                 "validation_reference": VALIDATION_REFERENCE[cfg.data.mode]},
        "validation": history,
        "train_seconds": seconds,
        "generator_gflops_per_tile": generator_flops(cfg.model) / 1e9,
        "environment": model_store.environment(),
        "config": json.loads(cfg.to_json()),
    }

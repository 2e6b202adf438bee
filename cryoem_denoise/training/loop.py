"""The training loop, the same on every backend.

:func:`fit` loads the data, builds the backend's trainer (:func:`~cryoem_denoise.training.make_trainer`)
and runs its steps with progress (rate, losses, ETA), a loss CSV and TensorBoard scalars every
``log_every`` steps, validation every ``validate_every`` steps and checkpoints every
``checkpoint_every`` steps (both networks, both optimisers, the step; the data position
follows from the step because both data streams are pure functions of element index). Step
results stay on the device between log points: the loop never waits on the accelerator to
read a loss.

A run can be stopped at any moment and continued with ``resume``: from its newest checkpoint,
or from the start if it was stopped before the first one (the folder's config and inputs are
written before the first step).
"""

import csv
import io
import json
import time
from pathlib import Path

import numpy as np

from cryoem_denoise.data import pipeline
from cryoem_denoise.errors import ConfigError, InputError
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
        Continue from the newest checkpoint (from the start if the run was stopped before
        its first one).
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
        Before any training time is spent: bad data, unwritable folder, resume of a
        finished run without a checkpoint or with an incompatible config.
    """
    cfg.validate()
    model_dir = Path(model_dir)
    ckpts = []
    if cfg.train.init_from and not resume:
        init_weights(cfg)  # a bad --init-from fails before anything is read or written
    if resume:
        saved = model_store.load_config(model_dir)
        check_resume_compatible(saved, cfg)
        ckpts = model_store.checkpoint_paths(model_dir)
        if not ckpts and (model_dir / model_store.WEIGHTS).exists():
            raise InputError("no checkpoint to resume from", model_dir / model_store.CHECKPOINTS)
    else:
        model_store.check_new(model_dir, overwrite=overwrite)
    train_set, val = prepare_data(cfg, clean_paths, noisy_paths)  # bad data: nothing written
    if not resume:
        model_store.prepare_new(model_dir, overwrite=overwrite)
    if ckpts:
        before = model_store.load_metadata(model_dir).get("data", {}).get("fingerprint")
        if before and before != train_set.fingerprint:
            raise ConfigError("cannot resume on different data: the images (or their scaling) "
                              "differ from the ones the run started with")
    model_store.save_config(model_dir, cfg)
    trainer = make_trainer(cfg, strategy)
    start_step = 0
    if ckpts:
        start_step = trainer.set_state(model_store.load_checkpoint(ckpts[-1][1]), ckpts[-1][1])
    elif cfg.train.init_from:
        trainer.load_generator_weights(init_weights(cfg))
    inputs = {"clean": [str(Path(p).resolve()) for p in clean_paths],
              "noisy": [str(Path(p).resolve()) for p in noisy_paths] if noisy_paths else None}
    if not start_step:  # a run stopped before its first checkpoint can still be resumed
        model_store.save_metadata(model_dir, _metadata(cfg, train_set, inputs, 0, [], 0.0))
    return _loop(trainer, cfg, train_set, val, inputs, model_dir, start_step, progress, stop_after,
                 time_limit)


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
          time_limit=None):

    t = cfg.train
    per_step = t.batch_size * t.n_critic
    trainer.start(train_set, start_step)
    writer = scalar_writer(model_dir / model_store.LOGS)
    losses_path = model_dir / model_store.LOSSES
    meta = model_store.load_metadata(model_dir) if start_step else {}
    history = meta.get("validation", [])
    seconds_before = meta.get("train_seconds", 0.0)
    outs = []
    started = time.perf_counter()
    interval_start, interval_images = started, 0
    step = start_step
    bar = progress_bar(t.steps, "fit", "step", progress, initial=start_step)
    ran = 0
    timed_out = False
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
            history = [h for h in history if h["step"] != step] + [record]
            writer.scalar("val_psnr", record["val_psnr"], step)
            writer.scalar("val_ssim", record["val_ssim"], step)
        stopping = stop_after is not None and ran >= stop_after
        timed_out = time_limit is not None and time.perf_counter() - started >= time_limit
        stopping = stopping or timed_out
        if step % t.checkpoint_every == 0 or step == t.steps or stopping:
            model_store.save_checkpoint(model_dir, step, trainer.get_state(step))
            meta = _metadata(cfg, train_set, inputs, step, history,
                             seconds_before + time.perf_counter() - started)
            model_store.save_metadata(model_dir, meta)
        if stopping:
            break
    bar.close()
    writer.close()
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


def _append_losses(path, row):
    """Append one row to the loss CSV (rewritten atomically; it stays small)."""
    old = path.read_text() if path.exists() else ""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=LOSS_FIELDS, extrasaction="ignore")
    if not old:
        w.writeheader()
    w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    # drop rows a resumed run recomputes
    kept = [line for line in old.splitlines(keepends=True)
            if not line[:1].isdigit() or int(line.split(",")[0]) < row["step"]]
    write_text(path, "".join(kept) + buf.getvalue(), overwrite=True)


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

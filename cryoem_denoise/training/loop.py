"""The paper's Wasserstein GAN trainer.

One training step (:meth:`WGANTrainer.train_step`, a ``tf.function``):

1. ``n_critic`` times: critic loss ``L_D = mean D(y, G(y)) - mean D(y, x)`` (the paper's
   Eq. 6 with the sign that WGAN minimises), one optimiser update, then every critic weight
   is clipped to ``[-c, c]`` (c = 0.001).
2. Generator loss ``L_G = -mean D(y, G(y)) + lambda * L_content`` with the gray constraint
   ``L_content`` = per-image sum (Eq. 8) of squared errors, by default on the model's
   [-1, 1] scale (``gray_scale='unit255'`` uses the [0, 255] scale; lambda's meaning depends
   on it), one optimiser update.

Images enter on [0, 255] and are mapped to [-1, 1] here, at the model's edge. Losses are
averaged over the global batch, so a step on several replicas equals a step on one.
Clipping runs in cross-replica context, after the all-reduced update.

:func:`fit` wraps it: data, validation, checkpoints every ``checkpoint_every`` steps (both
networks, both optimisers, the step; the data position follows from the step because the
pipeline is a pure function of element index), resume, loss CSV, TensorBoard, progress.
"""

import csv
import io
import json
import os
import time
from pathlib import Path

import numpy as np

from cryoem_denoise import model_store, pipeline
from cryoem_denoise.errors import ConfigError, InputError
from cryoem_denoise.models import build_critic, build_generator, generator_flops
from cryoem_denoise.progress import progress_bar
from cryoem_denoise.precision import resolve

LOSS_FIELDS = ("step", "g_loss", "g_adversarial", "g_content", "d_loss", "wasserstein",
               "images_per_s")


def to_model_scale(images):
    """[0, 255] → [-1, 1]."""
    return images / 127.5 - 1.0


def from_model_scale(images):
    """[-1, 1] → [0, 255]."""
    return (images + 1.0) * 127.5


def make_strategy(name):
    """A ``tf.distribute`` strategy by name (see :data:`cryoem_denoise.config.STRATEGIES`)."""
    import tensorflow as tf

    if name == "auto":
        if os.environ.get("TF_CONFIG"):
            name = "multiworker"
        elif len(tf.config.list_physical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            name = "default"
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ConfigError(f"unknown strategy {name!r}")


def make_optimizer(name, lr, beta1, mixed_float16):
    import keras

    if name == "adam":
        opt = keras.optimizers.Adam(lr, beta_1=beta1)
    elif name == "sgd":
        opt = keras.optimizers.SGD(lr)
    elif name == "rmsprop":
        opt = keras.optimizers.RMSprop(lr)
    else:
        raise ConfigError(f"unknown optimizer {name!r}")
    if mixed_float16:
        opt = keras.optimizers.LossScaleOptimizer(opt)
    return opt


class WGANTrainer:
    """Generator, critic, their optimisers and the compiled train step.

    Parameters
    ----------
    cfg : FitConfig
    strategy : tf.distribute.Strategy, optional
        Defaults to :func:`make_strategy` of ``cfg.train.strategy``.
    """

    def __init__(self, cfg, strategy=None):
        import keras
        import tensorflow as tf

        self.cfg = cfg
        t = cfg.train
        if t.deterministic:
            tf.config.experimental.enable_op_determinism()
        keras.utils.set_random_seed(t.seed)
        self.strategy = strategy or make_strategy(t.strategy)
        self.policy = resolve(t.precision)
        self.replicas = self.strategy.num_replicas_in_sync
        if t.batch_size % self.replicas:
            raise ConfigError(f"batch size {t.batch_size} is not divisible by the "
                              f"{self.replicas} replicas")
        previous = keras.mixed_precision.global_policy()
        keras.mixed_precision.set_global_policy(self.policy)
        try:
            with self.strategy.scope():
                sync = self.replicas > 1
                self.generator = build_generator(cfg.model, sync, seed=t.seed)
                self.critic = build_critic(cfg.model, sync)
                fp16 = self.policy == "mixed_float16"
                self.g_opt = make_optimizer(t.g_optimizer, t.g_lr, t.adam_beta1, fp16)
                self.d_opt = make_optimizer(t.d_optimizer, t.d_lr, t.adam_beta1, fp16)
                self.g_opt.build(self.generator.trainable_variables)
                self.d_opt.build(self.critic.trainable_variables)
        finally:
            keras.mixed_precision.set_global_policy(previous)
        self._clip_critic()
        self.train_step = tf.function(self._train_step)

    # -- the step -----------------------------------------------------------------------
    def _critic_input(self, noisy, image):
        import tensorflow as tf

        if self.cfg.model.critic_conditional:
            return tf.concat([noisy, image], axis=-1)
        return image

    def _per_example_score(self, scores):
        import tensorflow as tf

        return tf.reduce_mean(tf.cast(scores, tf.float32), axis=[1, 2, 3])

    def _content(self, clean, fake):
        import tensorflow as tf

        diff = tf.cast(fake, tf.float32) - clean
        if self.cfg.train.gray_scale == "unit255":
            diff = diff * 127.5
        sq = tf.square(diff)
        if self.cfg.train.gray_reduction == "sum":
            return tf.reduce_sum(sq, axis=[1, 2, 3])
        return tf.reduce_mean(sq, axis=[1, 2, 3])

    @staticmethod
    def _scaled(opt, loss):
        """The loss the tape differentiates: multiplied by the loss scale for float16."""
        return opt.scale_loss(loss) if hasattr(opt, "scale_loss") else loss

    @staticmethod
    def _apply(opt, scaled_loss, tape, variables):
        opt.apply(tape.gradient(scaled_loss, variables), variables)

    def _critic_replica(self, noisy, clean):
        import tensorflow as tf

        gb = self.cfg.train.batch_size
        y, x = to_model_scale(noisy), to_model_scale(clean)
        with tf.GradientTape() as tape:
            fake = self.generator(y, training=True)
            real_s = self._per_example_score(self.critic(self._critic_input(y, x), training=True))
            fake_s = self._per_example_score(
                self.critic(self._critic_input(y, tf.cast(fake, y.dtype)), training=True))
            loss = tf.nn.compute_average_loss(fake_s - real_s, global_batch_size=gb)
            scaled = self._scaled(self.d_opt, loss)
        self._apply(self.d_opt, scaled, tape, self.critic.trainable_variables)
        return loss

    def _generator_replica(self, noisy, clean):
        import tensorflow as tf

        gb = self.cfg.train.batch_size
        y, x = to_model_scale(noisy), to_model_scale(clean)
        with tf.GradientTape() as tape:
            fake = self.generator(y, training=True)
            fake_s = self._per_example_score(
                self.critic(self._critic_input(y, tf.cast(fake, y.dtype)), training=True))
            content = self._content(x, fake)
            adv = tf.nn.compute_average_loss(-fake_s, global_batch_size=gb)
            con = tf.nn.compute_average_loss(content, global_batch_size=gb)
            loss = adv + self.cfg.train.gray_lambda * con
            scaled = self._scaled(self.g_opt, loss)
        self._apply(self.g_opt, scaled, tape, self.generator.trainable_variables)
        return loss, adv, con

    def _clip_critic(self):
        c = self.cfg.train.clip
        import tensorflow as tf

        for v in self.critic.trainable_variables:
            v.assign(tf.clip_by_value(v, -c, c))

    def _train_step(self, noisy, clean):
        """One WGAN step on a distributed batch of ``n_critic * batch_size`` crops."""
        import tensorflow as tf

        s = self.strategy
        n = self.cfg.train.n_critic
        mean = tf.distribute.ReduceOp.SUM  # losses are already divided by the global batch
        d_loss = 0.0
        for k in range(n):
            part = (lambda a, k=k: tf.split(a, n, axis=0)[k])
            nk = s.run(part, args=(noisy,)) if n > 1 else noisy
            ck = s.run(part, args=(clean,)) if n > 1 else clean
            d_loss = s.reduce(mean, s.run(self._critic_replica, args=(nk, ck)), axis=None)
            self._clip_critic()
        g, adv, con = s.run(self._generator_replica, args=(noisy, clean))
        return {"g_loss": s.reduce(mean, g, axis=None),
                "g_adversarial": s.reduce(mean, adv, axis=None),
                "g_content": s.reduce(mean, con, axis=None),
                "d_loss": d_loss, "wasserstein": -d_loss}

    # -- state --------------------------------------------------------------------------
    def _state_variables(self):
        return {"generator": self.generator.variables, "critic": self.critic.variables,
                "g_opt": self.g_opt.variables, "d_opt": self.d_opt.variables}

    def get_state(self, step):
        arrays = {"step": np.array(step, np.int64)}
        for group, variables in self._state_variables().items():
            for i, v in enumerate(variables):
                arrays[f"{group}/{i:04d}"] = np.asarray(v.numpy())
        return arrays

    def set_state(self, arrays, source="checkpoint"):
        for group, variables in self._state_variables().items():
            keys = sorted(k for k in arrays if k.startswith(group + "/"))
            if len(keys) != len(variables):
                raise InputError(f"checkpoint does not fit this model ({group}: {len(keys)} "
                                 f"arrays for {len(variables)} variables)", source)
            for key, v in zip(keys, variables):
                if tuple(arrays[key].shape) != tuple(v.shape):
                    raise InputError(f"checkpoint does not fit this model ({group} variable "
                                     f"{v.path}: {arrays[key].shape} vs {tuple(v.shape)})", source)
                v.assign(arrays[key])
        return int(arrays["step"])

    def denoise_batch(self, noisy):
        """Generator on ``(n, h, w)`` noisy crops on [0, 255] → denoised on [0, 255]."""
        out = self.generator(to_model_scale(noisy[..., None].astype(np.float32)), training=False)
        return from_model_scale(np.asarray(out, np.float32)[..., 0])


def _validate_metrics(trainer, val, batch=8):
    from cryoem_denoise.metrics import psnr, ssim

    noisy, clean = val
    denoised = np.concatenate([trainer.denoise_batch(noisy[i:i + batch])
                               for i in range(0, len(noisy), batch)])
    return {"val_psnr": float(np.mean([psnr(c, d) for c, d in zip(clean, denoised)])),
            "val_ssim": float(np.mean([ssim(c, d) for c, d in zip(clean, denoised)])),
            "val_psnr_noisy": float(np.mean([psnr(c, n) for c, n in zip(clean, noisy)]))}


#: Config fields that may differ when resuming (they do not change what a step computes).
RESUMABLE_CHANGES = {"train": {"steps", "log_every", "validate_every", "checkpoint_every"}}


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
        progress=False, strategy=None, stop_after=None):
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
        Continue from the newest checkpoint.
    progress : bool
        Show a progress bar (images/s, losses, ETA) on stderr.
    stop_after : int, optional
        Stop (after checkpointing) once this many steps ran in this call; for tests and
        time-boxed jobs.

    Raises
    ------
    InputError, OutputError, ConfigError
        Before any training time is spent: bad data, unwritable folder, resume without a
        checkpoint or with an incompatible config.
    """
    cfg.validate()
    model_dir = Path(model_dir)
    start_step = 0
    if resume:
        saved = model_store.load_config(model_dir)
        check_resume_compatible(saved, cfg)
        ckpts = model_store.checkpoint_paths(model_dir)
        if not ckpts:
            raise InputError("no checkpoint to resume from", model_dir / model_store.CHECKPOINTS)
    else:
        model_store.prepare_new(model_dir, overwrite=overwrite)
    train_set, val = prepare_data(cfg, clean_paths, noisy_paths)
    if resume:
        before = model_store.load_metadata(model_dir).get("data", {}).get("fingerprint")
        if before and before != train_set.fingerprint:
            raise ConfigError("cannot resume on different data: the images (or their scaling) "
                              "differ from the ones the run started with")
    model_store.save_config(model_dir, cfg)
    trainer = WGANTrainer(cfg, strategy)
    if resume:
        start_step = trainer.set_state(model_store.load_checkpoint(ckpts[-1][1]), ckpts[-1][1])
    inputs = {"clean": [str(Path(p).resolve()) for p in clean_paths],
              "noisy": [str(Path(p).resolve()) for p in noisy_paths] if noisy_paths else None}
    return _loop(trainer, cfg, train_set, val, inputs, model_dir, start_step, progress, stop_after)


def saved_inputs(model_dir):
    """``(clean_paths, noisy_paths)`` a model folder was trained on (for resuming)."""
    inputs = model_store.load_metadata(model_dir).get("data", {}).get("inputs") or {}
    return inputs.get("clean") or [], inputs.get("noisy")


def _loop(trainer, cfg, train_set, val, inputs, model_dir, start_step, progress, stop_after):
    import tensorflow as tf

    t = cfg.train
    per_step = t.batch_size * t.n_critic
    dataset = pipeline.training_dataset(train_set, cfg, start_element=start_step * per_step)
    dist = iter(trainer.strategy.experimental_distribute_dataset(dataset))
    writer = tf.summary.create_file_writer(str(model_dir / model_store.LOGS))
    losses_path = model_dir / model_store.LOSSES
    meta = model_store.load_metadata(model_dir) if start_step else {}
    history = meta.get("validation", [])
    seconds_before = meta.get("train_seconds", 0.0)
    sums, count = {}, 0
    started = time.perf_counter()
    interval_start, interval_images = started, 0
    step = start_step
    bar = progress_bar(t.steps, "fit", "step", progress, initial=start_step)
    ran = 0
    while step < t.steps:
        noisy, clean = next(dist)
        out = trainer.train_step(noisy, clean)
        step += 1
        ran += 1
        count += 1
        interval_images += per_step
        for k, v in out.items():
            sums[k] = sums.get(k, 0.0) + float(v)
        bar.update(1)
        if step % t.log_every == 0 or step == t.steps:
            now = time.perf_counter()
            row = {k: v / count for k, v in sums.items()}
            row["images_per_s"] = interval_images / max(now - interval_start, 1e-9)
            row["step"] = step
            _append_losses(losses_path, row)
            with writer.as_default():
                for k, v in row.items():
                    if k != "step":
                        tf.summary.scalar(k, v, step=step)
            bar.set_postfix(img_s=f"{row['images_per_s']:.2f}", g=f"{row['g_loss']:.4g}",
                            d=f"{row['d_loss']:.3g}")
            sums, count = {}, 0
            interval_start, interval_images = now, 0
        if val is not None and (step % t.validate_every == 0 or step == t.steps):
            record = {"step": step, **_validate_metrics(trainer, val)}
            history = [h for h in history if h["step"] != step] + [record]
            with writer.as_default():
                tf.summary.scalar("val_psnr", record["val_psnr"], step=step)
                tf.summary.scalar("val_ssim", record["val_ssim"], step=step)
        stopping = stop_after is not None and ran >= stop_after
        if step % t.checkpoint_every == 0 or step == t.steps or stopping:
            model_store.save_checkpoint(model_dir, step, trainer.get_state(step))
            meta = _metadata(cfg, train_set, inputs, step, history,
                             seconds_before + time.perf_counter() - started)
            model_store.save_metadata(model_dir, meta)
        if stopping:
            break
    bar.close()
    writer.flush()
    if step >= t.steps:
        model_store.save_generator(model_dir, trainer.generator)
    meta = _metadata(cfg, train_set, inputs, step, history,
                             seconds_before + time.perf_counter() - started)
    model_store.save_metadata(model_dir, meta)
    return meta


def _append_losses(path, row):
    """Append one row to the loss CSV (rewritten atomically; it stays small)."""
    from cryoem_denoise.atomic import write_text

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
                 "fingerprint": train_set.fingerprint},
        "validation": history,
        "train_seconds": seconds,
        "generator_gflops_per_tile": generator_flops(cfg.model) / 1e9,
        "environment": model_store.environment(),
        "config": json.loads(cfg.to_json()),
    }

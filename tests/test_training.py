import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from cryoem_denoise import training
from cryoem_denoise.config import tiny_config
from cryoem_denoise.errors import ConfigError, InputError, OutputError
from cryoem_denoise.model import losses, model_store
from cryoem_denoise.runtime import backend
from training_batches import noisy_batch, to_numpy


def _cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "cryoem_denoise", *map(str, args)],
                          check=False, capture_output=True, text=True, timeout=timeout)


def _invoke(*args):
    """The CLI in this process (no interpreter start): ``returncode`` and ``stderr`` as _cli."""
    from types import SimpleNamespace

    from click.testing import CliRunner

    from cryoem_denoise.cli import cli

    result = CliRunner().invoke(cli, [str(a) for a in args])
    return SimpleNamespace(returncode=result.exit_code, stdout=result.stdout, stderr=result.stderr)


@pytest.mark.backends
def test_step_clips_critic_and_learns():
    cfg = tiny_config(batch_size=4, g_lr=1e-3)
    trainer = training.make_trainer(cfg)
    noisy, clean = noisy_batch()
    first = trainer.train_step(noisy, clean)
    for _ in range(15):
        out = trainer.train_step(noisy, clean)
    assert all(np.isfinite(float(v)) for v in out.values())
    assert float(out["g_content"]) < float(first["g_content"])
    trainer.sync()
    for v in trainer.critic.trainable_variables:
        assert np.abs(to_numpy(v.value)).max() <= cfg.train.clip + 1e-9
    # the generator loss is the adversarial term plus lambda times the gray constraint
    assert float(out["g_loss"]) == pytest.approx(
        float(out["g_adversarial"]) + 0.1 * float(out["g_content"]), rel=1e-5)


@pytest.mark.backends
def test_gray_constraint_readings():
    _, clean = noisy_batch(n=2)
    x = losses.to_model_scale(clean)
    fake = x + 0.1
    sums = {}
    for scale in ("model", "unit255"):
        for reduction in ("sum", "mean"):
            sums[scale, reduction] = to_numpy(losses.gray_constraint(x, fake, scale, reduction))
    np.testing.assert_allclose(sums["model", "sum"], 0.01 * 64 * 64, rtol=1e-4)
    np.testing.assert_allclose(sums["model", "mean"], 0.01, rtol=1e-4)
    np.testing.assert_allclose(sums["unit255", "mean"], 12.75 ** 2, rtol=1e-4)


@pytest.mark.slow
@pytest.mark.backends
def test_generator_uses_one_batch_with_several_critic_updates():
    """With n_critic > 1 the generator step sees the last batch_size crops, averaged over
    batch_size (the content term does not grow with n_critic)."""
    noisy, clean = noisy_batch(n=6)
    content = {}
    for n_critic, (a, b) in ((3, (0, 6)), (1, (4, 6))):
        cfg = tiny_config(batch_size=2, n_critic=n_critic)
        cfg.model.dropout = 0.0
        out = training.make_trainer(cfg).train_step(noisy[a:b], clean[a:b])
        content[n_critic] = float(out["g_content"])
    assert content[3] == pytest.approx(content[1], rel=1e-4)


@pytest.mark.parametrize("setting", [{"n_critic": 2}, {"precision": "mixed_bfloat16"},
                                     {"precision": "mixed_float16"},
                                     {"g_optimizer": "adam", "d_optimizer": "adam"}])
@pytest.mark.slow
@pytest.mark.backends
def test_step_variants_run(setting):
    cfg = tiny_config(batch_size=2, **setting)
    trainer = training.make_trainer(cfg)
    noisy, clean = noisy_batch(n=2 * cfg.train.n_critic)
    out = trainer.train_step(noisy, clean)
    assert all(np.isfinite(float(v)) for v in out.values())
    if setting.get("precision") == "mixed_float16":  # loss scaling wraps both optimisers
        assert type(trainer.g_opt).__name__ == "LossScaleOptimizer"
        assert trainer.generator.layers[1].compute_dtype == "float16"


def test_table2_experiments_are_expressible():
    cfg = tiny_config()
    for name, (g, glr, d, dlr) in {"1011": ("adam", 1e-4, "sgd", 1e-5),
                                   "1010": ("adam", 1e-4, "sgd", 1e-4),
                                   "1009": ("adam", 1e-5, "sgd", 5e-4),
                                   "1005": ("adam", 1e-5, "adam", 5e-5)}.items():
        cfg.train.apply_experiment(name)
        assert (cfg.train.g_optimizer, cfg.train.g_lr, cfg.train.d_optimizer, cfg.train.d_lr) == \
            (g, glr, d, dlr)
    with pytest.raises(ConfigError):
        cfg.train.apply_experiment("9999")


TWO_DEVICES = textwrap.dedent("""
    import numpy as np, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from cryoem_denoise.config import tiny_config
    from cryoem_denoise.training.tf_step import TFTrainer as WGANTrainer
    cfg = tiny_config(batch_size=4)
    cfg.model.dropout = 0.0
    rng = np.random.default_rng(0)
    clean = rng.uniform(0, 255, (4, 64, 64, 1)).astype(np.float32)
    noisy = (clean + rng.normal(0, 30, clean.shape)).astype(np.float32)
    weights = {}
    for name, devices in [("one", ["/cpu:0"]), ("two", ["/cpu:0", "/cpu:1"])]:
        strategy = tf.distribute.MirroredStrategy(devices)
        trainer = WGANTrainer(cfg, strategy)
        assert trainer.replicas == len(devices)
        data = strategy.experimental_distribute_dataset(
            tf.data.Dataset.from_tensors((noisy, clean)).repeat())
        it = iter(data)
        for _ in range(3):
            trainer.train_step(*next(it))
        weights[name] = [v.numpy() for v in trainer.generator.variables + trainer.critic.variables]
    worst = max(float(np.abs(a - b).max()) for a, b in zip(weights["one"], weights["two"]))
    for a, b in zip(weights["one"], weights["two"]):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)
    print("max difference", worst)
""")


@pytest.mark.slow
def test_two_replicas_match_one_device():
    if backend.name() != "tensorflow":
        pytest.skip("tf.distribute test (the JAX one is in test_jax_backend.py)")
    proc = subprocess.run([sys.executable, "-c", TWO_DEVICES], check=False, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "max difference" in proc.stdout


def _fit_args(data, out, steps, *extra):
    return ["fit", "--tiny", "-q", "--out", out, "--steps", steps, "--checkpoint-every", 5,
            "--log-every", 5, "--validate-every", 10, "--seed", 3, *extra, data]


@pytest.mark.slow
@pytest.mark.backends
def test_sigkill_then_resume_equals_uninterrupted(clean_mrc, tmp_path):
    data = clean_mrc("train.mrc", (200, 200))
    steps = 60
    ref = _cli(*_fit_args(data, tmp_path / "ref", steps))
    assert ref.returncode == 0, ref.stderr

    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "cryoem_denoise",
                             *map(str, _fit_args(data, out, steps))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if any(s >= 10 for s, _ in model_store.checkpoint_paths(out)):
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    killed_at = model_store.checkpoint_paths(out)[-1][0]
    assert killed_at < steps and not (out / model_store.WEIGHTS).exists()

    resumed = _cli("fit", "--out", out, "--resume", "-q")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((out / model_store.METADATA).read_text())["steps"] == steps
    g_ref, _ = model_store.load_generator(tmp_path / "ref")
    g_res, _ = model_store.load_generator(out)
    assert len(g_ref.weights) == len(g_ref.trainable_weights) + len(g_ref.non_trainable_weights)
    for a, b in zip(g_ref.weights, g_res.weights):
        np.testing.assert_array_equal(to_numpy(a.value), to_numpy(b.value))
    # the checkpoints (critic and optimisers too) are bit-identical
    ref_state = model_store.load_checkpoint(model_store.checkpoint_paths(tmp_path / "ref")[-1][1])
    res_state = model_store.load_checkpoint(model_store.checkpoint_paths(out)[-1][1])
    assert ref_state.keys() == res_state.keys()
    for key in ref_state:
        np.testing.assert_array_equal(ref_state[key], res_state[key], err_msg=key)
    ref_losses = (tmp_path / "ref" / model_store.LOSSES).read_text().splitlines()
    res_losses = (out / model_store.LOSSES).read_text().splitlines()
    assert [r.split(",")[:6] for r in ref_losses] == [r.split(",")[:6] for r in res_losses]


@pytest.mark.backends
def test_model_folder_contents_and_loading(clean_mrc, tmp_path):
    out = tmp_path / "model"
    result = _invoke(*_fit_args(clean_mrc("t.mrc", (160, 160)), out, 10))
    assert result.returncode == 0, result.stderr
    assert "validation PSNR" in result.stdout
    for name in (model_store.CONFIG, model_store.WEIGHTS, model_store.METADATA, model_store.LOSSES):
        assert (out / name).is_file()
    assert list((out / model_store.LOGS).iterdir())
    meta = model_store.load_metadata(out)
    assert meta["seed"] == 3 and meta["steps"] == 10 and len(meta["data"]["fingerprint"]) == 16
    assert meta["environment"]["backend"] == backend.name()
    assert backend.name() in " ".join(meta["environment"]["packages"])
    assert [v["step"] for v in meta["validation"]] == [10]
    _, cfg = model_store.load_generator(out)
    assert cfg.model.tile == 64 and cfg.train.steps == 10
    assert len((out / model_store.LOSSES).read_text().splitlines()) == 3  # header + steps 5, 10


@pytest.mark.slow
def test_max_minutes_leaves_a_usable_model_that_resumes(clean_mrc, tmp_path):
    data = clean_mrc("m.mrc", (160, 160))
    out = tmp_path / "model"
    meta = training.fit(tiny_config(steps=10, checkpoint_every=5), [data], out, time_limit=0)
    assert meta["steps"] == 1  # stopped after the first step: checkpoint and weights written
    assert meta["stopped_at_time_limit_s"] == 0  # the budget is recorded
    assert (out / model_store.WEIGHTS).is_file() and model_store.checkpoint_paths(out)
    model_store.load_generator(out)
    meta = training.fit(tiny_config(steps=10, checkpoint_every=5), [data], out, resume=True)
    assert meta["steps"] == 10 and "stopped_at_time_limit_s" not in meta
    assert _invoke("fit", "--tiny", "--out", tmp_path / "x", "--max-minutes", "0").returncode == 2


@pytest.mark.slow
def test_fit_refuses_bad_setups_before_training(clean_mrc, make_mrc, tmp_path):
    data = clean_mrc("d.mrc", (160, 160))
    ok = tmp_path / "ok"
    assert _invoke(*_fit_args(data, ok, 5)).returncode == 0

    cases = [
        (["fit", "--tiny", "--out", tmp_path / "m1", tmp_path / "empty"], "no MRC files"),
        (["fit", "--tiny", "--out", tmp_path / "m2", clean_mrc("small.mrc", (20, 20))], "smaller than"),
        (["fit", "--tiny", "--out", tmp_path / "m3",
          make_mrc(np.full((80, 80), np.nan, np.float32), "nan.mrc")], "non-finite"),
        (["fit", "--out", tmp_path / "never", "--resume"], "model folder does not exist"),
        (["fit", "--out", ok, "--resume", "--sigma", "40"], "cannot resume with data.sigma"),
        (["fit", "--out", ok, "--resume", clean_mrc("other.mrc", (160, 160), seed=9)],
         "different data"),
        (["fit", "--tiny", "--out", ok, data], "already holds a model"),
        (["fit", "--tiny", "--out", tmp_path / "m4", "--sigma", "300", data], "sigma"),
        (["fit", "--out", tmp_path / "m5", "--tile", "100", data], "divisible"),
        (["fit", "--tiny", "--out", tmp_path / "m6", "--validation-fraction", "1", data],
         "validation"),  # the option or the setting
    ]
    (tmp_path / "empty").mkdir()
    for args, message in cases:
        result = _invoke(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr, (args, result.stderr)

    for _, ckpt in model_store.checkpoint_paths(ok):
        ckpt.unlink()
    result = _invoke("fit", "--out", ok, "--resume")
    assert result.returncode == 2 and "no checkpoint" in result.stderr


def test_unwritable_output_folder(clean_mrc, tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="not a folder"):
        training.fit(tiny_config(), [clean_mrc()], blocker)
    monkeypatch.setattr(model_store.os, "access", lambda *a: False)
    with pytest.raises(OutputError, match="not writable"):
        training.fit(tiny_config(), [clean_mrc()], tmp_path / "ro")


def test_resume_compatibility_rules():
    a, b = tiny_config(), tiny_config()
    b.train.steps = 999
    b.train.log_every = 7
    training.check_resume_compatible(a, b)
    b.model.ngf = 16
    with pytest.raises(ConfigError, match="model.ngf"):
        training.check_resume_compatible(a, b)


def test_missing_model_folder_loads_with_clear_error(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        model_store.load_generator(tmp_path / "nope")
    (tmp_path / "m").mkdir()
    with pytest.raises(InputError, match="not a model folder"):
        model_store.load_generator(tmp_path / "m")


@pytest.mark.slow
@pytest.mark.backends
def test_killed_before_first_checkpoint_resumes_or_restarts(clean_mrc, tmp_path):
    """A run stopped before its first checkpoint continues with --resume, or reruns plainly."""
    data = clean_mrc("d.mrc", (160, 160))
    out = tmp_path / "early"
    # what a run killed during its first steps leaves: config and metadata, no checkpoint
    result = _invoke(*_fit_args(data, out, 4), "--stop-after", "1")
    assert result.returncode == 0, result.stderr
    for _, ckpt in model_store.checkpoint_paths(out):
        ckpt.unlink()
    assert not (out / model_store.WEIGHTS).exists()
    resumed = _invoke("fit", "--out", out, "--resume", "-q")
    assert resumed.returncode == 0, resumed.stderr
    assert model_store.load_metadata(out)["steps"] == 4
    rerun_dir = tmp_path / "early2"
    assert _invoke(*_fit_args(data, rerun_dir, 4), "--stop-after", "1").returncode == 0
    for _, ckpt in model_store.checkpoint_paths(rerun_dir):
        ckpt.unlink()
    rerun = _invoke(*_fit_args(data, rerun_dir, 4))
    assert rerun.returncode == 0, rerun.stderr
    # with a checkpoint, a plain rerun is refused (it would throw the run away)
    again = _invoke(*_fit_args(data, out, 4))
    assert again.returncode == 2 and "already holds a model" in again.stderr

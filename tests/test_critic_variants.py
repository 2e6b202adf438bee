"""The critic's variants: the paper's weight clipping and WGAN-GP's gradient penalty."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from cryoem_denoise import training
from cryoem_denoise.config import FitConfig, tiny_config
from cryoem_denoise.errors import ConfigError
from cryoem_denoise.model import losses
from cryoem_denoise.training.loop import check_resume_compatible
from training_batches import noisy_batch, to_numpy


def test_penalty_arithmetic():
    # gradients of norm 2 and 1 per example: lambda * mean((2 - 1)^2, 0) over a batch of 2
    grads = np.zeros((2, 4, 4, 1), np.float32)
    grads[0, 0, 0, 0], grads[1, 1, 2, 0] = 2.0, 1.0
    assert float(to_numpy(losses.gradient_penalty(grads, 10.0, 2))) == pytest.approx(5.0, rel=1e-5)
    # a replica's share: its examples summed, divided by the global batch
    assert float(to_numpy(losses.gradient_penalty(grads[:1], 10.0, 2))) == pytest.approx(5.0)
    real, fake = np.ones((2, 3, 3, 1), np.float32), -np.ones((2, 3, 3, 1), np.float32)
    eps = np.array([0.0, 0.25], np.float32).reshape(2, 1, 1, 1)
    mixed = to_numpy(losses.interpolate(real, fake, eps))
    assert mixed.dtype == np.float32
    np.testing.assert_allclose(mixed[:, 0, 0, 0], [-1.0, -0.5])


def test_config_field_defaults_and_checks():
    assert FitConfig().train.gradient_penalty == 0.0
    with pytest.raises(ConfigError, match="gradient_penalty"):
        tiny_config(gradient_penalty=-1.0)
    with pytest.raises(ConfigError, match="gradient_penalty"):
        tiny_config(gradient_penalty=float("nan"))
    # a config saved before the option existed loads with it off, and resumes as it ran
    saved = {"train": {k: v for k, v in tiny_config().to_dict()["train"].items()
                       if k != "gradient_penalty"}}
    old = FitConfig.from_dict(json.loads(json.dumps(saved)))
    old.model, old.data, old.simulation = (tiny_config().model, tiny_config().data,
                                           tiny_config().simulation)
    assert old.train.gradient_penalty == 0.0
    check_resume_compatible(old, tiny_config())
    with pytest.raises(ConfigError, match="gradient_penalty"):
        check_resume_compatible(old, tiny_config(gradient_penalty=10.0))


@pytest.mark.backends
def test_gradient_penalty_step_does_not_clip():
    cfg = tiny_config(batch_size=2, gradient_penalty=10.0)
    trainer = training.make_trainer(cfg)
    noisy, clean = noisy_batch(n=2)
    out = trainer.train_step(noisy, clean)
    assert all(np.isfinite(float(v)) for v in out.values())
    assert float(out["d_penalty"]) > 0
    # d_loss has the penalty in it; the Wasserstein estimate does not
    assert float(out["d_loss"]) == pytest.approx(
        -float(out["wasserstein"]) + float(out["d_penalty"]), rel=1e-4, abs=1e-6)
    trainer.sync()
    largest = max(np.abs(to_numpy(v.value)).max() for v in trainer.critic.trainable_variables)
    assert largest > 10 * cfg.train.clip  # initialised N(0, 0.02) and left unclipped
    eps = np.random.default_rng(1).uniform(0, 1, (2, 1, 1, 1)).astype(np.float32)
    fake = np.random.default_rng(2).uniform(0, 255, noisy.shape).astype(np.float32)
    penalty = trainer.gradient_penalty(noisy, clean, fake, eps)
    assert np.isfinite(penalty) and penalty > 0


@pytest.mark.backends
def test_no_penalty_leaves_the_clipped_step(monkeypatch):
    """gradient_penalty = 0 never reaches the penalty code: the step is the paper's.

    (Checked bit for bit against the step before the option existed, on both backends, when
    it was added: every weight and loss equal after 3 steps with n_critic 2.)
    """
    cfg = tiny_config(batch_size=2)
    trainer = training.make_trainer(cfg)

    def refuse(*args, **kwargs):
        raise AssertionError("penalty computed with gradient_penalty = 0")

    monkeypatch.setattr(trainer, "_penalty", refuse)
    out = trainer.train_step(*noisy_batch(n=2))
    assert "d_penalty" not in out
    assert float(out["wasserstein"]) == -float(out["d_loss"])
    trainer.sync()
    for v in trainer.critic.trainable_variables:
        assert np.abs(to_numpy(v.value)).max() <= cfg.train.clip + 1e-9


PENALTY = """
    import json, sys
    import numpy as np
    from cryoem_denoise import training
    from cryoem_denoise.config import tiny_config
    cfg = tiny_config(batch_size=2, gradient_penalty=10.0, seed=4)
    trainer = training.make_trainer(cfg)
    rng = np.random.default_rng(3)
    noisy, clean, fake = (rng.uniform(0, 255, (2, 64, 64, 1)).astype(np.float32)
                          for _ in range(3))
    eps = rng.uniform(0, 1, (2, 1, 1, 1)).astype(np.float32)
    print(json.dumps(trainer.gradient_penalty(noisy, clean, fake, eps)))
"""


def _penalty_on(backend):
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(PENALTY)], check=False,
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_backends_agree_on_the_penalty():
    """The same critic (same seed), images and eps: the same penalty on TensorFlow and JAX."""
    pytest.importorskip("jax")
    if "tensorflow" in os.environ.get("CRYOEM_DENOISE_HIDE_MODULES", ""):
        pytest.skip("needs TensorFlow")
    pytest.importorskip("tensorflow")
    on_tf, on_jax = _penalty_on("tensorflow"), _penalty_on("jax")
    assert on_tf > 0
    assert on_jax == pytest.approx(on_tf, rel=1e-4)

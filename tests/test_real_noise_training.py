"""Training without clean images: Noise2Noise halves, self-supervised sub-sampling, fine-tuning."""

import json
import subprocess
import sys

import numpy as np
import pytest

from cryoem_denoise.model import model_store

from cryoem_denoise.data import pipeline
from cryoem_denoise.config import tiny_config

pytestmark = pytest.mark.backends


def _cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "cryoem_denoise", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def halves(make_mrc):
    """Two independent Poisson halves of one smooth exposure (and its clean field)."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(0)
    clean = (gaussian_filter(rng.normal(0, 1, (192, 192)), 3) * 60 + 100).clip(1)
    h1 = make_mrc(rng.poisson(clean / 2).astype(np.float32), "h1.mrc")
    h2 = make_mrc(rng.poisson(clean / 2).astype(np.float32), "h2.mrc")
    return h1, h2, clean


def test_neighbour_pairs_take_adjacent_pixels_of_each_cell():
    image = np.arange(8 * 6, dtype=np.float32).reshape(8, 6)
    g1, g2 = pipeline.neighbour_pairs(image, np.random.default_rng(0))
    assert g1.shape == g2.shape == (4, 3)
    for i in range(4):
        for j in range(3):
            cell = image[2 * i:2 * i + 2, 2 * j:2 * j + 2]
            p1, p2 = (np.argwhere(cell == g)[0] for g in (g1[i, j], g2[i, j]))
            assert np.abs(p1 - p2).sum() == 1  # edge-sharing neighbours
    noise = np.random.default_rng(1).normal(0, 1, (256, 256))
    a, b = pipeline.neighbour_pairs(noise, np.random.default_rng(2))
    assert abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < 0.02  # independent noise


def test_noise2noise_swaps_halves_at_random(make_mrc):
    import keras

    cfg = tiny_config()
    cfg.data.mode, cfg.data.swap_pairs, cfg.data.augment = "noise2noise", True, False
    a = make_mrc(np.full((96, 96), 10.0, np.float32) + np.eye(96, dtype=np.float32), "a.mrc")
    b = make_mrc(np.full((96, 96), 30.0, np.float32) + np.eye(96, dtype=np.float32), "b.mrc")
    images = pipeline.load_images([a], cfg.data, 64, [b])
    image_set = pipeline.pack(images, 64)
    if keras.backend.backend() == "jax":
        noisy, clean = pipeline.jax_batch(pipeline.device_images(image_set), cfg, 0, 16)
    else:
        noisy, clean = next(iter(pipeline.training_dataset(image_set, cfg,
                                                           elements_per_step=16)))
    noisy, clean = np.asarray(noisy), np.asarray(clean)
    swapped = noisy.mean(axis=(1, 2, 3)) < clean.mean(axis=(1, 2, 3))
    assert 0 < swapped.sum() < 16  # both orders occur
    assert np.allclose(np.abs(noisy - clean), np.abs(noisy - clean).flat[0], atol=1e-3)


@pytest.mark.slow
def test_noise2noise_and_self_supervised_fit(halves, tmp_path):
    h1, h2, _ = halves
    common = ["--tiny", "-q", "--steps", 4, "--log-every", 2, "--validate-every", 4,
              "--checkpoint-every", 4]
    n2n = _cli("fit", *common, "--out", tmp_path / "n2n", "--noise2noise", h1, "--noisy", h2)
    assert n2n.returncode == 0, n2n.stderr
    assert "other noisy half" in n2n.stdout
    cfg = json.loads((tmp_path / "n2n" / "config.json").read_text())
    assert cfg["data"]["mode"] == "noise2noise" and cfg["data"]["swap_pairs"]
    assert cfg["train"]["adversarial"] is False  # no critic against noisy targets by default
    losses = (tmp_path / "n2n" / "losses.csv").read_text().splitlines()
    assert float(losses[-1].split(",")[4]) == 0.0  # no critic loss

    with_critic = _cli("fit", *common, "--out", tmp_path / "n2n_critic", "--noise2noise",
                       "--critic", h1, "--noisy", h2)
    assert with_critic.returncode == 0, with_critic.stderr
    assert json.loads((tmp_path / "n2n_critic" / "config.json").read_text())["train"]["adversarial"]

    ss = _cli("fit", *common, "--out", tmp_path / "ss", "--self-supervised", h1)
    assert ss.returncode == 0, ss.stderr
    meta = model_store.load_metadata(tmp_path / "ss")
    assert meta["data"]["mode"] == "self_supervised" and meta["data"]["n_images"] == 4


@pytest.mark.slow
def test_init_from_starts_with_the_models_weights(halves, tmp_path, tiny_model):
    import keras

    h1, h2, _ = halves
    out = tmp_path / "tuned"
    result = _cli("fit", "-q", "--steps", 1, "--log-every", 1, "--validate-every", 1,
                  "--checkpoint-every", 1, "--batch-size", 2, "--g-lr", 1e-12,
                  "--out", out, "--noise2noise", "--init-from", tiny_model, h1, "--noisy", h2)
    assert result.returncode == 0, result.stderr
    cfg = model_store.load_config(out)
    assert cfg.model == model_store.load_config(tiny_model).model  # the model's generator
    assert cfg.train.init_from == str(tiny_model)
    tuned, _ = model_store.load_generator(out)
    start, _ = model_store.load_generator(tiny_model)
    for a, b in zip(tuned.trainable_weights, start.trainable_weights):  # lr 1e-12: unchanged
        np.testing.assert_allclose(keras.ops.convert_to_numpy(a.value),
                                   keras.ops.convert_to_numpy(b.value), atol=1e-6)
    refused = _cli("fit", "--tiny", "--out", tmp_path / "x", "--ngf", 4, "--init-from",
                   tiny_model, "--noise2noise", h1, "--noisy", h2)
    assert refused.returncode == 2 and "drop --ngf" in refused.stderr


@pytest.mark.slow
@pytest.mark.parametrize("case", ["shape", "pixel", "count", "small", "no_inputs"])
def test_bad_real_noise_inputs_fail_before_training(case, halves, make_mrc, tmp_path):
    h1, h2, _ = halves
    out = tmp_path / "m"
    args, message = {
        "shape": (["--noise2noise", h1, "--noisy",
                   make_mrc(np.ones((100, 90), np.float32), "odd.mrc")], "differs from its pair"),
        "pixel": (["--noise2noise", h1, "--noisy",
                   make_mrc(np.random.default_rng(0).poisson(50, (192, 192)).astype(np.float32),
                            "px.mrc", voxel_size=2.5)], "pixel size"),
        "count": (["--noise2noise", h1, h2, "--noisy", h2], "noisy files for 2"),
        "small": (["--self-supervised", make_mrc(np.random.default_rng(0).poisson(
            50, (60, 60)).astype(np.float32), "tiny.mrc")], "sub-samples it by 2"),
        "no_inputs": (["--self-supervised"], "needs your noisy images"),
    }[case]
    result = _cli("fit", "--tiny", "--out", out, *args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not out.exists()

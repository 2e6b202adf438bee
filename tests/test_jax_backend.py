"""The JAX backend: its data path, several devices, weights shared with TensorFlow, errors.

Tests that need JAX's Keras backend run in subprocesses with ``KERAS_BACKEND=jax`` (the main
session runs on TensorFlow); ``make test`` also reruns every ``backends``-marked test on JAX
with TensorFlow hidden.
"""

import importlib.util
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from cryoem_denoise.model import model_store

from cryoem_denoise.io import image_io

from cryoem_denoise.data import pipeline
from cryoem_denoise.config import tiny_config

jax = pytest.importorskip("jax")
HAVE_TF = importlib.util.find_spec("tensorflow") is not None if "tensorflow" not in \
    os.environ.get("CRYOEM_DENOISE_HIDE_MODULES", "") else False


def _run(code, backend="jax", extra_env=None, timeout=300):
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3",
           **(extra_env or {})}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=timeout, env=env)


def _cli(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "cryoem_denoise", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def _image_set(clean_mrc):
    cfg = tiny_config()
    images = pipeline.load_images([clean_mrc("a.mrc", (150, 130)), clean_mrc("b.mrc", (90, 200))],
                                  cfg.data, cfg.model.tile)
    return pipeline.pack(images, cfg.model.tile), cfg


@pytest.mark.slow
@pytest.mark.backends
def test_jax_batch_is_deterministic_and_cut_from_the_images(clean_mrc):
    image_set, cfg = _image_set(clean_mrc)
    data = pipeline.device_images(image_set)
    noisy, clean = pipeline.jax_batch(data, cfg, 8, 6)
    again_noisy, again_clean = pipeline.jax_batch(data, cfg, 8, 6)
    np.testing.assert_array_equal(np.asarray(noisy), np.asarray(again_noisy))
    # element i's crop depends on i alone: a resumed run draws the same crops
    _, longer = pipeline.jax_batch(data, cfg, 0, 14)
    np.testing.assert_array_equal(np.asarray(longer)[8:], np.asarray(clean))
    assert noisy.shape == clean.shape == (6, 64, 64, 1)
    # every crop is a window of one image, turned and mirrored
    images = [image_set.flat_clean[o:o + h * w].reshape(h, w) for o, h, w in
              zip(image_set.offsets, image_set.heights, image_set.widths)]
    for crop in np.asarray(clean)[..., 0]:
        variants = [np.rot90(crop, -k) for k in range(4)]
        variants += [v[:, ::-1] for v in variants]
        found = False
        for im in images:
            for v in variants:
                hits = np.argwhere(np.isclose(im, v[0, 0]))
                for y, x in hits[:50]:
                    if y + 64 <= im.shape[0] and x + 64 <= im.shape[1] and \
                            np.array_equal(im[y:y + 64, x:x + 64], v):
                        found = True
                        break
                if found:
                    break
            if found:
                break
        assert found
    # the noise: one sigma per crop, in the 10:80 range
    residual = (np.asarray(noisy) - np.asarray(clean)).reshape(6, -1)
    assert np.all(residual.std(axis=1) > 8) and np.all(residual.std(axis=1) < 85)
    other = tiny_config(seed=1)
    _, moved = pipeline.jax_batch(data, other, 8, 6)
    assert not np.array_equal(np.asarray(moved), np.asarray(clean))


@pytest.mark.backends
def test_dihedral_gives_the_eight_symmetries():
    tile = 5
    a = np.arange(tile * tile).reshape(tile, tile)
    rows, cols = np.meshgrid(np.arange(tile), np.arange(tile), indexing="ij")
    seen = set()
    for rot in range(4):
        for flip in range(2):
            r, c = pipeline._dihedral(rows, cols, tile, np.int32(rot), np.int32(flip))
            seen.add(a[np.asarray(r), np.asarray(c)].tobytes())
    expected = {np.rot90(m, k).tobytes() for k in range(4) for m in (a, a[:, ::-1])}
    assert seen == expected


@pytest.mark.slow
@pytest.mark.backends
def test_paired_crops_match_on_jax(make_mrc, clean_mrc):
    cfg = tiny_config()
    clean_path = clean_mrc("c.mrc", (120, 120))
    noisy_path = make_mrc(image_io.read_sections(clean_path)[0][0] + 7.0, "n.mrc")
    images = pipeline.load_images([clean_path], cfg.data, 64, [noisy_path])
    data = pipeline.device_images(pipeline.pack(images, 64))
    noisy, clean = pipeline.jax_batch(data, cfg, 0, 4)
    diff = np.asarray(noisy) - np.asarray(clean)
    assert np.allclose(diff, diff.flat[0], atol=1e-3)  # the same window, no noise added


TWO_DEVICES = """
    import numpy as np, jax, keras
    assert len(jax.devices()) == 2, jax.devices()
    from cryoem_denoise.config import tiny_config
    from cryoem_denoise.training.jax_step import JaxTrainer, make_distribution
    cfg = tiny_config(batch_size=4)
    cfg.model.dropout = 0.0
    rng = np.random.default_rng(0)
    clean = rng.uniform(0, 255, (4, 64, 64, 1)).astype(np.float32)
    noisy = (clean + rng.normal(0, 30, clean.shape)).astype(np.float32)
    weights = {}
    for name, dist in [("one", False), ("two", make_distribution("mirrored"))]:
        trainer = JaxTrainer(cfg, dist)
        assert trainer.replicas == (1 if name == "one" else 2)
        for _ in range(3):
            trainer.train_step(noisy, clean)
        trainer.sync()
        weights[name] = [keras.ops.convert_to_numpy(v.value) for v in
                         trainer.generator.variables + trainer.critic.variables]
    worst = max(float(np.abs(a - b).max()) for a, b in zip(weights["one"], weights["two"]))
    for a, b in zip(weights["one"], weights["two"]):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)
    print("max difference", worst)
"""


@pytest.mark.slow
def test_two_jax_devices_match_one():
    proc = _run(TWO_DEVICES, extra_env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "max difference" in proc.stdout


DENOISE = """
    import sys
    import numpy as np
    from cryoem_denoise.inference.denoiser import Denoiser, InferenceConfig
    den = Denoiser.load(sys.argv[1], InferenceConfig(tile=64, overlap=16, batch_size=4,
                                                     precision="float32"))
    image = np.random.default_rng(5).uniform(40, 200, (150, 170)).astype(np.float32)
    np.save(sys.argv[2], den.denoise_scaled(image))
    print("tensorflow imported:", "tensorflow" in sys.modules)
"""


def _denoise_with(backend, model, out):
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(DENOISE), str(model), str(out)],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "KERAS_BACKEND": backend})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return np.load(out), proc.stdout


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_TF, reason="needs TensorFlow and JAX installed")
def test_weights_move_between_backends(clean_mrc, tmp_path):
    """A model trained on either backend denoises alike on both (≤ 0.05 on [0, 255])."""
    data = clean_mrc("train.mrc", (160, 160))
    for trained_on in ("jax", "tensorflow"):
        folder = tmp_path / trained_on
        result = _cli("fit", "--tiny", "-q", "--steps", 6, "--log-every", 3, "--seed", 2,
                      "--out", folder, data, env={"KERAS_BACKEND": trained_on})
        assert result.returncode == 0, result.stderr
        assert model_store.load_metadata(folder)["environment"]["backend"] == trained_on
        on_tf, _ = _denoise_with("tensorflow", folder, tmp_path / f"{trained_on}_tf.npy")
        on_jax, said = _denoise_with("jax", folder, tmp_path / f"{trained_on}_jax.npy")
        assert "tensorflow imported: False" in said
        assert np.abs(on_tf - on_jax).max() <= 0.05, (trained_on, np.abs(on_tf - on_jax).max())
        assert np.abs(on_tf - np.random.default_rng(5).uniform(40, 200, (150, 170))).max() > 1


@pytest.mark.slow
@pytest.mark.backends
def test_jax_path_never_imports_tensorflow(clean_mrc, tmp_path):
    data = clean_mrc("train.mrc", (160, 160))
    code = f"""
        import sys
        from cryoem_denoise import training
        from cryoem_denoise.config import tiny_config
        from cryoem_denoise.inference.denoiser import Denoiser, InferenceConfig
        cfg = tiny_config(steps=3, log_every=1, validate_every=3, checkpoint_every=2)
        training.fit(cfg, [{str(data)!r}], {str(tmp_path / 'm')!r})
        den = Denoiser.load({str(tmp_path / 'm')!r}, InferenceConfig(tile=64, overlap=16))
        den.denoise_scaled(__import__("numpy").zeros((64, 64), "float32") + 5)
        print("tensorflow imported:", "tensorflow" in sys.modules)
    """
    proc = _run(code)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "tensorflow imported: False" in proc.stdout


@pytest.mark.parametrize("env, args, message", [
    ({"KERAS_BACKEND": "pytorch"}, ["--tiny"], "unknown Keras backend 'pytorch'"),
    ({"KERAS_BACKEND": "jax", "CRYOEM_DENOISE_HIDE_MODULES": "jax"}, ["--tiny"],
     "jax is not installed"),
    ({}, ["--tiny", "--precision", "mixed_float16"], "mixed_float16 needs a GPU"),
])
@pytest.mark.slow
def test_backend_errors_are_one_line(env, args, message, clean_mrc, tmp_path):
    hide = os.path.join(os.path.dirname(__file__), "hide_modules")
    env = {"PYTHONPATH": hide, **env}
    result = _cli("fit", *args, "--out", tmp_path / "m", clean_mrc(), env=env)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not (tmp_path / "m").exists()

"""scripts/weight_parts.py: a model folder as float16 parts under 16 MiB, and back."""

import importlib.util
from pathlib import Path

import numpy as np

from cryoem_denoise.inference.denoiser import Denoiser
from cryoem_denoise.model import model_store

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "weight_parts.py"


def _module():
    spec = importlib.util.spec_from_file_location("weight_parts", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_split_and_join_give_a_model_that_denoises_alike(tmp_path, monkeypatch):
    parts = _module()
    monkeypatch.setattr(parts, "PART_BYTES", 2 ** 20)  # several parts from a small model
    paths = parts.split(model_store.default_model_dir(), tmp_path / "parts")
    assert len(paths) > 1 and all(p.stat().st_size < 2 ** 20 + 2 ** 16 for p in paths)
    assert (tmp_path / "parts" / "config.json").is_file()
    with np.load(paths[0]) as z:
        assert {z[k].dtype for k in z.files} <= {np.dtype(np.float16), np.dtype(np.float32)}
    folder = parts.join(tmp_path / "parts", tmp_path / "model")
    image = np.random.default_rng(0).normal(120, 30, (96, 96)).astype(np.float32)
    ours = Denoiser.load(folder).denoise_scaled(image, noise_level=30)
    shipped = Denoiser.load("default").denoise_scaled(image, noise_level=30)
    assert np.abs(ours - shipped).max() < 1.0  # float16 weights: well under a grey level

"""Simulation speed, and why `fit --simulate` generates its fields ahead into a cache.

Run: ``.venv/bin/python benchmarks/bench_simulate.py``. Measures, in one run, the simulator's
rate (512² fields of the 165,000-atom 6zu5 ribosome per second), the tf.data pipeline's crop
rate from a cached stack, and the full-size training step's rate (float32, batch 4), and
prints the ratios: on-the-fly simulation would have to feed every training crop from a fresh
field (the field is the unit of independent data), while the cached stack is sampled by the
pipeline at its own speed. Writes ``benchmarks/results/simulate.json``.
"""

import tempfile
import time
from pathlib import Path

import numpy as np

from common import quiet_tf, save, timed

tf = quiet_tf()

from cryoem_denoise.config import FitConfig, SimulationConfig  # noqa: E402
from cryoem_denoise.data import datasets, pipeline, simulate  # noqa: E402
from cryoem_denoise.training import WGANTrainer  # noqa: E402


def main():
    cfg = SimulationConfig(fields=24)
    source = datasets.sample_path("mmcif_6zu5.cif")
    t0 = time.perf_counter()
    cloud = simulate.load_structure(source)
    load_s = time.perf_counter() - t0
    sim = simulate.Simulator(cloud, cfg)
    sim.field(np.random.default_rng(0))
    t0 = time.perf_counter()
    sim.fields(cfg.fields, seed=0)
    fields_per_s = cfg.fields / (time.perf_counter() - t0)

    with tempfile.TemporaryDirectory() as tmp:
        stack = simulate.simulate_to_file(source, Path(tmp) / "f.mrcs", cfg.fields, cfg)
        fit = FitConfig()
        image_set = pipeline.pack(pipeline.load_images([stack], fit.data, 256), 256)
        it = iter(pipeline.training_dataset(image_set, fit))
        for _ in range(5):
            next(it)
        t0 = time.perf_counter()
        for _ in range(100):
            next(it)
        crops_per_s = 100 * fit.train.batch_size / (time.perf_counter() - t0)

    trainer = WGANTrainer(FitConfig())
    x = tf.constant(np.random.default_rng(0).uniform(0, 255, (4, 256, 256, 1)).astype(np.float32))
    trainer.train_step(x, x)
    step_s = timed(lambda: trainer.train_step(x, x)["g_loss"].numpy(), 3)
    train_crops_per_s = 4 / step_s
    print(f"simulator: {fields_per_s:.1f} fields/s (512², {len(cloud.weight)} atoms; model read "
          f"in {load_s:.2f} s)")
    print(f"pipeline from the cached stack: {crops_per_s:.0f} crops/s; full-size training step "
          f"(float32, batch 4): {train_crops_per_s:.2f} crops/s")
    print(f"cached / training = {crops_per_s / train_crops_per_s:.0f}x; on-the-fly simulation "
          f"(one field per crop) / training = {fields_per_s / train_crops_per_s:.1f}x -> "
          "generate ahead (cached), which also makes every epoch see the same fields")
    path = save("simulate", {"fields_per_s": fields_per_s, "model_load_s": load_s,
                             "atoms": int(len(cloud.weight)),
                             "pipeline_crops_per_s": crops_per_s,
                             "train_crops_per_s": train_crops_per_s,
                             "config": cfg.to_dict(), "seed": 0})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

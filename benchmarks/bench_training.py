"""Training speed: full fit loop vs a bare train step, float32 vs mixed_bfloat16, batch 1 and 8.

Run: ``.venv/bin/python benchmarks/bench_training.py [--steps N] [--precisions ...]``.
Prints images/s for each setting, the loop/bare ratio (goal >= 0.9), the input pipeline's
rate as a multiple of the step's (goal >= 10), FLOPs per step and achieved FLOP/s, and
writes ``benchmarks/results/training.json`` with the config, versions and seed.
"""

import argparse
import time

import numpy as np

from common import quiet_tf, save, timed

tf = quiet_tf()

from cryoem_denoise.config import FitConfig  # noqa: E402
from cryoem_denoise.data import datasets, pipeline  # noqa: E402
from cryoem_denoise.model.models import train_step_flops  # noqa: E402
from cryoem_denoise.training import WGANTrainer  # noqa: E402


def bench(cfg, image_set, steps):
    trainer = WGANTrainer(cfg)
    b = cfg.train.batch_size
    rng = np.random.default_rng(0)
    clean = tf.constant(rng.uniform(0, 255, (b, 256, 256, 1)).astype(np.float32))
    noisy = tf.constant((clean.numpy() + rng.normal(0, 40, clean.shape)).astype(np.float32))
    trainer.train_step(noisy, clean)  # trace + warm up
    trainer.train_step(noisy, clean)
    bare = timed(lambda: trainer.train_step(noisy, clean)["g_loss"].numpy(), steps)

    it = iter(trainer.strategy.experimental_distribute_dataset(
        pipeline.training_dataset(image_set, cfg)))
    for _ in range(2):
        trainer.train_step(*next(it))

    def loop():
        out = trainer.train_step(*next(it))
        {k: float(v) for k, v in out.items()}  # the fit loop reads the losses every step

    full = timed(loop, steps)
    return b / bare, b / full


def pipeline_rate(image_set, cfg, batches=200):
    it = iter(pipeline.training_dataset(image_set, cfg))
    for _ in range(10):
        next(it)
    t0 = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * cfg.train.batch_size / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=5, help="timed steps per setting (median)")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--precisions", nargs="+", default=["float32", "mixed_bfloat16"])
    args = ap.parse_args()

    base = FitConfig()
    paths = [datasets.sample_path(n) for n in datasets.MICROGRAPHS]
    image_set = pipeline.pack(pipeline.load_images(paths, base.data, 256), 256)
    flops = train_step_flops(base.model)
    rows = []
    for precision in args.precisions:
        for batch in args.batches:
            cfg = FitConfig()
            cfg.train.batch_size = batch
            cfg.train.precision = precision
            bare, full = bench(cfg, image_set, args.steps)
            pipe = pipeline_rate(image_set, cfg)
            row = {"precision": precision, "batch": batch, "bare_images_per_s": bare,
                   "loop_images_per_s": full, "loop_over_bare": full / bare,
                   "pipeline_images_per_s": pipe, "pipeline_over_step": pipe / full,
                   "flops_per_image_step": flops, "achieved_gflop_s": full * flops / 1e9}
            rows.append(row)
            print(f"{precision:15s} batch {batch}: bare {bare:.2f} img/s, loop {full:.2f} img/s "
                  f"(loop/bare {full / bare:.2f}), pipeline {pipe:.0f} img/s "
                  f"({pipe / full:.0f}x the step), {row['achieved_gflop_s']:.0f} GFLOP/s", flush=True)
    by = {(r["precision"], r["batch"]): r for r in rows}
    for batch in args.batches:
        if ("float32", batch) in by and ("mixed_bfloat16", batch) in by:
            print(f"batch {batch}: mixed_bfloat16 / float32 = "
                  f"{by['mixed_bfloat16', batch]['loop_images_per_s'] / by['float32', batch]['loop_images_per_s']:.2f}x")
    path = save("training", {"config": base.to_dict(), "seed": base.train.seed,
                             "steps_timed": args.steps, "flops_per_image_step": flops,
                             "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

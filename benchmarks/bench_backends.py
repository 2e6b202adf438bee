"""TensorFlow and JAX side by side: training crops/s (bare step vs full loop) and apply.

Run: ``.venv/bin/python benchmarks/bench_backends.py`` (CPU defaults, about 10 minutes on 2
cores) or, on a GPU machine, ``benchmarks/device_run.sh`` (what was sent to an H100).

Every setting runs in a fresh process per backend (a process has one Keras backend):

* **train**: the bare jitted (JAX) / ``tf.function`` (TensorFlow) step on one fixed batch,
  timed as throughput over ``--steps`` steps with one wait at the end; and the full ``fit``
  loop on the sample micrographs (data drawn per step, progress bar, loss rows), read from
  its own ``losses.csv`` (the second logging interval: compilation excluded). Ratio
  loop / bare (goal on a GPU >= 0.9).
* **apply**: the 4096² ``epu2.9_example.mrc`` end to end (read, scale, tile, denoise,
  stitch, write; model already loaded and compiled), and the pure generator compute for the
  same number of tiles at the same batch; ratio end to end / pure.

Results (with config, versions, backend, hardware, seed) go to
``benchmarks/results/backends[_SUFFIX].json``; the summary prints JAX / TensorFlow ratios
measured in the same run.
"""

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


# -- children (one backend each) -------------------------------------------------------------
def _fit_config(ngf, batch, precision, steps, log_every):
    from cryoem_denoise.config import FitConfig

    cfg = FitConfig()
    cfg.model.ngf = cfg.model.ndf = ngf
    cfg.train.batch_size = batch
    cfg.train.precision = precision
    cfg.train.steps = steps
    cfg.train.log_every = log_every
    cfg.train.validate_every = cfg.train.checkpoint_every = steps
    cfg.data.validation_fraction = 0.0
    return cfg.validate()


def child_train(args):
    import numpy as np

    from cryoem_denoise import training
    from cryoem_denoise.data import datasets
    from cryoem_denoise.model.models import train_step_flops
    from cryoem_denoise.runtime import backend

    backend.import_quietly()
    import keras

    cfg = _fit_config(args.ngf, args.batch, args.precision, 2 * args.steps, args.steps)
    trainer = training.make_trainer(cfg)
    rng = np.random.default_rng(0)
    clean = rng.uniform(0, 255, (args.batch, 256, 256, 1)).astype(np.float32)
    noisy = (clean + rng.normal(0, 40, clean.shape)).astype(np.float32)
    if backend.name() == "jax":
        import jax.numpy as jnp

        clean, noisy = jnp.asarray(clean), jnp.asarray(noisy)
    else:
        import tensorflow as tf

        clean, noisy = tf.constant(clean), tf.constant(noisy)

    def wait(out):
        keras.ops.convert_to_numpy(out["g_loss"])

    for _ in range(2):
        wait(trainer.train_step(noisy, clean))
    t0 = time.perf_counter()
    for _ in range(args.steps):
        out = trainer.train_step(noisy, clean)
    wait(out)
    bare = args.batch * args.steps / (time.perf_counter() - t0)
    del trainer

    paths = [datasets.sample_path("epu2.9_example.mrc")]  # one micrograph: what a GPU node is sent
    with tempfile.TemporaryDirectory() as work:
        t0 = time.perf_counter()
        training.fit(cfg, paths, Path(work) / "m")
        wall = time.perf_counter() - t0
        rows = (Path(work) / "m" / "losses.csv").read_text().splitlines()
        loop = float(rows[2].split(",")[-1])  # second interval: compilation excluded
    print(json.dumps({"bare_crops_per_s": bare, "loop_crops_per_s": loop,
                      "loop_over_bare": loop / bare, "fit_wall_seconds": wall,
                      "gflop_s": loop * train_step_flops(cfg.model) / 1e9}))


def child_apply(args):
    import numpy as np

    from cryoem_denoise.data import datasets
    from cryoem_denoise.inference import apply_files
    from cryoem_denoise.inference.denoiser import Denoiser, InferenceConfig
    from cryoem_denoise.model import model_store
    from cryoem_denoise.model.models import build_generator
    from cryoem_denoise.runtime import backend

    backend.import_quietly()
    micrograph = datasets.sample_path("epu2.9_example.mrc")
    with tempfile.TemporaryDirectory() as work:
        folder = Path(work) / "model"
        cfg = _fit_config(args.ngf, 4, "float32", 1, 1)
        model_store.prepare_new(folder)
        model_store.save_config(folder, cfg)
        model_store.save_generator(folder, build_generator(cfg.model, seed=0))
        t0 = time.perf_counter()
        den = Denoiser.load(folder, InferenceConfig(256, 32, args.batch, args.precision))
        x = np.random.default_rng(0).uniform(0, 255, (args.batch, 256, 256, 1)).astype(np.float32)
        den.tiles._run(x)
        load = time.perf_counter() - t0
        (Path(work) / "out").mkdir()
        options = apply_files.ApplyOptions(out_dir=Path(work) / "out", overwrite=True)
        job = apply_files.plan_jobs([Path(micrograph)], options)[0]
        t0 = time.perf_counter()
        apply_files.apply_file(den, job, options)
        e2e = time.perf_counter() - t0
        tiles = den.tiles.count_tiles((4096, 4096))
        calls = int(np.ceil(tiles / args.batch))
        t0 = time.perf_counter()
        for _ in range(calls):
            den.tiles._run(x)
        pure = time.perf_counter() - t0
    print(json.dumps({"end_to_end_seconds": e2e, "pure_seconds": pure, "tiles": tiles,
                      "end_to_end_over_pure": e2e / pure, "load_and_compile_seconds": load}))


# -- the parent ------------------------------------------------------------------------------
def run_child(backend, kind, extra, timeout):
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    cmd = [sys.executable, str(Path(__file__)), "--child", kind, *map(str, extra)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE, env=env,
                          timeout=timeout)
    if proc.returncode:
        return {"error": (proc.stderr.strip().splitlines() or ["?"])[-1][:300]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__)  # children get one --ngf
    ap.add_argument("--child", choices=["train", "apply"])
    ap.add_argument("--backends", nargs="+", default=["tensorflow", "jax"])
    ap.add_argument("--ngf", type=int, nargs="+", default=[16])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--precision", default="float32")
    ap.add_argument("--precisions", nargs="+", default=["float32"])
    ap.add_argument("--steps", type=int, default=10, help="steps per timed interval")
    ap.add_argument("--apply-ngf", type=int, default=16)
    ap.add_argument("--apply-batch", type=int, default=16)
    ap.add_argument("--apply-precision", default="float32")
    ap.add_argument("--timeout", type=int, default=1800)
    ap.add_argument("--suffix", default="", help="results/backends_SUFFIX.json")
    args = ap.parse_args()
    if args.child:
        args.ngf = args.ngf[0]
        return child_train(args) if args.child == "train" else child_apply(args)

    from common import save

    backends = [b for b in args.backends if importlib.util.find_spec(b)]
    rows = []
    for ngf in args.ngf:
        for precision in args.precisions:
            for b in backends:
                r = run_child(b, "train", ["--ngf", ngf, "--batch", args.batch, "--precision",
                                           precision, "--steps", args.steps], args.timeout)
                rows.append({"what": "train", "backend": b, "ngf": ngf, "batch": args.batch,
                             "precision": precision, **r})
                print(json.dumps(rows[-1]), flush=True)
    for b in backends:
        r = run_child(b, "apply", ["--ngf", args.apply_ngf, "--batch", args.apply_batch,
                                   "--precision", args.apply_precision], args.timeout)
        rows.append({"what": "apply", "backend": b, "ngf": args.apply_ngf,
                     "batch": args.apply_batch, "precision": args.apply_precision, **r})
        print(json.dumps(rows[-1]), flush=True)

    def find(what, backend, **keys):
        for r in rows:
            if r["what"] == what and r["backend"] == backend and \
                    all(r.get(k) == v for k, v in keys.items()) and "error" not in r:
                return r
        return None

    ratios = {}
    for ngf in args.ngf:
        for precision in args.precisions:
            j, t = (find("train", b, ngf=ngf, precision=precision) for b in ("jax", "tensorflow"))
            if j and t:
                key = f"train ngf {ngf} {precision}: jax / tensorflow crops/s (loop)"
                ratios[key] = j["loop_crops_per_s"] / t["loop_crops_per_s"]
    j, t = find("apply", "jax"), find("apply", "tensorflow")
    if j and t:
        ratios["apply 4096²: tensorflow / jax seconds"] = \
            t["end_to_end_seconds"] / j["end_to_end_seconds"]
    for k, v in ratios.items():
        print(f"{k} = {v:.2f}")
    name = "backends" + (f"_{args.suffix}" if args.suffix else "")
    path = save(name, {"args": {k: v for k, v in vars(args).items() if k != "child"},
                       "seed": 0, "rows": rows, "ratios": ratios})
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    main()

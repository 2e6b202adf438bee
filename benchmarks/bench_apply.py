"""`apply` on real micrograph sizes: end-to-end time, peak memory, BM3D, FLOP/s.

Run: ``.venv/bin/python benchmarks/bench_apply.py`` (about 6 minutes on 2 cores).

In one run, with the default full-size generator (random weights: speed does not depend on
them) it measures

* the 4096x4096 ``epu2.9_example.mrc`` end to end (read, scale, tile, denoise, stitch,
  write) in float32 and mixed_bfloat16, each in a fresh process, with peak resident memory;
* pure generator compute for 256 non-overlapping 256x256 tiles at the best batch size, and
  the ratio end-to-end / pure compute (goal <= 1.5);
* peak memory for a synthetic 11520x8184 (K3 super-resolution) float32 micrograph;
* BM3D (``bm3d`` package, default profile) on a 1024x1024 crop, scaled by area to 4096²,
  and the ratio BM3D / GAN (goal >= 20);
* generator FLOP/s during ``apply`` as a fraction of FLOP/s on a plain batch.

Results go to ``benchmarks/results/apply.json`` with the config, versions and seed.
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def child(args):
    """Runs in a fresh process: one end-to-end apply, prints a JSON line."""
    from common import quiet_tf

    quiet_tf()
    from cryoem_denoise.inference import apply_files
    from cryoem_denoise.inference.denoiser import Denoiser, InferenceConfig
    from cryoem_denoise.io import image_io

    t0 = time.perf_counter()
    denoiser = Denoiser.load(args.model, InferenceConfig(args.tile, args.overlap, args.batch,
                                                         args.precision))
    load_s = time.perf_counter() - t0
    out = Path(args.out)
    options = apply_files.ApplyOptions(out_dir=out, overwrite=True)
    job = apply_files.plan_jobs([Path(args.input)], options)[0]
    tiles = denoiser.tiles.count_tiles(image_io.read_header(args.input).section_shape)
    # warm up the compiled function on one batch so tracing is not timed
    import numpy as np

    denoiser.tiles._run(np.zeros((args.batch, args.tile, args.tile, 1), np.float32))
    t0 = time.perf_counter()
    apply_files.apply_file(denoiser, job, options)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2  # KiB -> GiB
    print(json.dumps({"seconds": seconds, "load_seconds": load_s, "tiles": tiles,
                      "peak_rss_gib": peak}))


def run_child(model, path, precision, batch, tile=256, overlap=32):
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, str(Path(__file__)), "--child", "--model", str(model), "--input",
               str(path), "--out", out, "--precision", precision, "--batch", str(batch),
               "--tile", str(tile), "--overlap", str(overlap)]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE)
        if proc.returncode:
            raise RuntimeError(proc.stderr[-2000:])
        return json.loads(proc.stdout.strip().splitlines()[-1])


def pure_compute(model, precision, batches, n_tiles=256):
    """Seconds for n_tiles 256² tiles through the generator, per batch size."""
    from common import quiet_tf

    quiet_tf()
    import numpy as np

    from cryoem_denoise.inference.denoiser import Denoiser, InferenceConfig

    results = {}
    for b in batches:
        den = Denoiser.load(model, InferenceConfig(256, 0, b, precision)).tiles
        x = np.random.default_rng(0).uniform(0, 255, (b, 256, 256, 1)).astype(np.float32)
        den._run(x)
        calls = int(np.ceil(n_tiles / b))
        t0 = time.perf_counter()
        for _ in range(calls):
            den._run(x)  # NumPy out: includes the device-to-host copy
        results[b] = (time.perf_counter() - t0) * n_tiles / (calls * b)
        del den
        __import__("keras").backend.clear_session()
    return results


def bm3d_seconds(path, sigma=40.0, side=1024):
    import bm3d
    import numpy as np

    from cryoem_denoise.io import image_io
    from cryoem_denoise.data.intensity import to_unit255

    sections, _ = image_io.read_sections(path)
    crop, _ = to_unit255(sections[0][:side, :side].astype(np.float32))
    noisy = crop + np.random.default_rng(0).normal(0, sigma, crop.shape).astype(np.float32)
    t0 = time.perf_counter()
    bm3d.bm3d(noisy / 255.0, sigma_psd=sigma / 255.0)
    return time.perf_counter() - t0


def make_model(folder):
    from common import quiet_tf

    quiet_tf()
    from cryoem_denoise.model import model_store
    from cryoem_denoise.config import FitConfig
    from cryoem_denoise.model.models import build_generator

    cfg = FitConfig()
    model_store.prepare_new(folder, overwrite=True)
    model_store.save_config(folder, cfg)
    model_store.save_generator(folder, build_generator(cfg.model, seed=cfg.train.seed))
    return cfg


def make_k3(path):
    import numpy as np

    from cryoem_denoise.io import mrc

    rng = np.random.default_rng(0)
    with mrc.create_mrc(path, (8184, 11520), voxel_size=(0.4, 0.4, 0.0), overwrite=True) as out:
        for y in range(0, 8184, 1024):
            out[y:y + 1024] = rng.normal(100, 10, out[y:y + 1024].shape)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", action="store_true")
    ap.add_argument("--model"), ap.add_argument("--input"), ap.add_argument("--out")
    ap.add_argument("--precision", default="float32")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--overlap", type=int, default=32)
    ap.add_argument("--batches", type=int, nargs="+", default=[4, 8, 16])
    ap.add_argument("--skip-k3", action="store_true")
    args = ap.parse_args()
    if args.child:
        return child(args)

    from common import save

    from cryoem_denoise.data import datasets
    from cryoem_denoise.model.models import generator_flops

    micrograph = datasets.sample_path("epu2.9_example.mrc")
    work = Path(tempfile.mkdtemp(prefix="bench-apply-"))
    cfg = make_model(work / "model")
    flops_tile = generator_flops(cfg.model)
    record = {"config": cfg.to_dict(), "seed": cfg.train.seed, "tile": 256, "overlap": 32,
              "input": "epu2.9_example.mrc (4096x4096)", "rows": {}}
    for precision in ("float32", "mixed_bfloat16"):
        pure = pure_compute(work / "model", precision, args.batches)
        best_b = min(pure, key=pure.get)
        e2e = run_child(work / "model", micrograph, precision, best_b)
        ratio = e2e["seconds"] / pure[best_b]
        achieved = e2e["tiles"] * flops_tile / e2e["seconds"]
        plain = 256 * flops_tile / pure[best_b]
        row = {"pure_seconds_256_tiles": pure, "best_batch": best_b, "end_to_end": e2e,
               "end_to_end_over_pure": ratio, "apply_gflop_s": achieved / 1e9,
               "plain_batch_gflop_s": plain / 1e9, "apply_flops_fraction": achieved / plain}
        record["rows"][precision] = row
        print(f"{precision}: 4096² end to end {e2e['seconds']:.1f} s ({e2e['tiles']} tiles, "
              f"model load {e2e['load_seconds']:.1f} s), pure compute 256 tiles "
              f"{pure[best_b]:.1f} s at batch {best_b} -> ratio {ratio:.2f}; "
              f"peak RSS {e2e['peak_rss_gib']:.2f} GiB; generator at "
              f"{achieved / 1e9:.0f} GFLOP/s in apply = {achieved / plain:.2f} of a plain batch",
              flush=True)
    bm = bm3d_seconds(micrograph)
    bm_full = bm * 16
    fastest = min(r["end_to_end"]["seconds"] for r in record["rows"].values())
    record["bm3d"] = {"seconds_1024_crop": bm, "seconds_scaled_4096": bm_full,
                      "over_gan_fastest": bm_full / fastest,
                      "over_gan_float32": bm_full / record["rows"]["float32"]["end_to_end"]["seconds"]}
    print(f"BM3D: {bm:.1f} s on a 1024² crop -> {bm_full:.0f} s for 4096² (area-scaled); "
          f"GAN is {bm_full / fastest:.1f}x faster (bf16), "
          f"{record['bm3d']['over_gan_float32']:.1f}x (float32)", flush=True)
    if not args.skip_k3:
        k3 = work / "k3.mrc"
        make_k3(k3)
        e2e = run_child(work / "model", k3, "mixed_bfloat16",
                        record["rows"]["mixed_bfloat16"]["best_batch"])
        record["k3_11520x8184"] = e2e
        print(f"K3 11520x8184 (mixed_bfloat16): {e2e['seconds']:.0f} s, {e2e['tiles']} tiles, "
              f"peak RSS {e2e['peak_rss_gib']:.2f} GiB", flush=True)
    path = save("apply", record)
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    main()

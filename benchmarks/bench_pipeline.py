"""``apply`` over a folder of micrographs against the model's pure compute on the same tiles.

How much of an ``apply`` run over many files is not the network: reading, scaling, cutting
and stitching tiles, writing outputs, the noise estimate and the report. A folder of
``--files`` micrographs (crops of ``--side`` pixels of ``epu2.9_example.mrc`` at different
places, so no two are equal) is denoised with the shipped model end to end
(``apply_files.run_jobs``, as ``apply DIR`` runs it), and the network alone is timed on full
batches of the same number of tiles. The ratio end-to-end / pure is the overhead (a partial
last batch per file counts against it).

    python benchmarks/bench_pipeline.py --files 20 --side 2048

Writes ``results/pipeline.json``.
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from common import quiet_tf, save

quiet_tf()

from cryoem_denoise.data import datasets  # noqa: E402
from cryoem_denoise.inference import apply_files  # noqa: E402
from cryoem_denoise.inference.denoiser import Denoiser  # noqa: E402
from cryoem_denoise.io import image_io  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=20)
    p.add_argument("--side", type=int, default=2048)
    p.add_argument("--precision", default="float32")
    args = p.parse_args()

    image, header = image_io.read_image(datasets.sample_path("epu2.9_example.mrc"))
    rng = np.random.default_rng(0)
    denoiser = Denoiser.load("default", precision=args.precision)
    with tempfile.TemporaryDirectory() as tmp:
        folder, out = Path(tmp) / "in", Path(tmp) / "out"
        folder.mkdir()
        out.mkdir()
        for i in range(args.files):
            y, x = rng.integers(0, image.shape[0] - args.side, 2)
            image_io.write_image(folder / f"mic{i:03d}.mrc",
                                 image[y:y + args.side, x:x + args.side], header)
        files = image_io.find_image_files([folder])
        options = apply_files.ApplyOptions(out_dir=out, overwrite=True)
        warm = apply_files.plan_jobs(files[:1], options)
        apply_files.run_jobs(denoiser, warm, options)  # compile and warm up
        jobs = apply_files.plan_jobs(files, options)
        started = time.perf_counter()
        report = apply_files.run_jobs(denoiser, jobs, options)
        end_to_end = time.perf_counter() - started
        assert len(report.done) == args.files, report.failed

    tiles = denoiser.tiles
    grid = tiles.grid((args.side, args.side))
    batch_size = denoiser.inference.batch_size
    batch = rng.uniform(0, 255, (batch_size, grid.tile, grid.tile,
                                 2 if tiles.noise_level else 1)).astype(np.float32)
    tiles._run(batch)
    repeats = max(3, -(-report.tiles // batch_size) // 4)
    started = time.perf_counter()
    for _ in range(repeats):
        tiles._run(batch)
    per_tile = (time.perf_counter() - started) / (repeats * batch_size)
    pure = per_tile * report.tiles
    record = {"files": args.files, "side": args.side, "tiles": report.tiles,
              "tile": grid.tile, "overlap": denoiser.inference.overlap,
              "batch_size": batch_size, "precision": args.precision,
              "end_to_end_seconds": end_to_end, "pure_seconds": pure,
              "end_to_end_over_pure": end_to_end / pure,
              "seconds_per_file": end_to_end / args.files}
    path = save("pipeline", record)
    print(f"{args.files} files of {args.side}²: {report.tiles} tiles, end to end "
          f"{end_to_end:.1f} s, pure compute {pure:.1f} s, ratio {end_to_end / pure:.2f} "
          f"-> {path}")


if __name__ == "__main__":
    main()

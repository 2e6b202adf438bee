"""``apply`` over a folder of micrographs against the model's pure compute on the same tiles.

How much of an ``apply`` run over many files is not the network: reading, scaling, cutting
and stitching tiles, writing outputs, the noise estimate and the report. A folder of
``--files`` micrographs (crops of ``--side`` pixels of ``epu2.9_example.mrc`` at different
places, so no two are equal) is denoised with the shipped model end to end
(``apply_files.run_jobs``, as ``apply DIR`` runs it), and the network alone is timed on full
batches of the same number of tiles. The ratio end-to-end / pure is the overhead (a partial
last batch per file counts against it).

Two runs: ``measured`` (apply's defaults: each file's noise spectrum measured, the image
whitened, binned from its super-resolution 0.667 Å/px into the trained pixel sizes, hot
pixels replaced, all undone after the model: whole-image FFTs on the CPU) and ``paper``
(those steps off: scale, tile, denoise, stitch, write). In both, the next file is read and
prepared in a thread while the model runs the current one.

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


#: The settings of each run (InferenceConfig fields).
MODES = {"measured": {},
         "paper": {"whiten": False, "resample": False, "keep_below": 0.0, "outliers": 0.0}}


def pure_seconds(denoiser, shape, tiles):
    """The network alone on full batches: seconds for ``tiles`` tiles of ``shape``'s grid."""
    net = denoiser.tiles
    grid = net.grid(shape)
    batch_size = denoiser.inference.batch_size
    batch = np.random.default_rng(1).uniform(0, 255, (batch_size, grid.tile, grid.tile,
                                             2 if net.noise_level else 1)).astype(np.float32)
    net._run(batch)
    repeats = max(3, -(-tiles // batch_size) // 4)
    started = time.perf_counter()
    for _ in range(repeats):
        net._run(batch)
    return (time.perf_counter() - started) / (repeats * batch_size) * tiles, grid.tile


def run_mode(denoiser, files, out, side, header):
    """End to end and pure seconds of one mode over ``files``."""
    out.mkdir()
    options = apply_files.ApplyOptions(out_dir=out, overwrite=True)
    warm = apply_files.plan_jobs(files[:1], options)
    apply_files.run_jobs(denoiser, warm, options)  # compile and warm up
    jobs = apply_files.plan_jobs(files, options)
    started = time.perf_counter()
    report = apply_files.run_jobs(denoiser, jobs, options)
    end_to_end = time.perf_counter() - started
    assert len(report.done) == len(files), report.failed
    shape = denoiser.model_shape((side, side), header.pixel_size)
    pure, tile = pure_seconds(denoiser, shape, report.tiles)
    return {"tiles": report.tiles, "model_shape": list(shape), "tile": tile,
            "end_to_end_seconds": end_to_end, "pure_seconds": pure,
            "end_to_end_over_pure": end_to_end / pure,
            "seconds_per_file": end_to_end / len(files)}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=20)
    p.add_argument("--side", type=int, default=2048)
    p.add_argument("--precision", default="float32")
    args = p.parse_args()

    image, header = image_io.read_image(datasets.sample_path("epu2.9_example.mrc"))
    rng = np.random.default_rng(0)
    record = {"files": args.files, "side": args.side, "precision": args.precision,
              "pixel_size": header.pixel_size, "modes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "in"
        folder.mkdir()
        for i in range(args.files):
            y, x = rng.integers(0, image.shape[0] - args.side, 2)
            image_io.write_image(folder / f"mic{i:03d}.mrc",
                                 image[y:y + args.side, x:x + args.side], header)
        files = image_io.find_image_files([folder])
        for mode, settings in MODES.items():
            denoiser = Denoiser.load("default", precision=args.precision, **settings)
            record["batch_size"] = denoiser.inference.batch_size
            record["overlap"] = denoiser.inference.overlap
            record["margin"] = denoiser.inference.margin
            row = run_mode(denoiser, files, Path(tmp) / mode, args.side, header)
            record["modes"][mode] = {"settings": settings, **row}
            print(f"{mode}: {args.files} files of {args.side}², {row['tiles']} tiles of "
                  f"{row['tile']}², end to end {row['end_to_end_seconds']:.1f} s, pure compute "
                  f"{row['pure_seconds']:.1f} s, ratio {row['end_to_end_over_pure']:.2f}")
    print(f"-> {save('pipeline', record)}")


if __name__ == "__main__":
    main()

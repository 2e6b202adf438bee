"""``apply`` over a folder of micrographs against the model's pure compute on the same tiles.

How much of an ``apply`` run over many files is not the network: reading, scaling, cutting
and stitching tiles, writing outputs, the noise estimate and the report. A folder of
``--files`` micrographs (crops of ``--side`` pixels of ``epu2.9_example.mrc`` at different
places, so no two are equal) is denoised with the shipped model end to end
(``apply_files.run_jobs``, as ``apply DIR`` runs it), and the network alone is timed on full
batches of the same number of tiles. The ratio end-to-end / pure is the overhead (a partial
last batch per file counts against it). The network's calls are also timed within the run:
the share of the run they fill (does the network wait?) and their total against pure
(does the work beside it slow it down?).

Two modes: ``measured`` (apply's defaults: each file's noise spectrum measured, the image
whitened, binned from its super-resolution 0.667 Å/px into the trained pixel sizes, hot
pixels replaced, all undone after the model: whole-image FFTs on the CPU) and ``paper``
(those steps off: scale, tile, denoise, stitch, write). In both, three stages run at once:
the next file is read and prepared in one thread, the model runs the current one, and the
previous one is restored, written and reported in another.

Each ``--model-threads`` setting runs in a fresh process (TensorFlow fixes its thread pool
when it starts): ``0`` lets the network use every core (TensorFlow's default), ``1`` keeps it
on one, leaving the other cores to the two stages, as a GPU leaves the CPU to them.

``--instant-side``: the same folder at that size with the network replaced by an instant
one (its output is its input), so what is left is what bounds a run on a GPU, where the
network's share is about 0.01 s per 4096² micrograph: the CPU stages' micrographs per
second on this machine, with 1 and 2 files per stage (``--instant-workers``, apply's
``--workers``), and each stage's seconds per file alone.

    python benchmarks/bench_pipeline.py --files 20 --side 2048

Writes ``results/pipeline.json``.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import Future
from pathlib import Path
from unittest import mock

import numpy as np
from common import quiet_tf, save

quiet_tf()

from cryoem_denoise.data import datasets  # noqa: E402
from cryoem_denoise.inference import apply_files  # noqa: E402
from cryoem_denoise.inference.denoiser import Denoiser  # noqa: E402
from cryoem_denoise.io import image_io  # noqa: E402


#: The settings of each mode (InferenceConfig fields).
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


def end_to_end(denoiser, files, out):
    """Seconds of ``run_jobs`` over ``files`` (after a warm-up on the first), its report, and
    the seconds the network's calls took within the run."""
    out.mkdir()
    options = apply_files.ApplyOptions(out_dir=out, overwrite=True)
    warm = apply_files.plan_jobs(files[:1], options)
    apply_files.run_jobs(denoiser, warm, options)  # compile and warm up
    jobs = apply_files.plan_jobs(files, options)
    network, calls = denoiser.tiles._run, []

    def timed(tiles):
        started = time.perf_counter()
        result = network(tiles)
        calls.append(time.perf_counter() - started)
        return result

    denoiser.tiles._run = timed
    try:
        started = time.perf_counter()
        report = apply_files.run_jobs(denoiser, jobs, options)
        seconds = time.perf_counter() - started
    finally:
        denoiser.tiles._run = network
    assert len(report.done) == len(files), report.failed
    return seconds, report, sum(calls)


def run_mode(denoiser, files, out, side, header):
    """End to end and pure seconds of one mode over ``files``."""
    seconds, report, network = end_to_end(denoiser, files, out)
    shape = denoiser.model_shape((side, side), header.pixel_size)
    pure, tile = pure_seconds(denoiser, shape, report.tiles)
    return {"tiles": report.tiles, "model_shape": list(shape), "tile": tile,
            "end_to_end_seconds": seconds, "pure_seconds": pure,
            "end_to_end_over_pure": seconds / pure, "seconds_per_file": seconds / len(files),
            "network_seconds_in_run": network, "network_busy": network / seconds}


def write_folder(folder, count, side, image, header, seed=0):
    """``count`` crops of ``side``² of ``image`` at different places, as MRC files."""
    rng = np.random.default_rng(seed)
    folder.mkdir()
    for i in range(count):
        y, x = rng.integers(0, image.shape[0] - side + 1, 2)
        image_io.write_image(folder / f"mic{i:03d}.mrc", image[y:y + side, x:x + side], header)
    return image_io.find_image_files([folder])


def one_setting(args):
    """The modes at one ``--model-threads`` (this process); the record's part."""
    if args.model_threads:
        import tensorflow as tf  # lazy: only to fix the thread pool before it starts

        tf.config.threading.set_intra_op_parallelism_threads(args.model_threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    image, header = image_io.read_image(datasets.sample_path("epu2.9_example.mrc"))
    part = {"model_threads": args.model_threads, "modes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        files = write_folder(Path(tmp) / "in", args.files, args.side, image, header)
        for mode, settings in MODES.items():
            denoiser = Denoiser.load("default", precision=args.precision, **settings)
            part.update(batch_size=denoiser.inference.batch_size,
                        overlap=denoiser.inference.overlap, margin=denoiser.inference.margin)
            row = run_mode(denoiser, files, Path(tmp) / mode, args.side, header)
            part["modes"][mode] = {"settings": settings, **row}
            print(f"model threads {args.model_threads or 'all'}, {mode}: {args.files} files of "
                  f"{args.side}², {row['tiles']} tiles of {row['tile']}², end to end "
                  f"{row['end_to_end_seconds']:.1f} s, pure compute {row['pure_seconds']:.1f} s, "
                  f"ratio {row['end_to_end_over_pure']:.2f}; the network busy "
                  f"{row['network_busy']:.0%} of the run, its calls "
                  f"{row['network_seconds_in_run'] / row['pure_seconds']:.2f}x its time alone",
                  flush=True)
        if args.instant_side:
            part["instant"] = instant(args, image, header, Path(tmp))
    return part


def instant(args, image, header, tmp):
    """Micrographs per second of the CPU stages alone (the network's output is its input)
    at each ``--instant-workers`` setting, and each stage's seconds per file when they run
    one after another."""
    files = write_folder(tmp / "instant_in", args.instant_files, args.instant_side, image,
                         header, seed=1)
    result = {"side": args.instant_side, "files": args.instant_files, "modes": {}}
    for mode, settings in MODES.items():
        row = result["modes"][mode] = {"workers": {}}
        for workers in (int(w) for w in args.instant_workers.split(",")):
            denoiser = Denoiser.load("default", precision=args.precision, workers=workers,
                                     **settings)
            denoiser.tiles._run = lambda tiles: tiles[..., :1].copy()
            seconds, _, _ = end_to_end(denoiser, files, tmp / f"instant_{mode}_{workers}")
            row["workers"][str(workers)] = {"seconds_per_file": seconds / len(files),
                                            "files_per_second": len(files) / seconds}
            print(f"instant network, {mode}, {workers} file(s) per stage: {len(files)} files "
                  f"of {args.instant_side}², {len(files) / seconds:.2f} micrographs/s",
                  flush=True)
        row["stage_seconds_per_file"] = stages = stage_seconds(denoiser, files,
                                                               tmp / f"stages_{mode}")
        print(f"instant network, {mode}, one stage after another, seconds per file: "
              + ", ".join(f"{k} {v:.2f}" for k, v in stages.items()), flush=True)
    return result


class _Inline:
    """An executor that runs each task at once, in the caller's thread, timing it into
    ``totals[name]``."""

    def __init__(self, totals, name):
        self.totals, self.name = totals, name

    def submit(self, fn, *args):
        future = Future()
        started = time.perf_counter()
        try:
            future.set_result(fn(*args))
        except Exception as exc:  # noqa: BLE001 - handed over as the real executor would
            future.set_exception(exc)
        self.totals[self.name] += time.perf_counter() - started
        return future

    def shutdown(self, **_):
        pass

    close = shutdown


def stage_seconds(denoiser, files, out):
    """Seconds per file of each stage of ``run_jobs`` run one after another in this thread:
    ``ahead`` (read, measure, prepare), ``network's thread`` (the rest of the main thread:
    cutting tiles, filling batches; here with an instant network) and ``behind`` (stitch,
    restore, write, complete, report images)."""
    totals = {"ahead": 0.0, "network's thread": 0.0, "behind": 0.0}
    out.mkdir()
    options = apply_files.ApplyOptions(out_dir=out, overwrite=True)
    jobs = apply_files.plan_jobs(files, options)
    with mock.patch.object(apply_files, "ThreadPoolExecutor",
                           lambda **_: _Inline(totals, "ahead")), \
            mock.patch.object(apply_files, "_Behind", lambda: _Inline(totals, "behind")):
        started = time.perf_counter()  # the denoiser is warm: end_to_end ran it
        apply_files.run_jobs(denoiser, jobs, options)
        seconds = time.perf_counter() - started
    totals["network's thread"] = seconds - totals["ahead"] - totals["behind"]
    return {k: v / len(files) for k, v in totals.items()}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=20)
    p.add_argument("--side", type=int, default=2048)
    p.add_argument("--precision", default="float32")
    p.add_argument("--model-threads", default="0,1",
                   help="comma-separated network thread counts, each in a fresh process "
                        "(0: every core)")
    p.add_argument("--instant-side", type=int, default=4096,
                   help="micrograph side for the instant-network run (0: none)")
    p.add_argument("--instant-files", type=int, default=8)
    p.add_argument("--instant-workers", default="1,2",
                   help="comma-separated files per stage (apply --workers) for the instant run")
    p.add_argument("--one", type=Path, help=argparse.SUPPRESS)  # a child: its part, as JSON
    args = p.parse_args()
    if args.one:
        args.model_threads = int(args.model_threads)
        args.one.write_text(json.dumps(one_setting(args)))
        return
    _, header = image_io.read_image(datasets.sample_path("epu2.9_example.mrc"))
    record = {"files": args.files, "side": args.side, "precision": args.precision,
              "pixel_size": header.pixel_size, "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i, threads in enumerate(int(t) for t in args.model_threads.split(",")):
            part_file = Path(tmp) / f"part{i}.json"
            subprocess.run([sys.executable, __file__, "--one", str(part_file),
                            "--model-threads", str(threads), "--files", str(args.files),
                            "--side", str(args.side), "--precision", args.precision,
                            "--instant-side", str(args.instant_side if i == 0 else 0),
                            "--instant-files", str(args.instant_files),
                            "--instant-workers", args.instant_workers], check=True)
            part = json.loads(part_file.read_text())
            for key in ("batch_size", "overlap", "margin", "instant"):
                if key in part:
                    record[key] = part.pop(key)
            record["runs"].append(part)
    print(f"-> {save('pipeline', record)}")


if __name__ == "__main__":
    main()

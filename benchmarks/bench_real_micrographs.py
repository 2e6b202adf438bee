"""The shipped model on whole real micrographs beside Topaz-Denoise and BM3D (issue 18).

Run: ``make peers`` once (builds ``.venv-topaz``), then
``.venv/bin/python benchmarks/bench_real_micrographs.py`` (30 minutes on 2 shared CPU cores
the first time: Topaz took 17 and 9 minutes on the two whole micrographs, BM3D under a
minute per 1024² crop, ours 10-25 s per micrograph; Topaz's outputs are cached, so a second
run takes about 3 minutes). Without ``.venv-topaz`` (or with ``--no-topaz``) Topaz is left
out.

Images: the two fetched sample micrographs (``cryoem-denoise fetch``), whole and their
central ``--crop``² (default 1024²), in the file's units. Methods:

* ours: the public API, ``Denoiser.load(--model).denoise(image, pixel_size=...)``, with its
  own scaling, noise estimate and tiling, whatever they are at the time of the run; on the
  whole micrographs also with each ``--tiles`` size (default 256 and 1024; the default 512
  above), its overlap and margin the defaults for that tile (``ours_tile<N>``);
* Topaz: Topaz-Denoise's pretrained ``unet`` with ``topaz denoise``'s defaults (patches of
  1024 px, 500 px padding), run by ``.venv-topaz/bin/python benchmarks/peers/topaz_denoise.py``
  in a subprocess; outputs cached in ``~/.cache/cryoem-denoise/peers/`` keyed by the input's
  SHA-256 and Topaz's version. A benchmark peer only: the package does not depend on it;
* BM3D (:func:`cryoem_denoise.evaluation.baselines.bm3d_denoise`) on the crops only (a whole
  4k micrograph would take about 13 minutes), on the crop scaled to [0, 255] as the model
  scales it, with σ estimated from it, mapped back to the file's units.

Measures (:mod:`cryoem_denoise.evaluation.quality`; goals in brackets), each of the output
beside its input or of the correction input − output:

* ``mid_band``: power at 0.05-0.2 cycles/px out / in (≤ 0.3);
* ``low_band``: power at 0.005-0.02 cycles/px out / in (≥ 0.5);
* ``seam``: the correction's profiles at the harmonics of the tile period over their
  neighbours (≤ 1.2): ours at its own grid's stride (``denoiser.tiles.grid``), Topaz at its
  patch period (1024 px) where it cuts patches, every other at our grid's stride;
* ``edge``: the correction's 16-px block means along the border over the interior (≤ 1.5);
* ``range_excess``: how far the output leaves the input's range, in units of the input's
  noise σ (≤ 1);
* ``correlation``: Pearson correlation of output and input.

Results: ``benchmarks/results/real_micrographs.json`` and one figure per micrograph,
``real_micrographs_<name>.png``: the crop's input and outputs at one contrast, their
corrections at one contrast, and the whole micrograph's corrections binned 16× (where a tile
grid shows) with their column-mean profiles.
"""

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from common import RESULTS, quiet_tf, save

quiet_tf()

from cryoem_denoise import Denoiser, read_image  # noqa: E402
from cryoem_denoise.data import datasets  # noqa: E402
from cryoem_denoise.evaluation import quality  # noqa: E402
from cryoem_denoise.evaluation.baselines import bm3d_denoise  # noqa: E402
from cryoem_denoise.runtime.cache import cache_dir  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TOPAZ_PYTHON = ROOT / ".venv-topaz" / "bin" / "python"
TOPAZ_SCRIPT = Path(__file__).resolve().parent / "peers" / "topaz_denoise.py"
#: ``topaz denoise``'s patch size and padding (benchmarks/peers/topaz_denoise.py).
TOPAZ_PATCH, TOPAZ_PADDING = 1024, 500
METHODS = ("ours", "topaz", "bm3d")
LABELS = {"ours": "ours (shipped)", "topaz": "Topaz-Denoise (unet)", "bm3d": "BM3D (σ est.)"}
BIN = 16


# -- Topaz, through its own environment -----------------------------------------------------
def topaz_version(python=TOPAZ_PYTHON):
    """The installed topaz-em's version in the peers' environment, or ``None`` without it."""
    if not Path(python).is_file():
        return None
    try:
        out = subprocess.run([str(python), "-c", "import importlib.metadata as m; "
                              "print(m.version('topaz-em'))"], capture_output=True, text=True,
                             check=True, timeout=120)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def topaz_denoise(image, python=TOPAZ_PYTHON, cache=None, threads=0):
    """Topaz-Denoise's pretrained ``unet`` on a 2D image; ``(output, record)``.

    The output (float32, the input's units) is cached as
    ``<cache>/topaz-<version>-<sha256 of the input>.npy`` with a ``.json`` beside it (what
    the script printed: versions, patch settings, seconds), so each image runs once per
    Topaz version. ``cache`` defaults to ``~/.cache/cryoem-denoise/peers``.

    Raises
    ------
    RuntimeError
        No Topaz environment (``make peers``), or the script failed.
    """
    version = topaz_version(python)
    if version is None:
        raise RuntimeError(f"no Topaz environment at {python}: run `make peers`")
    image = np.ascontiguousarray(image, np.float32)
    digest = hashlib.sha256(repr(image.shape).encode() + image.tobytes()).hexdigest()
    folder = Path(cache) if cache else cache_dir() / "peers"
    folder.mkdir(parents=True, exist_ok=True)
    out_path = folder / f"topaz-{version}-{digest[:24]}.npy"
    meta_path = out_path.with_suffix(".json")
    if out_path.is_file() and meta_path.is_file():
        record = json.loads(meta_path.read_text())
        return np.load(out_path), {**record, "cached": True}
    in_path = folder / f"input-{digest[:24]}.{os.getpid()}.npy"  # per process: runs may overlap
    np.save(in_path, image)
    tmp = out_path.with_name(out_path.stem + f".{os.getpid()}.tmp.npy")
    try:
        run = subprocess.run([str(python), str(TOPAZ_SCRIPT), str(in_path), str(tmp),
                              "--threads", str(threads)], capture_output=True, text=True)
        if run.returncode:
            raise RuntimeError(f"Topaz failed ({run.returncode}): {run.stderr.strip()[-2000:]}")
        record = json.loads(run.stdout.strip().splitlines()[-1])
        record["input_sha256"] = digest
        out = np.load(tmp)
        os.replace(tmp, out_path)
        meta_path.write_text(json.dumps(record, indent=2) + "\n")
    finally:
        in_path.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
    return out, {**record, "cached": False}


def topaz_period(shape):
    """Topaz's patch period per axis (its patches meet every 1024 px), ``None`` where it
    runs the axis whole (Topaz cuts no patches unless patch + padding is shorter than a
    side)."""
    patched = any(s > TOPAZ_PATCH + TOPAZ_PADDING for s in shape)
    return tuple(float(TOPAZ_PATCH) if patched and s > TOPAZ_PATCH else None for s in shape)


# -- the methods and the measures -----------------------------------------------------------
def bm3d_units(denoiser, image):
    """BM3D on ``image`` scaled to [0, 255] as the model scales it, σ estimated, mapped back."""
    scaled, affine = denoiser.scale(image)
    sigma = quality.estimate_noise_sigma(scaled)
    return affine.inverse(bm3d_denoise(scaled, max(sigma, 0.5))), sigma


def measures(output, image, period):
    """Every number of the table for one output of ``image``."""
    output = np.asarray(output, np.float64)
    image = np.asarray(image, np.float64)
    return {
        "mid_band": quality.band_power_ratio(output, image, *quality.MID_BAND),
        "low_band": quality.band_power_ratio(output, image, *quality.LOW_BAND),
        "seam": quality.seam_score(output, image, period),
        "seam_period": list(period),
        "edge": quality.edge_score(output, image),
        "range_excess": quality.range_excess(output, image),
        "correlation": float(np.corrcoef(output.ravel(), image.ravel())[0, 1]),
    }


def passes(m):
    """Whether a row meets every goal of issue 18 (a seam of ``None`` is not judged)."""
    return bool(m["mid_band"] <= quality.MID_BAND_GOAL and m["low_band"] >= quality.LOW_BAND_GOAL
                and (m["seam"] is None or m["seam"] <= quality.SEAM_GOAL)
                and m["edge"] <= quality.EDGE_GOAL and m["range_excess"] <= quality.RANGE_GOAL)


def centre(image, side):
    y, x = (image.shape[0] - side) // 2, (image.shape[1] - side) // 2
    return image[y:y + side, x:x + side], (y, x)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="default", help="model folder (default: the shipped one)")
    ap.add_argument("--names", nargs="+", default=list(datasets.MICROGRAPHS),
                    help="fetched micrographs")
    ap.add_argument("--crop", type=int, default=1024, help="side of the central crop")
    ap.add_argument("--no-topaz", action="store_true", help="leave Topaz out")
    ap.add_argument("--topaz-python", default=str(TOPAZ_PYTHON))
    ap.add_argument("--threads", type=int, default=0, help="Topaz's PyTorch threads (0: default)")
    ap.add_argument("--no-bm3d", action="store_true", help="leave BM3D out")
    ap.add_argument("--tiles", nargs="*", type=int, default=[256, 1024],
                    help="more tile sizes ours runs the whole micrographs with (seam and edge "
                         "at every supported tile size; the default tile always runs)")
    ap.add_argument("--result", default="real_micrographs",
                    help="results/RESULT.json and RESULT_<name>.png")
    args = ap.parse_args()

    denoiser = Denoiser.load(args.model)
    version = None if args.no_topaz else topaz_version(args.topaz_python)
    if not args.no_topaz and version is None:
        print(f"no Topaz at {args.topaz_python} (make peers): Topaz left out", flush=True)
    started = time.perf_counter()
    rows, figures, topaz_runs = [], [], []
    for name in args.names:
        image, header = read_image(datasets.sample_path(name))
        image = np.asarray(image, np.float32)
        crop, (cy, cx) = centre(image, args.crop)
        crop = np.ascontiguousarray(crop)
        shown = {}
        for kind, img in (("whole", image), ("crop", crop)):
            ours_period = quality.grid_strides(denoiser.tiles.grid(img.shape))
            outputs = {}
            t0 = time.perf_counter()
            outputs["ours"] = (denoiser.denoise(img, pixel_size=header.pixel_size),
                               time.perf_counter() - t0, ours_period, {})
            if version is not None:
                out, record = topaz_denoise(img, args.topaz_python, threads=args.threads)
                topaz_runs.append({"image": name, "kind": kind, **record})
                own = topaz_period(img.shape)
                period = own if any(p is not None for p in own) else ours_period
                outputs["topaz"] = (out, record.get("seconds"), period,
                                    {"cached": record["cached"], "patches": own != (None, None)})
            if kind == "crop" and not args.no_bm3d:
                t0 = time.perf_counter()
                out, sigma = bm3d_units(denoiser, img)
                outputs["bm3d"] = (out, time.perf_counter() - t0, ours_period,
                                   {"sigma_estimated": sigma})
            if kind == "whole":  # the other tile sizes: seams and edges are theirs
                for tile in args.tiles:
                    other = Denoiser.load(args.model, tile=tile)
                    t0 = time.perf_counter()
                    out = other.denoise(img, pixel_size=header.pixel_size)
                    outputs[f"ours_tile{tile}"] = (
                        out, time.perf_counter() - t0,
                        quality.grid_strides(other.tiles.grid(img.shape)),
                        {"tile": tile, "overlap": other.inference.overlap})
            for method, (out, seconds, period, extra) in outputs.items():
                row = {"image": name, "kind": kind, "shape": list(img.shape),
                       "method": method, "seconds": seconds, **extra,
                       **measures(out, img, period)}
                row["passes"] = passes(row)
                rows.append(row)
                print(json.dumps(row), flush=True)
            shown[kind] = (img, {m: v[0] for m, v in outputs.items()})
        png = RESULTS / f"{args.result}_{name.replace('.mrc', '')}.png"
        figure(name, shown, denoiser, png, (cy, cx))
        figures.append(png.name)
        print(f"{name} done at {time.perf_counter() - started:.0f} s", flush=True)

    print_table(rows)
    path = save(args.result, {
        "args": vars(args), "model": str(denoiser.model_dir),
        "model_weights_sha256": datasets.sha256_of(denoiser.model_dir / "generator.weights.h5"),
        "inference": {"tile": denoiser.inference.tile, "overlap": denoiser.inference.overlap,
                      "precision": denoiser.inference.precision},
        "topaz": {"version": version, "model": "unet", "patch_size": TOPAZ_PATCH,
                  "patch_padding": TOPAZ_PADDING, "runs": topaz_runs} if version else None,
        "goals": {"mid_band": [quality.MID_BAND, "<=", quality.MID_BAND_GOAL],
                  "low_band": [quality.LOW_BAND, ">=", quality.LOW_BAND_GOAL],
                  "seam": ["<=", quality.SEAM_GOAL], "edge": ["<=", quality.EDGE_GOAL],
                  "range_excess": ["<=", quality.RANGE_GOAL]},
        "bm3d_note": "BM3D on the crops only, scaled to [0, 255] by the model's window, sigma "
                     "estimated",
        "rows": rows, "figures": figures, "seconds": time.perf_counter() - started})
    print(f"wrote {path} and {', '.join(figures)}")


def print_table(rows):
    keys = ("mid_band", "low_band", "seam", "edge", "range_excess", "correlation")
    print("\n| image | kind | method | " + " | ".join(keys) + " | s | passes |")
    print("|---|---|---|" + "---|" * (len(keys) + 2))
    for r in rows:
        cells = ["–" if r[k] is None else f"{r[k]:.3g}" for k in keys]
        secs = "–" if r["seconds"] is None else f"{r['seconds']:.0f}"
        print(f"| {r['image']} | {r['kind']} | {r['method']} | " + " | ".join(cells)
              + f" | {secs} | {'yes' if r['passes'] else 'no'} |")


# -- the figure -----------------------------------------------------------------------------
def binned(image, factor=BIN):
    """``image`` block-averaged by ``factor`` (a remainder left out)."""
    ny, nx = (s // factor * factor for s in image.shape)
    return image[:ny, :nx].reshape(ny // factor, factor, nx // factor, factor).mean(axis=(1, 3))


def figure(name, shown, denoiser, path, corner):
    """Row 1: the crop's input and outputs at one contrast window (the input blurred by
    2 px: a window set by the signal, not the noise). Row 2: the crop's corrections
    (input − output) at one symmetric window. Row 3: the whole micrograph binned 16× and its
    corrections binned 16× at one window, and their column-mean profiles with our tile
    seams marked."""
    from scipy.ndimage import gaussian_filter

    from cryoem_denoise.evaluation.figures import _matplotlib, contrast_limits, save_figure

    plt = _matplotlib()
    crop, crop_out = shown["crop"]
    whole, whole_out = shown["whole"]
    methods = [m for m in METHODS if m in crop_out]
    fig, axes = plt.subplots(3, 4, figsize=(16, 12.5))
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    lo, hi = contrast_limits(gaussian_filter(crop, 2.0))
    axes[0, 0].imshow(crop, cmap="gray", vmin=lo, vmax=hi)
    axes[0, 0].set_title(f"{name}: central {crop.shape[0]}² at ({corner[0]}, {corner[1]})\n"
                         "input", fontsize=9)
    diffs = {m: crop - crop_out[m] for m in methods}
    limit = max(float(np.percentile(np.abs(d), 99.5)) for d in diffs.values()) or 1.0
    for j, m in enumerate(methods, start=1):
        axes[0, j].imshow(crop_out[m], cmap="gray", vmin=lo, vmax=hi)
        axes[0, j].set_title(LABELS[m], fontsize=9)
        axes[1, j].imshow(diffs[m], cmap="gray", vmin=-limit, vmax=limit)
        axes[1, j].set_title(f"input − {m} (crop), ±{limit:.3g}", fontsize=9)
    for j in range(len(methods) + 1, 4):  # a method left out: no empty frames
        axes[0, j].axis("off")
        axes[1, j].axis("off")
    axes[1, 0].axis("off")
    axes[1, 0].text(0, 0.5, "Row 1: one contrast window for all\n(the input blurred by 2 px).\n"
                    "Row 2: the correction, one window.\nRow 3: the whole micrograph binned "
                    f"{BIN}×;\nits corrections binned {BIN}× at one\nwindow (a tile grid shows "
                    "there),\nand their column-mean profiles.", fontsize=9, va="center")
    wb = binned(whole)
    axes[2, 0].imshow(wb, cmap="gray", vmin=contrast_limits(wb)[0], vmax=contrast_limits(wb)[1])
    axes[2, 0].set_title(f"whole {whole.shape[0]}×{whole.shape[1]}, binned {BIN}×", fontsize=9)
    whole_methods = [m for m in METHODS if m in whole_out]
    wdiffs = {m: binned(whole - whole_out[m]) for m in whole_methods}
    centred = {m: d - np.median(d) for m, d in wdiffs.items()}
    wlimit = max(float(np.percentile(np.abs(d), 99)) for d in centred.values()) or 1.0
    for j, m in enumerate(whole_methods, start=1):
        axes[2, j].imshow(centred[m], cmap="gray", vmin=-wlimit, vmax=wlimit)
        axes[2, j].set_title(f"input − {m} (whole), binned {BIN}×, ±{wlimit:.3g}\n"
                             "(median removed)", fontsize=9)
    for j in range(len(whole_methods) + 1, 3):
        axes[2, j].axis("off")
    ax = axes[2, 3] if len(whole_methods) < 3 else None
    if ax is not None:
        ax.set_xticks(np.arange(0, whole.shape[1] + 1, 1024))
        ax.tick_params(labelsize=7)
        grid = denoiser.tiles.grid(whole.shape)
        for x in grid.xs[1:]:
            ax.axvline(x - getattr(grid, "margin", 0), color="0.85", lw=0.8)
        for m in whole_methods:
            profile = wdiffs[m].mean(axis=0)  # the binned map's columns: 16-px bins
            ax.plot((np.arange(len(profile)) + 0.5) * BIN, profile - np.median(profile),
                    lw=0.9, label=m)
        ax.set_title(f"column means of input − output (whole, {BIN}-px bins);\n"
                     "our tile starts in grey", fontsize=9)
        ax.set_xlabel("x (px)", fontsize=8)
        ax.legend(fontsize=8)
    fig.suptitle(f"{name}: ours, Topaz-Denoise and BM3D; the correction input − output",
                 fontsize=11)
    fig.tight_layout()
    save_figure(fig, path, overwrite=True, dpi=80)


if __name__ == "__main__":
    sys.exit(main())

"""Tiling consistency: does a denoised field depend on where the tile grid falls?

Run: ``.venv/bin/python benchmarks/bench_tiling.py [--model DIR]`` (about 3 minutes on 2
CPU cores).

For each ``InferenceConfig`` setting (tile/overlap) and each test field, the field is
denoised twice through the public ``Denoiser.denoise_scaled``: as it is (A), and moved by
half a tile (``shift = tile / 2``) so the same grid falls half a tile further along both axes
(B; :func:`cryoem_denoise.evaluation.quality.tiling_comparison`). Both runs see the same
values on the same [0, 255] scale (the field is scaled once, as ``apply`` scales it for the
model: ``Denoiser.scale``, and a noise-level model gets one sigma estimated from the whole
field), so any difference comes
from the tiling. Reported: RMS(A − B) / RMS(A − input) over the common region, on all of it
(``full``) and leaving out ``--margin`` pixels at its sides (``interior``: the image edge is
a tile edge in one run and inside the image in the other, which no overlap can change).
Goal: ≤ 0.05.

Fields: the central 1024² crop of each fetched micrograph, and one simulated 1024² field
(6zu5, the training structure, 2 Å/px) with Gaussian noise of sigma ``--sim-sigma`` on
[0, 255]. Time per setting: the whole 4096² ``epu2.9_example.mrc`` micrograph (median of
``--repeats`` after a warm-up), as a ratio to the current default measured in the same run.

Results: ``benchmarks/results/tiling.json`` and ``tiling.png`` (A − B maps).
"""

import argparse
import time
from pathlib import Path

import numpy as np

from common import RESULTS, quiet_tf, save, timed

quiet_tf()

from cryoem_denoise.config import SimulationConfig  # noqa: E402
from cryoem_denoise.data import datasets  # noqa: E402
from cryoem_denoise.evaluation import quality  # noqa: E402
from cryoem_denoise.inference.denoiser import Denoiser, InferenceConfig  # noqa: E402
from cryoem_denoise.io import image_io  # noqa: E402
from cryoem_denoise.model import model_store  # noqa: E402

#: (tile, overlap); the first is the current default.
SETTINGS = ((256, 32), (256, 64), (256, 128), (512, 64), (512, 128), (512, 256))


def real_fields(side):
    fields = {}
    for name in datasets.MICROGRAPHS:
        img = image_io.read_sections(datasets.sample_path(name))[0][0]
        cy, cx = img.shape[0] // 2, img.shape[1] // 2
        fields[name] = np.asarray(img[cy - side // 2:cy + side // 2,
                                      cx - side // 2:cx + side // 2], np.float32)
    return fields


def simulated_field(side, sigma, seed):
    from cryoem_denoise.data.simulate import Simulator, load_structure

    cfg = SimulationConfig(field=side, particles=max(6, (side // 256) ** 2 * 6))
    sim = Simulator(load_structure(datasets.sample_path("mmcif_6zu5.cif")), cfg)
    clean, _ = sim.fields(1, seed)
    rng = np.random.default_rng(seed)
    return (clean[0] + rng.normal(0, sigma, clean[0].shape)).astype(np.float32), cfg


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default=None, help="model folder (default: the shipped model)")
    ap.add_argument("--side", type=int, default=1024, help="test field side")
    ap.add_argument("--margin", type=int, default=64, help="edge left out for 'interior'")
    ap.add_argument("--sim-sigma", type=float, default=40.0)
    ap.add_argument("--repeats", type=int, default=3, help="timing repeats on the 4k image")
    ap.add_argument("--no-timing", action="store_true")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--result", default="tiling", help="results/RESULT.json and .png")
    args = ap.parse_args()

    model_dir = args.model or model_store.default_model_dir()
    scaler = Denoiser.load(model_dir, precision="float32")  # the model's input scaling
    fields = real_fields(args.side)
    t0 = time.perf_counter()
    fields["simulated"], sim_cfg = simulated_field(args.side, args.sim_sigma, args.seed)
    print(f"simulated field in {time.perf_counter() - t0:.0f} s", flush=True)
    scaled = {k: scaler.scale(v)[0] for k, v in fields.items()}
    sigmas = {k: quality.estimate_noise_sigma(v) for k, v in scaled.items()}
    full_image = None
    if not args.no_timing:
        full = image_io.read_sections(datasets.sample_path("epu2.9_example.mrc"))[0][0]
        full_image = scaler.scale(np.asarray(full, np.float32))[0]
        full_sigma = quality.estimate_noise_sigma(full_image[1536:2560, 1536:2560])

    del scaler
    rows, maps = [], {}
    for tile, overlap in SETTINGS:
        cfg = InferenceConfig(tile=tile, overlap=overlap, precision="float32")
        den = Denoiser.load(model_dir, cfg)
        row = {"tile": tile, "overlap": overlap, "shift": tile // 2, "fields": {}}
        for name, img in scaled.items():
            fn = quality.model_denoise_fn(den, sigmas[name])
            comp = quality.tiling_comparison(fn, img, tile // 2)
            inner = quality.TilingComparison(
                *(a[args.margin:-args.margin, args.margin:-args.margin]
                  for a in (comp.image, comp.a, comp.b)), comp.shift, args.margin)
            row["fields"][name] = {
                "full": comp.ratio, "interior": inner.ratio,
                "rms_difference": comp.rms_difference, "rms_correction": comp.rms_correction,
                "rms_difference_interior": inner.rms_difference,
                "rms_correction_interior": inner.rms_correction,
                "sigma_estimated": sigmas[name]}
            maps[(tile, overlap, name)] = (comp.image, comp.a, comp.difference)
        if full_image is not None:
            fn = quality.model_denoise_fn(den, full_sigma)
            fn(full_image)  # warm-up (compiles)
            row["seconds_4k"] = timed(lambda: fn(full_image), args.repeats)
            row["tiles_4k"] = den.tiles.count_tiles(full_image.shape)
        rows.append(row)
        print(f"tile {tile} overlap {overlap}: " + ", ".join(
            f"{n} {v['full']:.4f} / {v['interior']:.4f}" for n, v in row["fields"].items())
            + (f"; {row['seconds_4k']:.2f} s per 4k" if "seconds_4k" in row else ""), flush=True)
    if full_image is not None:
        base = rows[0]["seconds_4k"]
        for row in rows:
            row["time_ratio"] = row["seconds_4k"] / base
            # the work the generator does: tile pixels, noise-free unlike the clock
            row["work_ratio"] = (row["tiles_4k"] * row["tile"] ** 2
                                 / (rows[0]["tiles_4k"] * rows[0]["tile"] ** 2))

    names = list(scaled)
    print("\nRMS(A − B) / RMS(A − input), full / interior (margin "
          f"{args.margin} px); goal ≤ {quality.TILING_GOAL}")
    print("| tile | overlap | " + " | ".join(names)
          + " | s per 4k | time ratio | tile-pixel ratio |")
    print("|---|---|" + "---|" * len(names) + "---|---|---|")
    for r in rows:
        print(f"| {r['tile']} | {r['overlap']} | " + " | ".join(
            f"{r['fields'][n]['full']:.4f} / {r['fields'][n]['interior']:.4f}" for n in names)
            + "".join(f" | {r.get(k, float('nan')):.2f}"
                      for k in ("seconds_4k", "time_ratio", "work_ratio")) + " |")

    png = RESULTS / f"{args.result}.png"
    figure(maps, names, png, args.margin)
    path = save(args.result, {
        "args": vars(args), "seed": args.seed, "model": str(model_dir),
        "model_weights_sha256": datasets.sha256_of(Path(model_dir) / "generator.weights.h5"),
        "settings": [list(s) for s in SETTINGS], "rows": rows,
        "metric": "RMS(A-B)/RMS(A-input) on [0,255]; B = the field moved by shift=tile/2 "
                  "(reflect-padded in front, cut at the end), same grid; common region",
        "goal": quality.TILING_GOAL, "simulation": sim_cfg.to_dict(),
        "timing": "whole 4096^2 epu2.9_example.mrc, float32, batch 16, median of repeats "
                  "after a warm-up" if full_image is not None else None,
        "figure": png.name})
    print(f"wrote {path} and {png}")


def figure(maps, names, path, margin):
    """Rows: fields; columns: input, A (default setting), then A − B per setting."""
    from cryoem_denoise.evaluation.figures import _matplotlib, contrast_limits, save_figure

    plt = _matplotlib()
    cols = 2 + len(SETTINGS)
    fig, axes = plt.subplots(len(names), cols, figsize=(2.4 * cols, 2.6 * len(names)),
                             squeeze=False)
    for i, name in enumerate(names):
        image, a, _ = maps[(*SETTINGS[0], name)]
        lo, hi = contrast_limits(image)
        axes[i, 0].imshow(image, cmap="gray", vmin=lo, vmax=hi)
        axes[i, 0].set_title(f"{name[:14]}\ninput", fontsize=8)
        lo, hi = contrast_limits(a)
        axes[i, 1].imshow(a, cmap="gray", vmin=lo, vmax=hi)
        axes[i, 1].set_title(f"A: tile {SETTINGS[0][0]}/{SETTINGS[0][1]}", fontsize=8)
        corr = float(np.std(a - image))  # one colour scale per field: ±0.1 × correction RMS
        for j, (tile, overlap) in enumerate(SETTINGS):
            image_j, a_j, diff = maps[(tile, overlap, name)]
            m = (slice(margin, -margin),) * 2
            full = np.sqrt(np.mean(diff ** 2) / np.mean((a_j - image_j) ** 2))
            inner = np.sqrt(np.mean(diff[m] ** 2) / np.mean((a_j - image_j)[m] ** 2))
            ax = axes[i, 2 + j]
            ax.imshow(diff, cmap="RdBu_r", vmin=-0.1 * corr, vmax=0.1 * corr)
            ax.set_title(f"A−B tile {tile}/{overlap}\n{full:.3f} / {inner:.3f}", fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("Same field, tile grid shifted by half a tile: A − B "
                 "(colour ±0.1 × RMS of the denoising correction); RMS(A − B) / "
                 f"RMS(A − input) full / interior (margin {margin} px)", fontsize=9)
    save_figure(fig, path, overwrite=True, dpi=90)


if __name__ == "__main__":
    main()

"""Quality on real images without a clean reference: checkerboard and high-frequency ratios.

Run: ``.venv/bin/python benchmarks/bench_real_quality.py [--model DIR]`` (about 4 minutes on
2 CPU cores with the defaults; BM3D takes most of it).

Issue 10's two criteria (:mod:`cryoem_denoise.evaluation.quality`), each the output's power over the
input's, both on the same [0, 255] scale:

* checkerboard ratio: power on the Nyquist lines (k_x or k_y = ±1/2 cycles/px, where a
  stride-2 checkerboard lies); goal ≤ 1;
* high-frequency ratio: power at |k| > 0.3 cycles/px (mostly noise); goal ≤ 0.5.

Methods: the model (default: the shipped one; a noise-level model gets the estimated sigma),
BM3D with sigma estimated from the image (``quality.estimate_noise_sigma``), and a Gaussian
blur of ``--gaussian-width`` pixels. Every image is first scaled to [0, 255] as ``apply``
scales it for the model (its percentile window, not clipped), and every method gets that
same image.

Images:

* ``crops``: ``--crops`` 1024² crops of each fetched micrograph (centre and along the
  diagonal). BM3D runs on the central ``--bm3d-side``² of each crop (16 s per 512² on 2
  cores) and its ratios are over that region's input; the others over the whole crop;
* ``whole``: each whole micrograph (model and blur only);
* ``boxes``: a pseudo particle stack: ``--boxes`` 256² boxes cut at random (seeded)
  positions from each micrograph, each scaled on its own as ``apply`` scales the sections
  of a stack. These are boxes of micrograph, not picked particles: no particle stack ships
  with the sample data. Reported: the median over boxes.

Results: ``benchmarks/results/real_quality.json`` and ``real_quality.png`` (crops of input,
model, BM3D and blur, and their power spectra).
"""

import argparse
import time
from pathlib import Path

import numpy as np

from common import RESULTS, quiet_tf, save

quiet_tf()

from cryoem_denoise.data import datasets  # noqa: E402
from cryoem_denoise.evaluation import quality  # noqa: E402
from cryoem_denoise.evaluation.baselines import bm3d_denoise, gaussian_denoise  # noqa: E402
from cryoem_denoise.inference.denoiser import Denoiser, InferenceConfig  # noqa: E402
from cryoem_denoise.io import image_io  # noqa: E402
from cryoem_denoise.model import model_store  # noqa: E402

METHODS = ("model", "bm3d", "gaussian")


def crop_positions(shape, side, n):
    """``n`` top-left corners: the centre first, then spread along the diagonal."""
    ny, nx = shape
    fractions = [0.5] + list(np.linspace(0.15, 0.85, max(n - 1, 1)))[:n - 1]
    return [(int((ny - side) * f), int((nx - side) * f)) for f in fractions[:n]]


def centre(image, side):
    y, x = (image.shape[0] - side) // 2, (image.shape[1] - side) // 2
    return image[y:y + side, x:x + side]


def ratios(output, image):
    return {"checkerboard": quality.checkerboard_ratio(output, image),
            "high_frequency": quality.high_frequency_ratio(output, image)}


def radial_power(image, bins=64):
    """Radially averaged power spectrum: (frequency in cycles/px, mean power)."""
    a = np.asarray(image, np.float64)
    p = np.abs(np.fft.fft2(a - a.mean())) ** 2 / a.size
    k = np.hypot(np.fft.fftfreq(a.shape[0])[:, None], np.fft.fftfreq(a.shape[1])[None, :])
    edges = np.linspace(0, np.sqrt(0.5), bins + 1)
    idx = np.clip(np.digitize(k.ravel(), edges) - 1, 0, bins - 1)
    total = np.bincount(idx, p.ravel(), bins)
    count = np.bincount(idx, minlength=bins)
    keep = count > 0
    return 0.5 * (edges[:-1] + edges[1:])[keep], total[keep] / count[keep]


class Methods:
    """The three methods on one [0, 255] image, each timed."""

    def __init__(self, denoiser, gaussian_width, bm3d_side):
        self.denoiser = denoiser
        self.width = gaussian_width
        self.bm3d_side = bm3d_side

    def run(self, method, image, bm3d_region=True):
        """``(output, input it is compared with, sigma, seconds)``."""
        sigma = quality.estimate_noise_sigma(image)
        t0 = time.perf_counter()
        if method == "model":
            out = quality.model_denoise_fn(self.denoiser, sigma)(image)
        elif method == "gaussian":
            out = gaussian_denoise(image, None, self.width)
        else:
            if bm3d_region and min(image.shape) > self.bm3d_side:
                image = np.ascontiguousarray(centre(image, self.bm3d_side))
                sigma = quality.estimate_noise_sigma(image)
            out = bm3d_denoise(image, max(sigma, 0.5))
        return out, image, sigma, time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default=None, help="model folder (default: the shipped model)")
    ap.add_argument("--crops", type=int, default=3, help="1024² crops per micrograph")
    ap.add_argument("--side", type=int, default=1024)
    ap.add_argument("--bm3d-side", type=int, default=512)
    ap.add_argument("--boxes", type=int, default=8, help="256² boxes per micrograph")
    ap.add_argument("--box", type=int, default=256)
    ap.add_argument("--gaussian-width", type=float, default=1.0, help="blur sigma, pixels")
    ap.add_argument("--no-whole", action="store_true", help="skip the whole micrographs")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--result", default="real_quality", help="results/RESULT.json and .png")
    args = ap.parse_args()

    model_dir = args.model or model_store.default_model_dir()
    den = Denoiser.load(model_dir, InferenceConfig(precision="float32"))
    methods = Methods(den, args.gaussian_width, args.bm3d_side)
    rng = np.random.default_rng(args.seed)
    rows, shown, spectra = [], {}, {}
    started = time.perf_counter()
    for name in datasets.MICROGRAPHS:
        micrograph = np.asarray(image_io.read_sections(datasets.sample_path(name))[0][0],
                                np.float32)
        for k, (y, x) in enumerate(crop_positions(micrograph.shape, args.side, args.crops)):
            image = den.scale(micrograph[y:y + args.side, x:x + args.side])[0]
            for method in METHODS:
                out, ref, sigma, secs = methods.run(method, image)
                row = {"image": name, "kind": "crop", "index": k, "y": y, "x": x,
                       "side": ref.shape[0], "method": method, "sigma_estimated": sigma,
                       "seconds": secs, **ratios(out, ref)}
                rows.append(row)
                print(row, flush=True)
                if k == 0:
                    shown[(name, method)] = (ref, out)
        if not args.no_whole:
            image = den.scale(micrograph)[0]
            for method in ("model", "gaussian"):
                out, ref, sigma, secs = methods.run(method, image)
                rows.append({"image": name, "kind": "whole", "index": 0, "y": 0, "x": 0,
                             "side": None, "shape": list(ref.shape), "method": method,
                             "sigma_estimated": sigma, "seconds": secs, **ratios(out, ref)})
                print(rows[-1], flush=True)
        h, w = micrograph.shape
        for k in range(args.boxes):
            y = int(rng.integers(args.box, h - 2 * args.box))
            x = int(rng.integers(args.box, w - 2 * args.box))
            box = den.scale(micrograph[y:y + args.box, x:x + args.box])[0]
            for method in METHODS:
                out, ref, sigma, secs = methods.run(method, box)
                rows.append({"image": name, "kind": "box", "index": k, "y": y, "x": x,
                             "side": args.box, "method": method, "sigma_estimated": sigma,
                             "seconds": secs, **ratios(out, ref)})
                spectra.setdefault(method, []).append((radial_power(ref), radial_power(out)))
                if k == 0 and name == datasets.MICROGRAPHS[0]:
                    shown[("boxes", method)] = (ref, out)
        print(f"{name} done at {time.perf_counter() - started:.0f} s", flush=True)

    summary = summarise(rows)
    scaling, percentiles = den.config.data.scaling(noisy=True)  # for the record only
    print(f"\ncheckerboard ratio (goal ≤ {quality.CHECKERBOARD_GOAL:g}) / high-frequency ratio "
          f"(goal ≤ {quality.HIGH_FREQUENCY_GOAL:g}); crops: mean over crops, boxes: median")
    print("| images | " + " | ".join(METHODS) + " |")
    print("|---|" + "---|" * len(METHODS))
    for key, by_method in summary.items():
        print(f"| {key} | " + " | ".join(
            f"{by_method[m]['checkerboard']:.3g} / {by_method[m]['high_frequency']:.3g}"
            + ("" if by_method[m]["passes"] else " ✗") if m in by_method else "—"
            for m in METHODS) + " |")

    png = RESULTS / f"{args.result}.png"
    figure(shown, spectra, png, args)
    path = save(args.result, {
        "args": vars(args), "seed": args.seed, "model": str(model_dir),
        "model_weights_sha256": datasets.sha256_of(Path(model_dir) / "generator.weights.h5"),
        "goals": {"checkerboard": quality.CHECKERBOARD_GOAL,
                  "high_frequency": quality.HIGH_FREQUENCY_GOAL, "cutoff_cycles_per_px": 0.3},
        "scale": f"each image scaled to [0, 255] by the model's window ({scaling} "
                 f"{list(percentiles)}), not clipped; every method gets it",
        "boxes_note": "pseudo particle stack: 256^2 boxes of micrograph at random positions, "
                      "each scaled on its own; not picked particles",
        "bm3d_note": f"BM3D on the central {args.bm3d_side}^2 of each crop (time)",
        "inference": {"tile": den.inference.tile, "overlap": den.inference.overlap,
                      "precision": den.inference.precision},
        "rows": rows, "summary": {k: v for k, v in summary.items()},
        "seconds": time.perf_counter() - started, "figure": png.name})
    print(f"wrote {path} and {png}")


def summarise(rows):
    """``{'<image> crops' | '<image> whole' | 'boxes': {method: {...}}}``."""
    out = {}
    groups = {}
    for r in rows:
        key = "boxes (both micrographs)" if r["kind"] == "box" else f"{r['image']} {r['kind']}s"
        groups.setdefault((key, r["method"]), []).append(r)
    def order(item):
        (key, method), _ = item
        return (key.startswith("boxes"), key.endswith("wholes"), key, METHODS.index(method))

    for (key, method), rs in sorted(groups.items(), key=order):
        reduce = np.median if key.startswith("boxes") else np.mean
        cb = float(reduce([r["checkerboard"] for r in rs]))
        hf = float(reduce([r["high_frequency"] for r in rs]))
        out.setdefault(key, {})[method] = {
            "checkerboard": cb, "high_frequency": hf, "n": len(rs),
            "checkerboard_max": float(max(r["checkerboard"] for r in rs)),
            "high_frequency_max": float(max(r["high_frequency"] for r in rs)),
            "passes": bool(cb <= quality.CHECKERBOARD_GOAL and hf <= quality.HIGH_FREQUENCY_GOAL)}
    return out


def figure(shown, spectra, path, args):
    """Per row (first crop of each micrograph, first box): input, model, BM3D, blur (central
    256² at full resolution, one contrast window), the radial power spectra, and the power
    per spectrum row/column (a Nyquist-line checkerboard peaks at 0.5)."""
    from cryoem_denoise.evaluation.figures import _matplotlib, contrast_limits, save_figure

    plt = _matplotlib()
    names = list(datasets.MICROGRAPHS) + ["boxes"]
    fig, axes = plt.subplots(len(names), 6, figsize=(16, 2.9 * len(names)), squeeze=False)
    for i, name in enumerate(names):
        ref = shown[(name, "model")][0]
        lo, hi = contrast_limits(centre(ref, 256))
        panels = [("input", centre(ref, 256))] + [
            (m, centre(shown[(name, m)][1], 256)) for m in METHODS]
        for j, (title, img) in enumerate(panels):
            axes[i, j].imshow(img, cmap="gray", vmin=lo, vmax=hi)
            label = {"model": "model", "bm3d": "BM3D (σ est.)",
                     "gaussian": f"Gaussian {args.gaussian_width:g} px"}.get(title, title)
            if title in METHODS:
                r = ratios(*shown[(name, title)][::-1])
                label += f"\nchk {r['checkerboard']:.3g}, HF {r['high_frequency']:.3g}"
            else:
                label = f"{name[:18]}\ninput (central 256²)"
            axes[i, j].set_title(label, fontsize=8)
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
        ax = axes[i, 4]
        if name == "boxes":
            f, p_in = _mean_spectrum([s[0] for s in spectra["model"]])
            ax.semilogy(f, p_in, "k", label="input")
            for m in METHODS:
                f, p = _mean_spectrum([s[1] for s in spectra[m]])
                ax.semilogy(f, p, label=m)
        else:
            f, p = radial_power(shown[(name, "model")][0])
            ax.semilogy(f, p, "k", label="input")
            for m in METHODS:
                f, p = radial_power(shown[(name, m)][1])
                ax.semilogy(f, p, label=m)
        ax.axvline(0.3, color="gray", ls=":", lw=1)
        ax.axvline(0.5, color="gray", ls="--", lw=1)
        ax.set_xlabel("cycles/px", fontsize=8)
        ax.set_title("radial power (mean over boxes)" if name == "boxes" else "radial power",
                     fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
        ax = axes[i, 5]
        for label, img, style in [("input", shown[(name, "model")][0], "k")] + [
                (m, shown[(name, m)][1], None) for m in ("model", "bm3d")]:
            f, p = axis_power(img)
            ax.semilogy(f, p, style, label=label) if style else ax.semilogy(f, p, label=label)
        ax.axvline(0.5, color="gray", ls="--", lw=1)
        ax.set_xlabel("|k_y| or |k_x|, cycles/px", fontsize=8)
        ax.set_title("power per row/column of the spectrum\n(Nyquist lines at 0.5)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
    fig.suptitle("Real images: checkerboard ratio (Nyquist-line power, goal ≤ 1) and "
                 "high-frequency ratio (|k| > 0.3 cycles/px, goal ≤ 0.5), output over input",
                 fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, overwrite=True, dpi=80)


def axis_power(image):
    """Power per spectrum row (k_y, mean over k_x) and column (k_x), the two averaged and
    folded onto |k|: (|k| in cycles/px, power). A Nyquist-line checkerboard peaks at 0.5."""
    side = min(np.shape(image))
    a = np.asarray(image, np.float64)[:side, :side]
    p = np.abs(np.fft.fft2(a - a.mean())) ** 2 / a.size
    profile = 0.5 * (p.mean(axis=1) + p.mean(axis=0))
    k = np.abs(np.fft.fftfreq(side))
    f, idx = np.unique(k, return_inverse=True)
    return f[1:], (np.bincount(idx, profile) / np.bincount(idx))[1:]


def _mean_spectrum(curves):
    f = curves[0][0]
    return f, np.mean([c[1] for c in curves if len(c[1]) == len(f)], axis=0)


if __name__ == "__main__":
    main()

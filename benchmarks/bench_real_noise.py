"""Denoising without clean images: Noise2Noise, self-supervised, the shipped model, fine-tuning, BM3D.

Run: ``.venv/bin/python benchmarks/bench_real_noise.py`` (about 15 minutes on 2 CPU cores
with the defaults; ``--steps`` and ``--doses`` size it).

Test data the shipped model never saw: fields simulated from a held-out structure (by
default 6WG6, one of the Biopython structures no model here trains on) with shot noise
(``noise.shot_noise``) at three doses per pixel across the range of real exposures, each
split into two independent halves (even/odd frames). Methods, each scored against the
clean field:

* ``bm3d``: BM3D on the full exposure (the sum of the halves) with σ estimated from the image
  (``skimage.restoration.estimate_sigma``), as a user without a noise model would run it;
* ``supervised``: the shipped model on the full exposure (scaled as noisy inputs are,
  its noise level estimated, as ``apply`` does);
* ``noise2noise``: a model trained from scratch on the half pairs (``fit --noise2noise``);
* ``self_supervised``: a model trained on the full exposures alone (``fit --self-supervised``);
* ``ft_noise2noise`` / ``ft_self_supervised``: the shipped model fine-tuned each way
  (``--init-from default``), with the same step budget;
* ``noise2noise_critic``: Noise2Noise with the WGAN critic switched on (``--critic``), to
  measure what a critic judging against noisy targets does.

Models trained on halves denoise each half and average them (``apply --noisy-halves``);
the others denoise the full exposure. A denoised image is compared with the clean field
after the least-squares affine map onto the clean field's [0, 255] scale (shot-noise counts
and [0, 255] fields have different units; the affine removes only that). Every method also
runs on the fetched real micrograph (its central 1024² crop): the Nyquist-line power and the
high-frequency power (|k| > 0.3 cycles/px) of its output over the input's (goals: ≤ 1, no
checkerboard added; ≤ 0.5, it really denoises).

Results: ``benchmarks/results/real_noise.json`` (config, versions, backend, hardware, seed)
and a table on stdout.
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from common import quiet_tf, save

quiet_tf()

from cryoem_denoise import training  # noqa: E402
from cryoem_denoise.config import SimulationConfig  # noqa: E402
from cryoem_denoise.data import datasets, noise  # noqa: E402
from cryoem_denoise.data.intensity import to_unit255  # noqa: E402
from cryoem_denoise.data.simulate import Simulator, load_structure  # noqa: E402
from cryoem_denoise.evaluation import metrics  # noqa: E402
from cryoem_denoise.inference.denoiser import Denoiser, InferenceConfig  # noqa: E402
from cryoem_denoise.io import image_io, mrc  # noqa: E402
from cryoem_denoise.model import model_store  # noqa: E402

METHODS = ("bm3d", "supervised", "noise2noise", "self_supervised", "ft_noise2noise",
           "ft_self_supervised", "noise2noise_critic")
#: Methods that train a model: (data mode, start from the shipped model, critic).
TRAINED = {"noise2noise": ("noise2noise", False, False),
           "self_supervised": ("self_supervised", False, False),
           "ft_noise2noise": ("noise2noise", True, False),
           "ft_self_supervised": ("self_supervised", True, False),
           "noise2noise_critic": ("noise2noise", False, True)}


def affine_fit(image, reference):
    """``image`` mapped by the least-squares affine onto ``reference``."""
    a = np.vstack([image.ravel(), np.ones(image.size)]).T
    coef, *_ = np.linalg.lstsq(a, reference.ravel().astype(np.float64), rcond=None)
    return (image * coef[0] + coef[1]).astype(np.float32)


def score(denoised, clean):
    fitted = affine_fit(denoised.astype(np.float64), clean)
    return {"psnr": metrics.psnr(clean, fitted), "ssim": metrics.ssim(clean, fitted)}


def bm3d_estimated(image):
    from skimage.restoration import estimate_sigma

    from cryoem_denoise.evaluation.baselines import bm3d_denoise

    scaled, affine = to_unit255(image)
    sigma = float(estimate_sigma(scaled))
    return affine.inverse(bm3d_denoise(scaled, max(sigma, 0.5))), sigma


def run_model(folder, image, tile=256):
    """``apply`` on one noisy image: its model's noisy-input scaling, sigma estimated."""
    den = Denoiser.load(folder, InferenceConfig(tile=tile, overlap=32, batch_size=8,
                                                precision="float32"))
    return den.denoise(np.asarray(image, np.float32))


def write_stack(path, arrays):
    mrc.write_mrc(path, np.stack(arrays).astype(np.float32), overwrite=True)
    return path


def train(kind, h1, h2, full, out, steps, batch, init, critic=False):
    from cryoem_denoise.config import FitConfig

    cfg = FitConfig()
    # the shipped model's generator (and, fine-tuning it, its input scaling and frozen
    # BatchNorm, as fit --init-from does); from scratch, the paper's scaling
    if init:
        training.inherit_from_init(cfg, "default")
    else:
        cfg.model = model_store.load_config(model_store.default_model_dir()).model
    cfg.train.steps, cfg.train.batch_size = steps, batch
    cfg.train.log_every = cfg.train.validate_every = cfg.train.checkpoint_every = steps
    cfg.train.adversarial = critic
    cfg.data.swap_pairs = True
    cfg.data.validation_fraction = 0.0
    cfg.train.init_from = "default" if init else None
    if kind == "noise2noise":
        cfg.data.mode = "noise2noise"
        return training.fit(cfg, [h1], out, noisy_paths=[h2], overwrite=True)
    cfg.data.mode = "self_supervised"
    return training.fit(cfg, [full], out, overwrite=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--structure", default="6WG6.cif")
    ap.add_argument("--pixel-size", type=float, default=1.0)
    ap.add_argument("--doses", type=float, nargs="+", default=[10.0, 40.0, 160.0],
                    help="full-exposure electrons per pixel (each half gets half)")
    ap.add_argument("--fields", type=int, default=4)
    ap.add_argument("--field", type=int, default=512)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--result", default="real_noise", help="results/RESULT.json")
    args = ap.parse_args()

    sim = SimulationConfig(pixel_size=args.pixel_size, field=args.field, particles=6)
    cloud = load_structure(datasets.sample_path(args.structure))
    clean, _ = Simulator(cloud, sim).fields(args.fields, args.seed)
    real = image_io.read_sections(datasets.sample_path("epu2.9_example.mrc"))[0][0]
    c = real.shape[0] // 2
    real_crop = np.asarray(real[c - 512:c + 512, c - 512:c + 512], np.float32)
    shipped = model_store.default_model_dir()
    rows, spectral = [], {}
    work = Path(tempfile.mkdtemp(prefix="bench-real-noise-"))
    started = time.perf_counter()
    for dose in args.doses:
        rng = np.random.default_rng([args.seed, int(dose)])
        pairs = [noise.shot_noise(f, dose, rng, halves=True) for f in clean]
        h1 = write_stack(work / f"h1_{dose:g}.mrcs", [p[0] for p in pairs])
        h2 = write_stack(work / f"h2_{dose:g}.mrcs", [p[1] for p in pairs])
        full = write_stack(work / f"full_{dose:g}.mrcs", [p[0] + p[1] for p in pairs])
        models = {"supervised": shipped}
        for name in (m for m in args.methods if m in TRAINED):
            kind, init, critic = TRAINED[name]
            t0 = time.perf_counter()
            train(kind, h1, h2, full, work / f"{name}_{dose:g}", args.steps, args.batch, init,
                  critic)
            print(f"dose {dose:g}: trained {name} in {time.perf_counter() - t0:.0f} s",
                  flush=True)
            models[name] = work / f"{name}_{dose:g}"
        for method in args.methods:
            scores = []
            for k, (a, b) in enumerate(pairs):
                if method == "bm3d":
                    out, _ = bm3d_estimated(a + b)
                elif "noise2noise" in method:  # trained on halves: denoise each, average
                    out = 0.5 * (run_model(models[method], a) + run_model(models[method], b))
                else:
                    out = run_model(models[method], a + b)
                scores.append(score(out, clean[k]))
            noisy_scores = [score(a + b, clean[k]) for k, (a, b) in enumerate(pairs)]
            row = {"dose": dose, "method": method,
                   "psnr": float(np.mean([s["psnr"] for s in scores])),
                   "ssim": float(np.mean([s["ssim"] for s in scores])),
                   "psnr_noisy": float(np.mean([s["psnr"] for s in noisy_scores]))}
            rows.append(row)
            print(json.dumps(row), flush=True)
        if dose == args.doses[len(args.doses) // 2]:  # the real micrograph: middle dose's models
            for method in args.methods:
                out = bm3d_estimated(real_crop)[0] if method == "bm3d" else \
                    run_model(models[method], real_crop)
                spectral[method] = {
                    "nyquist_ratio": metrics.nyquist_power(out) / metrics.nyquist_power(real_crop),
                    "high_freq_ratio": metrics.high_frequency_power(out) /
                    metrics.high_frequency_power(real_crop)}
                print(method, json.dumps(spectral[method]), flush=True)
    print("\n| dose e/px | noisy | " + " | ".join(args.methods) + " |")
    print("|---|---|" + "---|" * len(args.methods))
    for dose in args.doses:
        r = {x["method"]: x for x in rows if x["dose"] == dose}
        print(f"| {dose:g} | {r[args.methods[0]]['psnr_noisy']:.2f} | " + " | ".join(
            f"{r[m]['psnr']:.2f} / {r[m]['ssim']:.3f}" for m in args.methods) + " |")
    path = save(args.result, {"args": vars(args), "seed": args.seed, "rows": rows,
                               "real_micrograph_spectral": spectral,
                               "seconds": time.perf_counter() - started,
                               "simulation": sim.to_dict()})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

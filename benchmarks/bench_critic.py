"""Is the critic doing anything? The paper's clipped critic, WGAN-GP and no critic, one budget.

Run: ``.venv/bin/python benchmarks/bench_critic.py [--quick] [--steps N]``. ``--quick``
(64² crops, depth 6, 40 steps per arm, 2 held-out fields per structure, 4 empty fields)
writes ``results/critic_quick.*`` and proves the pipeline, nothing more (94 s from scratch
on 2 CPU cores shared with a training run; 40 steps teach the generators nothing). The
defaults (128² crops, depth 7, 2,000 steps per arm, batch 8) are sized for a CPU: 0.39,
0.45 and 0.22 s per step for the three arms measured on those cores, so about 35 minutes of
training and a few of scoring (not run yet). Finished arms are reused (same config),
interrupted ones resumed (``--work``, default ``results/critic_models``).

Arms: one generator (the quality recipe's shape at a CPU size: residual U-Net, resize
upsampling, full-resolution stem and head, noise-level input, no dropout; ``--tile``,
``--depth``, ``--ngf``), the paper's losses and optimisers (gray constraint λ = 0.1, per-image
sum on [-1, 1]; G Adam 1e-4), the paper's σ draw (uniform 10-80), the broad training set
(:func:`~cryoem_denoise.data.simulate.default_training_inputs`), the same seed, data order
and number of generator steps; only the critic differs:

============  =================================================================================
``paper``     the paper's critic: PatchGAN with BatchNorm, SGD 1e-5, every weight clipped to
              ±0.001 after each update
``wgan_gp``   WGAN-GP (Gulrajani et al. 2017): no clipping, gradient penalty λ = 10
              (``--gradient-penalty``) and, as its authors ran it, no BatchNorm in the critic and
              Adam 1e-4 (``--gp-critic-norm``, ``--gp-d-optimizer``, ``--gp-d-lr``: set them to
              ``batch``, ``sgd``, ``1e-5`` to change the penalty alone)
``none``      no critic: the gray constraint alone (``--no-critic``)
============  =================================================================================

``n_critic`` is 1 in both critic arms (``--n-critic``), so every arm trains its generator on
the same crops. BatchNorm statistics are recomputed on ``--bn-recalibration`` training crops
when an arm finishes (as in ``bench_ablation.py``).

Scored on the held-out set only (:func:`cryoem_denoise.data.heldout.heldout_fields`:
structures never trained on, settings and image formation of its own), 256² fields plus white
Gaussian noise of σ 10, 25, 40 and 80 on [0, 255] (``noise.add_protocol_noise``; the model is
given the true σ): PSNR and SSIM (plain, as the paper); ``hf_kept``, the fraction of the clean
field's power above 0.25 cycles/px that the output keeps coherently (``Σ Re(O C*) / Σ |C|²``)
and ``hf_power``, the output's power there over the clean field's (noise counts), both pooled
over the fields (``bench_known_truth.high_frequency`` and ``summarise``), each image less its
mean and under a Tukey window first (:data:`TAPER`: the held-out fields are smooth, and
without it the jump between their opposite edges dominates that band). Beside the arms:
the noisy input and a Gaussian blur of 2 px (``blur``) as references.

Hallucination check (:mod:`cryoem_denoise.evaluation.hallucination`): ``--empty`` fields of
ice alone (the training simulator with a massless structure, broad settings, ice 0.1-0.6,
scaled to [0, 255] like every clean field), the same noise, each method's output searched
for dark difference-of-Gaussians blobs of ``--blob-radius`` px whose response is above the
largest found on the clean empty fields (``--quantile``, ``--margin``). ``blobs`` is the mean
number per field: invented particles, or noise left at the particle scale (the noisy and
blurred references show how much of that any method leaves). ``blobs_heldout_clean`` (the
clean held-out particle fields' count) shows the detector sees real particles at that
threshold.

Results: ``benchmarks/results/critic.json`` (every arm's config, versions, backend,
hardware, seed, the held-out set's description, the threshold) and ``critic.png`` (per arm
its output on an empty and on a particle field at σ = 40, blobs circled; the numbers per σ).
"""

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter
from scipy.signal.windows import tukey

from common import RESULTS, quiet_tf, save

quiet_tf()

from bench_known_truth import HF_CUTOFF, high_frequency, summarise  # noqa: E402

from cryoem_denoise import training  # noqa: E402
from cryoem_denoise.config import (DataConfig, FitConfig, ModelConfig,  # noqa: E402
                                   TrainConfig, broad_simulation)
from cryoem_denoise.data import heldout  # noqa: E402
from cryoem_denoise.data.noise import add_protocol_noise  # noqa: E402
from cryoem_denoise.data.simulate import default_training_inputs  # noqa: E402
from cryoem_denoise.errors import ConfigError, InputError  # noqa: E402
from cryoem_denoise.evaluation import hallucination, metrics  # noqa: E402
from cryoem_denoise.inference.denoiser import Denoiser, InferenceConfig  # noqa: E402
from cryoem_denoise.model import model_store  # noqa: E402
from cryoem_denoise.training.loop import check_resume_compatible  # noqa: E402

SIGMAS = (10.0, 25.0, 40.0, 80.0)
ARMS = ("paper", "wgan_gp", "none")
REFERENCES = ("noisy", "blur")
BLUR_PX = 2.0
#: Tukey window (cosine edges over this fraction of each axis) before the spectra: without it
#: the jump between opposite edges of a smooth field, which the FFT sees as periodic, holds
#: most of its power above 0.25 cycles/px, and every method keeps that (as metrics.frc does).
TAPER = 0.1
SHOWN_SIGMA = 40.0
#: Empty fields' seeds start here (the training fields use seeds 0-6 of their own stream).
EMPTY_SEED = 10_000


def arm_configs(args):
    """``{arm: FitConfig}``: one generator and data, the critic varied."""
    base = FitConfig(
        model=ModelConfig(tile=args.tile, depth=args.depth, ngf=args.ngf, ndf=args.ngf,
                          residual=True, upsample="resize", full_resolution=True,
                          sigma_map=True, dropout=0.0),
        data=DataConfig(),
        train=TrainConfig(steps=args.steps, batch_size=args.batch, seed=args.seed,
                          n_critic=args.n_critic, precision="float32",
                          bn_recalibration=args.bn_recalibration,
                          log_every=max(1, args.steps // 20), validate_every=args.steps,
                          checkpoint_every=max(1, args.steps // 5)),
        simulation=broad_simulation(fields=args.fields))
    arms = {name: copy.deepcopy(base) for name in ARMS}
    gp = arms["wgan_gp"]
    gp.train.gradient_penalty = args.gradient_penalty
    gp.train.d_optimizer, gp.train.d_lr = args.gp_d_optimizer, args.gp_d_lr
    gp.model.critic_norm = args.gp_critic_norm
    arms["none"].train.adversarial = False
    return {name: cfg.validate() for name, cfg in arms.items()}


def train_arm(cfg, paths, model_dir):
    """Train (or resume, or reuse) one arm; its training seconds."""
    meta = model_store.load_metadata(model_dir) if (model_dir / "metadata.json").exists() else {}
    if meta.get("steps") == cfg.train.steps and meta.get("config") == json.loads(cfg.to_json()):
        return meta["train_seconds"]
    resume = False
    if (model_dir / "config.json").exists():
        try:
            check_resume_compatible(model_store.load_config(model_dir, resume=True), cfg)
            resume = True
        except (ConfigError, InputError) as exc:  # another config, a damaged folder
            print(f"{model_dir.name}: not resumable ({exc}); training from the start")
    meta = training.fit(cfg, paths, model_dir, resume=resume, overwrite=not resume,
                        progress=True)
    return meta["train_seconds"]


def _methods(denoisers, noisy, sigma):
    out = {"noisy": noisy, "blur": gaussian_filter(noisy, BLUR_PX)}
    for name, den in denoisers.items():
        out[name] = den.denoise_scaled(noisy, noise_level=sigma)
    return out


def windowed(image):
    """``image`` less its mean, times a separable Tukey window (:data:`TAPER`)."""
    window = np.outer(tukey(image.shape[0], TAPER), tukey(image.shape[1], TAPER))
    return (image - image.mean()) * window


def score(denoisers, fields, sigmas, seed, name, measure, shown):
    """Rows of ``measure(clean, output)`` per field, sigma and method (the noise of field
    ``i`` seeded by ``name-i``), and the outputs of field ``shown`` at :data:`SHOWN_SIGMA`."""
    rows = []
    shown_outputs = None
    for sigma in sigmas:
        for i, clean in enumerate(fields):
            noisy = add_protocol_noise(clean, sigma, seed, f"{name}-{i}")
            outputs = _methods(denoisers, noisy, sigma)
            for method, out in outputs.items():
                rows.append({"sigma": sigma, "method": method, "field": i,
                             **measure(clean, out)})
            if sigma == SHOWN_SIGMA and i == shown:
                shown_outputs = {"clean": clean, **outputs}
    return rows, shown_outputs


def heldout_measures(clean, out):
    """PSNR, SSIM and the high-frequency sums of one output."""
    return {"psnr": metrics.psnr(clean, out), "ssim": metrics.ssim(clean, out),
            **high_frequency(windowed(out), windowed(clean))}


def figure(results, shown, radius, threshold, path):
    """Example outputs (particle and empty field at sigma 40) and the numbers per sigma."""
    from cryoem_denoise.evaluation.figures import _matplotlib, contrast_limits, save_figure

    plt = _matplotlib()
    cols = ["clean", "noisy", *ARMS]
    panels = [("heldout", "held-out field"), ("empty", "empty field (ice only)")]
    panels = [(k, label) for k, label in panels if shown.get(k)]
    fig = plt.figure(figsize=(3.0 * len(cols), 3.1 * (len(panels) + 1.3)))
    grid = fig.add_gridspec(len(panels) + 1, len(cols) * 4,
                            height_ratios=[1] * len(panels) + [1.3])
    for r, (key, label) in enumerate(panels):
        images = shown[key]
        lo, hi = contrast_limits(images["clean"])
        for c, col in enumerate(cols):
            ax = fig.add_subplot(grid[r, 4 * c:4 * c + 4])
            ax.imshow(images[col], cmap="gray", vmin=lo, vmax=hi)
            ax.set_xticks([])
            ax.set_yticks([])
            title = f"{label}\n{col}" if c == 0 else col
            if col != "clean":
                title += f" (σ={SHOWN_SIGMA:g})" if col == "noisy" else ""
            if key == "empty":
                blobs = hallucination.find_blobs(images[col], threshold, radius)
                for y, x in blobs:
                    ax.add_patch(plt.Circle((x, y), radius, fill=False, color="r", lw=0.8))
                title += f": {len(blobs)} blobs"
            elif col != "clean":
                title += f": {metrics.psnr(images['clean'], images[col]):.1f} dB"
            ax.set_title(title, fontsize=8)
    measures = [("heldout", "psnr", "PSNR (dB)"), ("heldout", "ssim", "SSIM"),
                ("heldout", "hf_kept", f"clean power > {HF_CUTOFF} c/px kept"),
                ("empty", "blobs", "blobs per empty field")]
    width = len(cols) * 4 // len(measures)
    for k, (part, key, label) in enumerate(measures):
        ax = fig.add_subplot(grid[len(panels), k * width:(k + 1) * width])
        by_sigma = results[part]
        sigmas = [float(s) for s in by_sigma]
        for method in (*ARMS, *REFERENCES):
            values = [by_sigma[s][method][key] for s in by_sigma if method in by_sigma[s]]
            if values:
                ax.plot(sigmas, values, marker="o", ls="--" if method in REFERENCES else "-",
                        label=method)
        ax.set_xlabel("σ on [0, 255]")
        ax.set_title(label, fontsize=9)
        if k == 0:
            ax.legend(fontsize=7)
    fig.suptitle("The critic: paper (clipped ±0.001), WGAN-GP, none; held-out structures",
                 fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, overwrite=True, dpi=80)


def print_table(results, part, key, title, fmt):
    print(f"\n{title}")
    methods = [*ARMS, *REFERENCES]
    print("| σ | " + " | ".join(methods) + " |")
    print("|---|" + "---|" * len(methods))
    for sigma, by in results[part].items():
        print(f"| {sigma} | " + " | ".join(fmt.format(by[m][key]) for m in methods) + " |")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="a minute or two: 64² crops, depth 6, 40 steps, few fields")
    p.add_argument("--steps", type=int, default=None, help="generator steps per arm (2000)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--tile", type=int, default=None, help="training crop side (128)")
    p.add_argument("--depth", type=int, default=None, help="U-Net depth (7)")
    p.add_argument("--ngf", type=int, default=16, help="generator and critic filters")
    p.add_argument("--n-critic", type=int, default=1)
    p.add_argument("--gradient-penalty", type=float, default=10.0)
    p.add_argument("--gp-d-optimizer", default="adam", choices=("adam", "sgd", "rmsprop"))
    p.add_argument("--gp-d-lr", type=float, default=1e-4)
    p.add_argument("--gp-critic-norm", default="none", choices=("none", "batch"))
    p.add_argument("--bn-recalibration", type=int, default=None, metavar="CROPS",
                   help="BatchNorm statistics of this many crops at the end (1024; 0: off)")
    p.add_argument("--fields", type=int, default=600,
                   help="broad training fields in all (600: the cached default set)")
    p.add_argument("--heldout", type=int, default=None, help="held-out fields per structure (4)")
    p.add_argument("--empty", type=int, default=None, help="empty fields (12)")
    p.add_argument("--side", type=int, default=256, help="side of scored fields")
    p.add_argument("--sigmas", type=float, nargs="+", default=list(SIGMAS))
    p.add_argument("--blob-radius", type=float, default=10.0, help="particle radius, px")
    p.add_argument("--quantile", type=float, default=1.0)
    p.add_argument("--margin", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", type=Path, default=None,
                   help="model folders (reused and resumed; default results/critic_models)")
    p.add_argument("--result", default=None, help="results/RESULT.json and .png")
    args = p.parse_args(argv)
    quick = args.quick
    defaults = {"steps": (2000, 40), "tile": (128, 64), "depth": (7, 6),
                "bn_recalibration": (1024, 64), "heldout": (4, 2), "empty": (12, 4)}
    for key, (full, short) in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, short if quick else full)
    args.result = args.result or ("critic_quick" if quick else "critic")
    args.work = args.work or RESULTS / f"{args.result}_models"
    return args


def main(argv=None):
    args = parse_args(argv)
    started = time.perf_counter()
    configs = arm_configs(args)
    paths = default_training_inputs(configs["paper"].simulation, args.seed)
    denoisers, seconds = {}, {}
    for name, cfg in configs.items():
        seconds[name] = train_arm(cfg, paths, args.work / name)
        denoisers[name] = Denoiser.load(args.work / name,
                                        InferenceConfig(tile=args.side, overlap=32))
        print(f"{name}: trained in {seconds[name]:.0f} s", flush=True)
    trained = time.perf_counter()

    fields, described = heldout.heldout_fields(args.heldout, args.side, args.seed)
    print(f"held-out set: {len(fields)} fields of {args.side}² "
          f"({', '.join(described['structures'])})", flush=True)
    empty_cfg = broad_simulation(field=args.side, ice=(0.1, 0.6))
    empty, empty_params = hallucination.empty_fields(args.empty, empty_cfg,
                                                     EMPTY_SEED + args.seed)
    radius = args.blob_radius
    threshold = hallucination.calibrate_threshold(empty, radius, args.quantile, args.margin)
    clean_counts = hallucination.count_blobs(list(fields), threshold, radius)

    coarse = next((i for i, f in enumerate(described["fields"]) if f["regime"] == "coarse"), 0)
    rows, shown_heldout = score(denoisers, fields, args.sigmas, args.seed, "heldout",
                                heldout_measures, coarse)
    empty_rows, shown_empty = score(
        denoisers, empty, args.sigmas, args.seed, "empty",
        lambda clean, out: {"blobs": int(hallucination.count_blobs(out, threshold, radius))}, 0)
    heldout_summary = summarise(rows, ("sigma",), ("psnr", "ssim"))
    empty_summary = summarise(empty_rows, ("sigma",), ("blobs",))
    results = {
        "heldout": heldout_summary, "empty": empty_summary,
        "arms": {name: {"config": cfg.to_dict(), "train_seconds": seconds[name],
                        "steps": cfg.train.steps} for name, cfg in configs.items()},
        "hallucination": {"threshold": threshold, "blob_radius_px": radius,
                          "quantile": args.quantile, "margin": args.margin,
                          "polarity": "dark", "dog_ratio": hallucination.RATIO,
                          "empty_fields": len(empty), "empty_seed": EMPTY_SEED + args.seed,
                          "empty_simulation": empty_cfg.to_dict(),
                          "empty_field_settings": empty_params,
                          "blobs_heldout_clean": clean_counts.tolist()},
        "heldout_set": described, "hf_cutoff_cycles_per_px": HF_CUTOFF, "hf_taper": TAPER,
        "blur_px": BLUR_PX,
        "sigmas": args.sigmas, "seed": args.seed, "quick": args.quick,
        "training_inputs": [str(p) for p in paths],
        "seconds": {"training_wall": trained - started,
                    "scoring": time.perf_counter() - trained},
        "args": {k: str(v) for k, v in vars(args).items()}}
    print_table(results, "heldout", "psnr", "PSNR (dB), held-out fields", "{:.2f}")
    print_table(results, "heldout", "ssim", "SSIM", "{:.3f}")
    print_table(results, "heldout", "hf_kept",
                f"fraction of the clean field's power above {HF_CUTOFF} cycles/px kept "
                "(coherent part)", "{:.2f}")
    print_table(results, "heldout", "hf_power",
                f"output's power above {HF_CUTOFF} cycles/px over the clean field's", "{:.3g}")
    print_table(results, "empty", "blobs",
                f"blobs per empty field (radius {radius:g} px, threshold {threshold:.2f}; "
                f"clean held-out particle fields: {np.mean(clean_counts):.1f})", "{:.2f}")
    png = RESULTS / f"{args.result}.png"
    figure(results, {"heldout": shown_heldout, "empty": shown_empty}, radius, threshold, png)
    print(f"results: {save(args.result, results)}, {png}")
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()

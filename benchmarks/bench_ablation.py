"""Ablation of the quality recipe's options: each arm adds one change, all on the same training budget.

Run: ``.venv/bin/python benchmarks/bench_ablation.py`` (about an hour on 2 CPU cores with the
defaults; ``--steps`` sizes it; finished arms are reused, interrupted ones resumed).

Arms (cumulative: each one is the arm above it plus one change; sizes are reduced so that
every arm trains on a CPU: 16 generator filters, 128² crops and depth 7, batch 8):

=============  =================================================================================
``paper``      the paper's losses: WGAN critic (clipped ±0.001) + 0.1 x gray constraint (per-image
               sum), pix2pix U-Net with transposed convolutions and dropout, sigma uniform 10-80
``l2``         no critic: mean squared error alone, global residual, no dropout, Adam 2e-4/0.9
``resize``     + nearest-neighbour resize and 3x3 convolution instead of transposed convolutions
``full_res``   + a 3x3 stem and head at full resolution around the U-Net
``sigma_map``  + the noise level as a second input channel
``low_noise``  + sigma drawn log-uniformly from 5-90, each crop weighted by 1/sigma^2
``broad``      + the broad training set: all seven training structures, settings drawn per
               field (``simulate.default_training_inputs``); every arm above trains on 6zu5
               fields at the fixed default settings
=============  =================================================================================

Branches off the chain: ``broad_tanh`` is ``broad`` without the global residual (a tanh
output, as in the paper), ``broad_unweighted`` is ``broad`` without the 1/sigma^2 weights,
and ``paper_broad`` is the paper's losses and generator with
resize upsampling, the full-resolution stem and head, the noise-level input and the broad
data.

Every arm's BatchNorm statistics are recomputed on 4,096 of its training crops when it
finishes (``--bn-recalibration``, :mod:`cryoem_denoise.model.batch_norm`): with the moving averages
a model's scores moved by up to ~2 dB from one step to the next, more than most differences
between arms. The scores with the moving averages, where an earlier run measured them, are
kept beside (``moving_averages``).

Scored on the held-out set (:func:`cryoem_denoise.data.heldout.heldout_fields`: structures never
trained on, settings outside every training draw, an image formation of its own) at sigma
10, 25, 40 and 80 against BM3D given the true sigma; and on the fetched real micrographs
(central 1024² crops): the Nyquist-line power and the high-frequency power (|k| > 0.3
cycles/px) of the output over the input's (``cryoem_denoise.evaluation.quality``), with the
model's own scaling of noisy inputs (``Denoiser.scale``) and with ``robust`` scaling.

Results: ``benchmarks/results/ablation.json`` (config of every arm, versions, backend,
hardware, seed), ``ablation.md`` (the table in docs/results/quality.md) and ``ablation.png``.
"""

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np

from common import RESULTS, quiet_tf, save

quiet_tf()

from cryoem_denoise import training  # noqa: E402
from cryoem_denoise.config import (FitConfig, ModelConfig, SimulationConfig,  # noqa: E402
                                   TrainConfig, broad_simulation)
from cryoem_denoise.data import datasets, heldout  # noqa: E402
from cryoem_denoise.data.intensity import to_unit255  # noqa: E402
from cryoem_denoise.data.simulate import cached_fields, default_training_inputs  # noqa: E402
from cryoem_denoise.evaluation import metrics, quality  # noqa: E402
from cryoem_denoise.evaluation.baselines import bm3d_denoise  # noqa: E402
from cryoem_denoise.inference.denoiser import Denoiser, InferenceConfig  # noqa: E402
from cryoem_denoise.io.image_io import read_sections  # noqa: E402

SIGMAS = (10.0, 25.0, 40.0, 80.0)

#: (arm, the settings it changes: "section.field" -> value); each arm includes those above it.
ARMS = (
    ("paper", {}),
    ("l2", {"train.adversarial": False, "train.gray_reduction": "mean",
            "train.gray_scale": "unit255", "model.residual": True, "model.dropout": 0.0,
            "train.g_lr": 2e-4, "train.adam_beta1": 0.9}),
    ("resize", {"model.upsample": "resize"}),
    ("full_res", {"model.full_resolution": True}),
    ("sigma_map", {"model.sigma_map": True}),
    ("low_noise", {"data.sigma": "5:90", "data.sigma_draw": "log_uniform",
                   "train.loss_weighting": "inverse_variance"}),
    ("broad", {"broad": True}),
    # branches (name, changes, the arm they change): not in the cumulative chain
    ("broad_tanh", {"model.residual": False}, "broad"),
    ("broad_unweighted", {"train.loss_weighting": "none"}, "broad"),
    ("paper_broad", {"model.upsample": "resize", "model.full_resolution": True,
                     "model.sigma_map": True, "broad": True}, "paper"),
)
ARM_NAMES = tuple(arm[0] for arm in ARMS)


def arm_configs(steps, batch, tile, depth, ngf, seed, bn_recalibration=0):
    """``{arm: (FitConfig, broad)}`` for the cumulative arms."""
    cfg = FitConfig(model=ModelConfig(tile=tile, depth=depth, ngf=ngf, ndf=ngf),
                    train=TrainConfig(steps=steps, batch_size=batch, seed=seed,
                                      bn_recalibration=bn_recalibration,
                                      precision="float32", log_every=max(1, steps // 10),
                                      validate_every=steps, checkpoint_every=max(1, steps // 5)))
    out = {}
    previous = (cfg, False)
    for name, changes, *base in ARMS:
        cfg, broad = copy.deepcopy(out[base[0]] if base else previous)
        for key, value in changes.items():
            if key == "broad":
                broad = value
                continue
            section, field = key.split(".")
            setattr(getattr(cfg, section), field, value)
        out[name] = (cfg.validate(), broad)
        if not base:
            previous = out[name]
    return out


def training_inputs(broad, fields, seed):
    """Narrow: 6zu5 at the default settings; broad: every training structure, drawn settings."""
    if broad:
        return default_training_inputs(broad_simulation(fields=fields), seed)
    model = datasets.fetch(["mmcif_6zu5.cif"])["mmcif_6zu5.cif"]
    return [cached_fields(model, SimulationConfig(fields=fields), seed)]


def _recalibration(config):
    """The ``bn_recalibration`` crops of a config dict (0 before the option existed)."""
    return config.get("train", {}).get("bn_recalibration", 0)


def train_arm(name, cfg, paths, folder):
    """Train (or finish, or reuse) one arm's model; return its folder and train seconds.

    A finished arm whose BatchNorm recalibration differs is resumed: recalibrated (or
    not), nothing retrained.
    """
    model_dir = folder / name
    meta_path = model_dir / "metadata.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if (meta.get("steps") == cfg.train.steps
                and _recalibration(meta.get("config", {})) == cfg.train.bn_recalibration):
            return model_dir, meta["train_seconds"]
    resume = (model_dir / "config.json").exists()
    meta = training.fit(cfg, paths, model_dir, resume=resume, overwrite=not resume,
                        progress=True)
    return model_dir, meta["train_seconds"]


def noisy_version(clean, sigma, seed, index):
    # kept as is (not data.noise): this draw defines the benchmark's held-out noisy images
    rng = np.random.default_rng([seed, index, int(sigma * 1000)])
    return clean + np.float32(sigma) * rng.standard_normal(clean.shape, np.float32)


def bm3d_scores(fields, seed):
    """BM3D with the true sigma: ``{sigma: (psnr, ssim, noisy psnr)}``, field means."""
    out = {}
    for sigma in SIGMAS:
        rows = []
        for i, clean in enumerate(fields):
            noisy = noisy_version(clean, sigma, seed, i)
            den = bm3d_denoise(noisy, sigma)
            rows.append((metrics.psnr(clean, den), metrics.ssim(clean, den),
                         metrics.psnr(clean, noisy)))
        out[sigma] = tuple(float(v) for v in np.mean(rows, axis=0))
    return out


def model_scores(denoiser, fields, seed):
    """The model on the held-out fields: ``{sigma: (psnr, ssim)}`` (sigma given if it takes it)."""
    out = {}
    for sigma in SIGMAS:
        rows = []
        for i, clean in enumerate(fields):
            noisy = noisy_version(clean, sigma, seed, i)
            den = denoiser.denoise_scaled(noisy, noise_level=sigma)
            rows.append((metrics.psnr(clean, den), metrics.ssim(clean, den)))
        out[sigma] = tuple(float(v) for v in np.mean(rows, axis=0))
    return out


def real_crops(side=1024):
    """Central ``side``² crops of the fetched real micrographs, in file units."""
    crops = {}
    for name in datasets.MICROGRAPHS:
        image = np.asarray(read_sections(datasets.sample_path(name))[0][0], np.float32)
        y0, x0 = (image.shape[0] - side) // 2, (image.shape[1] - side) // 2
        crops[name] = image[y0:y0 + side, x0:x0 + side]
    return crops


def real_scores(denoiser, crops):
    """Checkerboard and high-frequency ratios on real crops, per scaling of noisy inputs
    (the model's own, ``denoiser.scale``, and ``robust``)."""
    out = {}
    for scaling in ("model", "robust"):
        rows = {}
        for name, crop in crops.items():
            scaled, _ = denoiser.scale(crop) if scaling == "model" else to_unit255(crop, "robust")
            den = denoiser.denoise_scaled(scaled)
            rows[name] = {"checkerboard": float(quality.checkerboard_ratio(den, scaled)),
                          "high_frequency": float(quality.high_frequency_ratio(den, scaled))}
        out[scaling] = rows
    return out


def _previous(args):
    """The last run's results where they were scored on the same held-out set and seed."""
    path = RESULTS / "ablation.json"
    if not path.exists():
        return {}
    old = json.loads(path.read_text())
    same = all(old.get("args", {}).get(k) == str(getattr(args, k)) for k in ("heldout", "seed"))
    return old if same else {}


def _same_model(record, model_dir):
    """Whether a stored arm result is of the model now in ``model_dir``."""
    path = model_dir / "metadata.json"
    if not path.exists():
        return False
    meta = json.loads(path.read_text())
    return (record.get("train_seconds") == meta.get("train_seconds")
            and _recalibration(record.get("config", {})) == _recalibration(meta.get("config", {})))


def _ordered(arms):
    """The chain's order, then the extra models (a saved JSON has its keys sorted)."""
    return [a for a in ARM_NAMES if a in arms] + [a for a in arms if a not in ARM_NAMES]


def table(results):
    """The ablation as a Markdown table."""
    b = results["bm3d"]
    head = ["arm"] + [f"σ={s:g} PSNR (Δ BM3D)" for s in SIGMAS] + \
        [f"σ={s:g} SSIM (BM3D)" for s in (10.0, 80.0)] + ["gain σ=40", "checkerboard", "HF ratio",
                                                          "σ=10 / 80, moving-average BN"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines.append("| noisy input | " + " | ".join(f"{b[str(s)][2]:.2f}" for s in SIGMAS)
                 + " | | | | | | |")
    lines.append("| BM3D (true σ) | " + " | ".join(f"{b[str(s)][0]:.2f}" for s in SIGMAS)
                 + " | " + " | ".join(f"{b[str(s)][1]:.3f}" for s in (10.0, 80.0))
                 + f" | {b['40.0'][0] - b['40.0'][2]:.2f} | | | |")
    for arm in _ordered(results["arms"]):
        r = results["arms"][arm]
        s = r["heldout"]
        cells = [f"{s[str(x)][0]:.2f} ({s[str(x)][0] - b[str(x)][0]:+.2f})" for x in SIGMAS]
        cells += [f"{s[str(x)][1]:.3f} ({b[str(x)][1]:.3f})" for x in (10.0, 80.0)]
        cells.append(f"{s['40.0'][0] - b['40.0'][2]:.2f}")
        real = r["real"]["robust"]
        cells.append(" / ".join(f"{v['checkerboard']:.2f}" for v in real.values()))
        cells.append(" / ".join(f"{v['high_frequency']:.2f}" for v in real.values()))
        moving = r.get("moving_averages")
        cells.append(f"{moving['10.0'][0]:.2f} / {moving['80.0'][0]:.2f}" if moving else "")
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def figure(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = _ordered(results["arms"])
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    x = np.arange(len(arms))
    for j, sigma in enumerate(SIGMAS):
        delta = [results["arms"][a]["heldout"][str(sigma)][0] - results["bm3d"][str(sigma)][0]
                 for a in arms]
        axes[0].bar(x + (j - 1.5) * 0.2, delta, 0.2, label=f"σ={sigma:g}")
    axes[0].axhline(0, color="k", lw=0.8)
    axes[0].axhline(0.5, color="g", lw=0.8, ls="--", label="goal +0.5 dB")
    axes[0].set_xticks(x, arms, rotation=40, ha="right")
    axes[0].set_ylabel("PSNR − BM3D (dB), held-out set")
    axes[0].legend(fontsize=8)
    for k, name in enumerate(("checkerboard", "high_frequency")):
        vals = [np.mean([v[name] for v in results["arms"][a]["real"]["robust"].values()])
                for a in arms]
        axes[1].bar(x + (k - 0.5) * 0.4, vals, 0.4,
                    label="Nyquist-line power ratio" if k == 0 else "HF power ratio")
    axes[1].axhline(1, color="k", lw=0.8)
    axes[1].axhline(0.5, color="g", lw=0.8, ls="--")
    axes[1].set_yscale("log")
    axes[1].set_xticks(x, arms, rotation=40, ha="right")
    axes[1].set_ylabel("output / input (real micrographs, mean)")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=1500, help="generator steps per arm")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--tile", type=int, default=128)
    p.add_argument("--depth", type=int, default=7)
    p.add_argument("--ngf", type=int, default=16)
    p.add_argument("--fields", type=int, default=140, help="simulated training fields")
    p.add_argument("--heldout", type=int, default=4, help="held-out fields per structure")
    p.add_argument("--arms", default=",".join(ARM_NAMES),
                   help="arms to train and score (a branch needs the arm it changes)")
    p.add_argument("--self-ensemble", action="store_true",
                   help="also score every --extra model with apply's --self-ensemble")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bn-recalibration", type=int, default=4096, metavar="CROPS",
                   help="BatchNorm statistics of this many crops in every arm (0: the moving "
                        "averages); arms scored before with the other setting keep those "
                        "scores as 'moving_averages'")
    p.add_argument("--work", type=Path, default=RESULTS / "ablation_models",
                   help="model folders (reused and resumed)")
    p.add_argument("--extra", action="append", default=[], metavar="NAME=MODEL_DIR",
                   help="also score this trained model (e.g. shipped=cryoem_denoise/default_model)")
    args = p.parse_args()

    arms = [a for a in args.arms.split(",") if a]
    unknown = set(arms) - set(ARM_NAMES)
    if unknown:
        p.error(f"unknown arm(s): {', '.join(sorted(unknown))}")
    configs = arm_configs(args.steps, args.batch, args.tile, args.depth, args.ngf, args.seed,
                          args.bn_recalibration)
    fields, described = heldout.heldout_fields(args.heldout, 256, args.seed)
    print(f"held-out set: {len(fields)} fields of 256² ({', '.join(described['structures'])})")
    previous = _previous(args)
    t0 = time.perf_counter()
    bm3d = previous.get("bm3d") or {str(k): v for k, v in bm3d_scores(fields, args.seed).items()}
    results = {"bm3d": bm3d, "arms": {}, "heldout": described,
               "args": {k: str(v) for k, v in vars(args).items()}}
    print(f"BM3D scored in {time.perf_counter() - t0:.0f} s")
    crops = real_crops()
    inputs = {}
    for name in arms:
        cfg, broad = configs[name]
        old = previous.get("arms", {}).get(name)
        if (old and _same_model(old, args.work / name)
                and _recalibration(old.get("config", {})) == cfg.train.bn_recalibration):
            results["arms"][name] = old
            continue
        if broad not in inputs:
            inputs[broad] = training_inputs(broad, args.fields, args.seed)
        model_dir, seconds = train_arm(name, cfg, inputs[broad], args.work)
        denoiser = Denoiser.load(model_dir, InferenceConfig(tile=256, overlap=32))
        results["arms"][name] = {
            "config": cfg.to_dict(), "broad_data": broad, "train_seconds": seconds,
            "steps": cfg.train.steps,
            "heldout": {str(k): v for k, v in model_scores(denoiser, fields, args.seed).items()},
            "real": real_scores(denoiser, crops)}
        old = old or {}
        if "moving_averages" in old:
            results["arms"][name]["moving_averages"] = old["moving_averages"]
        elif old and not _recalibration(old.get("config", {})) and args.bn_recalibration:
            results["arms"][name]["moving_averages"] = old["heldout"]
        print(f"{name}: trained in {seconds:.0f} s; " + ", ".join(
            f"σ={s:g} {results['arms'][name]['heldout'][str(s)][0]:.2f} dB" for s in SIGMAS))
    extras = [(*spec.partition("=")[::2], False) for spec in args.extra]
    if args.self_ensemble:
        extras += [(f"{name}, self-ensemble", folder, True) for name, folder, _ in extras]
    for name, folder, ensemble in extras:
        denoiser = Denoiser.load(folder, InferenceConfig(tile=256, overlap=32,
                                                         self_ensemble=ensemble))
        meta = json.loads((Path(folder) / "metadata.json").read_text())
        results["arms"][name] = {
            "config": denoiser.config.to_dict(), "model": str(folder), "steps": meta.get("steps"),
            "train_seconds": meta.get("train_seconds"), "self_ensemble": ensemble,
            "heldout": {str(k): v for k, v in model_scores(denoiser, fields, args.seed).items()},
            "real": real_scores(denoiser, crops)}
        print(f"{name} ({folder}, {meta.get('steps')} steps): " + ", ".join(
            f"σ={s:g} {results['arms'][name]['heldout'][str(s)][0]:.2f} dB" for s in SIGMAS))
    text = table(results)
    (RESULTS / "ablation.md").write_text(text)
    figure(results, RESULTS / "ablation.png")
    print(text)
    print(f"results: {save('ablation', results)}")


if __name__ == "__main__":
    main()

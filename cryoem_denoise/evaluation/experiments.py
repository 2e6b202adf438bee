"""The paper's optimiser experiments (Table 2, Figs. 7 and 8).

Each experiment (1011, 1010, 1009, 1005) trains the same model on the same data with the same
seed and step budget, differing only in the optimisers and learning rates of
:data:`cryoem_denoise.config.EXPERIMENTS`. Runs live in ``OUT/expNNNN`` (a finished run is
reused, an interrupted one resumed) and are compared on their final validation PSNR/SSIM —
the same held-out crops for all, because data split and noise follow from the seed.
Outputs: ``table2.md``, ``table2.json``, ``fig7.png`` (generator and critic losses, logged
every ``log_every`` steps) and ``fig8.png`` (PSNR/SSIM bars).
"""

import copy
import csv
import json
from pathlib import Path

from cryoem_denoise import training
from cryoem_denoise.config import EXPERIMENTS
from cryoem_denoise.errors import ConfigError
from cryoem_denoise.evaluation import figures
from cryoem_denoise.io.atomic import write_text
from cryoem_denoise.model import model_store

#: The paper's Table 2, for comparison: experiment → (PSNR, SSIM).
PAPER_TABLE2 = {"1011": (23.64, 0.64), "1010": (21.99, 0.50), "1009": (21.09, 0.47),
                "1005": (20.99, 0.46)}


def _finished(folder, steps):
    meta = model_store.load_metadata(folder)
    return (folder / model_store.WEIGHTS).is_file() and meta.get("steps") == steps


def read_losses(folder):
    """``{column: [values]}`` of a run's ``losses.csv``."""
    with open(Path(folder) / model_store.LOSSES) as fh:
        rows = list(csv.DictReader(fh))
    return {k: [float(r[k]) for r in rows] for k in rows[0]} if rows else {}


def run_experiments(base_cfg, clean_paths, out_dir, names=tuple(EXPERIMENTS), progress=False):
    """Train (or reuse) every experiment, then tabulate and plot; return the results dict."""
    unknown = [n for n in names if n not in EXPERIMENTS]
    if unknown:
        raise ConfigError(f"unknown experiment {unknown[0]!r} (known: {', '.join(EXPERIMENTS)})")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = {}
    histories = {}
    for name in names:
        cfg = copy.deepcopy(base_cfg)
        cfg.train.apply_experiment(name)
        folder = out_dir / f"exp{name}"
        if not _finished(folder, cfg.train.steps):
            resume = bool(model_store.checkpoint_paths(folder))
            training.fit(cfg, clean_paths, folder, resume=resume, overwrite=not resume,
                         progress=progress)
        meta = model_store.load_metadata(folder)
        last = meta["validation"][-1] if meta.get("validation") else {}
        g, glr, d, dlr = EXPERIMENTS[name]
        rows[name] = {"g_optimizer": g, "g_lr": glr, "d_optimizer": d, "d_lr": dlr,
                      "psnr": last.get("val_psnr"), "ssim": last.get("val_ssim"),
                      "psnr_noisy": last.get("val_psnr_noisy"), "steps": meta.get("steps"),
                      "paper_psnr": PAPER_TABLE2[name][0], "paper_ssim": PAPER_TABLE2[name][1]}
        histories[name] = read_losses(folder)
    results = {"experiments": rows, "config": base_cfg.to_dict()}
    write_text(out_dir / "table2.json", json.dumps(results, indent=2) + "\n", overwrite=True)
    write_text(out_dir / "table2.md", table2_markdown(rows), overwrite=True)

    figures.save_figure(figures.loss_curves(histories), out_dir / "fig7.png", overwrite=True)
    summary = {"final": {n: {"psnr": r["psnr"], "ssim": r["ssim"]} for n, r in rows.items()}}
    figures.save_figure(figures.metric_bars(summary, list(rows), {n: f"exp {n}" for n in rows}),
                        out_dir / "fig8.png", overwrite=True)
    return results


def table2_markdown(rows):
    lines = ["| experiment | G optimiser, lr | D optimiser, lr | PSNR (ours) | SSIM (ours) | "
             "PSNR (paper) | SSIM (paper) |", "|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        psnr = "n/a" if r["psnr"] is None else f"{r['psnr']:.2f}"
        ssim = "n/a" if r["ssim"] is None else f"{r['ssim']:.3f}"
        lines.append(f"| {name} | {r['g_optimizer']}, {r['g_lr']:g} | {r['d_optimizer']}, "
                     f"{r['d_lr']:g} | {psnr} | {ssim} | {r['paper_psnr']:.2f} | "
                     f"{r['paper_ssim']:.2f} |")
    return "\n".join(lines) + "\n"

"""Trained models against BM3D (true sigma) on a fresh draw of the held-out set.

``bench_ablation.py`` scores its arms on one draw (seed 0, 4 fields per structure). Choosing
between finished models on the set they are reported on flatters the winner, so this scores
them on another draw (``--seed``, ``--fields`` per structure: other particles, orientations,
defocus and ice, the same held-out structures and regimes) with its own BM3D row.

    python benchmarks/bench_heldout.py --seed 1 --fields 6 \\
        --model shipped=cryoem_denoise/default_model --model other=WORK/finetune

Writes ``results/heldout_seed{SEED}.json``: ``{name: {sigma: [psnr, ssim]}}`` plus BM3D's
``[psnr, ssim, noisy psnr]``, field means, and the environment.
"""

import argparse
import time

from common import quiet_tf, save

quiet_tf()

from bench_ablation import SIGMAS, bm3d_scores, model_scores  # noqa: E402

from cryoem_denoise.data import heldout  # noqa: E402
from cryoem_denoise.inference.denoiser import Denoiser, InferenceConfig  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--fields", type=int, default=6, help="held-out fields per structure")
    p.add_argument("--model", action="append", required=True, metavar="NAME=MODEL_DIR")
    args = p.parse_args()

    fields, described = heldout.heldout_fields(args.fields, 256, args.seed)
    print(f"held-out draw {args.seed}: {len(fields)} fields of 256² "
          f"({', '.join(described['structures'])})")
    t0 = time.perf_counter()
    scores = {"BM3D (true σ)": bm3d_scores(fields, args.seed)}
    print(f"BM3D in {time.perf_counter() - t0:.0f} s")
    for spec in args.model:
        name, _, folder = spec.partition("=")
        denoiser = Denoiser.load(folder, InferenceConfig(tile=256, overlap=32))
        scores[name] = model_scores(denoiser, fields, args.seed)
    bm3d = scores["BM3D (true σ)"]
    print("| PSNR (Δ BM3D) / SSIM | " + " | ".join(f"σ = {s:g}" for s in SIGMAS) + " |")
    print("|---" * (len(SIGMAS) + 1) + "|")
    for name, rows in scores.items():
        cells = [f"{rows[s][0]:.2f}" + ("" if rows is bm3d else f" ({rows[s][0] - bm3d[s][0]:+.2f})")
                 + f" / {rows[s][1]:.3f}" for s in SIGMAS]
        print(f"| {name} | " + " | ".join(cells) + " |")
    path = save(f"heldout_seed{args.seed}", {
        "args": {"seed": args.seed, "fields": args.fields, "models": args.model},
        "heldout": described,
        "scores": {name: {str(s): list(v) for s, v in rows.items()} for name, rows in scores.items()}})
    print(f"results: {path}")


if __name__ == "__main__":
    main()

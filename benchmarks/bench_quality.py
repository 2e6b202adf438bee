"""Quality of the shipped default model against BM3D, K-SVD, Gaussian blur and the noisy input.

Run: ``.venv/bin/python benchmarks/bench_quality.py [--model DIR]``.

Two test sets, the paper's protocol (test images like the training ones, never the same):

* simulated: 16 fields of EMD-3197 (a density map, one of the seven training structures)
  at the default simulator settings with seed 1000 (the built-in training fields use
  seeds 0-6 and broad settings), centre 256²; for structures and settings never
  trained on, see ``bench_ablation.py`` and ``bench_heldout.py``;
* real: 8 crops of 256² from the bottom rows of the two sample micrographs. The reference
  is the noisy micrograph itself, so a model that also removes the micrograph's own noise
  scores low there: the paper's protocol, reported, not a goal (docs/results/quality.md).

Both are scored at sigma = 10, 25, 40, 80 by `evaluate`; tables, figures and JSON go to
``benchmarks/results/quality/{simulated,real}/``. The goal checked and printed: GAN PSNR at
least 0.5 dB above BM3D and SSIM at least BM3D's at every sigma, and at sigma 40 a PSNR gain
over the noisy input of at least 10.3 dB (the paper's claim).
"""

import argparse
import json
from pathlib import Path

import numpy as np

from common import RESULTS, quiet_tf, save

quiet_tf()

from cryoem_denoise.config import SimulationConfig  # noqa: E402
from cryoem_denoise.data import datasets, simulate  # noqa: E402
from cryoem_denoise.evaluation import evaluate  # noqa: E402
from cryoem_denoise.io import image_io, mrc  # noqa: E402
from cryoem_denoise.model.model_store import default_model_dir  # noqa: E402


def real_test_stack(path):
    crops = []
    for name in datasets.MICROGRAPHS:
        sections, _ = image_io.read_sections(datasets.sample_path(name))
        img = sections[0]
        h, w = img.shape
        for k in range(4):
            x = int((w - 256) * (k + 0.5) / 4)
            crops.append(np.asarray(img[h - 256:h, x:x + 256], np.float32))
    mrc.write_mrc(path, np.stack(crops), kind="stack", overwrite=True)
    return path


def check(summary):
    verdicts = {}
    for sigma, block in summary.items():
        gan, bm3d, noisy = block["gan"], block["bm3d"], block["noisy"]
        verdicts[sigma] = {"psnr_minus_bm3d": gan["psnr"] - bm3d["psnr"],
                           "ssim_minus_bm3d": gan["ssim"] - bm3d["ssim"],
                           "psnr_gain_over_noisy": gan["psnr"] - noisy["psnr"]}
    return verdicts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--images", type=int, default=16)
    args = ap.parse_args()
    model = Path(args.model) if args.model else default_model_dir()
    out = RESULTS / "quality"
    out.mkdir(parents=True, exist_ok=True)
    sim_stack = simulate.cached_fields(datasets.sample_path("EMD-3197.map"),
                                       SimulationConfig(fields=args.images), seed=1000)
    real_stack = real_test_stack(out / "real_test_crops.mrcs")
    record = {"model": str(model), "sets": {}}
    for name, stack, intensity in (("simulated", sim_stack, "minmax"),
                                   ("real", real_stack, "percentile")):
        cfg = evaluate.EvaluateConfig(crop=256, intensity=intensity)
        results = evaluate.evaluate([stack], out / name, cfg, model_dir=model, progress=True)
        verdicts = check(results["summary"])
        record["sets"][name] = {"summary": results["summary"], "verdicts": verdicts,
                                "gaussian_widths": results["gaussian_widths"]}
        print(f"## {name} test set\n")
        print(evaluate.markdown_table(results, cfg))
        for sigma, v in verdicts.items():
            ok = v["psnr_minus_bm3d"] >= 0.5 and v["ssim_minus_bm3d"] >= 0
            print(f"sigma {float(sigma):g}: GAN - BM3D = {v['psnr_minus_bm3d']:+.2f} dB PSNR, "
                  f"{v['ssim_minus_bm3d']:+.3f} SSIM; gain over noisy {v['psnr_gain_over_noisy']:+.2f} dB"
                  f" -> {'meets' if ok else 'misses'} the goal")
    (out / "real_test_crops.mrcs").unlink(missing_ok=True)
    meta = json.loads((model / "metadata.json").read_text())
    record["model_steps"] = meta.get("steps")
    path = save("quality", record)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

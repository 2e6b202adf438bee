"""Time of `evaluate` for 24 images x 4 sigmas x all methods with the full-size GAN.

Run: ``.venv/bin/python benchmarks/bench_evaluate.py`` (goal: under 15 minutes on 2 cores).
The GAN is the default full-size generator (random weights: its speed does not depend on
them); the images are 24 fields simulated from the 6zu5 ribosome, centre-cropped to 256².
Writes ``benchmarks/results/evaluate.json``.
"""

import tempfile
import time
from pathlib import Path

from common import quiet_tf, save

quiet_tf()

from bench_apply import make_model  # noqa: E402

from cryoem_denoise.config import SimulationConfig  # noqa: E402
from cryoem_denoise.data import datasets, simulate  # noqa: E402
from cryoem_denoise.evaluation import evaluate  # noqa: E402


def main():
    work = Path(tempfile.mkdtemp(prefix="bench-evaluate-"))
    make_model(work / "model")
    stack = simulate.cached_fields(datasets.sample_path("mmcif_6zu5.cif"),
                                   SimulationConfig(fields=24), seed=2000)
    cfg = evaluate.EvaluateConfig(crop=256)
    started = time.perf_counter()
    results = evaluate.evaluate([stack], work / "out", cfg, model_dir=work / "model",
                                progress=True)
    seconds = time.perf_counter() - started
    per_method = {m: sum(c["seconds"] for c in results["cells"] if c["method"] == m)
                  for m in cfg.methods}
    print(evaluate.markdown_table(results, cfg))
    print(f"evaluate: 24 images ({len(results['images']['scored'])} scored) x {len(cfg.sigmas)} "
          f"sigmas x {len(cfg.methods)} methods in {seconds / 60:.1f} min "
          f"(goal < 15 min; {seconds / 900:.2f} of the budget); "
          "method seconds: " + ", ".join(f"{m} {s:.0f}" for m, s in per_method.items()))
    path = save("evaluate", {"seconds": seconds, "minutes": seconds / 60,
                             "fraction_of_15_min": seconds / 900, "method_seconds": per_method,
                             "config": evaluate._config_dict(cfg), "images": 24,
                             "note": "full-size generator with random weights (timing only)"})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

"""Helpers shared by the benchmarks: timing, environment record, result files."""

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cryoem_denoise.model_store import environment  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def timed(fn, repeats):
    """Seconds per call of ``fn`` (after the caller's warm-up), median of ``repeats``."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


def save(name, record):
    """Write ``results/NAME.json`` with the environment added; return the path."""
    RESULTS.mkdir(exist_ok=True)
    quiet_tf()  # the environment names the backend: import it without its notices
    record = {"benchmark": name, "environment": environment(),
              "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **record}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return path


def quiet_tf():
    """Import Keras and its backend (KERAS_BACKEND) quietly; the TensorFlow module if that
    is the backend, else ``None``."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from cryoem_denoise.backend import import_quietly

    if import_quietly() == "tensorflow":
        import tensorflow as tf

        return tf
    return None

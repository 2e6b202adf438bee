"""Helpers shared by the benchmarks: timing, environment record, result files."""

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cryoem_denoise.model.model_store import environment  # noqa: E402

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
    """Write ``results/NAME.json`` with the environment and a stamp added; return the path.

    The stamp (``{"commit", "dirty", "machine", "date"}``) is what the docs print under every
    table built from the file (``docs/hooks.py``): the commit the run was made at, whether
    the working tree had uncommitted changes, the machine in words and the UTC date.
    """
    RESULTS.mkdir(exist_ok=True)
    quiet_tf()  # the environment names the backend: import it without its notices
    env = environment()
    now = time.gmtime()
    record = {"benchmark": name, "environment": env,
              "when": time.strftime("%Y-%m-%dT%H:%M:%S+0000", now),
              "stamp": stamp(env, now), **record}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return path


def _git(*args):
    """Output of a git command in the repository, or ``None`` (no git, not a checkout)."""
    try:
        return subprocess.run(["git", *args], cwd=RESULTS.parent.parent, capture_output=True,
                              text=True, check=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def machine(env):
    """The machine in words: CPU model and cores, and the GPUs the backend sees."""
    cpu = env.get("cpu") or platform.processor() or platform.machine() or "unknown CPU"
    parts = [cpu]
    if env.get("cpu_count"):
        parts.append(f"{env['cpu_count']} CPU cores")
    gpus = [d.split(" ", 1)[1] for d in env.get("devices") or []
            if d.startswith("gpu") and " " in d] or list(env.get("gpus") or [])
    parts.append("GPU: " + ", ".join(gpus) if gpus else "no GPU")
    return ", ".join(parts)


def stamp(env=None, now=None):
    """``{"commit", "dirty", "machine", "date"}`` of a result saved now."""
    env = environment() if env is None else env
    status = _git("--no-optional-locks", "status", "--porcelain", "--untracked-files=no")
    return {"commit": _git("rev-parse", "--short", "HEAD"),
            "dirty": bool(status) if status is not None else None,
            "machine": machine(env),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", now or time.gmtime())}


def quiet_tf():
    """Import Keras and its backend (KERAS_BACKEND) quietly; the TensorFlow module if that
    is the backend, else ``None``."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from cryoem_denoise.runtime.backend import import_quietly

    if import_quietly() == "tensorflow":
        import tensorflow as tf

        return tf
    return None

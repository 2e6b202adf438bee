"""A model folder's generator as float16 parts under 16 MiB, and back: how a large run (the
paper's 54 M-parameter WGAN, issue 19) is kept in the repository outside the package.

    .venv/bin/python scripts/weight_parts.py split MODEL_DIR DIR   # DIR/generator-NNN.npz + run files
    .venv/bin/python scripts/weight_parts.py join DIR MODEL_DIR    # then: apply --model MODEL_DIR

``split`` writes the generator's weights in order, trainable ones as float16 (half the
size; the rounding is 2**-11 of each weight) and the rest (BatchNorm statistics) as float32,
into ``generator-000.npz``, ``generator-001.npz``, ... of at most :data:`PART_BYTES` each,
with the folder's ``config.json``, ``metadata.json`` and ``losses.csv``. ``join`` rebuilds the
generator from ``config.json``, sets the weights and writes a model folder that ``--model``
loads. The optimiser state is not kept (a finished run does not need it).
"""

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np

from cryoem_denoise.model import model_store
from cryoem_denoise.model.models import build_generator

#: Largest part file (bytes): under GitHub's 16 MiB soft limit with room for npz headers.
PART_BYTES = 15 * 2 ** 20
#: The run's files copied beside the parts.
RUN_FILES = ("config.json", "metadata.json", "losses.csv")


def split(model_dir, out):
    """Write ``model_dir``'s generator into float16/float32 parts in ``out``; the part paths."""
    model_dir, out = Path(model_dir), Path(out)
    generator, _ = model_store.load_generator(model_dir)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("generator-*.npz"):
        old.unlink()
    trainable = {id(v) for v in generator.trainable_weights}
    parts, current, size = [], {}, 0
    for i, v in enumerate(generator.weights):
        value = np.asarray(v.numpy())
        value = value.astype(np.float16 if id(v) in trainable else np.float32)
        if current and size + value.nbytes > PART_BYTES:
            parts.append(current)
            current, size = {}, 0
        current[f"{i:05d}"] = value
        size += value.nbytes
    parts.append(current)
    paths = []
    for k, arrays in enumerate(parts):
        path = out / f"generator-{k:03d}.npz"
        np.savez(path, **arrays)
        paths.append(path)
    for name in RUN_FILES:
        if (model_dir / name).is_file():
            shutil.copy2(model_dir / name, out / name)
    return paths


def join(parts_dir, model_dir):
    """Rebuild a model folder from ``split``'s parts; returns its path."""
    parts_dir, model_dir = Path(parts_dir), Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    for name in RUN_FILES:
        if (parts_dir / name).is_file():
            shutil.copy2(parts_dir / name, model_dir / name)
    cfg = model_store.load_config(model_dir)
    arrays = {}
    for path in sorted(parts_dir.glob("generator-*.npz")):
        with np.load(path) as z:
            arrays.update({k: z[k] for k in z.files})
    generator = build_generator(cfg.model, seed=cfg.train.seed, initialize=False)
    if len(arrays) != len(generator.weights):
        sys.exit(f"{parts_dir}: {len(arrays)} weights in the parts, the config's generator "
                 f"has {len(generator.weights)}")
    for i, v in enumerate(generator.weights):
        v.assign(arrays[f"{i:05d}"].astype(np.float32))
    model_store.save_generator(model_dir, generator)
    return model_dir


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("action", choices=("split", "join"))
    ap.add_argument("source")
    ap.add_argument("target")
    args = ap.parse_args(argv)
    if args.action == "split":
        paths = split(args.source, args.target)
        print(f"{len(paths)} parts in {args.target}, "
              f"{sum(p.stat().st_size for p in paths) / 2 ** 20:.1f} MiB")
    else:
        print(f"model folder {join(args.source, args.target)}")


if __name__ == "__main__":
    main()

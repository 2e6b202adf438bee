#!/usr/bin/env bash
# Train the shipped model's recipe (scripts/train_default_model.sh) on a GPU machine
# that has JAX but no TensorFlow, no Keras and no package index (docs/install.md, "Backends and GPUs").
#
# Here first:  scripts/device_wheels.sh train  (wheels into .whl, the training structures,
#                                               gzipped, into .device-data; both git-ignored)
# There, in the repository root, with .whl and .device-data carried:
#              MINUTES=4 OUT=... bash scripts/device_train.sh   (the shipped model's run)
# It simulates the built-in training set (600 broad-preset fields of the 7 training
# structures), then trains
#   stage 1  fit --preset PRESET (quality), batch BATCH (64), Adam 2e-4, for MINUTES of wall time
#            (PRESET=paper BATCH=32: the paper's WGAN of issue 19, 54 M parameters, 256² tiles)
#            (fit --max-minutes: a usable model at whatever step it reached, resumable)
#   stage 2  from stage 1's weights at Adam 2e-5 for FINETUNE_MINUTES (default 0: skipped;
#            it did not help the shipped model, see scripts/train_default_model.sh)
# each ending with the BatchNorm recalibration, and packs both model folders (config,
# weights, metadata, losses and the newest checkpoint) into $OUT/run.tgz.part-* (gzip, split
# into files under 16 MiB). Here:  cat DIR/run.tgz.part-* | tar xz -C WORK  gives WORK/model
# (and WORK/finetune), which `fit --out ... --resume` continues on any machine.
#
#   scripts/device_train.sh --split MODEL_DIR DIR   newest checkpoint -> DIR/ckpt-STEP-*.npz
#   scripts/device_train.sh --join DIR MODEL_DIR    and back (training_runs/ holds such parts)
# Rehearse on CPU JAX first: SMALL=1 OUT=/tmp/o bash scripts/device_train.sh
set -euo pipefail
PY=${PYTHON:-.venv/bin/python}
if [ "${1:-}" = "--join" ]; then
    exec "$PY" - "$2" "$3" <<'PYEOF'
import sys
from pathlib import Path

import numpy as np

from cryoem_denoise.model import model_store

parts, model_dir = Path(sys.argv[1]), Path(sys.argv[2])
arrays = {}
for f in sorted(parts.glob("ckpt-*.npz")):
    with np.load(f) as z:
        arrays.update({k.replace("__", "/"): z[k] for k in z.files})
step = int(arrays["step"])
model_store.save_checkpoint(model_dir, step, arrays)
print(f"checkpoint of step {step} in {model_dir}")
PYEOF
fi
if [ "${1:-}" = "--split" ]; then
    exec "$PY" - "$2" "$3" <<'PYEOF'
import sys
from pathlib import Path

import numpy as np

from cryoem_denoise.model import model_store

model_dir, out = Path(sys.argv[1]), Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
step, path = model_store.checkpoint_paths(model_dir)[-1]
arrays = model_store.load_checkpoint(path)
groups = {}
for key, value in arrays.items():
    groups.setdefault(key.split("/")[0] if "/" in key else "generator", {})[
        key.replace("/", "__")] = value
for name, part in groups.items():
    np.savez(out / f"ckpt-{step}-{name}.npz", **part)
print(f"checkpoint of step {step} in {out}: {', '.join(sorted(groups))}")
PYEOF
fi
. scripts/device_env.sh
OUT=${OUT:?set OUT to the folder whose files come back}
WORK=${WORK:-/tmp/device-train}
if [ "${SMALL:-0}" = 1 ]; then   # CPU rehearsal: the same code paths, tiny sizes
    args=(--tiny --sim-preset broad --sim-fields 14 --batch-size 2 --steps 6
          --checkpoint-every 3 --validate-every 3 --log-every 3 --bn-recalibration 16
          --precision "${PRECISION:-float32}")
else
    # --steps: far beyond what MINUTES reach (the run is time-boxed; --resume --steps N
    # later finishes it at N, recalibrating without retraining when N is the step reached)
    args=(--preset "${PRESET:-quality}" --batch-size "${BATCH:-64}" --steps "${STEPS:-200000}"
          --precision "${PRECISION:-mixed_bfloat16}"
          --checkpoint-every 2000 --validate-every 2000 --log-every 500)
fi
# EXTRA: more fit options for every stage, e.g. the detector-noise recipe the next GPU run
# should train from scratch: EXTRA="--noise detector --contrast 0.25:1" (docs/usage/fit.md)
read -r -a extra <<< "${EXTRA:-}"
args+=("${extra[@]}")
rm -rf "$WORK"
fit() { python3 -m cryoem_denoise --backend jax fit --seed 0 -q "${args[@]}" "$@"; }
time fit --out "$WORK/model" --max-minutes "${MINUTES:-4}"
dirs=(model)
if [ "${FINETUNE_MINUTES:-0}" != 0 ]; then
    time fit --out "$WORK/finetune" --init-from "$WORK/model" --g-lr 2e-5 \
        --no-freeze-batch-norm --bn-recalibration 4096 --max-minutes "$FINETUNE_MINUTES"
    dirs+=(finetune)
fi
files=()
for d in "${dirs[@]}"; do
    files+=("$d"/{config.json,generator.weights.h5,metadata.json,losses.csv})
    files+=("$d/checkpoints/$(ls "$WORK/$d/checkpoints" | sort | tail -n 1)")
    python3 -c "
import json; m = json.load(open('$WORK/$d/metadata.json'))
print('$d: steps', m['steps'], 'seconds', round(m['train_seconds']),
      'validation', m['validation'][-1:], 'recalibrated', m.get('batch_norm_recalibration'))"
done
mkdir -p "$OUT"
tar -C "$WORK" -cf - "${files[@]}" | gzip -1 | split -b 15m - "$OUT/run.tgz.part-"
ls -la "$OUT"

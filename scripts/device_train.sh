#!/usr/bin/env bash
# Train the shipped model's recipe (fit --preset quality) on a GPU machine that has JAX but
# no TensorFlow, no Keras and no package index (see the README, "Backends and GPUs").
#
# Here first:  scripts/device_wheels.sh        (wheels into .whl, training structures into
#                                               .device-data; both git-ignored; ~45 MB)
# There, in the repository root, with .whl and .device-data carried:
#              MINUTES=7 bash scripts/device_train.sh
# It simulates the built-in training set (600 broad-preset fields of the 7 training
# structures) into .device-data, trains for MINUTES of wall time (fit --max-minutes: a usable
# model at whatever step it reached, resumable to --steps), and copies into $OUT:
#   model/   config.json, generator.weights.h5, metadata.json, losses.csv
#   ckpt/    the newest checkpoint, split by group (each file under the 16 MiB a file that
#            comes back may have); scripts/device_train.sh --join DIR MODEL_DIR puts it back
#            together here, so `fit --out MODEL_DIR --resume` continues the run on any machine
# Rehearse on CPU JAX first: SMALL=1 OUT=/tmp/o bash scripts/device_train.sh
set -euo pipefail
if [ "${1:-}" = "--join" ]; then   # here: rebuild the checkpoint in MODEL_DIR/checkpoints
    exec "${PYTHON:-.venv/bin/python}" - "$2" "$3" <<'EOF'
import sys
from pathlib import Path

import numpy as np

from cryoem_denoise import model_store

parts, model_dir = Path(sys.argv[1]), Path(sys.argv[2])
arrays = {}
for f in sorted(parts.glob("ckpt-*.npz")):
    with np.load(f) as z:
        arrays.update({k.replace("__", "/"): z[k] for k in z.files})
step = int(arrays["step"])
model_store.save_checkpoint(model_dir, step, arrays)
print(f"checkpoint of step {step} in {model_dir}")
EOF
fi
. scripts/device_env.sh
OUT=${OUT:?set OUT to the folder whose files come back}
WORK=${WORK:-/tmp/device-train}
if [ "${SMALL:-0}" = 1 ]; then   # CPU rehearsal: the same code paths, tiny sizes
    args=(--tiny --sim-preset broad --sim-fields 14 --batch-size 2 --steps 6 --max-minutes 1
          --checkpoint-every 3 --validate-every 3 --log-every 3 --bn-recalibration 16
          --precision "${PRECISION:-float32}")
else
    args=(--preset quality --batch-size "${BATCH:-64}" --steps "${STEPS:-200000}"
          --max-minutes "${MINUTES:-7}" --precision "${PRECISION:-mixed_bfloat16}"
          --checkpoint-every 1000 --validate-every 2000 --log-every 500)
fi
rm -rf "$WORK"
time python3 -m cryoem_denoise --backend jax fit --out "$WORK/model" --seed 0 -q "${args[@]}"
mkdir -p "$OUT/model" "$OUT/ckpt"
cp "$WORK"/model/{config.json,generator.weights.h5,metadata.json,losses.csv} "$OUT/model/"
python3 - "$WORK/model" "$OUT/ckpt" <<'EOF'
import sys
from pathlib import Path

import numpy as np

from cryoem_denoise import model_store

model_dir, out = Path(sys.argv[1]), Path(sys.argv[2])
step, path = model_store.checkpoint_paths(model_dir)[-1]
arrays = model_store.load_checkpoint(path)
groups = {}
for key, value in arrays.items():
    groups.setdefault(key.split("/")[0] if "/" in key else "generator", {})[
        key.replace("/", "__")] = value
for name, part in groups.items():
    np.savez(out / f"ckpt-{step}-{name}.npz", **part)
print(f"checkpoint of step {step}: {', '.join(sorted(groups))}")
EOF
python3 -c "
import json; m = json.load(open('$OUT/model/metadata.json'))
print('steps', m['steps'], 'seconds', round(m['train_seconds']), 'last validation', m['validation'][-1:] )"
ls -la "$OUT"/model "$OUT"/ckpt

#!/usr/bin/env bash
# `apply` with the shipped model on a GPU node with JAX but no TensorFlow (carry .whl from
# scripts/device_wheels.sh). Times the CLI end to end on synthetic 4096² float32 micrographs
# (content does not change the work): one file (start-up, compile and the file), then four
# (per-file throughput once compiled), in float32 and the GPU default (auto), and once with
# --self-ensemble. Writes $OUT/device_apply.txt.
# Rehearse on CPU JAX: SMALL=1 OUT=/tmp/o bash benchmarks/device_apply.sh
set -euo pipefail
. scripts/device_env.sh
OUT=${OUT:?set OUT}
SIDE=4096; [ "${SMALL:-0}" = 1 ] && SIDE=512
M=/tmp/device-apply; rm -rf "$M"; mkdir -p "$M"
python3 - "$M" "$SIDE" <<'PYEOF'
import sys
import numpy as np
import mrcfile
folder, side = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(0)
for name in "abcd":
    with mrcfile.new(f"{folder}/{name}.mrc") as m:
        m.set_data(rng.normal(100, 20, (side, side)).astype(np.float32))
PYEOF
run() {  # label, then apply arguments
    local label=$1; shift
    local t0=$(date +%s.%N)
    python3 -m cryoem_denoise --backend jax apply "$@" -q --overwrite | grep -v "noise sigma" || true
    echo "$label: $(python3 -c "import time; print(f'{time.time() - $t0:.2f}')") s wall"
}
{
    run "1 file, auto" "$M/a.mrc" --out "$M/o1"
    run "4 files, auto" "$M"/{a,b,c,d}.mrc --out "$M/o4"
    run "4 files, float32" "$M"/{a,b,c,d}.mrc --out "$M/o4f" --precision float32
    run "1 file, self-ensemble, auto" "$M/a.mrc" --out "$M/o1e" --self-ensemble
    nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null || echo "no GPU"
} 2>&1 | tee "$OUT/device_apply.txt"

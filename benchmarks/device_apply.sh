#!/usr/bin/env bash
# `apply` with the shipped model on a GPU node with JAX but no TensorFlow (carry .whl from
# scripts/device_wheels.sh). Times the CLI on synthetic 4096² float32 micrographs (content
# does not change the work):
#   1. one file (start-up, compile and the file), then four (per-file rate once compiled),
#      in float32 and the GPU default (auto), and once with --self-ensemble;
#   2. issue 21's GPU figure: 20 super-resolution micrographs (0.667 Å/px, noise falling
#      toward Nyquist, so apply bins, whitens and re-colours them as it does real ones) at
#      --workers 1, 4 and 8; `N file(s) denoised ... in S s` is the run without start-up.
# Writes $OUT/device_apply.txt. Rehearse on CPU JAX: SMALL=1 OUT=/tmp/o bash benchmarks/device_apply.sh
set -euo pipefail
. scripts/device_env.sh
OUT=${OUT:?set OUT}
SIDE=4096; FILES=20; [ "${SMALL:-0}" = 1 ] && SIDE=512 && FILES=4
M=/tmp/device-apply; rm -rf "$M"; mkdir -p "$M/many"
python3 - "$M" "$SIDE" "$FILES" <<'PYEOF'
import sys
import numpy as np
import mrcfile
folder, side, files = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(0)
for name in "abcd":
    with mrcfile.new(f"{folder}/{name}.mrc") as m:
        m.set_data(rng.normal(100, 20, (side, side)).astype(np.float32))
k = np.hypot(np.fft.fftfreq(side)[:, None], np.fft.rfftfreq(side)[None, :])
falloff = np.exp(-(k / 0.3) ** 2)  # coloured: power falls to a tenth toward Nyquist
for i in range(files):
    noise = np.fft.irfft2(np.fft.rfft2(rng.normal(0, 20, (side, side))) * falloff, (side, side))
    with mrcfile.new(f"{folder}/many/m{i:02d}.mrc") as m:
        m.set_data((100 + noise).astype(np.float32))
        m.voxel_size = 0.667
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
    for w in 1 4 8; do
        run "$FILES super-resolution files, --workers $w" "$M/many" --out "$M/ow$w" --workers "$w"
    done
    nproc
    nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null || echo "no GPU"
} 2>&1 | tee "$OUT/device_apply.txt"

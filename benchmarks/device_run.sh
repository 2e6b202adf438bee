#!/usr/bin/env bash
# The GPU backend benchmark (bench_backends.py), for a machine with JAX but no TensorFlow (run there, in the
# repository root, after scripts/device_wheels.sh here; carry .whl and .device-data).
# Writes benchmarks/results/backends_gpu.json (and a copy into $OUT when set).
# Test it on CPU JAX first: SMALL=1 bash benchmarks/device_run.sh
set -euo pipefail
. scripts/device_env.sh
if [ "${SMALL:-0}" = 1 ]; then   # CPU rehearsal: same code paths, small sizes
    args=(--ngf 8 --batch 2 --precisions float32 --steps 2 --apply-ngf 8 --apply-batch 8
          --suffix cpu_rehearsal)
else
    args=(--ngf 64 16 --batch 32 --precisions float32 mixed_bfloat16 mixed_float16 --steps 40
          --apply-ngf 64 --apply-batch 64 --apply-precision mixed_bfloat16 --suffix gpu)
fi
python3 benchmarks/bench_backends.py --backends jax "${args[@]}" --timeout 500
if [ -n "${OUT:-}" ]; then cp benchmarks/results/backends_*.json "$OUT"/; fi

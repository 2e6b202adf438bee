#!/usr/bin/env bash
# Wheels and data for a GPU machine that has JAX (CUDA) but no TensorFlow, no Keras and no
# package index (see docs/install.md, "Backends and GPUs"). Run here, in the repository root; then
# carry .whl and .device-data to that machine and run the device script there:
#   scripts/device_wheels.sh bench   the 4096² micrograph, for benchmarks/device_run.sh
#   scripts/device_wheels.sh train   the 7 training structures, for scripts/device_train.sh
# Python 3.12 x86-64 wheels (that machine's Python); adjust PYVER for another. What travels
# must stay under 64 MiB, so .device-data holds one purpose's data at a time, gzipped.
set -euo pipefail
cd "$(dirname "$0")/.."
PURPOSE=${1:-bench}
PYVER=${PYVER:-3.12}
rm -rf .device-data
mkdir -p .whl .device-data
plat=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" \
    --implementation cp "${plat[@]}" -d .whl \
    keras==3.15.1 optree namex mrcfile==1.5.4 gemmi==0.7.5
case "$PURPOSE" in
    bench) names=(epu2.9_example.mrc) ;;
    train) names=($(.venv/bin/python -c "from cryoem_denoise import datasets
print(' '.join(datasets.TRAINING_STRUCTURES))")) ;;
    *) echo "usage: $0 [bench|train]" >&2; exit 2 ;;
esac
# from the checksummed cache; fetch checks them again there (same names, same checksums)
for src in $(.venv/bin/cryoem-denoise fetch "${names[@]}"); do cp "$src" .device-data/; done
gzip -6 .device-data/*   # to fit what travels (64 MiB with the repository); device_env.sh unpacks
du -sh .whl .device-data

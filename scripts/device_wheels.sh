#!/usr/bin/env bash
# Wheels and data for a GPU machine that has JAX (CUDA) but no TensorFlow, no Keras and no
# package index (see the README, "Backends and GPUs"). Run here, in the repository root; then
# carry .whl and .device-data to that machine and run benchmarks/device_run.sh there.
# Python 3.12 x86-64 wheels (that machine's Python); adjust PYVER for another.
set -euo pipefail
cd "$(dirname "$0")/.."
PYVER=${PYVER:-3.12}
mkdir -p .whl .device-data
plat=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" \
    --implementation cp "${plat[@]}" -d .whl \
    keras==3.15.1 optree namex mrcfile==1.5.4
# the 4096² sample micrograph (training data and apply input; from the checksummed cache)
src=$(.venv/bin/cryoem-denoise fetch epu2.9_example.mrc)
cp $src .device-data/
du -sh .whl .device-data

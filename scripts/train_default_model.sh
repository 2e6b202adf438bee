#!/usr/bin/env bash
# The recipe of the default model shipped in cryoem_denoise/default_model/.
#
# Data: the built-in training set of `fit` (600 fields simulated from the 6zu5 ribosome,
# seed 0, 2 Å/px, 512 px, CTF 300 kV / Cs 2.7 mm / 1.0-2.5 µm underfocus, plus the two real
# sample micrographs); noise sigma drawn from 10:80 per crop; percentile scaling.
# Model: the pix2pix U-Net of the paper at a quarter of the width (ngf = ndf = 16, depth 8,
# 3.4 M generator parameters, 13.6 MB of weights) so it fits in the repository; every other
# setting is the paper's (experiment 1011, c = 0.001, lambda = 0.1).
# Hardware it was trained on and the wall time are in metadata.json beside the weights.
#
# Usage: scripts/train_default_model.sh WORK_DIR [STEPS]
# then:  scripts/train_default_model.sh --install WORK_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
if [ "${1:-}" = "--install" ]; then
    src="$2/model"; dst=cryoem_denoise/default_model
    mkdir -p "$dst"
    cp "$src/config.json" "$src/generator.weights.h5" "$src/metadata.json" "$src/losses.csv" "$dst/"
    echo "installed $src into $dst"
    exit 0
fi
WORK=${1:?usage: $0 WORK_DIR [STEPS]}
STEPS=${2:-20000}
mkdir -p "$WORK"
"$BIN/cryoem-denoise" fit --out "$WORK/model" --ngf 16 --ndf 16 --batch-size 8 \
    --precision mixed_bfloat16 --sigma 10:80 --intensity percentile --seed 0 \
    --steps "$STEPS" --checkpoint-every 1000 --validate-every 1000 --log-every 500

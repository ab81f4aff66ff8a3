#!/usr/bin/env bash
# Quantize a SavedModel from the command line and find the layers that lose accuracy.
#   examples/quantize_savedmodel_cli.sh FP32_SAVEDMODEL_DIR IMAGE_FOLDER OUTPUT_DIR
# Preprocessing here is MobileNet-style ([-1, 1]); adapt --pixel_scale/--pixel_offset or
# --mean/--std to your model (see `tfq8 --helpfull`).
set -euo pipefail
model=$1 images=$2 out=$3
tfq8 quantize --model "$model" --output "$out" --calibration "$images" \
  --method percentile --num_samples 256 --pixel_scale 0.0078431373 --pixel_offset -1
tfq8 inspect "$model" --data "$images" --calibration_table "$out" \
  --pixel_scale 0.0078431373 --pixel_offset -1 --top 15
saved_model_cli show --all --dir "$out" | head -30

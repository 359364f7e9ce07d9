#!/usr/bin/env bash
# Reproduce the shipped CamVid weights: both stages, resumable (re-run the same command
# after a kill and it continues from the last finished epoch).
#   bash training/train_camvid.sh [camvid root] [output dir]
set -euo pipefail
root=${1:-../shared/data/camvid}
out=${2:-runs/camvid}
python -m training.train --dataset camvid --root "$root" --stage encoder --epochs 30 \
  --scale 0.75 1.5 --output-dir "$out/encoder" --resume --no-progress
full=(python -m training.train --dataset camvid --root "$root" --stage full \
  --scale 0.75 1.5 --encoder-checkpoint "$out/encoder/best.pth" \
  --output-dir "$out/full" --resume --no-progress)
# 84 epochs with the poly decay to zero, then a warm restart: resuming with a larger
# --epochs stretches the poly schedule over the new total, so the learning rate jumps
# back to 2.0e-4 at epoch 85 and decays to zero again at epoch 130.
"${full[@]}" --epochs 84
"${full[@]}" --epochs 130

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
# The full stage ran as warm restarts: resuming with a larger --epochs stretches the poly
# schedule over the new total, so the learning rate jumps back up and decays to zero again
# at the new end. The shipped run: 30 epochs, resumed to 84, resumed to 130 (best val
# epoch 107). Its log (docs/training/log_full.csv, lr column) also shows two shorter
# detours between epochs 31 and 46 (totals of about 90, then 80) before the 84.
"${full[@]}" --epochs 30
"${full[@]}" --epochs 84
"${full[@]}" --epochs 130

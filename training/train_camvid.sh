#!/usr/bin/env bash
# Reproduce the shipped CamVid weights: both stages, resumable (re-run the same command
# after a kill and it continues from the last finished epoch).
#   bash training/train_camvid.sh [camvid root] [output dir]
set -euo pipefail
root=${1:-../shared/data/camvid}
out=${2:-runs/camvid}
python -m training.train --dataset camvid --root "$root" --stage encoder --epochs 30 \
  --scale 0.75 1.5 --output-dir "$out/encoder" --resume --no-progress
# The full stage trains the layers after the encoder at 10x the base learning rate: they
# start from scratch, and at the paper's single rate they learned so slowly that a 130-epoch
# run never separated Bicyclist from Pedestrian (docs/training/log_full_paper_rate.csv).
python -m training.train --dataset camvid --root "$root" --stage full --epochs 45 \
  --scale 0.75 1.5 --decoder-lr-scale 10 --encoder-checkpoint "$out/encoder/best.pth" \
  --output-dir "$out/full" --resume --no-progress

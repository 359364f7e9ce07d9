#!/usr/bin/env bash
# Reproduce the shipped CamVid weights: the held-out runs of the recipe (one drive left out
# each), the final run on all 468 train+val frames, then export with the model card.
# Resumable: re-run the same command after a kill and each run continues from its last epoch.
# The shipped runs trained on a GPU (three in parallel on one H100, about 12 minutes); on
# two CPU cores, at the 7.3 images/s benchmarks/train_speed.py measured for this path
# (bf16 autocast, not compiled), the three 200-epoch runs (367, 406 and 468 frames)
# would take about 9.5 hours. The recipe is
# the one with the best mean held-out class IoU in training.ablation's table.
#   bash training/train_camvid.sh [camvid root]
set -euo pipefail
root=${1:-../shared/data/camvid}
recipe=A-base
python -m training.ablation run --root "$root" --epochs 200 --configs "$recipe" --final "$recipe"
python -m training.export --checkpoint "runs/camvid/$recipe" --root "$root" \
  --heldout-runs "runs/ablation/$recipe-0006R0" "runs/ablation/$recipe-0001TP" \
  --output enet_ros/weights/enet_camvid.pt
python -m training.report --run "runs/camvid/$recipe" --root "$root" \
  --heldout-runs "runs/ablation/$recipe-0006R0" "runs/ablation/$recipe-0001TP" \
  --weights enet_ros/weights/enet_camvid.pt --out docs/training --readme
python -m training.ablation table --root "$root" --readme

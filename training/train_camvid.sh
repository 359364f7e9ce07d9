#!/usr/bin/env bash
# Reproduce the shipped CamVid weights: for each stage of the recipe, its held-out runs (one
# drive left out each) and its final run on all 468 train+val frames; then export with the
# model card. Resumable: re-run the same command after a kill and each run continues from
# its last epoch. training.ablation's table reads the recipe from the recipe= line below and
# says whether any row beats it by more than one run's noise (its J-seed-1 row is this
# recipe with another seed); its last columns say where each stage trained and for how
# long. On two CPU cores, at the 7.3 images/s benchmarks/train_speed.py measured for this
# path (bf16 autocast, not compiled), the first stage's three 200-epoch runs (367, 406 and
# 468 frames) would take about 9.5 hours and the second stage's three 40-epoch runs about 2
# hours.
#   bash training/train_camvid.sh [camvid root]
set -euo pipefail
root=${1:-../shared/data/camvid}
first=A-base    # from scratch, 200 epochs
recipe=J-softer-weights # 40 more epochs from A-base's runs: Lovász-softmax term, photometric
                        # augmentation, softer class weights
python -m training.ablation run --root "$root" --epochs 200 --configs "$first" --final "$first"
python -m training.ablation run --root "$root" --epochs 40 --configs "$recipe" --final "$recipe"
python -m training.export --checkpoint "runs/camvid/$recipe" --root "$root" \
  --heldout-runs "runs/ablation/$recipe-0006R0" "runs/ablation/$recipe-0001TP" \
  --output enet_ros/weights/enet_camvid.pt
python -m training.report --run "runs/camvid/$recipe" --root "$root" \
  --heldout-runs "runs/ablation/$recipe-0006R0" "runs/ablation/$recipe-0001TP" \
  --weights enet_ros/weights/enet_camvid.pt --out docs/training --readme
python -m training.ablation table --root "$root" --readme

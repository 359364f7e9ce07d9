"""What fine-tuning from CamVid weights is worth on a small dataset of your own classes.

    python -m benchmarks.finetune --root ../shared/data/camvid [--epochs 12] [--readme]

CamVid merged into four classes (background, road, sidewalk, obstacle:
``benchmarks.camvid_voc``) is written in the VOC layout with colour masks, as a
labelling tool exports it. The "own frames" are 50 or 100 labelled frames spread over
drive 0016E5. Each run is measured on a whole drive that neither its own frames nor the
weights it started from include: the starting weights are the held-out runs of the
shipped recipe (``runs/ablation/J-softer-weights-<drive>``, which never saw <drive>), so
no figure here comes from frames any weights were trained on.

The fine-tuning learning rate is chosen first, on drive 0001TP (50 frames, one run per
rate), and only then are the reported runs made, on drive 0006R0: a rate picked on the
measuring drive would flatter it. Every run trains the same number of epochs with the
default augmentation (scale 0.5-2, flips, colour jitter); from scratch and fine-tuned
take the same wall time for the same frames. Figures: class IoU over the four classes,
fp32, original frames (``training.evaluate.heldout_metrics``). Runs resume from their
checkpoints under ``--work``.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path
import subprocess
import sys

from benchmarks.camvid_voc import camvid_stems, evenly, write_voc
from reporting.tables import header, publish, REPO, table
from training.evaluate import heldout_metrics

SELECT_ON, REPORT_ON = '0001TP', '0006R0'
OWN_DRIVE = '0016E5'
RATES = (1e-3, 5e-4, 1e-4)


def train(work: Path, name: str, split: str, holdout: str, epochs: int, lr: float,
          init: str | None) -> dict:
    out = work / 'runs' / name
    cmd = [sys.executable, '-m', 'training.train', '--dataset', 'voc', '--root',
           str(work / 'voc'), '--splits', split, '--holdout', holdout, '--epochs', str(epochs),
           '--lr', str(lr), '--output-dir', str(out), '--resume']
    if init:
        cmd += ['--init', init]
    print(f'{name}: {" ".join(cmd[1:])}', flush=True)
    subprocess.run(cmd, check=True, cwd=REPO)
    with open(out / 'log.csv') as f:
        rows = list(csv.DictReader(f))
    m = heldout_metrics(out, work / 'voc')
    return {'name': name, 'iou': m['mean_iou'], 'per_class': m['per_class_iou'],
            'seconds': sum(float(r['epoch_seconds']) for r in rows), 'epochs': len(rows),
            'images': m['images'], 'curve': [float(r['heldout_mean_iou']) for r in rows]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--root', type=Path, required=True, help='CamVid folder (SegNet layout)')
    p.add_argument('--epochs', type=int, default=12)
    p.add_argument('--work', type=Path, default=REPO / 'build' / 'finetune')
    p.add_argument('--readme', action='store_true')
    args = p.parse_args()
    own = camvid_stems(args.root, OWN_DRIVE)
    listings = {f'{n}-{drive}': evenly(own, n) + camvid_stems(args.root, drive)
                for n in (50, 100) for drive in (SELECT_ON, REPORT_ON)}
    write_voc(args.root, args.work / 'voc', listings)
    init = {d: str(REPO / 'runs' / 'ablation' / f'J-softer-weights-{d}')
            for d in (SELECT_ON, REPORT_ON)}

    chosen = [train(args.work, f'select-lr{lr:g}', f'50-{SELECT_ON}', SELECT_ON, args.epochs,
                    lr, init[SELECT_ON]) | {'lr': lr} for lr in RATES]
    best = max(chosen, key=lambda r: r['iou'])
    rows = [[f'fine-tuned, lr {r["lr"]:g}', 50, SELECT_ON, r['epochs'], f'{r["seconds"]:.0f}',
             f'{r["iou"]:.1f}', ' / '.join(f'{v:.0f}' for v in r['per_class'].values())]
            for r in chosen]
    for n in (50, 100):
        for start in ('scratch', 'fine-tuned'):
            lr = best['lr'] if start == 'fine-tuned' else 5e-4  # training.train's default
            r = train(args.work, f'{start}-{n}', f'{n}-{REPORT_ON}', REPORT_ON, args.epochs,
                      lr, init[REPORT_ON] if start == 'fine-tuned' else None)
            rows.append([f'{"from scratch" if start == "scratch" else "fine-tuned"}, '
                         f'lr {lr:g}', n, REPORT_ON, r['epochs'], f'{r["seconds"]:.0f}',
                         f'{r["iou"]:.1f}',
                         ' / '.join(f'{v:.0f}' for v in r['per_class'].values())])
    md = header('Fine-tuning on a small dataset of four classes')
    md += (f'\nFour classes (background, road, sidewalk, obstacle) merged from CamVid and '
           f'read in the VOC layout; own frames spread over drive {OWN_DRIVE}; measured on '
           f'every frame of a drive the starting weights never saw ({REPORT_ON}: '
           f'{len(camvid_stems(args.root, REPORT_ON))} frames; the learning rate was chosen '
           f'before, on {SELECT_ON}: the first rows). Fine-tuned runs start from the held-out '
           f'run of the shipped recipe for that drive, classifier re-initialised; from scratch '
           f'is training.train\'s default recipe. Class IoU, fp32, original frames; per class '
           f'in the order background / road / sidewalk / obstacle.\n\n')
    md += table(['start', 'own frames', 'measured on', 'epochs', 'train s', 'class IoU',
                 'per class'], rows)
    publish('finetune', md, args.readme)


if __name__ == '__main__':
    main()

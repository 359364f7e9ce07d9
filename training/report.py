"""Plots and the README results table of a CamVid training run.

    python -m training.report --run runs/camvid --weights enet_ros/weights/enet_camvid.pt \
        --out docs/training [--readme]

Writes loss and val mIoU curves, per-class IoU bars and the normalised confusion matrix
(PNG), copies the CSV logs, and prints (and with --readme puts into the README) the val
figures of the shipped weights beside the paper's Table 5 and davidtvs/PyTorch-ENet.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path
import shutil
import sys

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.report import publish, table  # noqa: E402
from enet_ros.checkpoint import load_checkpoint  # noqa: E402
from enet_ros.metrics import ConfusionMatrix  # noqa: E402

# Published figures (CamVid test set), for comparison only.
PAPER_TABLE5_ACCURACY = {  # ENet, per-class accuracy, Table 5 of arXiv 1606.02147
    'Building': 74.7, 'Tree': 77.8, 'Sky': 95.1, 'Car': 82.4, 'SignSymbol': 51.0,
    'Road': 95.1, 'Pedestrian': 67.2, 'Fence': 51.7, 'Pole': 35.4, 'Pavement': 86.7,
    'Bicyclist': 34.1}
PAPER_CLASS_AVG, PAPER_CLASS_IOU = 68.3, 51.3
DAVIDTVS_TEST_MIOU = 52.1  # davidtvs/PyTorch-ENet README, CamVid test


def read_log(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def plots(run: Path, out: Path, metrics: dict, confusion: np.ndarray, names) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(1, 2, figsize=(11, 3.8))
    offset = 0
    for stage in ('encoder', 'full'):
        log = run / stage / 'log.csv'
        if not log.exists():
            continue
        rows = read_log(log)
        x = [offset + int(r['epoch']) for r in rows]
        ax[0].plot(x, [float(r['train_loss']) for r in rows], label=f'{stage} stage')
        ax[1].plot(x, [float(r['val_mean_iou']) for r in rows], label=f'{stage} stage')
        offset = x[-1] if x else offset
    ax[0].set_title('training loss (class-weighted CE)')
    ax[1].set_title('val mean IoU % (encoder stage: on 1/8 labels)')
    for a in ax:
        a.set_xlabel('epoch')
        a.legend()
    fig.tight_layout()
    fig.savefig(out / 'curves.png', dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 3.8))
    ax.bar(names, [metrics['per_class_iou'][n] for n in names])
    ax.axhline(metrics['mean_iou'], color='k', ls='--', label=f'mean {metrics["mean_iou"]:.1f}')
    ax.set_ylabel('val IoU %')
    ax.legend()
    plt.setp(ax.get_xticklabels(), rotation=45, ha='right')
    fig.tight_layout()
    fig.savefig(out / 'per_class_iou.png', dpi=100)
    plt.close(fig)

    norm = confusion / np.maximum(confusion.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(7, 6))
    im = ax.imshow(norm, cmap='Blues', vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=60, ha='right')
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel('predicted')
    ax.set_ylabel('ground truth')
    for i in range(len(names)):
        for j in range(len(names)):
            if norm[i, j] >= 0.01:
                ax.text(j, i, f'{norm[i, j]:.2f}', ha='center', va='center', fontsize=6,
                        color='white' if norm[i, j] > 0.5 else 'black')
    fig.colorbar(im)
    ax.set_title('val confusion matrix (rows normalised)')
    fig.tight_layout()
    fig.savefig(out / 'confusion_matrix.png', dpi=100)
    plt.close(fig)


def weak_classes(confusion: np.ndarray, names) -> str:
    """A sentence naming the classes with val IoU under 10% and where their pixels go;
    empty when there are none."""
    cm = ConfusionMatrix(len(names))
    cm.mat = np.asarray(confusion, dtype=np.int64)
    iou = cm.compute(list(names))['per_class_iou']  # NaN for classes absent from val
    parts = []
    for i, name in enumerate(names):
        if not iou[name] < 10:  # also skips NaN
            continue
        row = confusion[i] / max(confusion[i].sum(), 1)
        top = np.argsort(row)[::-1][:2]
        parts.append(f'{name} ({int(confusion[:, i].sum())} val pixels predicted as '
                     f'{name}; its own pixels go to '
                     + ' and '.join(f'{names[j]} {100 * row[j]:.0f}%' for j in top) + ')')
    if not parts:
        return ''
    return ('\n**Weak classes** (val IoU under 10%, confusion matrix of the best epoch): '
            + '; '.join(parts) + '. A driving stack must not rely on these classes.\n')


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--run', type=Path, required=True)
    p.add_argument('--weights', type=Path, required=True)
    p.add_argument('--out', type=Path, required=True)
    p.add_argument('--readme', action='store_true')
    args = p.parse_args()
    import torch
    args.out.mkdir(parents=True, exist_ok=True)
    _, meta = load_checkpoint(args.weights)
    val = meta.metrics['val']
    best = torch.load(args.run / 'full' / 'best.pth', map_location='cpu', weights_only=False)
    names = list(meta.class_names)
    plots(args.run, args.out, val, np.asarray(best['confusion']), names)
    cost = {}
    for stage in ('encoder', 'full'):
        log = args.run / stage / 'log.csv'
        if log.exists():
            shutil.copy(log, args.out / f'log_{stage}.csv')
            rows = read_log(log)
            secs = [float(r['epoch_seconds']) for r in rows]
            cost[stage] = (len(rows), sum(secs), float(np.median(secs)))
    rows = [[n, f'{val["per_class_accuracy"][n]:.1f}', f'{val["per_class_iou"][n]:.1f}',
             f'{PAPER_TABLE5_ACCURACY[n]:.1f}'] for n in names]
    rows.append(['**class average**', f'**{val["class_avg_accuracy"]:.1f}**',
                 f'**{val["mean_iou"]:.1f}**',
                 f'{PAPER_CLASS_AVG} (class IoU {PAPER_CLASS_IOU})'])
    rows.append(['global accuracy', f'{val["global_accuracy"]:.1f}', '', ''])
    md = (f'### CamVid results of the shipped weights (`{args.weights.name}`)\n\n'
          f'Validation split (101 frames, 480x360, void excluded), measured by '
          f"`training.export` with the node's own inference core in fp32; the paper and "
          f'davidtvs/PyTorch-ENet report the test split, which is held back here. '
          f'Best epoch {meta.metrics.get("epoch")} of the full stage.\n\n')
    md += table(['class', 'val accuracy', 'val IoU', 'paper Table 5 accuracy (test)'], rows)
    md += (f'\nReference: paper class IoU {PAPER_CLASS_IOU} (test); davidtvs/PyTorch-ENet '
           f'mIoU {DAVIDTVS_TEST_MIOU} (test).\n')
    md += weak_classes(np.asarray(best['confusion']), names)
    agreement = meta.metrics.get('precision_agreement', {})
    if agreement:
        md += ('\nClass ids agreeing with fp32 on val pixels: '
               + ', '.join(f'{k} {v:.2f}%' for k, v in agreement.items()) + '.\n')
    if cost:
        md += '\nTraining cost on this machine (2 cores, CPU, shared with development):\n\n'
        md += table(['stage', 'epochs', 'hours', 'median s/epoch (incl. val)'],
                    [[s, n, f'{t / 3600:.2f}', f'{m:.0f}'] for s, (n, t, m) in cost.items()])
    md += ('\n![curves](docs/training/curves.png)\n![per-class IoU]'
           '(docs/training/per_class_iou.png)\n![confusion](docs/training/confusion_matrix.png)\n')
    publish('training_results', md, args.readme)


if __name__ == '__main__':
    main()

"""Plots and the doc/ results section of the shipped weights, from their model card.

    python -m training.report --run runs/camvid/A-base \
        --heldout-runs runs/ablation/A-base-0006R0 runs/ablation/A-base-0001TP \
        --weights enet_ros/weights/enet_camvid.pt --out doc/training [--doc]

Every accuracy figure here is measured on a CamVid drive the weights' recipe did not train
on (the held-out runs of the model card, ``training.export``), never on frames of a drive
it saw. Published figures (the CamVid test split) are other frames and are not shown.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path
import shutil

import numpy as np

from reporting.tables import header, publish, table
from enet_ros.checkpoint import load_checkpoint
from enet_ros.metrics import ConfusionMatrix
from training.evaluate import heldout_metrics

def read_log(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def plots(runs: list[Path], out: Path, heldout: dict, names) -> None:
    """Loss and held-out IoU curves, held-out per-class IoU, confusion matrix (PNG)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(1, 2, figsize=(11, 3.8))
    for i, run in enumerate(runs):
        rows = read_log(run / 'log.csv')
        x = [int(r['epoch']) for r in rows]
        style = {'label': run.name, 'color': f'C{i}'}  # one colour a run in both panels
        ax[0].plot(x, [float(r['train_loss']) for r in rows], **style)
        if rows and rows[0]['heldout_mean_iou']:
            ax[1].plot(x, [float(r['heldout_mean_iou']) for r in rows], **style)
    ax[0].set_title('training loss (class-weighted CE, + Lovász in a second stage)')
    ax[1].set_title('held-out drive mean IoU % (during training, bf16)')
    for a in ax:
        a.set_xlabel('epoch')
        a.legend()
    fig.tight_layout()
    fig.savefig(out / 'curves.png', dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 3.8))
    width = 0.8 / max(len(heldout), 1)
    for k, (seq, m) in enumerate(heldout.items()):
        ax.bar(np.arange(len(names)) + k * width, [m['per_class_iou'][n] for n in names],
               width, label=f'held-out {seq} (mean {m["mean_iou"]:.1f})')
    ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names, rotation=45, ha='right')
    ax.set_ylabel('IoU %')
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / 'per_class_iou.png', dpi=100)
    plt.close(fig)

    confusion = confusion_of(heldout)
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
    ax.set_title('held-out drives, confusion matrix (rows normalised)')
    fig.tight_layout()
    fig.savefig(out / 'confusion_matrix.png', dpi=100)
    plt.close(fig)


def weak_classes(confusions: dict, names) -> str:
    """A sentence naming the classes with IoU under 10% on any held-out drive (``confusions``:
    drive -> confusion matrix) and where their pixels go there; empty when there are none."""
    confusions = {seq: np.asarray(c, dtype=np.int64) for seq, c in confusions.items()}
    ious = {}
    for seq, confusion in confusions.items():
        cm = ConfusionMatrix(len(names))
        cm.mat = confusion
        ious[seq] = cm.compute(list(names))['per_class_iou']
    parts = []
    for i, name in enumerate(names):
        where = []
        for seq, confusion in confusions.items():
            iou = ious[seq][name]
            if not iou < 10:  # also skips NaN: a class absent from the drive
                continue
            row = confusion[i] / max(confusion[i].sum(), 1)
            top = np.argsort(row)[::-1][:2]
            where.append(f'IoU {iou:.1f} on {seq}: {int(confusion[:, i].sum())} pixels '
                         f'predicted as {name}, its own pixels go to '
                         + ' and '.join(f'{names[j]} {100 * row[j]:.0f}%' for j in top))
        if where:
            parts.append(f'{name} ({"; ".join(where)})')
    if not parts:
        return ''
    return ('\n**Weak classes** (IoU under 10% on a held-out drive): '
            + '; '.join(parts) + '. A driving stack must not rely on these classes.\n')


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--run', type=Path, required=True, help='the run the weights come from')
    p.add_argument('--heldout-runs', type=Path, nargs='+', required=True)
    p.add_argument('--root', default='../shared/data/camvid')
    p.add_argument('--weights', type=Path, required=True)
    p.add_argument('--out', type=Path, required=True)
    p.add_argument('--doc', action='store_true')
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    _, meta = load_checkpoint(args.weights)
    card = meta.card
    if card is None:
        raise SystemExit(f'{args.weights} has no model card: export it with --heldout-runs')
    names = list(meta.class_names)
    heldout = {}
    for run in args.heldout_runs:
        m = heldout_metrics(run, args.root)
        heldout[m['sequence']] = m
    if set(heldout) != set(card.heldout):
        raise SystemExit(f"the weights' model card holds {sorted(card.heldout)}, the runs "
                         f'given are {sorted(heldout)}')
    plots([args.run, *args.heldout_runs], args.out, heldout, names)
    for run in [args.run, *args.heldout_runs]:
        shutil.copy(run / 'log.csv', args.out / f'log_{run.name}.csv')
    seqs = list(heldout)
    rows = [[n] + [f'{heldout[s]["per_class_accuracy"][n]:.1f} / '
                   f'{heldout[s]["per_class_iou"][n]:.1f}' for s in seqs] for n in names]
    rows.append(['**class average**'] + [
        f'**{heldout[s]["class_avg_accuracy"]:.1f} / {heldout[s]["mean_iou"]:.1f}**'
        for s in seqs])
    rows.append(['global accuracy'] + [f'{heldout[s]["global_accuracy"]:.1f}' for s in seqs])
    data, stages = card.data, card.stages
    md = (header(f'CamVid accuracy of the shipped weights (`{args.weights.name}`)') + '\n'
          f'The shipped weights train on all {data["train_frames"]} CamVid train+val frames '
          f'({", ".join(f"{k} {v}" for k, v in data["sequences"].items())}) for '
          f'{" + ".join(str(s["epochs"]) for s in stages)} epochs'
          f'{f" (in {len(stages)} stages)" if len(stages) > 1 else ""} with a recipe fixed '
          f'beforehand; no epoch or run is '
          f'selected. How that recipe does on a drive it has never seen is measured by '
          f'training it again with one whole drive left out and measuring on that drive '
          f"(accuracy / IoU per class, void excluded, fp32, original frames, the node's "
          f"inference core). Published ENet figures are on the CamVid test split, which "
          f'is held back from this project and measured independently: other frames, so '
          f'they are not set beside these.\n\n')
    md += table(['class'] + [f'held-out drive {s} ({heldout[s]["images"]} frames): '
                             f'accuracy / IoU' for s in seqs], rows)
    md += weak_classes({seq: m['confusion_matrix'] for seq, m in heldout.items()}, names)
    agreement = meta.precision_agreement
    if agreement:
        md += ('\nClass ids agreeing with fp32 on CamVid val pixels: '
               + ', '.join(f'{k} {v:.2f}%' for k, v in agreement.items()) + '.\n')
    md += ('\nRecipe: ' + ', then '.join(f'`{s["command"]}` (trained {s["trained"]})'
                                         for s in stages)
           + '. The recipe ablation is in `benchmarks/results/training_ablation.json`.\n')
    # relative to doc/training.md, the page that shows this section
    md += ('\n![curves](training/curves.png)\n![per-class IoU]'
           '(training/per_class_iou.png)\n![confusion](training/confusion_matrix.png)\n')
    publish('training_results', md, args.doc)


def confusion_of(heldout: dict) -> np.ndarray:
    return sum(np.asarray(m['confusion_matrix']) for m in heldout.values())


if __name__ == '__main__':
    main()

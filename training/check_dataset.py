"""Check a dataset before training on it: frames, classes, sizes and every problem.

    python -m training.check_dataset --dataset voc --root DIR

Prints, per split, how many frames it has and how many of them have a problem, then for
the frames that can be read: each class's share of the labelled pixels and the number of
frames it appears in, the ignored share, the image sizes, the groups (drives) that
``--holdout`` can leave out, and every problem, one line each naming the file. Exit code
0 only when ``training.train`` would accept the dataset (it refuses with the same lines).
"""

from __future__ import annotations

import argparse
from collections import Counter
import sys

import numpy as np

from training import datasets


def get_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--dataset', choices=datasets.NAMES, default='voc')
    p.add_argument('--root', required=True, help='dataset folder')
    p.add_argument('--splits', nargs='+',
                   help='splits to check (default: voc, every ImageSets/Segmentation/*.txt; '
                        'otherwise train val)')
    p.add_argument('--group-by', choices=datasets.GROUPINGS, default='prefix',
                   help="voc: what makes a frame's sequence, as training.train's")
    return p.parse_args(argv)


def default_splits(args) -> list[str]:
    if args.splits:
        return args.splits
    if args.dataset != 'voc':
        return ['train', 'val']
    from pathlib import Path
    found = sorted(p.stem for p in (Path(args.root) / 'ImageSets' / 'Segmentation').glob('*.txt'))
    return found or ['train']


def load(args, splits) -> tuple[datasets.SegmentationSet | None, list[str], list[str]]:
    """Frames, problems and each frame's split, whichever dataset it is."""
    if args.dataset == 'voc':
        try:
            return datasets.voc_frames(args.root, splits, group_by=args.group_by)
        except datasets.DatasetError as exc:  # the labelmap: nothing else can be read
            return None, exc.problems, []
    try:
        frames, split_of = None, []
        for split in splits:
            part = datasets.build(args.dataset, args.root, [split])
            split_of += [split] * len(part)
            frames = part if frames is None else merge(frames, part)
        return frames, [], split_of
    except (FileNotFoundError, ValueError) as exc:
        return None, [str(exc)], []


def merge(a: datasets.SegmentationSet, b: datasets.SegmentationSet) -> datasets.SegmentationSet:
    return datasets.SegmentationSet(a.info, a.paths + b.paths, a.label_paths + b.label_paths,
                                    a.sequences + b.sequences, a.images + b.images,
                                    a.targets + b.targets)


def report(frames, problems: list[str], split_of: list[str], splits: list[str]) -> str:
    lines = []
    counts = Counter(split_of)
    for split in splits:
        bad = sum(f'/{split}.txt' in p for p in problems)
        lines.append(f'split {split}: {counts.get(split, 0)} frames'
                     + (f' ({bad} problems in its listing)' if bad else ''))
    if frames is not None:
        info = frames.info
        n = len(info.class_names)
        pixels = np.zeros(n + 1, np.int64)
        present = np.zeros(n, np.int64)
        for t in frames.targets:
            c = np.bincount(np.minimum(t.ravel(), n), minlength=n + 1)
            pixels += c
            present += c[:n] > 0
        labelled = max(int(pixels[:n].sum()), 1)
        lines.append(f'{n} classes (pixel share of labelled pixels, frames it appears in):')
        width = max(len(c) for c in info.class_names)
        for i, name in enumerate(info.class_names):
            lines.append(f'  {i:3d} {name:<{width}} {100 * pixels[i] / labelled:6.2f}% '
                         f'{present[i]:5d} frames')
        lines.append(f'ignored: {100 * pixels[n] / max(int(pixels.sum()), 1):.2f}% of all '
                     f'pixels')
        absent = [c for c, k in zip(info.class_names, present) if k == 0]
        if absent:
            lines.append(f'classes in no frame: {", ".join(absent)} (training will not learn '
                         f'them)')
        sizes = Counter(f'{img.shape[1]}x{img.shape[0]}' for img in frames.images)
        lines.append('image sizes (WxH): ' + ', '.join(f'{s} ({k})' for s, k in
                                                    sizes.most_common()))
        lines.append(f'input size to train at (HxW, default): {info.input_size[0]}x'
                     f'{info.input_size[1]}')
        groups = Counter(frames.sequences)
        lines.append('groups (--holdout): ' + ', '.join(f'{g} ({k})' for g, k in
                                                         sorted(groups.items())))
    lines.append(f'{len(problems)} problems' + (':' if problems else ''))
    lines += [f'  {p}' for p in problems]
    return '\n'.join(lines)


def main(args: argparse.Namespace) -> int:
    splits = default_splits(args)
    frames, problems, split_of = load(args, splits)
    print(report(frames, problems, split_of, splits))
    ok = frames is not None and not problems
    print('ready to train' if ok else 'training would refuse this dataset')
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main(get_args()))

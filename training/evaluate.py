"""Evaluate weights with the ENet paper's Table 5 metrics (void/ignore excluded).

    python -m training.evaluate --root ../shared/data/camvid --splits train val \
        --sequence 0006R0 [--weights FILE] [--adapt] [--json FILE]

Predictions come from the node's own inference core (``enet_ros.segmenter.Segmenter``) at
the dataset's full resolution, so these figures are what the node delivers. For
Cityscapes it adds iIoU (instance-weighted, from instanceIds) and category IoU/iIoU as
the official cityscapesscripts define them. ``--adapt`` runs the node's
``adapt_statistics``: each drive a camera, its frames in order at their camera time.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
import re
import tempfile
from unittest import mock

import numpy as np
from tqdm import tqdm

from enet_ros import adaptation, model, torch_private
from enet_ros.metrics import Evaluation, format_metrics
from enet_ros.segmenter import Segmenter
from enet_ros.threads import use_threads_for_this_process
from training import run_checkpoint, datasets
from enet_ros.options import add_adapt_arg, add_model_args

CAMVID_FPS = 30.0  # CamVid's video rate: labelled frames are 30 (0016E5 val: 2) apart


def get_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--dataset', choices=datasets.NAMES, default='camvid')
    p.add_argument('--root', required=True)
    p.add_argument('--splits', nargs='+', default=['val'],
                   help='dataset splits to take frames from (e.g. train val, or test)')
    p.add_argument('--sequence', help='only the frames of this sequence (drive), e.g. 0006R0')
    p.add_argument('--group-by', choices=datasets.GROUPINGS, default='prefix',
                   help="voc: what makes a frame's sequence (as training.train's)")
    add_model_args(p, precision='fp32', backend='eager')  # the reference figures
    add_adapt_arg(p)
    p.add_argument('--limit', type=int, help='first N images of each split only')
    p.add_argument('--json', help='write the metrics here')
    return p.parse_args(argv)


def camera_times(paths, fps: float = CAMVID_FPS) -> list[float]:
    """Seconds of camera time of each frame, from the frame number that ends its file name
    (``0001TP_006690.png``, ``0006R0_f00930.png``: frame 6690, 930 of a 30 Hz video)."""
    times = []
    for p in paths:
        digits = re.search(r'(\d+)$', Path(p).stem)
        if digits is None:
            raise ValueError(f'{p}: no frame number at the end of the file name, so no camera '
                             f'time for --adapt')
        times.append(int(digits.group(1)) / fps)
    return times


def evaluate_segmenter(segmenter: Segmenter, images, targets, progress: bool = True,
                       streams=None, stamps=None) -> dict:
    """Metrics of ``segmenter`` over RGB images and (H, W) targets (255 = ignore), fed in
    order; ``streams`` and ``stamps`` (one each per frame) as ``Segmenter.infer``."""
    evaluation = Evaluation(segmenter)
    streams = streams or [''] * len(images)
    stamps = stamps or [None] * len(images)
    for img, tgt, stream, stamp in tqdm(zip(images, targets, streams, stamps),
                                        total=len(images), disable=not progress,
                                        desc='evaluate'):
        evaluation.score(tgt, evaluation.add(img, 'rgb', stream, stamp).labels)
    return evaluation.metrics()


def frames_metrics(segmenter: Segmenter, frames, progress: bool = True) -> dict:
    """``evaluate_segmenter`` over a dataset's frames; for a segmenter that adapts
    (``adapt``), each drive is a camera stream whose frames are stamped with their camera
    time (``camera_times``)."""
    if segmenter.adapter is None:
        return evaluate_segmenter(segmenter, frames.images, frames.targets, progress)
    return evaluate_segmenter(segmenter, frames.images, frames.targets, progress,
                              frames.sequences, camera_times(frames.paths))


def cityscapes_instance_metrics(segmenter: Segmenter, dataset) -> dict:
    """iIoU and category IoU/iIoU with cityscapesscripts' evaluation code."""
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as ev
    from cityscapesscripts.helpers.labels import trainId2label
    import cv2
    args = ev.args
    args.evalInstLevelScore = True
    args.evalPixelAccuracy = False
    args.quiet = True
    args.JSONOutput = False
    lut = np.zeros(256, dtype=np.uint8)
    for t, label in trainId2label.items():
        if 0 <= t < 255:
            lut[t] = label.id
    preds, gts = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for img, label_path in zip(dataset.images, dataset.label_paths):  # decoded once
            pred, _ = segmenter.segment(img, 'rgb')
            out = Path(tmp) / label_path.name
            cv2.imwrite(str(out), lut[pred])
            preds.append(str(out))
            gts.append(str(label_path))
        args.exportFile = str(Path(tmp) / 'result.json')
        # cityscapesscripts 2.3 calls np.in1d, removed in NumPy 2.4: lent for this call only
        with mock.patch.object(np, 'in1d', np.isin, create=True):
            result = ev.evaluateImgLists(preds, gts, args)
    return {'iiou': 100 * float(result['averageScoreInstClasses']),
            'category_iou': 100 * float(result['averageScoreCategories']),
            'category_iiou': 100 * float(result['averageScoreInstCategories'])}


def heldout_metrics(run_dir: str | Path, root: str | Path, adapt: bool = False) -> dict:
    """fp32 metrics of a held-out training run on its held-out drive, from ``root``'s frames;
    with ``adapt``, the statistics adapting to the drive (``frames_metrics``).

    Cached as ``heldout_png_fp32.json`` (``heldout_png_fp32_adapt.json``) in the run folder,
    for the checkpoint it measured and the code that defines the figure beyond it: the
    network (``enet_ros/model.py`` and ``torch_private.py``) and, adapted,
    ``enet_ros/adaptation.py``.
    """
    cache = Path(run_dir) / f'heldout_png_fp32{"_adapt" if adapt else ""}.json'
    ckpt = run_checkpoint.load(run_dir)
    code = hashlib.sha256()
    for module in (model, torch_private, adaptation) if adapt else (model, torch_private):
        code.update(Path(module.__file__).read_bytes())
    key = {'checkpoint_saved': ckpt['saved'], 'code': code.hexdigest()[:16]}
    if cache.exists():
        cached = json.loads(cache.read_text())
        if all(cached.get(k) == v for k, v in key.items()):
            return cached
    data = ckpt['data']
    frames = datasets.of_run(data, root)
    frames = datasets.select(frames, datasets.split_by_sequence(
        frames, data['heldout_sequence'])[1])
    with tempfile.TemporaryDirectory() as tmp:
        weights = run_checkpoint.write_weights(ckpt, Path(tmp) / 'w.pt', {})
        segmenter = Segmenter(weights, 'cpu', 'fp32', 'eager', adapt=adapt)
        metrics = frames_metrics(segmenter, frames, progress=False)
    metrics.update({'sequence': data['heldout_sequence'], 'images': len(frames),
                    'epochs': ckpt['epoch'] + 1, **key})
    cache.write_text(json.dumps(metrics, indent=1))
    return metrics


def main(args: argparse.Namespace) -> dict:
    use_threads_for_this_process('training.evaluate')
    segmenter = Segmenter(args.weights, args.device, args.precision, args.backend,
                          adapt=args.adapt)
    data = datasets.build(args.dataset, args.root, args.splits, args.limit, args.group_by)
    if args.sequence:
        data = datasets.select(data, datasets.split_by_sequence(data, args.sequence)[1])
    metrics = frames_metrics(segmenter, data)
    if args.dataset == 'cityscapes':
        metrics.update(cityscapes_instance_metrics(segmenter, data))
    metrics.update({'dataset': args.dataset, 'splits': args.splits,
                    'sequence': args.sequence, 'images': len(data),
                    'weights': str(args.weights), 'precision': segmenter.precision,
                    'adapt': args.adapt})
    print(format_metrics(metrics))
    if 'iiou' in metrics:
        print(f'iIoU {metrics["iiou"]:.1f}  category IoU {metrics["category_iou"]:.1f}  '
              f'category iIoU {metrics["category_iiou"]:.1f}')
    if args.json:
        Path(args.json).write_text(json.dumps(metrics, indent=2))
    return metrics


if __name__ == '__main__':
    main(get_args())

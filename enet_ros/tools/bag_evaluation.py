"""Evaluate the segmenter offline on a rosbag2 recording (sqlite3 or MCAP).

The work of the ``evaluate_bag`` command (``tools.evaluate_bag``), which runs this module
as a session of its own.

    evaluate_bag BAG [--topic T] [--weights FILE] [--device D] [--precision P]
                 [--label-topic T | --labels DIR] [--ignore-id N ...]
                 [--json FILE] [--report DIR] [--output-bag DIR]

Per frame it times preprocess, inference and postprocess; with ground truth (a mono8
label topic matched by header stamp, or a folder of label PNGs matched by file name
``<stamp_ns>.png`` or else by index) it computes the same metrics as
``training.evaluate`` (shared ``enet_ros.metrics``). ``--report DIR`` writes
report.json, report.md and plots; ``--output-bag DIR`` writes the input images with
segmentation/mask, color_mask and overlay at the same stamps, for rviz2 or Foxglove.
Ctrl-C stops early and still writes a valid (partial) report. Exit status: 0 complete,
1 unusable input, 3 partial (bag unreadable past some point, or interrupted, or the
command that started it gone).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import sys
import time

import cv2
import numpy as np
import torch
from tqdm import tqdm

from enet_ros.bag_io import BagError, BagReader, BagWriter
from enet_ros.checkpoint import CheckpointError, NO_CLASS
from enet_ros import topics
from enet_ros.image_codec import ImageError, message_to_array, message_to_mask
from enet_ros.camera_stats import summarize_ms
from enet_ros.metrics import Evaluation, format_metrics
from enet_ros.segmenter import Segmenter, SegmenterError
from enet_ros.adaptation import camera_time
from enet_ros.threads import ThreadChooser, use_threads_for_this_process
from enet_ros.options import add_adapt_arg, add_model_args
from enet_ros.tools.session import stop_once_the_command_is_gone

IGNORE = NO_CLASS
STAGES = ('preprocess', 'inference', 'postprocess', 'total')


class LabelError(ValueError):
    """Ground truth that cannot be compared with the model's classes."""


def get_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog='evaluate_bag', description=__doc__.split('\n')[0])
    p.add_argument('bag', type=Path, help='rosbag2 directory (or a file inside it)')
    p.add_argument('--topic', help='image topic (default: the only image topic)')
    add_model_args(p)  # what the node runs: the fastest backend verified at start
    add_adapt_arg(p)  # the drive's frames with their header stamps
    gt = p.add_mutually_exclusive_group()
    gt.add_argument('--label-topic', help='mono8 class-id images, matched by header stamp')
    gt.add_argument('--labels', type=Path, help='folder of label PNGs (by <stamp_ns>.png or '
                                                'by sorted index)')
    p.add_argument('--ignore-id', type=int, nargs='*', default=[],
                   help='label ids to ignore besides 255 (CamVid void: 11)')
    p.add_argument('--json', type=Path, help='write metrics and timing here')
    p.add_argument('--report', type=Path, help='folder for report.json, report.md and plots')
    p.add_argument('--output-bag', type=Path, help='write inputs and outputs to this new bag')
    p.add_argument('--output-storage', choices=['sqlite3', 'mcap'], default='mcap')
    p.add_argument('--limit', type=int, help='first N frames only')
    p.add_argument('--no-progress', action='store_true')
    return p.parse_args(argv)


def check_label(label: np.ndarray, num_classes: int, ignore: list[int], where: str) -> np.ndarray:
    """Map ``ignore`` ids to 255; LabelError naming ``where`` for ids the model lacks."""
    label = label.copy()
    for i in ignore:
        label[label == i] = IGNORE
    bad = np.unique(label[(label >= num_classes) & (label != IGNORE)])
    if bad.size:
        raise LabelError(f"{where} has label ids {bad.tolist()} outside the model's "
                         f'{num_classes} classes (0..{num_classes - 1}, 255 = ignore); '
                         f'pass --ignore-id for void ids')
    return label


class LabelSource:
    """Ground truth for a frame, by stamp (topic or <stamp>.png) or by index (folder)."""

    def __init__(self, args, reader: BagReader, num_classes: int):
        self.num_classes, self.ignore = num_classes, args.ignore_id
        self.by_stamp: dict[int, tuple[np.ndarray, str]] = {}
        self.files: list[Path] = []
        if args.label_topic:
            if args.label_topic not in reader.topics():
                raise BagError(f'label topic {args.label_topic} is not in the bag; its '
                               f'topics: {reader.describe_topics()}')
            for f in reader.messages(args.label_topic):  # mono8, or PNG (mask/compressed)
                where = f'{args.label_topic} message stamped {f.stamp}'
                try:
                    self.by_stamp[f.stamp] = (message_to_mask(f.msg), where)
                except ImageError as exc:
                    raise LabelError(f'{where}: {exc}') from None
        elif args.labels:
            self.files = sorted(args.labels.glob('*.png'))
            if not self.files:
                raise BagError(f'no label PNGs in {args.labels}')
            named = {p.stem: p for p in self.files}
            if all(s.isdigit() for s in named):
                for stem, p in named.items():
                    self.by_stamp[int(stem)] = (None, str(p))
        self.enabled = bool(args.label_topic or args.labels)

    def get(self, stamp: int, index: int) -> np.ndarray | None:
        if not self.enabled:
            return None
        if self.by_stamp:
            if stamp not in self.by_stamp:
                return None
            arr, where = self.by_stamp[stamp]
        elif index < len(self.files):
            arr, where = None, str(self.files[index])
        else:
            return None
        if arr is None:
            arr = cv2.imread(where, cv2.IMREAD_UNCHANGED)
            if arr is None or arr.ndim != 2:
                raise LabelError(f'label {where} is unreadable or not single-channel')
        return check_label(arr, self.num_classes, self.ignore, where)


def plot_report(out: Path, timings: dict, metrics: dict | None, samples: list,
                meta) -> list[str]:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    files = []
    fig, ax = plt.subplots(1, 2, figsize=(11, 3.5))
    for stage in ('inference', 'total'):
        ax[0].plot(np.asarray(timings[stage]) * 1000, label=stage)
    ax[0].set_xlabel('frame')
    ax[0].set_ylabel('ms')
    ax[0].set_title('latency per frame')
    ax[0].legend()
    ax[1].hist(np.asarray(timings['total']) * 1000, bins=30)
    ax[1].set_xlabel('total ms per frame')
    ax[1].set_title('latency histogram')
    fig.tight_layout()
    fig.savefig(out / 'latency.png', dpi=100)
    plt.close(fig)
    files.append('latency.png')
    if metrics:
        names = list(metrics['per_class_iou'])
        vals = [metrics['per_class_iou'][n] for n in names]
        fig, ax = plt.subplots(figsize=(8, 3.5))
        ax.bar(names, np.nan_to_num(vals))
        ax.set_ylabel('IoU %')
        ax.set_title(f'per-class IoU (mean {metrics["mean_iou"]:.1f})')
        plt.setp(ax.get_xticklabels(), rotation=45, ha='right')
        fig.tight_layout()
        fig.savefig(out / 'per_class_iou.png', dpi=100)
        plt.close(fig)
        files.append('per_class_iou.png')
    from matplotlib.patches import Patch
    key = [Patch(color=np.asarray(c) / 255, label=n) for n, c in zip(meta.class_names,
                                                                       meta.palette)]
    for k, (image, pred_color, gt_color) in enumerate(samples):
        panels = [('input', image), ('prediction', pred_color)]
        if gt_color is not None:
            panels.append(('ground truth', gt_color))
        fig, ax = plt.subplots(1, len(panels), figsize=(4.2 * len(panels) + 2, 3.6))
        for a, (title, img) in zip(np.atleast_1d(ax), panels):
            a.imshow(img)
            a.set_title(title)
            a.axis('off')
        fig.legend(handles=key, loc='center right', fontsize=8, frameon=False)
        fig.tight_layout(rect=(0, 0, 1 - 1.9 / fig.get_figwidth(), 1))
        fig.savefig(out / f'frame_{k}.png', dpi=100)
        plt.close(fig)
        files.append(f'frame_{k}.png')
    return files


def write_report(args, result: dict, timings: dict, metrics, samples, meta) -> None:
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    if not args.report:
        return
    args.report.mkdir(parents=True, exist_ok=True)
    (args.report / 'report.json').write_text(json.dumps(result, indent=2))
    plots = plot_report(args.report, timings, metrics, samples, meta) if timings['total'] \
        else []
    t = result['timing']
    lines = [f'# Segmentation of {result["bag"]} ({result["topic"]})', '',
             f'- model: {result["model"]}',
             f'- frames: {result["frames_evaluated"]} evaluated, {result["frames_skipped"]} '
             f'skipped, complete: {result["complete"]}'
             + (f' ({result["stopped_because"]})' if not result['complete'] else ''),
             f'- throughput: {result["throughput_fps"]:.1f} frames/s', '',
             '| stage | mean ms | median | p95 | max |', '|---|---|---|---|---|']
    for stage in STAGES:
        s = t[stage]
        if s['mean_ms'] is not None:
            lines.append(f'| {stage} | {s["mean_ms"]:.1f} | {s["median_ms"]:.1f} | '
                         f'{s["p95_ms"]:.1f} | {s["max_ms"]:.1f} |')
    if metrics:
        lines += ['', '```', format_metrics(metrics), '```']
    lines += [''] + [f'![{p}]({p})' for p in plots]
    (args.report / 'report.md').write_text('\n'.join(lines) + '\n')


def evaluate_bag(args, chooser: ThreadChooser) -> int:
    seg = Segmenter(args.weights, args.device, args.precision, args.backend, adapt=args.adapt)
    reader = BagReader(args.bag)
    labels = LabelSource(args, reader, seg.meta.num_classes)  # a wrong label topic first
    topic = reader.image_topic(args.topic, exclude=(args.label_topic,))
    writer = BagWriter(args.output_bag, args.output_storage) if args.output_bag else None
    evaluation = Evaluation(seg)
    timings = {s: [] for s in STAGES}
    skipped: dict[str, int] = {}
    samples, evaluated, stopped = [], 0, None
    total = reader.count(topic)
    if args.limit is not None:
        total = args.limit if total is None else min(args.limit, total)
    start = time.perf_counter()
    bar = tqdm(total=total, desc='evaluate_bag', disable=args.no_progress, unit='frame')
    try:
        for index, frame in enumerate(reader.messages(topic)):
            if args.limit is not None and index >= args.limit:
                break
            bar.update(1)
            try:
                image, order = message_to_array(frame.msg)
            except ImageError as exc:
                key = str(exc).split(';')[0]
                skipped[key] = skipped.get(key, 0) + 1
                continue
            ids, _, _, t = evaluation.add(image, order, topic, camera_time(frame.stamp))
            torch.set_num_threads(chooser.record(t.inference))
            for stage in STAGES[:3]:
                timings[stage].append(getattr(t, stage))
            timings['total'].append(t.total)
            evaluated += 1
            gt = labels.get(frame.stamp, index)
            if gt is not None:
                if gt.shape != ids.shape:
                    raise LabelError(f'label for frame {index} is {gt.shape[1]}x{gt.shape[0]}, '
                                     f'the image {ids.shape[1]}x{ids.shape[0]}')
                evaluation.score(gt, ids)
            if len(samples) < 3 and index % 10 == 0:
                rgb = image if order == 'rgb' else image[:, :, ::-1]
                samples.append((np.ascontiguousarray(rgb), seg.colorize(ids),
                                None if gt is None else seg.colorize(gt)))
            if writer is not None:
                _write_outputs(writer, seg, frame, topic, image, order, ids)
        if reader.error:
            stopped = f'bag unreadable after {index if evaluated else 0} frames: {reader.error}'
    except KeyboardInterrupt:
        stopped = 'interrupted'
    finally:
        bar.close()
        if writer is not None:
            writer.close()
        reader.close()
    elapsed = time.perf_counter() - start
    metrics = evaluation.metrics() if evaluation.scored else None
    result = {
        'bag': str(args.bag), 'topic': topic, 'model': seg.describe(),
        'frames_evaluated': evaluated, 'frames_skipped': sum(skipped.values()),
        'skipped_reasons': skipped, 'complete': stopped is None,
        'stopped_because': stopped,
        'throughput_fps': evaluated / elapsed if elapsed > 0 else 0.0,
        'threads': f'{chooser.threads} ({chooser.reason})',
        'timing': {s: summarize_ms(timings[s]) for s in STAGES},
    }
    if metrics:
        result.update(metrics)
    write_report(args, result, timings, metrics, samples, seg.meta)
    _print(result, metrics, skipped)
    return 0 if stopped is None else 3


def _write_outputs(writer, seg, frame, topic, image, order, ids) -> None:
    ts, fid = frame.timestamp, frame.msg.header.frame_id
    base = topic.rsplit('/', 1)[0] if topic.count('/') > 1 else ''
    writer.write(topic, frame.msg, ts)  # the input as recorded
    writer.write(f'{base}/{topics.MASK}', writer.image(ids, 'mono8', frame.stamp, fid), ts)
    writer.write(f'{base}/{topics.MASK_COMPRESSED}', writer.mask_png(ids, frame.stamp, fid), ts)
    for name, (array, encoding) in seg.render(image, order, ids, 'rgb', 0.5).items():
        writer.write(f'{base}/{topics.IMAGE_OUTPUTS[name]}',
                     writer.image(array, encoding, frame.stamp, fid), ts)


def _print(result, metrics, skipped) -> None:
    print(f'{result["frames_evaluated"]} frames of {result["topic"]} with {result["model"]}')
    for reason, n in skipped.items():
        print(f'skipped {n} frames: {reason}')
    for stage in STAGES:
        s = result['timing'][stage]
        if s['mean_ms'] is not None:
            print(f'{stage:<12} mean {s["mean_ms"]:7.1f} ms  median {s["median_ms"]:7.1f}  '
                  f'p95 {s["p95_ms"]:7.1f}  max {s["max_ms"]:7.1f}')
    print(f'throughput {result["throughput_fps"]:.1f} frames/s; threads {result["threads"]}')
    if metrics:
        print(format_metrics(metrics))
    if not result['complete']:
        print(f'evaluate_bag: partial result: {result["stopped_because"]}', file=sys.stderr)


def main(argv=None) -> int:
    args = get_args(argv)
    stop_once_the_command_is_gone('evaluate_bag')
    chooser = use_threads_for_this_process('evaluate_bag')
    try:
        return evaluate_bag(args, chooser)
    except (BagError, LabelError, CheckpointError, SegmenterError) as exc:
        print(f'evaluate_bag: {exc}', file=sys.stderr)
        return 1


if __name__ == '__main__':
    sys.exit(main())

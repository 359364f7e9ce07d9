"""Segmentation metrics as the ENet paper's Table 5 defines them, from a confusion matrix.

Labels outside [0, num_classes) (255, void) are dropped, so they count nowhere.
"""

from __future__ import annotations

import numpy as np


class ConfusionMatrix:
    """Accumulates a (num_classes, num_classes) matrix, rows = ground truth, cols = prediction."""

    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.mat = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, target: np.ndarray, pred: np.ndarray) -> None:
        """Add (H, W) integer ground truth and prediction of the same shape."""
        target = np.asarray(target).reshape(-1).astype(np.int64)
        pred = np.asarray(pred).reshape(-1).astype(np.int64)
        if target.shape != pred.shape:
            raise ValueError(f'target has {target.size} pixels, prediction {pred.size}')
        n = self.num_classes
        keep = (target >= 0) & (target < n)
        self.mat += np.bincount(n * target[keep] + pred[keep], minlength=n * n).reshape(n, n)

    def compute(self, class_names: list[str]) -> dict:
        """Return the metrics in percent: the keys training.evaluate writes to JSON.

        Classes absent from the ground truth get NaN accuracy and are left out of the
        class averages (as the paper's metrics are averaged over present classes).
        """
        mat = self.mat.astype(np.float64)
        tp = np.diag(mat)
        gt = mat.sum(1)
        union = gt + mat.sum(0) - tp
        with np.errstate(invalid='ignore', divide='ignore'):
            acc = np.where(gt > 0, tp / gt, np.nan) * 100
            iou = np.where(gt > 0, tp / union, np.nan) * 100
            global_acc = tp.sum() / mat.sum() * 100 if mat.sum() else float('nan')
        return {
            'mean_iou': float(np.nanmean(iou)) if np.any(gt > 0) else float('nan'),
            'class_avg_accuracy': float(np.nanmean(acc)) if np.any(gt > 0) else float('nan'),
            'global_accuracy': float(global_acc),
            'per_class_iou': {c: float(v) for c, v in zip(class_names, iou)},
            'per_class_accuracy': {c: float(v) for c, v in zip(class_names, acc)},
            'pixels': int(mat.sum()),
        }


def format_metrics(metrics: dict) -> str:
    """A table a person reads: per class accuracy and IoU, then the averages."""
    lines = [f'{"class":<16}{"accuracy":>10}{"IoU":>10}']
    for name, iou in metrics['per_class_iou'].items():
        lines.append(f'{name:<16}{metrics["per_class_accuracy"][name]:>10.1f}{iou:>10.1f}')
    lines.append(f'{"class average":<16}{metrics["class_avg_accuracy"]:>10.1f}'
                 f'{metrics["mean_iou"]:>10.1f}')
    lines.append(f'global accuracy {metrics["global_accuracy"]:.1f}')
    return '\n'.join(lines)


class Evaluation:
    """One evaluation loop for every tool: ``add`` segments a frame with the node's core
    (and records the run-time watch's figures), ``score`` counts it against its labels,
    ``metrics`` gives the Table 5 metrics with the confusion matrix, the mean confidence
    and the class mix (what ``watch.Watch`` compares a camera with)."""

    def __init__(self, segmenter):
        from enet_ros.watch import Watch
        self.segmenter = segmenter
        self.cm = ConfusionMatrix(segmenter.meta.num_classes)
        self.watch = Watch(segmenter.meta.num_classes)

    def add(self, image: np.ndarray, order: str = 'rgb', stream: str = '',
            stamp: float | None = None):
        result = self.segmenter.segment_with_confidence(image, order, False, stream, stamp)
        self.watch.add(result.labels, result.mean_confidence)
        return result

    def score(self, target: np.ndarray, labels: np.ndarray) -> None:
        self.cm.update(target, labels)

    @property
    def scored(self) -> bool:
        return bool(self.cm.mat.sum())

    def metrics(self) -> dict:
        metrics = self.cm.compute(list(self.segmenter.class_names))
        metrics['confusion_matrix'] = self.cm.mat.tolist()
        metrics['mean_confidence'], counts = self.watch.take()
        metrics['class_mix'] = (counts / max(counts.sum(), 1)).tolist()
        return metrics

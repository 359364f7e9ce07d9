"""What the model sees at run time, against what it showed on held-out drives.

A camera that is blinded, covered, dirty or at night still yields a mask, and the mask
looks like one. Two cheap signals tell such frames apart from the held-out drives the
weights were measured on (``training.evaluate`` records both in the model card):

- the mean softmax maximum (confidence) of the frame's pixels, and
- the class mix, the share of pixels given each class, compared as a total variation
  distance (0 = the same mix, 1 = no class in common).

On CamVid, with weights that never saw the drive, held-out frames gave a mean confidence
of 0.82-0.91 and a class-mix distance of 0.1-0.5 from the held-out mix; a black frame gave
0.74 and 0.64, a noise frame 0.84 and 0.76, a white frame 0.99 and 0.82.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # a type only: the watch needs no torch
    from enet_ros.checkpoint import ModelCard

STRIDE = 4  # every 4th pixel of every 4th row: the mix of a frame at 1/16 of the cost


def class_mix(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts of each class id among the subsampled pixels of (H, W) ``labels``."""
    return np.bincount(labels[::STRIDE, ::STRIDE].ravel(), minlength=256)[:num_classes]


def mix_distance(counts: np.ndarray, reference) -> float:
    """Total variation distance between class counts and a reference mix (shares)."""
    total = counts.sum()
    if total == 0:
        return float('nan')
    return 0.5 * float(np.abs(counts / total - np.asarray(reference)).sum())


class Watch:
    """Confidence and class mix of one camera's frames over a diagnostics window."""

    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.confidence: list[float] = []
        self.counts = np.zeros(num_classes, np.int64)

    def add(self, labels: np.ndarray, mean_confidence: float) -> None:
        self.confidence.append(mean_confidence)
        self.counts += class_mix(labels, self.num_classes)

    def take(self) -> tuple[float, np.ndarray]:
        """(mean confidence, class counts) of the window; starts the next one."""
        out = (float(np.mean(self.confidence)) if self.confidence else float('nan'),
               self.counts)
        self.confidence, self.counts = [], np.zeros(self.num_classes, np.int64)
        return out


WATCH_OFF = ('run-time watch off: the model card records no held-out figures to compare '
             'frames with (export with training.export --heldout-runs to turn it on)')


def judge(confidence: float, counts: np.ndarray, reference: dict | None, names,
          min_ratio: float, max_distance: float) -> tuple[str, list[tuple[str, str]]]:
    """(why the masks are in doubt, or '', and the diagnostics values) for one window's
    mean confidence and class counts against the held-out ``reference`` (``reference_of``)."""
    total = counts.sum()
    top = np.argsort(counts)[::-1][:3]
    mix = ', '.join(f'{names[i]} {100 * counts[i] / total:.0f}%' for i in top
                    if counts[i]) if total else ''
    values = [('mean_confidence', f'{confidence:.3f}'), ('class_mix', mix)]
    if reference is None:
        values.append(('heldout_reference', 'none in the model card: watch off'))
        return '', values
    held = reference['mean_confidence']
    distance = mix_distance(counts, reference['class_mix'])
    values += [('heldout_mean_confidence', f'{held:.3f}'),
               ('class_mix_distance', f'{distance:.2f}'),
               ('heldout_reference', f'model card, held-out drives '
                                     f'{", ".join(reference["drives"])}')]
    doubts = []
    if confidence < min_ratio * held:
        doubts.append(f'mean confidence {confidence:.2f} below {min_ratio:g} x held-out '
                      f'{held:.2f}')
    if distance > max_distance:
        doubts.append(f'class mix {distance:.2f} from held-out (limit {max_distance:g}): {mix}')
    if doubts:
        doubts.append('camera blinded, covered, dirty or dark? masks in doubt')
    return '; '.join(doubts), values


def reference_of(card: ModelCard | None) -> dict | None:
    """Held-out mean confidence and class mix from a model card, averaged over its drives
    (weighted by frames); None when the card has none (older weights, or none exported)."""
    runs = [m for m in (card.heldout if card else {}).values()
            if 'mean_confidence' in m and 'class_mix' in m]
    if not runs:
        return None
    weights = np.array([m['images'] for m in runs], np.float64)
    weights /= weights.sum()
    return {'mean_confidence': float(sum(w * m['mean_confidence'] for w, m in zip(weights, runs))),
            'class_mix': sum(w * np.asarray(m['class_mix']) for w, m in zip(weights, runs)),
            'drives': sorted(card.heldout)}

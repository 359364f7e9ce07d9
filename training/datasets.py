"""CamVid (SegNet layout) and Cityscapes (official layout) as in-memory frame sets.

Every dataset yields HxWx3 uint8 RGB images and HxW uint8 targets with 255 = ignore.
Decoded images are cached in memory: CamVid train is 190 MB decoded, and decoding PNGs
each epoch would cost as much CPU as a good part of a training step on two cores.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from enet_ros.checkpoint import NO_CLASS

IGNORE = NO_CLASS  # pixels the loss and the metrics leave out

CAMVID_CLASSES = ('Sky', 'Building', 'Pole', 'Road', 'Pavement', 'Tree', 'SignSymbol',
                  'Fence', 'Car', 'Pedestrian', 'Bicyclist')
# The SegNet tutorial's CamVid colours, in class order.
CAMVID_PALETTE = ((128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128),
                  (60, 40, 222), (128, 128, 0), (192, 128, 128), (64, 64, 128),
                  (64, 0, 128), (64, 64, 0), (0, 128, 192))
CAMVID_VOID = 11


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    class_names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    input_size: tuple[int, int]  # (height, width) to train and run at


def read_rgb(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(f'cannot read image {path}')
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_label(path: Path) -> np.ndarray:
    lab = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if lab is None:
        raise FileNotFoundError(f'cannot read label {path}')
    if lab.ndim != 2:
        raise ValueError(f'label {path} has shape {lab.shape}; expected one channel of ids')
    return lab


class SegmentationSet:
    """Frames decoded once: RGB images, target ids and the sequence (drive) of each frame."""

    def __init__(self, info: DatasetInfo, pairs: list[tuple[Path, Path]], map_target,
                 sequences: list[str]):
        if not pairs:
            raise FileNotFoundError(f'no {info.name} images found')
        self.info = info
        self.paths = [p for p, _ in pairs]
        self.label_paths = [t for _, t in pairs]
        self.sequences = sequences
        self.images = [read_rgb(p) for p, _ in pairs]
        self.targets = [map_target(read_label(t)) for _, t in pairs]

    def __len__(self) -> int:
        return len(self.images)


def split_by_sequence(frames: SegmentationSet,
                      holdout: str | None) -> tuple[list[int], list[int]]:
    """Indices of the frames to train on and of those of sequence ``holdout``."""
    if holdout is None:
        return list(range(len(frames))), []
    held = [i for i, s in enumerate(frames.sequences) if s == holdout]
    if not held:
        raise ValueError(f'no frames of sequence {holdout!r}; sequences here: '
                         f'{", ".join(sorted(set(frames.sequences)))}')
    return [i for i, s in enumerate(frames.sequences) if s != holdout], held


def sequence_counts(frames: SegmentationSet, indices: list[int]) -> dict[str, int]:
    """How many of ``indices`` come from each sequence."""
    counts: dict[str, int] = {}
    for i in indices:
        counts[frames.sequences[i]] = counts.get(frames.sequences[i], 0) + 1
    return dict(sorted(counts.items()))


def select(frames: SegmentationSet, indices: list[int]) -> SegmentationSet:
    """A view of ``frames`` holding only ``indices`` (nothing decoded again)."""
    out = object.__new__(SegmentationSet)
    out.info = frames.info
    for name in ('paths', 'label_paths', 'sequences', 'images', 'targets'):
        setattr(out, name, [getattr(frames, name)[i] for i in indices])
    return out


def camvid_info() -> DatasetInfo:
    return DatasetInfo('camvid', CAMVID_CLASSES, CAMVID_PALETTE, (360, 480))


def camvid(root: str | Path, splits: list[str], limit: int | None = None) -> SegmentationSet:
    """CamVid in the SegNet layout: ``<split>/`` images, ``<split>annot/`` ids, 11 = void.

    A frame's sequence is its file name's prefix (``0016E5_07959.png`` -> ``0016E5``).
    Images may be PNG or JPEG; labels are PNG of the same stem.
    """
    root = Path(root)
    pairs = []
    for split in splits:
        images = sorted(p for p in (root / split).glob('*.*')
                        if p.suffix in ('.png', '.jpg'))[:limit]
        if not images:
            raise FileNotFoundError(f'no CamVid images in {root / split} (expected the SegNet '
                                    f'layout: {split}/ and {split}annot/)')
        pairs += [(p, root / f'{split}annot' / f'{p.stem}.png') for p in images]

    def map_target(lab: np.ndarray) -> np.ndarray:
        out = lab.astype(np.uint8).copy()
        out[out >= len(CAMVID_CLASSES)] = IGNORE
        return out

    return SegmentationSet(camvid_info(), pairs, map_target,
                           [p.name.split('_')[0] for p, _ in pairs])


def cityscapes_info() -> DatasetInfo:
    from cityscapesscripts.helpers.labels import trainId2label
    train_ids = sorted(t for t in trainId2label if 0 <= t < IGNORE)
    return DatasetInfo('cityscapes', tuple(trainId2label[t].name for t in train_ids),
                       tuple(tuple(trainId2label[t].color) for t in train_ids), (512, 1024))


def cityscapes_lut() -> np.ndarray:
    """labelId -> trainId lookup table from cityscapesscripts' label table (255 = ignore)."""
    from cityscapesscripts.helpers.labels import labels
    lut = np.full(256, IGNORE, dtype=np.uint8)
    for label in labels:
        if 0 <= label.id < 256 and 0 <= label.trainId < IGNORE:
            lut[label.id] = label.trainId
    return lut


def cityscapes(root: str | Path, splits: list[str],
               limit: int | None = None) -> SegmentationSet:
    """Cityscapes: leftImg8bit/<split>/<city>/*_leftImg8bit.png and gtFine labelIds.

    A frame's sequence is its city.
    """
    root = Path(root)
    pairs = []
    for split in splits:
        images = sorted((root / 'leftImg8bit' / split).glob('*/*_leftImg8bit.png'))[:limit]
        if not images:
            raise FileNotFoundError(
                f'no Cityscapes images under {root}/leftImg8bit/{split}/<city>/')
        for p in images:
            stem = p.name[:-len('_leftImg8bit.png')]
            pairs.append((p, root / 'gtFine' / split / p.parent.name /
                          f'{stem}_gtFine_labelIds.png'))
    lut = cityscapes_lut()
    return SegmentationSet(cityscapes_info(), pairs, lambda lab: lut[lab],
                           [p.parent.name for p, _ in pairs])


def info(name: str) -> DatasetInfo:
    return camvid_info() if name == 'camvid' else cityscapes_info()


def build(name: str, root: str | Path, splits: list[str],
          limit: int | None = None) -> SegmentationSet:
    """The frames of ``splits`` (e.g. ['train', 'val']) of dataset ``name``."""
    if name == 'camvid':
        return camvid(root, splits, limit)
    if name == 'cityscapes':
        return cityscapes(root, splits, limit)
    raise ValueError(f'unknown dataset {name!r}; expected camvid or cityscapes')

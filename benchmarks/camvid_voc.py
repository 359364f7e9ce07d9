"""CamVid frames merged into four classes and written as a labelling tool exports them.

The layout is Pascal VOC's, as CVAT's "Segmentation mask 1.1" writes it: labelmap.txt,
JPEGImages/, colour-coded SegmentationClass/ PNGs and ImageSets/Segmentation/<split>.txt.
The fine-tuning table (``benchmarks.finetune``) and the tests of the own-dataset path use
it, in temporary folders: no dataset image is committed.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from training.datasets import CAMVID_CLASSES, VOC_BOUNDARY

# An AV stack's classes: CamVid's merged (void -> the VOC boundary colour, ignored)
FOUR_CLASSES = {
    'background': ((0, 0, 0), ('Sky', 'Building', 'Tree')),
    'road': ((128, 64, 128), ('Road',)),
    'sidewalk': ((244, 35, 232), ('Pavement',)),
    'obstacle': ((255, 160, 0), ('Pole', 'SignSymbol', 'Fence', 'Car', 'Pedestrian',
                                 'Bicyclist')),
}


def colour_lut(classes: dict = FOUR_CLASSES) -> np.ndarray:
    """CamVid id (0..255) -> RGB colour of its merged class (void: the boundary colour)."""
    lut = np.tile(np.array(VOC_BOUNDARY, np.uint8), (256, 1))
    for colour, members in classes.values():
        for name in members:
            lut[CAMVID_CLASSES.index(name)] = colour
    return lut


def write_labelmap(out: Path, classes: dict = FOUR_CLASSES) -> None:
    lines = ['# label:color_rgb:parts:actions']
    lines += [f'{name}:{",".join(map(str, colour))}::' for name, (colour, _) in classes.items()]
    (out / 'labelmap.txt').write_text('\n'.join(lines) + '\n')


def write_voc(camvid_root: Path, out: Path, listings: dict[str, list[str]],
              classes: dict = FOUR_CLASSES) -> Path:
    """Write the frames named in ``listings`` (split -> CamVid stems such as
    ``0016E5_07959``, found in any CamVid split) under ``out`` in the VOC layout."""
    camvid_root, out = Path(camvid_root), Path(out)
    for sub in ('JPEGImages', 'SegmentationClass', 'ImageSets/Segmentation'):
        (out / sub).mkdir(parents=True, exist_ok=True)
    write_labelmap(out, classes)
    lut = colour_lut(classes)
    where = {p.stem: p for split in ('train', 'val', 'test')
             for p in (camvid_root / split).glob('*.png')}
    for split, stems in listings.items():
        for stem in stems:
            image = where[stem]
            label = camvid_root / f'{image.parent.name}annot' / image.name
            cv2.imwrite(str(out / 'JPEGImages' / f'{stem}.jpg'), cv2.imread(str(image)),
                        [cv2.IMWRITE_JPEG_QUALITY, 95])
            rgb = lut[cv2.imread(str(label), cv2.IMREAD_UNCHANGED)]
            cv2.imwrite(str(out / 'SegmentationClass' / f'{stem}.png'),
                        cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        (out / 'ImageSets' / 'Segmentation' / f'{split}.txt').write_text(
            '\n'.join(stems) + '\n')
    return out


def camvid_stems(camvid_root: Path, drive: str) -> list[str]:
    """Every labelled frame of ``drive`` in CamVid train and val, in time order."""
    return sorted(p.stem for split in ('train', 'val')
                  for p in (Path(camvid_root) / split).glob(f'{drive}_*.png'))


def evenly(stems: list[str], n: int) -> list[str]:
    """``n`` frames spread over the drive, as a labeller picking frames would."""
    idx = np.linspace(0, len(stems) - 1, n).round().astype(int)
    return [stems[i] for i in idx]

"""CamVid (SegNet layout), Cityscapes (official layout) and a labelling tool's export
(Pascal VOC layout, as CVAT's "Segmentation mask 1.1" writes it) as in-memory frame sets.

Every dataset yields HxWx3 uint8 RGB images and HxW uint8 targets with 255 = ignore.
Decoded images are cached in memory: CamVid train is 190 MB decoded, and decoding PNGs
each epoch would cost as much CPU as a good part of a training step on two cores.
"""

from __future__ import annotations

from collections import Counter
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


class DatasetError(ValueError):
    """A dataset that training cannot use: every problem found, one line each."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__('\n'.join(problems))


class SegmentationSet:
    """Frames decoded once: RGB images, target ids and the sequence (drive) of each frame."""

    def __init__(self, info: DatasetInfo, paths: list[Path], label_paths: list[Path],
                 sequences: list[str], images: list[np.ndarray], targets: list[np.ndarray]):
        if not paths:
            raise FileNotFoundError(f'no {info.name} images found')
        self.info, self.paths, self.label_paths = info, paths, label_paths
        self.sequences, self.images, self.targets = sequences, images, targets

    @classmethod
    def decode(cls, info: DatasetInfo, pairs: list[tuple[Path, Path]], map_target,
               sequences: list[str]) -> SegmentationSet:
        return cls(info, [p for p, _ in pairs], [t for _, t in pairs], sequences,
                   [read_rgb(p) for p, _ in pairs], [map_target(read_label(t)) for _, t in pairs])

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

    return SegmentationSet.decode(camvid_info(), pairs, map_target,
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
    return SegmentationSet.decode(cityscapes_info(), pairs, lambda lab: lut[lab],
                                  [p.parent.name for p, _ in pairs])


VOC_BOUNDARY = (224, 224, 192)  # Pascal VOC's object outlines: ignored
IGNORED_NAMES = ('ignore', 'void', 'unlabeled')  # labelmap classes left out of the classes
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png')
GROUPINGS = ('prefix', 'folder')


@dataclass(frozen=True)
class Labelmap:
    """A CVAT/Datumaro ``labelmap.txt``: every entry in file order (index = id in
    index-coded masks), and which of them are classes (the rest are ignored)."""

    names: tuple[str, ...]
    colours: tuple[tuple[int, int, int], ...]

    @property
    def kept(self) -> list[int]:
        return [i for i, n in enumerate(self.names) if n.lower() not in IGNORED_NAMES]

    def id_lut(self) -> np.ndarray:
        """Entry index -> class id (ignored entries, 255 and unknown values -> IGNORE)."""
        lut = np.full(256, IGNORE, dtype=np.uint8)
        for cls, entry in enumerate(self.kept):
            lut[entry] = cls
        return lut

    def colour_ids(self) -> dict[int, int]:
        """Packed 0xRRGGBB colour -> class id (IGNORE for ignored entries and the boundary)."""
        lut = self.id_lut()
        out = {pack(VOC_BOUNDARY): IGNORE}
        out.update({pack(c): int(lut[i]) for i, c in enumerate(self.colours)})
        return out


def pack(rgb) -> int:
    r, g, b = (int(v) for v in rgb)
    return r << 16 | g << 8 | b


def read_labelmap(path: Path) -> Labelmap:
    """``# label:color_rgb:parts:actions`` then one ``name:r,g,b::`` line a class."""
    if not path.is_file():
        raise DatasetError([f'{path}: missing; expected a CVAT labelmap.txt, one '
                            f'"name:r,g,b::" line a class'])
    names, colours, problems = [], [], []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.startswith('#'):
            continue
        fields = line.split(':')
        try:
            rgb = tuple(int(v) for v in fields[1].split(','))
            if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb) or not fields[0]:
                raise ValueError
        except (IndexError, ValueError):
            problems.append(f'{path} line {n}: {line!r} is not "name:r,g,b::" '
                            f'(three values 0..255)')
            continue
        names.append(fields[0].strip())
        colours.append(rgb)
    if not problems and not names:
        problems.append(f'{path}: names no class; expected one "name:r,g,b::" line a class')
    if problems:
        raise DatasetError(problems)
    shared = {c for c in colours if colours.count(c) > 1}
    if shared:
        raise DatasetError([f'{path}: classes ' + '; '.join(
            ' and '.join(n for n, c in zip(names, colours) if c == colour) + f' share {colour}'
            for colour in sorted(shared)) + ': a colour mask cannot tell them apart'])
    lm = Labelmap(tuple(names), tuple(colours))
    if not lm.kept:
        raise DatasetError([f'{path}: every class is ignored ({", ".join(names)})'])
    return lm


def read_voc_mask(path: Path, lm: Labelmap) -> np.ndarray:
    """Class ids of a VOC/CVAT mask: colour-coded (RGB), index-coded (grey: values are
    labelmap indices; 255 = ignore) or a palette PNG (read by its colours when they are all
    labelmap colours, else by its indices, as Pascal VOC ships them). Raises ValueError."""
    from PIL import Image
    with Image.open(path) as im:
        mode = im.mode
        if mode == 'P':
            index = np.asarray(im)
            palette = np.asarray(im.getpalette('RGB') or [], np.uint8)
        elif mode in ('L', 'I;16', 'I'):
            index = np.asarray(im)
        elif mode in ('RGB', 'RGBA'):
            rgb = np.asarray(im.convert('RGB'))
        else:
            raise ValueError(f'image mode {mode}; expected an RGB colour mask, a grey '
                             f'index mask or a palette PNG')
    if mode == 'P':
        used = np.unique(index)
        table = palette.reshape(-1, 3) if palette.size else np.zeros((0, 3), np.uint8)
        known = lm.colour_ids()
        if table.shape[0] > used.max() and all(pack(table[u]) in known for u in used):
            rgb = table[index]
            mode = 'RGB'
    if mode != 'RGB' and mode != 'RGBA':
        index = np.asarray(index, np.int64)
        bad = np.unique(index[(index >= len(lm.names)) & (index != IGNORE)])
        if bad.size:
            raise ValueError(f'values {", ".join(map(str, bad[:5]))} are not labelmap indices '
                             f'(0..{len(lm.names) - 1}, or 255 for ignore)')
        return lm.id_lut()[index]
    codes = (rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8) \
        | rgb[..., 2]
    uniq, inverse = np.unique(codes, return_inverse=True)
    known = lm.colour_ids()
    unknown = [u for u in uniq.tolist() if u not in known]
    if unknown:
        shown = ', '.join(f'({u >> 16}, {u >> 8 & 255}, {u & 255})' for u in unknown[:3])
        raise ValueError(f'colour{"s" if len(unknown) > 1 else ""} {shown}'
                         f'{f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""} '
                         f'not in labelmap.txt; expected only its colours (or the VOC '
                         f'boundary {VOC_BOUNDARY})')
    ids = np.array([known[u] for u in uniq.tolist()], np.uint8)
    return ids[inverse.reshape(codes.shape)]


def voc_group(stem: str, group_by: str) -> str:
    """The group (drive, session) of a frame: its stem's prefix before the first ``_``
    (CamVid's ``0016E5_07959``), or its sub-folder (``drive3/000120``)."""
    if group_by == 'folder':
        return str(Path(stem).parent)
    return stem.split('_')[0]


def voc_frames(root: str | Path, splits: list[str], limit: int | None = None,
               group_by: str = 'prefix') -> tuple[SegmentationSet | None, list[str], list[str]]:
    """The frames of a VOC-layout export, every problem found (one line each, naming the
    file), and each frame's split. Frames with a problem are left out of the set."""
    root = Path(root)
    lm = read_labelmap(root / 'labelmap.txt')
    problems: list[str] = []
    paths, label_paths, groups, images, targets, split_of = [], [], [], [], [], []
    for split in splits:
        listing = root / 'ImageSets' / 'Segmentation' / f'{split}.txt'
        if not listing.is_file():
            problems.append(f'{listing}: missing; expected split {split!r} as one image '
                            f'stem a line')
            continue
        stems = [s.strip() for s in listing.read_text().splitlines() if s.strip()][:limit]
        if not stems:
            problems.append(f'{listing}: empty; expected one image stem a line')
        for stem in stems:
            image = next((root / 'JPEGImages' / f'{stem}{x}' for x in IMAGE_SUFFIXES +
                          tuple(x.upper() for x in IMAGE_SUFFIXES)
                          if (root / 'JPEGImages' / f'{stem}{x}').is_file()), None)
            mask = root / 'SegmentationClass' / f'{stem}.png'
            if image is None:
                problems.append(f'{root / "JPEGImages" / stem}.jpg: missing image of '
                                f'{listing.name}; expected JPEGImages/{stem} .jpg or .png')
                continue
            if not mask.is_file():
                problems.append(f'{mask}: missing mask of {image.name}; expected a PNG '
                                f'of the same stem in SegmentationClass/')
                continue
            img = cv2.imread(str(image), cv2.IMREAD_COLOR)
            if img is None:
                problems.append(f'{image}: cannot be decoded; expected a JPEG or PNG image')
                continue
            try:
                target = read_voc_mask(mask, lm)
            except (ValueError, OSError) as exc:
                problems.append(f'{mask}: {exc}')
                continue
            if target.shape != img.shape[:2]:
                problems.append(f'{mask}: mask is {target.shape[1]}x{target.shape[0]}, '
                                f'its image {img.shape[1]}x{img.shape[0]} (WxH); expected '
                                f'the same size')
                continue
            paths.append(image)
            label_paths.append(mask)
            groups.append(voc_group(stem, group_by))
            images.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
            targets.append(target)
            split_of.append(split)
    if not images:
        return None, problems or [f'{root}: no frames in splits {", ".join(splits)}'], []
    sizes = Counter(t.shape for t in targets)
    (h, w), _ = sizes.most_common(1)[0]
    f = 8  # ENet's downsampling factor: the default input size is the common frame size
    info = DatasetInfo('voc', tuple(lm.names[i] for i in lm.kept),
                       tuple(lm.colours[i] for i in lm.kept),
                       (max(f, h // f * f), max(f, w // f * f)))
    return SegmentationSet(info, paths, label_paths, groups, images, targets), problems, \
        split_of


def voc(root: str | Path, splits: list[str], limit: int | None = None,
        group_by: str = 'prefix') -> SegmentationSet:
    """A labelling tool's export in the Pascal VOC layout (CVAT "Segmentation mask 1.1")::

        labelmap.txt                      # label:color_rgb:parts:actions, name:r,g,b::
        ImageSets/Segmentation/<split>.txt  # one image stem a line
        JPEGImages/<stem>.jpg (or .png)
        SegmentationClass/<stem>.png      # colour-coded, index-coded or palette masks

    Classes are the labelmap's, in its order, less those named ignore, void or unlabeled;
    those and the VOC boundary colour are ignored (255). A frame's sequence is its group
    (``voc_group``). Raises DatasetError listing every problem."""
    frames, problems, _ = voc_frames(root, splits, limit, group_by)
    if problems:
        raise DatasetError(problems)
    return frames


NAMES = ('camvid', 'cityscapes', 'voc')


def of_run(data: dict, root: str | Path, splits: list[str] | None = None,
           limit: int | None = None) -> SegmentationSet:
    """The frames of a training checkpoint's dataset (its ``data``), grouped as it was:
    those of the splits it drew from, or of ``splits``."""
    return build(data['dataset'], root, splits or data['splits'], limit,
                 data.get('group_by', 'prefix'))


def info_of(data: dict) -> DatasetInfo:
    """The classes and size a training checkpoint's ``data`` records (runs from before
    classes were recorded there trained on CamVid or Cityscapes: those datasets' own)."""
    if 'class_names' not in data:
        base = camvid_info() if data['dataset'] == 'camvid' else cityscapes_info()
        return DatasetInfo(base.name, base.class_names, base.palette,
                           tuple(data['input_size']))
    return DatasetInfo(data['dataset'], tuple(data['class_names']),
                       tuple(tuple(c) for c in data['palette']), tuple(data['input_size']))


def build(name: str, root: str | Path, splits: list[str], limit: int | None = None,
          group_by: str = 'prefix') -> SegmentationSet:
    """The frames of ``splits`` (e.g. ['train', 'val']) of dataset ``name``."""
    if name == 'camvid':
        return camvid(root, splits, limit)
    if name == 'cityscapes':
        return cityscapes(root, splits, limit)
    if name == 'voc':
        return voc(root, splits, limit, group_by)
    raise ValueError(f'unknown dataset {name!r}; expected one of {", ".join(NAMES)}')

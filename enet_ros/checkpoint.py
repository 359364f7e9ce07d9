"""The node's self-describing weights file: ENet weights plus everything needed to use them.

Layout (a plain dict, loadable with ``torch.load(weights_only=True)``)::

    {'format': 'enet_ros.checkpoint/1', 'architecture': 'enet-paper-v1',
     'state_dict': {...},            # ENet weights (fp16 when exported)
     'meta': {'dataset': str, 'class_names': [str], 'palette': [[r, g, b]],
              'input_size': [height, width], 'mean': [r, g, b], 'std': [r, g, b],
              'metrics': {...}}}      # mean/std on 0..1 RGB
"""

from __future__ import annotations

from dataclasses import dataclass, field
import os
from pathlib import Path
import tempfile
import zipfile

import torch

from enet_ros.model import ARCHITECTURE, check_input_size, ENet

FORMAT = 'enet_ros.checkpoint/1'
DEFAULT_WEIGHTS = Path(__file__).resolve().parent / 'weights' / 'enet_camvid.pt'
# the mask value of a pixel with no class: ground truth left unlabelled (void), and what
# the node never predicts; every metric leaves it out
NO_CLASS = 255


class CheckpointError(RuntimeError):
    """A weights file that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class ModelCard:
    """The weights' account of how they were trained and measured, as ``training.export``
    writes it (``to_dict``, under ``ModelMeta.metrics['model_card']``) and every reader
    takes it (``ModelMeta.card``): the node's class map and diagnostics, the run-time
    watch, training.report.

    ``data``: dataset, splits, train_frames, sequences (frames per drive). ``stages``: the
    training stages, oldest first, each with its recipe, command, epochs and ``trained``
    date. ``heldout``: per held-out drive, the figures of a run that never saw it
    (mean_iou, class_avg_accuracy, global_accuracy, images, mean_confidence, class_mix);
    empty when the weights were exported without held-out runs. ``protocol``: how those
    runs were made.
    """

    data: dict
    stages: tuple[dict, ...]
    heldout: dict
    protocol: str = ''

    @classmethod
    def from_dict(cls, card: dict | None) -> 'ModelCard | None':
        """The record of a stored card (nested: a stage names the one before it as
        ``first_stage``); None for weights exported without one."""
        if not card:
            return None
        stages, stage = [], card
        while stage:
            stages.insert(0, {k: v for k, v in stage.items()
                              if k not in ('first_stage', 'data', 'heldout', 'heldout_protocol')})
            stage = stage.get('first_stage')
        return cls(data=dict(card.get('data', {})), stages=tuple(stages),
                   heldout=dict(card.get('heldout', {})),
                   protocol=card.get('heldout_protocol', ''))

    def to_dict(self) -> dict:
        nested = {}
        for stage in self.stages:
            nested = {**stage, 'first_stage': nested} if nested else dict(stage)
        return {'data': self.data, **nested, 'heldout_protocol': self.protocol,
                'heldout': self.heldout}

    @property
    def trained(self) -> str:
        return str(self.stages[-1].get('trained', '?')) if self.stages else '?'


def card_summary(card: ModelCard | None) -> str:
    """One line of a model card for diagnostics: data, training date, held-out figures."""
    if card is None:
        return 'none (weights exported without a model card)'
    data = card.data
    heldout = ', '.join(f'{seq} {m["mean_iou"]:.1f}' for seq, m in sorted(card.heldout.items()))
    return (f'{data.get("dataset", "?")} {"+".join(data.get("splits", []))} '
            f'({data.get("train_frames", "?")} frames), '
            f'{" + ".join(str(s.get("epochs", "?")) for s in card.stages)} epochs, '
            f'trained {card.trained[:10]}; held-out class IoU: '
            f'{heldout or "none recorded (the run-time watch is off)"}')


@dataclass(frozen=True)
class ModelMeta:
    dataset: str
    class_names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    input_size: tuple[int, int]  # (height, width) the network runs at
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    metrics: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def card(self) -> ModelCard | None:
        return ModelCard.from_dict(self.metrics.get('model_card'))

    @property
    def precision_agreement(self) -> dict[str, float]:
        """Percent of validation pixels whose class id matches fp32, per precision
        (``training.export``); empty where not measured."""
        return dict(self.metrics.get('precision_agreement', {}))

    def to_dict(self) -> dict:
        return {'dataset': self.dataset, 'class_names': list(self.class_names),
                'palette': [list(c) for c in self.palette],
                'input_size': list(self.input_size), 'mean': list(self.mean),
                'std': list(self.std), 'metrics': self.metrics}

    @classmethod
    def from_dict(cls, d: dict) -> 'ModelMeta':
        return cls(dataset=str(d['dataset']), class_names=tuple(d['class_names']),
                   palette=tuple(tuple(int(v) for v in c) for c in d['palette']),
                   input_size=(int(d['input_size'][0]), int(d['input_size'][1])),
                   mean=tuple(float(v) for v in d['mean']),
                   std=tuple(float(v) for v in d['std']), metrics=dict(d.get('metrics', {})))


def atomic_save(obj, path: str | os.PathLike) -> None:
    """torch.save to a temporary file in the same folder, then rename: never a broken file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp')
    try:
        with os.fdopen(fd, 'wb') as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(path: str | os.PathLike, model: ENet, meta: ModelMeta,
                    half: bool = True) -> None:
    """Write the node's weights file; ``half`` stores fp16 weights (about 0.7 MB)."""
    state = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().clone()
             for k, v in model.state_dict().items()}
    atomic_save({'format': FORMAT, 'architecture': ARCHITECTURE, 'state_dict': state,
                 'meta': meta.to_dict()}, path)


def _refuse_training_checkpoint(path: Path) -> None:
    """Raise the export hint when ``path``, which did not load as a node checkpoint, is a
    torch zip whose pickle holds an optimiser state (the pickle is read, not run)."""
    try:
        with zipfile.ZipFile(path) as z:
            pkl = next((n for n in z.namelist() if n.endswith('/data.pkl')), None)
            raw = z.read(pkl) if pkl else b''
    except (zipfile.BadZipFile, OSError):
        return
    if b'enet_ros.training/' in raw or (b'optimizer' in raw and b'lr_scheduler' in raw):
        raise CheckpointError(
            f'model file {path} is a training checkpoint (weights with optimiser state), '
            f'not a node checkpoint; export one with python -m training.export '
            f'--checkpoint {path} --output enet.pt and set model_path to it')


def load_checkpoint(path: str | os.PathLike,
                    device: str | torch.device = 'cpu') -> tuple[ENet, ModelMeta]:
    """Load a weights file into an fp32 eval-mode ENet. Raises CheckpointError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f'model file {path} does not exist')
    try:
        data = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as exc:  # torch raises several types for truncated or foreign files
        _refuse_training_checkpoint(path)
        raise CheckpointError(f'model file {path} is not a readable torch file '
                              f'(truncated or corrupt?): {type(exc).__name__}: {exc}') from None
    if not isinstance(data, dict) or data.get('format') != FORMAT:
        _refuse_training_checkpoint(path)
        raise CheckpointError(f'model file {path} is not an enet_ros checkpoint '
                              f'(expected format {FORMAT!r}); export one with '
                              f'python -m training.export')
    if data.get('architecture') != ARCHITECTURE:
        raise CheckpointError(f'model file {path} holds architecture '
                              f'{data.get("architecture")!r}, this code runs {ARCHITECTURE!r}')
    try:
        meta = ModelMeta.from_dict(data['meta'])
        check_input_size(*meta.input_size)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise CheckpointError(f'model file {path} has bad metadata: {exc}') from None
    if len(meta.palette) != meta.num_classes:
        raise CheckpointError(f'model file {path} has {meta.num_classes} class names but '
                              f'{len(meta.palette)} palette colours')
    state = data['state_dict']
    weight = state.get('fullconv.weight')
    if weight is None or weight.shape[1] != meta.num_classes:
        got = None if weight is None else weight.shape[1]
        raise CheckpointError(f'model file {path}: metadata names {meta.num_classes} classes '
                              f'but the weights have {got} output channels')
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f'model file {path} has non-finite weights (NaN or inf) in '
                              f'{len(bad)} tensors, e.g. {bad[0]}: a diverged or damaged '
                              f'training run; export weights from a healthy checkpoint')
    model = ENet(meta.num_classes)
    try:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v
                               for k, v in state.items()})
    except RuntimeError as exc:
        raise CheckpointError(f'model file {path} does not match ENet: {exc}') from None
    return model.to(device).eval(), meta

"""The training checkpoint: one versioned schema, one writer, one loader.

Resume, export and report read a run through ``load`` only. Layout (``torch.save`` of
a dict, written atomically after every epoch as ``<run>/checkpoint.pth``)::

    {'format': 'enet_ros.training/2',
     'model': state_dict,              # the weights trained by the optimiser
     'ema': state_dict | None,         # exponential moving average of them (--ema)
     'optimizer', 'lr_scheduler': state_dicts, 'epoch': last finished (0-based),
     'rng': {'torch', 'augment', 'cuda'?},
     'args': vars(argparse.Namespace), 'command': str,
     'data': {'dataset', 'root', 'splits', 'group_by', 'train_frames', 'heldout_sequence',
              'heldout_frames', 'mean', 'std', 'class_weights', 'input_size', 'sequences',
              'class_names', 'palette',  # absent from runs before own datasets: CamVid's
              'device'},               # where its epochs ran, in order, joined by DEVICE_SEP
     'heldout': metrics of the last epoch on the held-out sequence | None}
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from enet_ros.checkpoint import atomic_save

FORMAT = 'enet_ros.training/2'
NAME = 'checkpoint.pth'
DEVICE_SEP = '; '


class TrainingCheckpointError(RuntimeError):
    """A file that is not a training checkpoint of this format."""


def is_run(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a training run (its folder or checkpoint), not the node's
    weights file (``enet_ros.checkpoint``)."""
    path = Path(path)
    return path.is_dir() or path.name == NAME


def save(run_dir: str | os.PathLike, state: dict) -> Path:
    path = Path(run_dir) / NAME
    atomic_save({'format': FORMAT, **state}, path)
    return path


def load(path: str | os.PathLike) -> dict:
    """A training checkpoint (file or run folder) as its dict; raises naming the problem."""
    path = Path(path)
    if path.is_dir():
        path = path / NAME
    if not path.is_file():
        raise TrainingCheckpointError(f'no training checkpoint at {path}')
    # our own file: it holds RNG states and argparse values, not only tensors
    ckpt = torch.load(path, map_location='cpu', weights_only=False)
    if not isinstance(ckpt, dict) or ckpt.get('format') != FORMAT:
        raise TrainingCheckpointError(
            f'{path} is not a training checkpoint of format {FORMAT!r} (found '
            f'{ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__!r}); '
            f'train with python -m training.train')
    return ckpt


def weights(ckpt: dict) -> dict:
    """The weights to export: the moving average when the run kept one."""
    return ckpt['ema'] if ckpt.get('ema') is not None else ckpt['model']


def devices(ckpt: dict) -> list[str]:
    """Where a run's epochs so far ran, in order (runs from before the device was recorded
    trained on the lent H100)."""
    return ckpt['data'].get('device', 'NVIDIA H100').split(DEVICE_SEP)


def write_weights(ckpt: dict, path: str | os.PathLike, metrics: dict) -> Path:
    """Write the node's weights file (``enet_ros.checkpoint``) for training checkpoint
    ``ckpt``, with ``metrics`` in its metadata: the one way from training to the node."""
    from enet_ros.checkpoint import ModelMeta, save_checkpoint
    from enet_ros.model import ENet
    from training import datasets
    data = ckpt['data']
    info = datasets.info_of(data)
    model = ENet(len(info.class_names))
    model.load_state_dict(weights(ckpt))
    meta = ModelMeta(dataset=info.name, class_names=info.class_names, palette=info.palette,
                     input_size=info.input_size, mean=tuple(data['mean']),
                     std=tuple(data['std']), metrics=metrics)
    save_checkpoint(path, model, meta)
    return Path(path)


def remove_stale_temporaries(run_dir: str | os.PathLike) -> list[Path]:
    """Delete the temporary files a killed ``atomic_save`` left in ``run_dir``."""
    stale = sorted(Path(run_dir).glob(f'.{NAME}.*.tmp'))
    for p in stale:
        p.unlink(missing_ok=True)
    return stale

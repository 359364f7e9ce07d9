"""The model options every tool shares: one declaration, with choices and help.

A wrong value is an argparse error (one line, exit status 2), found before anything
starts: a missing weights file, a device, precision or backend the core does not know.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from enet_ros.checkpoint import DEFAULT_WEIGHTS
from enet_ros.parameters import BACKENDS, DEVICES, PRECISIONS


def weights_file(value: str) -> str:
    if not Path(value).is_file():
        raise argparse.ArgumentTypeError(f'weights file {value} does not exist')
    return value


def add_model_args(p: argparse.ArgumentParser, precision: str = 'auto',
                   backend: str = 'auto', weights: bool = True) -> None:
    """--weights, --device, --precision, --backend (defaults: shipped weights, auto)."""
    if weights:
        p.add_argument('--weights', type=weights_file, default=str(DEFAULT_WEIGHTS),
                       help='node checkpoint from python -m training.export (default: the '
                            'shipped CamVid weights)')
    p.add_argument('--device', choices=DEVICES, default='auto',
                   help='auto: CUDA when available, else CPU')
    p.add_argument('--precision', choices=PRECISIONS, default=precision,
                   help=f'default {precision}; auto: fp16 on CUDA, on CPU bf16 where the '
                        f'weights record that it agrees with fp32, else fp32')
    p.add_argument('--backend', choices=BACKENDS, default=backend,
                   help=f'default {backend}; compile: AOTInductor package, built once and '
                        f'cached (ENET_ROS_CACHE)')


def add_adapt_arg(p: argparse.ArgumentParser) -> None:
    """--adapt: the node's adapt_statistics for a tool that segments a drive offline."""
    p.add_argument('--adapt', action='store_true',
                   help="batch-norm means that follow each camera's drive (the node's "
                        'adapt_statistics), frames fed in order at their camera time')

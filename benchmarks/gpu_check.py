"""The node's CUDA path on a machine with a GPU: fp16 against fp32 class ids, and speed.

    python -m benchmarks.gpu_check [--weights FILE] [--runs 50] [--doc]

For precision fp32 and fp16 (backend eager) a ``Segmenter`` on
``cuda`` segments the demo frames; the table gives the share of pixels whose class id
agrees with eager fp32, and the median of ``--runs`` timed ``segment()`` calls (uint8
frame in, class ids back on the host) and of the network alone (CUDA events) at
640x360 and 1280x720. ``scripts/gpu_check.sh`` runs it; without CUDA it exits 2.
"""

from __future__ import annotations

import argparse
from pathlib import Path
import sys

import cv2
import numpy as np
import torch

from benchmarks.core_speed import segment_ms
from reporting.tables import header, publish, table
from enet_ros.checkpoint import DEFAULT_WEIGHTS, load_checkpoint
from enet_ros.segmenter import Segmenter

FRAMES = sorted((Path(__file__).resolve().parents[1] / 'enet_ros' / 'demo_frames')
                .glob('*.jpg'))
SIZES = [(360, 640), (720, 1280)]
# backend compile is refused on cuda (enet_ros.segmenter.resolve_backend says why)
CONFIGS = [('eager', 'fp32'), ('eager', 'fp16')]


def frames(size) -> list[np.ndarray]:
    h, w = size
    return [cv2.resize(cv2.imread(str(f))[:, :, ::-1], (w, h)) for f in FRAMES]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--weights', type=Path, default=DEFAULT_WEIGHTS)
    p.add_argument('--runs', type=int, default=50)
    p.add_argument('--doc', action='store_true')
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        sys.exit('gpu_check: this torch sees no CUDA device; run it on a machine with one')
    rows = []
    trained = load_checkpoint(args.weights)[1].metrics.get('model_card', {}).get('trained', '?')
    for size in SIZES:
        images = frames(size)
        reference = None
        for backend, precision in CONFIGS:
            seg = Segmenter(args.weights, 'cuda', precision, backend, input_size=size)
            labels = [seg.segment(im)[0] for im in images]
            if reference is None:
                reference = labels
            agree = 100 * np.mean([(a == b).mean() for a, b in zip(labels, reference)])
            network, total = segment_ms(seg, images[0], args.runs, warmup=5)
            rows.append([f'{size[1]}x{size[0]}', backend, precision, f'{agree:.2f}%',
                         f'{network:.2f}', f'{total:.2f}'])
    text = '\n'.join([
        header('CUDA path (fp16 parity and speed)'),
        f'- GPU: {torch.cuda.get_device_name()}, CUDA {torch.version.cuda}',
        f'- weights: `{args.weights.name}`, trained {trained}',
        '',
        f'Agreement: class ids equal to eager fp32 on the {len(FRAMES)} demo frames. Times: '
        f'median of {args.runs} calls, batch 1.',
        '',
        table(['input', 'backend', 'precision', 'agreement with eager fp32',
               'network ms', 'segment() ms (uint8 in, ids on host)'], rows)])
    publish('gpu_check', text, args.doc)


if __name__ == '__main__':
    main()

"""Inference speed of the core at 480x360 .. 1920x1080, batch 1, every backend and precision.

    python -m benchmarks.core_speed [--weights FILE] [--runs 20] [--doc]

Each row is the median of ``--runs`` timed runs of the frame graph (``Timings.inference``:
normalise, network, argmax; ``FrameNetwork``) after warm-up, plus the whole ``segment()``
call (resize, the frame graph, ids back to the host and resized). The reference is what
peer PyTorch ENets ship: the same network unfused
(batch norm and dropout kept, eval mode), eager, fp32, contiguous NCHW, measured in the
same run under the same allocator setting as the Segmenter (``keep_freed_memory``); the
default path's speed-up is measured with reference and default runs alternating.
Start-up: a fresh process constructing the default Segmenter and running a first frame,
with an empty compile cache (cold) and again with the cache it left (warm).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

from reporting.tables import header, publish, REPO, table
from enet_ros.checkpoint import DEFAULT_WEIGHTS, load_checkpoint
from enet_ros.segmenter import keep_freed_memory, Segmenter

SIZES = [(360, 480), (360, 640), (720, 1280), (1080, 1920)]
CONFIGS = [('eager', 'fp32'), ('eager', 'bf16'), ('eager', 'fp16'),
           ('compile', 'fp32'), ('compile', 'bf16'), ('compile', 'fp16')]


def median_ms(fn, runs: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def reference_ms(weights: Path, size, runs: int) -> float:
    model, _ = load_checkpoint(weights)
    x = torch.randn(1, 3, *size)
    with torch.inference_mode():
        return median_ms(lambda: model(x), runs)


def default_speedup(weights: Path, size, runs: int, rounds: int = 3) -> float:
    """Reference / default network time, measured in alternation (the machine drifts)."""
    seg = Segmenter(weights, input_size=size)
    x = seg._to_tensor(np.zeros((*size, 3), np.uint8), 'rgb')
    ref, default = [], []
    with torch.inference_mode():
        for _ in range(rounds):
            ref.append(reference_ms(weights, size, runs))
            default.append(median_ms(lambda: seg.net(x), runs))
    return statistics.median(ref) / statistics.median(default)


def segment_ms(seg: Segmenter, img: np.ndarray, runs: int, warmup: int = 3):
    """Median ms of the network alone and of the whole ``segment()`` call."""
    for _ in range(warmup):
        seg.segment(img)
    inference, total = [], []
    for _ in range(runs):
        t = time.perf_counter()
        _, timings = seg.segment(img)
        total.append(time.perf_counter() - t)
        inference.append(timings.inference)
    return statistics.median(inference) * 1000, statistics.median(total) * 1000


def segmenter_ms(weights: Path, backend: str, precision: str, size, runs: int):
    img = np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)
    t = time.perf_counter()
    seg = Segmenter(weights, 'cpu', precision, backend, input_size=size)
    seg.segment(img)
    first = time.perf_counter() - t
    return (*segment_ms(seg, img, runs), first)


STARTUP = """
import time, numpy as np
t = time.perf_counter()
from enet_ros.segmenter import Segmenter
s = Segmenter({weights!r}, 'cpu', 'auto', 'auto', input_size=(360, 640))
s.segment(np.zeros((360, 640, 3), np.uint8))
print(s.precision, s.backend, time.perf_counter() - t)
"""


def startup_s(weights: Path, cache: Path) -> tuple[str, float]:
    out = subprocess.run([sys.executable, '-c', STARTUP.format(weights=str(weights))],
                         capture_output=True, text=True, check=True, cwd=REPO,
                         env={**os.environ, 'ENET_ROS_CACHE': str(cache),
                              'TORCHINDUCTOR_CACHE_DIR': str(cache / 'inductor'),
                              'PYTHONPATH': str(REPO)})
    precision, backend, seconds = out.stdout.split()[-3:]
    return f'{backend} {precision}', float(seconds)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--weights', type=Path, default=DEFAULT_WEIGHTS)
    p.add_argument('--runs', type=int, default=20)
    p.add_argument('--sizes', nargs='*', default=[f'{w}x{h}' for h, w in SIZES])
    p.add_argument('--doc', action='store_true', help='render its section in doc/')
    args = p.parse_args()
    # compile everything from scratch in this run, so the start-up table shows compile times
    scratch = tempfile.TemporaryDirectory()
    os.environ['ENET_ROS_CACHE'] = scratch.name
    os.environ['TORCHINDUCTOR_CACHE_DIR'] = str(Path(scratch.name) / 'inductor')
    # the Segmenter sets it on its first construction; the reference gets it from the start
    # so that every row runs under the same allocator
    keep_freed_memory()
    sizes = [tuple(int(v) for v in s.split('x'))[::-1] for s in args.sizes]
    cols = ['config'] + [f'{w}x{h}' for h, w in sizes]
    ref = ['reference: unfused eager fp32'] + [f'{reference_ms(args.weights, s, args.runs):.1f}'
                                               for s in sizes]
    rows, totals, firsts, raw = [ref], [], [], {'reference': ref[1:]}
    for backend, precision in CONFIGS:
        inf_row, tot_row, first_row = [f'{backend} {precision}'], [f'{backend} {precision}'], \
            [f'{backend} {precision}']
        for s in sizes:
            inf, tot, first = segmenter_ms(args.weights, backend, precision, s, args.runs)
            inf_row.append(f'{inf:.1f}')
            tot_row.append(f'{tot:.1f}')
            first_row.append(f'{first:.1f}')
            print(f'{backend} {precision} {s}: network {inf:.1f} ms, segment() {tot:.1f} ms, '
                  f'first frame {first:.1f} s', flush=True)
        rows.append(inf_row)
        totals.append(tot_row)
        firsts.append(first_row)
        raw[f'{backend} {precision}'] = inf_row[1:]
    with tempfile.TemporaryDirectory() as tmp:
        default, cold = startup_s(args.weights, Path(tmp))
        _, warm = startup_s(args.weights, Path(tmp))
    md = header('Core inference speed (median ms, batch 1)')
    md += (f'\nThe frame graph (`Timings.inference`: normalise, network, argmax; the '
           f'reference row: the network alone), {args.runs} runs after warm-up; weights '
           f'`{args.weights.name}`:\n\n' + table(cols, rows))
    md += ('\nWhole `segment()` call (resize, the frame graph, ids to the host and resized '
           'back):\n\n')
    md += table(cols, totals)
    md += ('\nStart-up (s): constructing the Segmenter and its first frame, with an empty '
           'cache (`compile` compiles its package here):\n\n')
    md += table(cols, firsts)
    speedups = [default_speedup(args.weights, s, args.runs) for s in sizes]
    md += (f'\nDefault path ({default}) frame graph against the reference network, '
           f'measured in '
           f'alternation (3 rounds of {args.runs} runs each, ratio of the medians): '
           + ', '.join(f'{c} {x:.1f}x faster' for c, x in zip(cols[1:], speedups)) + '.\n')
    md += (f'\nDefault Segmenter ({default}) start-up to first result at 640x360 in a new '
           f'process: cold cache {cold:.1f} s, warm cache {warm:.1f} s.\n')
    (REPO / 'benchmarks' / 'results').mkdir(parents=True, exist_ok=True)
    (REPO / 'benchmarks' / 'results' / 'core_speed.json').write_text(json.dumps(
        {'sizes': cols[1:], 'network_ms': raw, 'startup_cold_s': cold,
         'startup_warm_s': warm, 'default': default,
         'default_speedup': dict(zip(cols[1:], speedups))}, indent=2))
    publish('core_speed', md, args.doc)


if __name__ == '__main__':
    main()

"""The compiled network of today against the same network at earlier commits, in one run.

    python -m benchmarks.core_history [--commits a58abea HEAD] [--inputs noise zeros]
                                      [--runs 40] [--rounds 3]

Each commit is checked out in a temporary git worktree and its own ``Segmenter`` (its
shipped weights, ``backend='compile'``, ``--precision``, 480x360) is built in a fresh process
with a compile cache of its own; the first process of each commit compiles, the timed ones
load the package. Each commit times a frame of random pixels and an all-black one (the
input core_ablation's table of 2026-11-27 timed). Rounds alternate commits and frames, so
a neighbour or a clock change hits all of them alike. Figures: the median over rounds of
each process's median ``Timings.inference`` of ``--runs`` back-to-back ``segment()``
calls. Commit a58abea measured 8.6 ms in core_ablation's table of 2026-11-27; this is the
guard that today's frame graph still matches it.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from reporting.tables import header, publish, REPO, table

INPUTS = {'noise': 'random pixels', 'zeros': 'all black'}

CHILD = """
import statistics, sys, numpy as np
from enet_ros.segmenter import Segmenter
h, w, runs = {h}, {w}, {runs}
seg = Segmenter('enet_ros/weights/enet_camvid.pt', 'cpu', {precision!r}, 'compile',
                input_size=(h, w))
img = (np.zeros((h, w, 3), np.uint8) if {zeros} else
       np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8))
for _ in range(5):
    seg.segment(img)
print(statistics.median(seg.segment(img)[1].inference for _ in range(runs)) * 1000)
"""


def run_child(tree: Path, cache: Path, size, runs: int, precision: str,
              zeros: bool = False) -> float:
    code = CHILD.format(h=size[0], w=size[1], runs=runs, precision=precision, zeros=zeros)
    env = {'PYTHONPATH': str(tree), 'ENET_ROS_CACHE': str(cache), 'PATH': '/usr/bin:/bin',
           'HOME': str(cache)}
    out = subprocess.run([sys.executable, '-c', code], cwd=tree, env=env, check=True,
                         capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--commits', nargs='+', default=['a58abea', 'HEAD'])
    p.add_argument('--runs', type=int, default=40)
    p.add_argument('--rounds', type=int, default=3)
    # bf16 is the path on AVX512-BF16 CPUs; elsewhere oneDNN emulates it (slow):
    # auto takes what the node takes on this CPU
    p.add_argument('--precision', default='auto', choices=('auto', 'fp32', 'bf16'))
    p.add_argument('--size', type=int, nargs=2, default=(360, 480), metavar=('H', 'W'))
    # core_ablation's table of 2026-11-27 timed an all-black frame, core_speed random pixels
    p.add_argument('--inputs', nargs='+', default=['noise', 'zeros'], choices=INPUTS,
                   help='the frames timed: random pixels, all black')
    p.add_argument('--doc', action='store_true', help='render its section in doc/')
    args = p.parse_args()
    shas = {c: subprocess.run(['git', 'rev-parse', '--short', c], cwd=REPO, check=True,
                              capture_output=True, text=True).stdout.strip()
            for c in args.commits}
    with tempfile.TemporaryDirectory(prefix='enet_history_') as tmp:
        trees = {}
        for c, sha in shas.items():
            tree = Path(tmp) / sha
            subprocess.run(['git', 'worktree', 'add', '--detach', str(tree), sha], cwd=REPO,
                           check=True, capture_output=True)
            trees[c] = tree
            (Path(tmp) / f'cache-{sha}').mkdir()
        try:
            for c in args.commits:  # the compile, untimed
                run_child(trees[c], Path(tmp) / f'cache-{shas[c]}', args.size, 3, args.precision)
            times = {(c, i): [] for c in args.commits for i in args.inputs}
            for _ in range(args.rounds):
                for c, i in times:
                    ms = run_child(trees[c], Path(tmp) / f'cache-{shas[c]}', args.size,
                                   args.runs, args.precision, i == 'zeros')
                    times[c, i].append(ms)
                    print(f'{c} ({shas[c]}), {INPUTS[i]}: {ms:.2f} ms', flush=True)
        finally:
            for tree in trees.values():
                subprocess.run(['git', 'worktree', 'remove', '--force', str(tree)], cwd=REPO,
                               capture_output=True)
    first = statistics.median(next(iter(times.values())))
    rows = [[c, shas[c], INPUTS[i], f'{statistics.median(t):.2f}',
             ' / '.join(f'{v:.2f}' for v in t), f'{statistics.median(t) / first:.2f}x']
            for (c, i), t in times.items()]
    h, w = args.size
    md = header(f'The compiled network at {w}x{h} across commits (median ms)') + (
        f"\nEach commit's own Segmenter (its shipped weights, compile, precision "
        f'{args.precision}) in fresh processes, {args.rounds} alternating rounds of the '
        f'median of {args.runs} calls of one frame.\n\n'
    ) + table(['commit', 'sha', 'frame', 'ms', 'rounds', 'vs the first row'], rows)
    publish('core_history', md, args.doc)


if __name__ == '__main__':
    main()

"""What the CPU path's choices are worth, each against its alternative.

    python -m benchmarks.core_ablation [--runs 30] [--doc]

- Kept memory: ``Segmenter`` calls ``keep_freed_memory`` on CPU. Measured in fresh
  processes with and without it (the setting is process-wide), alternating; median ms of
  the network and minor page faults per ``segment()`` call.
- Switch pooling: the compiled network pools and unpools through ``max_pool_switches``.
  The fused network with and without switches, compiled (AOTInductor, as the backend
  does) and eager, timed in alternation in one process.
- Batching: the compiled frame graph for 1, 2 and 4 frames a call (several cameras'
  frames at once) against one frame a call.
- Adapting statistics: the compiled network without and with ``adapt_statistics``'s
  adjustments as an input, and the cost of one observed frame.
- Thread arrangement: the node builds the Segmenter on its executor thread with one
  intra-op thread and runs it on its inference thread with all of them. Fresh processes
  doing that, against building and running on the main thread, alternating.

Every network runs at its input size in bf16 (the default CPU precision here) unless the
row says otherwise; the weights are the shipped ones.
"""

from __future__ import annotations

import argparse
import itertools
import os
from pathlib import Path
import statistics
import subprocess
import sys
import tempfile

import torch

from benchmarks.core_speed import median_ms
from reporting.tables import header, publish, REPO, table
from enet_ros.checkpoint import DEFAULT_WEIGHTS, load_checkpoint
from enet_ros.model import fuse_for_inference
from enet_ros.aoti_cache import compile_ahead
from enet_ros.segmenter import FrameNetwork, keep_freed_memory, reference_frame, Segmenter

ROUNDS = 3
BATCHES = (1, 2, 4)

CHILD = """
import resource, statistics, threading, numpy as np, torch
import enet_ros.segmenter as S
keep, arrangement, backend, precision, h, w, runs = {args!r}
if not keep:
    S.keep_freed_memory = lambda: None
threads = torch.get_num_threads()
if arrangement == 'node':
    torch.set_num_threads(1)
seg = S.Segmenter({weights!r}, 'cpu', precision, backend, input_size=(h, w))
img = np.zeros((h, w, 3), np.uint8)
seg.segment(img)
out = []

def run():
    torch.set_num_threads(threads)
    for _ in range(3):
        seg.segment(img)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    times = [seg.segment(img)[1].inference for _ in range(runs)]
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / runs
    out.append((statistics.median(times) * 1000, faults))

if arrangement == 'node':
    t = threading.Thread(target=run)
    t.start()
    t.join()
else:
    run()
print(*out[0])
"""


def child(weights: Path, keep: bool, arrangement: str, backend: str, precision: str,
          size, runs: int) -> tuple[float, float]:
    code = CHILD.format(args=(keep, arrangement, backend, precision, *size, runs),
                        weights=str(weights))
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         check=True, cwd=REPO, env={**os.environ, 'PYTHONPATH': str(REPO)})
    ms, faults = out.stdout.split()[-2:]
    return float(ms), float(faults)


def alternate(variants: dict, rounds: int = ROUNDS) -> dict:
    """Call each variant in turn, ``rounds`` times; the median of each one's results."""
    results = {name: [] for name in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            results[name].append(fn())
    return {name: [statistics.median(r[i] for r in rs) for i in range(len(rs[0]))]
            for name, rs in results.items()}


def kept_memory(weights: Path, runs: int) -> list[list]:
    rows = []
    for config in [('eager', 'fp32', (360, 640)), ('compile', 'bf16', (360, 640)),
                   ('compile', 'bf16', (1080, 1920))]:
        backend, precision, size = config
        res = alternate({keep: (lambda keep=keep, c=config: child(weights, keep, 'main', *c,
                                                                   runs))
                         for keep in (True, False)})
        label = f'{backend} {precision} {size[1]}x{size[0]}'
        rows.append([label, f'{res[False][0]:.1f}', f'{res[True][0]:.1f}',
                     f'{res[False][1]:.0f}', f'{res[True][1]:.0f}'])
    return rows


def thread_arrangement(weights: Path, runs: int) -> list[list]:
    size = load_checkpoint(weights)[1].input_size
    res = alternate({a: (lambda a=a: child(weights, True, a, 'compile', 'bf16', size, runs))
                     for a in ('main', 'node')})
    return [[f'compile bf16 {size[1]}x{size[0]}', f'{res["main"][0]:.1f}',
             f'{res["node"][0]:.1f}']]


def switch_pooling(weights: Path, runs: int) -> list[list]:
    keep_freed_memory()
    model, _ = load_checkpoint(weights)
    size = (360, 640)
    x = torch.randn(1, 3, *size).to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    nets = {sw: fuse_for_inference(model, switches=sw).to(
        torch.bfloat16, memory_format=torch.channels_last) for sw in (False, True)}
    rows = []
    with torch.inference_mode():
        for backend in ('compile', 'eager'):
            fns = {sw: (compile_ahead(net, (x,), f'ablation-{sw}') if backend == 'compile'
                        else net) for sw, net in nets.items()}
            res = alternate({sw: (lambda f=f: [median_ms(lambda: f(x), runs)])
                             for sw, f in fns.items()})
            rows.append([f'{backend} bf16 {size[1]}x{size[0]}', f'{res[False][0]:.1f}',
                         f'{res[True][0]:.1f}'])
    return rows


def batching(weights: Path, runs: int) -> tuple[list[list], bool]:
    """The compiled frame graph (``FrameNetwork``, bf16) for 1, 2 and 4 frames a call, as
    several cameras' frames waiting at once would go; and whether batching pays."""
    keep_freed_memory()
    model, meta = load_checkpoint(weights)
    h, w = meta.input_size
    net = FrameNetwork(fuse_for_inference(model, switches=True).to(
        torch.bfloat16, memory_format=torch.channels_last), meta.mean, meta.std)
    calls = {}
    for b in BATCHES:
        x = torch.zeros(b, h, w, 3, dtype=torch.uint8)
        calls[b] = (compile_ahead(net, (x,), f'ablation-batch{b}'), x)
    with torch.inference_mode():
        res = alternate({b: (lambda f=f, x=x: [median_ms(lambda: f(x), runs)])
                         for b, (f, x) in calls.items()})
    one = res[1][0]
    rows, pays = [], False
    for b in BATCHES:
        ms = res[b][0]
        # frames that wait together: batched, each gets its answer after the whole call;
        # one by one, the k-th after k calls
        sequential = one * (b + 1) / 2
        rows.append([f'compile bf16 {w}x{h}, {b} frame{"s" if b > 1 else ""}', f'{ms:.1f}',
                     f'{ms / b:.1f}', f'{one * b / ms:.2f}x', f'{ms:.1f}', f'{sequential:.1f}'])
        pays = pays or (b > 1 and ms < one * b and ms <= sequential)
    return rows, pays


def adaptation(weights: Path, runs: int) -> list[list]:
    """The compiled network (bf16) as the node runs it without and with
    ``adapt_statistics`` (the adjustments as a second input), in alternation in one
    process; and one observed frame (a pass of the unfused fp32 network and the
    adjustments computed), which the node adds once per second of camera time."""
    def row(size: tuple[int, int]) -> list:
        plain, adapted = (Segmenter(weights, 'cpu', 'bf16', 'compile', input_size=size,
                                    adapt=a) for a in (False, True))
        x = plain.prepare(reference_frame()).tensor
        stream, stamps = adapted.adapter.stream('benchmark'), itertools.count()
        with torch.inference_mode():
            res = alternate({
                'plain': lambda: [median_ms(lambda: plain.net(x), runs)],
                'adapted': lambda: [median_ms(lambda: adapted.net(
                    x, adapted.adapter.identity), runs)],
                'observe': lambda: [median_ms(lambda: stream.observe(x, next(stamps)),
                                              max(3, runs // 3))]})
        return [f'compile bf16 {size[1]}x{size[0]}', f'{res["plain"][0]:.1f}',
                f'{res["adapted"][0]:.1f}', f'{res["observe"][0]:.1f}']
    return [row(size) for size in ((360, 480), (360, 640))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--weights', type=Path, default=DEFAULT_WEIGHTS)
    p.add_argument('--runs', type=int, default=30)
    p.add_argument('--doc', action='store_true', help='render its section in doc/')
    args = p.parse_args()
    scratch = tempfile.TemporaryDirectory()  # compile from scratch, as core_speed does
    os.environ['ENET_ROS_CACHE'] = scratch.name
    os.environ['TORCHINDUCTOR_CACHE_DIR'] = str(Path(scratch.name) / 'inductor')
    md = header("What the CPU path's choices are worth (median ms)")
    md += (f'\nEach figure is the median over {ROUNDS} alternating rounds of the median of '
           f'{args.runs} runs of the network (`Timings.inference` in the process rows).\n')
    md += '\nKept memory (`keep_freed_memory`), fresh processes without and with it:\n\n'
    md += table(['config', 'ms without', 'ms with', 'page faults/frame without',
                 'page faults/frame with'], kept_memory(args.weights, args.runs))
    md += ('\nSwitch pooling (`max_pool_switches`), the fused network without and with it, '
           'in one process:\n\n')
    md += table(['config', 'ms max_pool2d/max_unpool2d', 'ms switches'],
                switch_pooling(args.weights, args.runs))
    md += ('\nThread arrangement, fresh processes: built and run on the main thread, '
           "against the node's (built with one intra-op thread on one thread, run with all "
           'of them on another):\n\n')
    md += table(['config', 'ms main thread', 'ms node arrangement'],
                thread_arrangement(args.weights, args.runs))
    rows, pays = batching(args.weights, args.runs)
    md += ('\nBatching cameras: the frame graph for several frames a call, against one frame '
           'a call, in one process. The last two columns are the mean latency of frames '
           'that wait together, batched and one by one:\n\n')
    md += table(['config', 'ms a call', 'ms a frame', 'frames/s vs 1 a call',
                 'mean latency batched', 'mean latency one by one'], rows)
    md += ('\nBatching ' + ('pays here: more frames a second at no worse latency.\n' if pays
                            else 'does not pay here (no more frames a second at no worse '
                            'latency), so the node runs frames one at a time.\n'))
    md += ('\nAdapting batch-norm statistics (`adapt_statistics`), the compiled network '
           'without and with the adjustments as an input, in one process, and one observed '
           'frame (once per second of camera time):\n\n')
    md += table(['config', 'ms without', 'ms with', 'ms to observe a frame'],
                adaptation(args.weights, args.runs))
    publish('core_ablation', md, args.doc)


if __name__ == '__main__':
    main()

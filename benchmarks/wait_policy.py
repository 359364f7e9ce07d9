"""How OpenMP threads should wait: the network's time a frame, idle and beside another
2-thread PyTorch job, for each wait policy and thread count (enet_ros/threads.py).

    python -m benchmarks.wait_policy [--seconds S] [--rounds N] [--doc]

Each setting runs in its own process, as the node runs the network: on a worker thread,
frames of the demo one after another, 10 ms apart (lockstep: a frame, then the wait for
the next). libgomp reads the policy once, as torch loads, so each process gets it in its
environment.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from benchmarks.shared_tools import start_neighbour
from enet_ros.threads import SHORT_SPIN
from reporting.tables import header, publish, REPO, table

WORKER = """
import glob, json, statistics, sys, threading, time
import torch, cv2
from enet_ros.segmenter import Segmenter
threads, seconds = int(sys.argv[1]), float(sys.argv[2])
torch.set_num_threads(1)
seg = Segmenter()
paths = sorted(glob.glob('enet_ros/demo_frames/*.jpg'))
frames = [cv2.imread(f)[:, :, ::-1].copy() for f in paths]
times = []
def work():
    torch.set_num_threads(threads)
    for f in frames:
        seg.segment(f)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for f in frames:
            t = time.perf_counter()
            seg.segment(f)
            times.append(time.perf_counter() - t)
            time.sleep(0.01)
worker = threading.Thread(target=work)
worker.start()
worker.join()
times.sort()
print(json.dumps({'median': statistics.median(times) * 1e3,
                  'p95': times[int(0.95 * len(times))] * 1e3, 'frames': len(times)}))
"""

SETTINGS = {  # name: (threads, environment)
    "2 threads, libgomp's default spin (shipped)": (2, {}),
    '2 threads, passive (OMP_WAIT_POLICY=PASSIVE)': (2, {'OMP_WAIT_POLICY': 'PASSIVE'}),
    f'2 threads, spin {SHORT_SPIN}': (2, {'GOMP_SPINCOUNT': str(SHORT_SPIN)}),
    '1 thread': (1, {}),
}


def measure(threads: int, env: dict[str, str], seconds: float) -> dict:
    base = {k: v for k, v in os.environ.items()
            if k not in ('OMP_WAIT_POLICY', 'GOMP_SPINCOUNT')}
    res = subprocess.run([sys.executable, '-c', WORKER, str(threads), str(seconds)],
                         env={**base, **env, 'PYTHONPATH': str(REPO)}, cwd=REPO,
                         capture_output=True, text=True, timeout=900)
    if res.returncode != 0:
        raise SystemExit(f'worker failed ({res.returncode}):\n{res.stderr[-2000:]}')
    return json.loads(res.stdout.splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--seconds', type=float, default=10.0, help='frames a setting, per run')
    p.add_argument('--rounds', type=int, default=2, help='runs of each setting beside the job')
    p.add_argument('--doc', action='store_true')
    args = p.parse_args()
    idle = {name: measure(*setting, args.seconds) for name, setting in SETTINGS.items()}
    busy: dict[str, list[dict]] = {name: [] for name in SETTINGS}
    neighbour = start_neighbour()
    try:
        for _ in range(args.rounds):  # settings interleaved: the job's phases hit each
            for name, setting in SETTINGS.items():
                busy[name].append(measure(*setting, args.seconds))
    finally:
        neighbour.kill()
        neighbour.wait()

    def cell(runs: list[dict], key: str) -> str:
        return ' / '.join(f'{r[key]:.1f}' for r in runs)
    rows = [[name, cell([idle[name]], 'median'), cell([idle[name]], 'p95'),
             cell(busy[name], 'median'), cell(busy[name], 'p95')] for name in SETTINGS]
    md = header('How OpenMP threads wait: the network idle and beside a 2-thread job')
    md += (f'\nThe shipped weights at 480x360 (backend and precision auto), the demo frames '
           f'10 ms apart on a worker thread for {args.seconds:.0f} s a run; beside the job '
           f'(a process multiplying 768x768 matrices with 2 torch threads), {args.rounds} '
           f'runs of each setting, interleaved, each shown.\n\n')
    md += table(['setting', 'idle median ms', 'idle p95 ms', 'beside the job median ms',
                 'beside the job p95 ms'], rows)
    publish('wait_policy', md, args.doc)


if __name__ == '__main__':
    main()

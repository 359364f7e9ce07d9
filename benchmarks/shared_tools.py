"""The tools on a shared CPU: evaluate_bag, replay_bag and the demo, idle and beside another
2-thread PyTorch job, as a new user runs them (defaults, shipped weights).

    python -m benchmarks.shared_tools [--readme]

Each tool runs as its own process, once with the CPU idle and once beside a process that
multiplies matrices with 2 torch threads for the whole run; the ratio compares the two
runs of this script. The per-frame figure is the one each tool reports: evaluate_bag's
mean time a frame, replay_bag's median end-to-end latency (lockstep), the demo's median
end-to-end latency.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import shutil
import subprocess
import sys
import tempfile

from reporting.tables import header, publish, REPO, table

NEIGHBOUR = ('import torch\ntorch.set_num_threads(2)\na = torch.randn(768, 768)\n'
             'print("busy", flush=True)\n'
             'while True:\n    a = (a @ a).clamp_(-1, 1)\n')


def start_neighbour() -> subprocess.Popen:
    """The other job, once it is busy (a tool measures the CPU's load as it starts)."""
    job = subprocess.Popen([sys.executable, '-c', NEIGHBOUR], stdout=subprocess.PIPE, text=True)
    job.stdout.readline()
    return job


def run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, 'PYTHONPATH': str(REPO)}
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if res.returncode != 0:
        raise SystemExit(f'{" ".join(cmd)} failed ({res.returncode}):\n{res.stderr[-2000:]}')
    return res


def tools(work: Path, bag: Path, tag: str) -> dict[str, tuple[float, bool]]:
    """Per-frame ms of each tool and whether it said the CPU is shared."""
    py = sys.executable
    out = {}
    res = run([py, '-m', 'enet_ros.tools.evaluate_bag', str(bag), '--no-progress', '--json',
               str(work / f'eval_{tag}.json')], work)
    got = json.loads((work / f'eval_{tag}.json').read_text())
    out['evaluate_bag (ms a frame, mean)'] = (got['timing']['total']['mean_ms'],
                                              'CPU shared' in res.stderr + res.stdout)
    res = run([py, '-m', 'enet_ros.tools.replay_bag', str(bag), '--start-node', '--lockstep',
               '--namespace', f'/shared_{tag}', '--json', str(work / f'replay_{tag}.json')],
              work)
    got = json.loads((work / f'replay_{tag}.json').read_text())
    out['replay_bag --lockstep (e2e median ms)'] = (got['latency']['median_ms'],
                                                    'CPU shared' in res.stdout + res.stderr)
    res = run([py, '-m', 'enet_ros.tools.demo', '--output', str(work / f'demo_{tag}')], work)
    got = json.loads((work / f'demo_{tag}' / 'summary.json').read_text())
    out['demo (e2e median ms)'] = (got['end_to_end_latency']['median_ms'],
                                   'CPU shared' in res.stdout + res.stderr)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--readme', action='store_true')
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix='enet_shared_') as tmp:
        work = Path(tmp)
        frames = work / 'frames'
        frames.mkdir()
        for k in range(5):  # 30 frames: the demo frames five times
            for f in sorted((REPO / 'enet_ros' / 'demo_frames').glob('*.jpg')):
                shutil.copy(f, frames / f'{k}_{f.name}')
        bag = work / 'bag'
        run([sys.executable, '-m', 'enet_ros.tools.make_bag', str(frames), str(bag)], work)
        idle = tools(work, bag, 'idle')
        neighbour = start_neighbour()
        try:
            busy = tools(work, bag, 'busy')
        finally:
            neighbour.kill()
            neighbour.wait()
    rows = [[name, f'{idle[name][0]:.1f}', f'{busy[name][0]:.1f}',
             f'{busy[name][0] / idle[name][0]:.2f}x',
             ' / '.join('yes' if got[name][1] else 'no' for got in (idle, busy))]
            for name in idle]
    md = header('The tools beside another 2-thread PyTorch job')
    md += ('\nEach tool with its defaults (shipped weights, backend and precision auto) on 30 '
           'CamVid frames (the demo frames five times; the demo plays its six frames three '
           'times), idle and beside a process multiplying 768x768 matrices with 2 torch '
           'threads for the whole run. "said the CPU shared" is whether the tool (or the node '
           'it started) printed that the CPU is shared, idle / beside the job.\n\n')
    md += table(['tool', 'idle', 'beside the job', 'ratio', 'said the CPU shared'], rows)
    publish('shared_tools', md, args.readme)


if __name__ == '__main__':
    main()

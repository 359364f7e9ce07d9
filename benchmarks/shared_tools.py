"""The tools on a shared CPU: evaluate_bag, replay_bag and the demo, idle and beside another
2-thread PyTorch job, as a new user runs them (defaults, shipped weights).

    python -m benchmarks.shared_tools [--rounds 3] [--doc]

Each tool runs as its own process with the CPU idle and beside a process that multiplies
matrices with 2 torch threads for the whole run, started two ways: in this script's
session, as a job started from the same terminal is, and as a session of its own, as a
job started apart is (another terminal, a service). Where the kernel shares the CPU
between sessions first (autogroup), the two differ. The per-frame figure is the one each
tool reports: evaluate_bag's mean time a frame, replay_bag's median end-to-end latency
(lockstep), the demo's median end-to-end latency. One tool's run on a shared CPU moves
from run to run (where the scheduler places its thread), so every setting runs
``--rounds`` times, interleaved, and the table gives the median run and the range.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import shutil
import statistics
import subprocess
import sys
import tempfile

from reporting.tables import header, publish, REPO, table

NEIGHBOUR = ('import torch\ntorch.set_num_threads(2)\na = torch.randn(768, 768)\n'
             'print("busy", flush=True)\n'
             'while True:\n    a = (a @ a).clamp_(-1, 1)\n')


def start_neighbour(own_session: bool = False) -> subprocess.Popen:
    """The other job, once it is busy (a tool measures the CPU's load as it starts); in
    this process's session unless ``own_session``."""
    job = subprocess.Popen([sys.executable, '-c', NEIGHBOUR], stdout=subprocess.PIPE, text=True,
                           start_new_session=own_session)
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


SETTINGS = {'idle': None, 'same session': False, 'own session': True}  # the job's session


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--rounds', type=int, default=3)
    p.add_argument('--doc', action='store_true')
    args = p.parse_args()
    runs: dict[str, list[dict]] = {name: [] for name in SETTINGS}
    with tempfile.TemporaryDirectory(prefix='enet_shared_') as tmp:
        work = Path(tmp)
        frames = work / 'frames'
        frames.mkdir()
        for k in range(5):  # 30 frames: the demo frames five times
            for f in sorted((REPO / 'enet_ros' / 'demo_frames').glob('*.jpg')):
                shutil.copy(f, frames / f'{k}_{f.name}')
        bag = work / 'bag'
        run([sys.executable, '-m', 'enet_ros.tools.make_bag', str(frames), str(bag)], work)
        for k in range(args.rounds):
            for name, own_session in SETTINGS.items():
                neighbour = None if own_session is None else start_neighbour(own_session)
                try:
                    runs[name].append(tools(work, bag, f'{name.split()[0]}_{k}'))
                finally:
                    if neighbour is not None:
                        neighbour.kill()
                        neighbour.wait()
    rows = []
    for tool in runs['idle'][0]:
        ms = {name: [got[tool][0] for got in runs[name]] for name in SETTINGS}
        idle = statistics.median(ms['idle'])
        row = [tool, f'{idle:.1f} ({min(ms["idle"]):.1f}-{max(ms["idle"]):.1f})']
        for name in ('same session', 'own session'):
            med = statistics.median(ms[name])
            row += [f'{med:.1f} ({min(ms[name]):.1f}-{max(ms[name]):.1f})',
                    f'{med / idle:.2f}x']
        row.append(' / '.join(f'{sum(got[tool][1] for got in runs[name])} of {args.rounds}'
                              for name in SETTINGS))
        rows.append(row)
    md = header('The tools beside another 2-thread PyTorch job')
    md += ('\nEach tool with its defaults (shipped weights, backend and precision auto) on 30 '
           'CamVid frames (the demo frames five times; the demo plays its six frames three '
           'times), idle and beside a process multiplying 768x768 matrices with 2 torch '
           "threads for the whole run, started in the tools' session (as from the same "
           'terminal) or in a session of its own (as a job started apart). '
           f'{args.rounds} rounds, each setting in turn: the median run (range), and its '
           'ratio to the median idle run. "said the CPU shared": in how many runs the tool '
           '(or the node it started) printed that the CPU is shared, idle / same session / '
           'own session.\n\n')
    md += table(['tool', 'idle ms', 'beside, same session', 'ratio',
                 'beside, own session', 'ratio', 'said the CPU shared'], rows)
    publish('shared_tools', md, args.doc)


if __name__ == '__main__':
    main()

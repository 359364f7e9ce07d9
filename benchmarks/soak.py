"""Hours of frames: the node at 30 Hz with every output subscribed, reported every minute.

    python -m benchmarks.soak --minutes 30 [--size 640x360] [--doc]

Frames come from another process (this one) over DDS at 30 Hz, for as long as asked; the
node runs as ``ros2 run`` would start it, with the shipped weights and its defaults. Every
minute one row: the node's RSS, threads and open file descriptors (from /proc), the
end-to-end latency p50 / p99 of the masks received that minute, and the frames answered
(masks received / frames sent). The verdict rows check the bounds stated for a shift on a
vehicle: RSS growth after the warm-up (the first ``--warmup`` minutes) under 1%, threads
and descriptors no higher at the end than after the warm-up, and p99 latency of the last
5 minutes within 20% of the first 5 after the warm-up.
"""

from __future__ import annotations

import argparse
import itertools
import os
from pathlib import Path
import threading
import time

import numpy as np

from reporting.tables import header, publish, REPO, table
from enet_ros.tools.client import NodeProcess, ros_env, SegmentationClient
from enet_ros.topics import IMAGE_OUTPUTS, status_name


def proc_counts(pid: int) -> tuple[float, int, int]:
    """(RSS MB, threads, open file descriptors) of process ``pid``."""
    status = dict(line.split(':', 1) for line in
                  Path(f'/proc/{pid}/status').read_text().splitlines() if ':' in line)
    return (int(status['VmRSS'].split()[0]) / 1024, int(status['Threads']),
            len(os.listdir(f'/proc/{pid}/fd')))


def minute_latencies(c: SegmentationClient, start: float, end: float) -> np.ndarray:
    """Milliseconds from publish to mask receipt, of masks received in [start, end)."""
    rec = c.received['mask']
    with c.lock:
        pairs = [(t, c.publish_times.get(s)) for s, t in zip(rec.stamps, rec.times)
                 if start <= t < end]
    return np.asarray([1000 * (t - sent) for t, sent in pairs if sent is not None])


def run(args) -> tuple[list[list], dict]:
    import rclpy
    h, w = args.size
    with NodeProcess({}, ros_args=['-r', '__ns:=/soak']) as node:
        node.wait_ready(timeout=600)
        rclpy.init()
        c = SegmentationClient(namespace='/soak', keep=False, name='soak_client',
                               outputs=tuple(IMAGE_OUTPUTS))
        rows, sent = [], []
        try:
            c.wait_for_node()
            imgs = [np.random.default_rng(s).integers(0, 256, (h, w, 3), np.uint8)
                    for s in range(4)]
            driving = threading.Thread(target=lambda: sent.extend(c.drive(
                itertools.cycle(imgs), 30, timeout=2, seconds=args.minutes * 60)))
            t0 = time.monotonic()
            driving.start()
            for minute in range(1, int(args.minutes) + 1):
                time.sleep(max(0.0, t0 + minute * 60 - time.monotonic()))
                start, end = t0 + (minute - 1) * 60, t0 + minute * 60
                with c.lock:
                    published = sum(start <= t < end for t in c.publish_times.values())
                lat = minute_latencies(c, start, end)
                rss, threads, fds = proc_counts(node.proc.pid)
                rows.append([minute, f'{rss:.1f}', threads, fds,
                             f'{np.percentile(lat, 50):.0f}' if lat.size else '-',
                             f'{np.percentile(lat, 99):.0f}' if lat.size else '-',
                             f'{lat.size} / {published}'])
                print(' | '.join(map(str, rows[-1])), flush=True)
            driving.join()
            time.sleep(1.5)
            last = c.last_status(status_name('/soak'))
            alive = node.proc.poll() is None
        finally:
            c.close()
            rclpy.try_shutdown()
        log = node.log()  # the log's folder goes with the node
    return rows, {'alive': alive, 'status': last, 'log': log}


def rows_from(path: Path) -> list[list]:
    """The minute rows an earlier run printed (its standard output), to rebuild its table
    when the run ended before writing it; the end-of-run facts are not in them."""
    rows = []
    for line in path.read_text().splitlines():
        cells = [c.strip() for c in line.split('|')]
        if len(cells) == 7 and cells[0].isdigit():
            rows.append([int(cells[0]), cells[1], int(cells[2]), int(cells[3]), *cells[4:]])
    return rows


def verdict(rows: list[list], warmup: int, end: dict) -> list[list]:
    rss = [float(r[1]) for r in rows]
    threads = [r[2] for r in rows]
    fds = [r[3] for r in rows]
    p99 = [float(r[5]) if r[5] != '-' else float('nan') for r in rows]
    w = warmup  # rows[w - 1] is the last minute of the warm-up
    growth = 100 * (rss[-1] - rss[w - 1]) / rss[w - 1]
    first, last = np.nanmedian(p99[w:w + 5]), np.nanmedian(p99[-5:])
    change = 100 * (last - first) / first
    out = [
        ['RSS growth after the warm-up (bound < 1%)', f'{growth:+.2f}%',
         'met' if growth < 1 else 'NOT met'],
        ['threads after the warm-up / at the end', f'{threads[w - 1]} / {threads[-1]}',
         'met' if threads[-1] <= threads[w - 1] else 'NOT met'],
        ['open descriptors after the warm-up / at the end', f'{fds[w - 1]} / {fds[-1]}',
         'met' if fds[-1] <= fds[w - 1] else 'NOT met'],
        ['p99 latency, median of first 5 / last 5 minutes (bound +20%)',
         f'{first:.0f} / {last:.0f} ms ({change:+.0f}%)', 'met' if change <= 20 else 'NOT met']]
    if end['log'] is None:
        return out + [['node alive, tracebacks in its log, counters', 'not recorded: rows '
                       "rebuilt from the run's printed minutes", '']]
    s = end['status']
    return out + [
        ['node alive, tracebacks in its log', f'{end["alive"]}, '
         f'{end["log"].count("Traceback")}', 'met' if end['alive'] and
         'Traceback' not in end['log'] else 'NOT met'],
        ['node counters: received / processed / dropped / rejected',
         f'{s.get("frames_received")} / {s.get("frames_processed")} / '
         f'{s.get("frames_dropped")} / {s.get("frames_rejected")}', '']]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--minutes', type=float, default=30)
    p.add_argument('--warmup', type=int, default=2, help='minutes before the baseline')
    p.add_argument('--size', default='640x360', help='frame WxH')
    p.add_argument('--doc', action='store_true')
    p.add_argument('--rows-from', type=Path, metavar='LOG',
                   help='rebuild the table of an earlier run from its printed minutes '
                        '(for a run that ended before writing it); runs nothing')
    args = p.parse_args()
    w, h = (int(v) for v in args.size.split('x'))
    args.size = (h, w)
    if args.minutes < args.warmup + 10:
        raise SystemExit(f'--minutes must be at least the warm-up plus 10 ({args.warmup + 10})'
                         f': the verdict compares the first and last 5 minutes after it')
    os.environ.update(ros_env())
    os.environ.setdefault('ROS_DOMAIN_ID', '78')
    os.environ['PYTHONPATH'] = str(REPO)
    if args.rows_from:
        rows = rows_from(args.rows_from)
        args.minutes, end = len(rows), {'alive': None, 'status': {}, 'log': None}
    else:
        print('minute | RSS MB | threads | fds | p50 ms | p99 ms | masks / frames sent',
              flush=True)
        rows, end = run(args)
    md = header(f'Soak: {w}x{h} rgb8 at 30 Hz for {args.minutes:g} minutes, every output '
                f'subscribed')
    md += ('\nThe node with the shipped weights and default parameters; frames from '
           'another process over DDS; mask, colour mask, overlay, confidence and '
           'mask/compressed all subscribed. One row a minute; latency from publish to '
           f'mask receipt. Warm-up: the first {args.warmup} minutes.\n\n')
    md += table(['check', 'measured', 'bound'], verdict(rows, args.warmup, end))
    md += '\n' + table(['minute', 'RSS MB', 'threads', 'fds', 'p50 ms', 'p99 ms',
                        'masks / frames sent'], rows)
    publish('soak', md, args.doc)


if __name__ == '__main__':
    main()

"""Things that come and go while frames flow: camera publishers, subscribers, lifecycle
cycles and live parameters, each repeated, with what they leave behind.

    python -m benchmarks.churn [--restarts 50] [--subscribers 100] [--activations 100]
                               [--reconfigures 20] [--parameters 50] [--doc]

Each run starts the node (the plain one, or the managed one for the lifecycle cycles) with
the shipped weights and its defaults, and a camera publisher process
(``benchmarks.camera_publisher``, 64x48 rgb8 at 30 Hz). Reported per kind: cycles, the
slowest time from a camera's first frame (or an activation) to a mask of it, how many
cycles got their output, and the node's RSS, threads and open descriptors after the first
cycle (the warm-up), half-way and at the end. ``test/test_reliability.py`` runs a few
cycles of each and asserts the same things.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import subprocess
import sys
import time

from benchmarks.soak import proc_counts
from reporting.tables import header, publish, REPO, table
from enet_ros.tools.client import NodeProcess, ros_env, SegmentationClient
from enet_ros.topics import IMAGE_OUTPUTS, status_name

ANSWER_BOUND_S = 1.0  # a frame answered within a second of a restart or an activation


class Camera:
    """The camera publisher process."""

    def __init__(self, ns: str, rate: float = 30):
        self.ns, self.rate, self.proc = ns, rate, None

    def start(self, timeout: float = 60) -> float:
        """Start it; the header stamp (seconds) of its first frame."""
        self.proc = subprocess.Popen(
            [sys.executable, '-m', 'benchmarks.camera_publisher', self.ns, str(self.rate)],
            cwd=REPO, stdout=subprocess.PIPE, text=True,
            env={**os.environ, 'PYTHONPATH': str(REPO)})
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ''
        if not line.startswith('publishing '):
            self.kill()
            raise RuntimeError(f'the camera publisher did not start publishing in {timeout} s')
        return float(line.split()[1])

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.proc = None


def answered_after(c: SegmentationClient, since: float, timeout: float,
                   key: str = 'mask') -> float | None:
    """Seconds from ``since`` (wall clock) until ``key`` of a frame stamped at or after it
    was received; None if none came within ``timeout``."""
    offset = time.time() - time.monotonic()
    rec = c.received[key]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with c.lock:
            for (sec, nsec), t in zip(reversed(rec.stamps), reversed(rec.times)):
                if sec + nsec * 1e-9 >= since - 1e-6:
                    return t + offset - since
        time.sleep(0.01)
    return None


def summary(kind: str, delays: list, resources: list, extra: str = '') -> dict:
    """Resources after the first cycle (the warm-up), half-way and at the end: a leak
    grows in both halves, a pool that fills once does not."""
    got = [d for d in delays if d is not None]
    first, mid, end = resources[0], resources[len(resources) // 2], resources[-1]
    return {'kind': kind, 'cycles': len(delays), 'answered': len(got),
            'slowest_s': max(got) if got else float('nan'),
            'rss_mb': (first[0], mid[0], end[0]), 'threads': (first[1], mid[1], end[1]),
            'fds': (first[2], mid[2], end[2]), 'extra': extra}


def publisher_restarts(c, pid: int, ns: str, n: int) -> dict:
    delays, res = [], []
    for _ in range(n):
        cam = Camera(ns)
        try:
            delays.append(answered_after(c, cam.start(), 10))
            time.sleep(0.2)
        finally:
            cam.kill()
        time.sleep(0.3)
        res.append(proc_counts(pid))
    seen = c.last_status(status_name(ns)).get('input_publishers', '?') \
        if wait_diagnostics(c) else '?'
    return summary('camera publisher killed and restarted', delays, res,
                   f'diagnostics input_publishers: {seen}')


def wait_diagnostics(c, seconds: float = 1.5) -> bool:
    before = c.received['diagnostics'].count
    return c.wait('diagnostics', before + 1, seconds)


def subscriber_churn(c, pid: int, n: int) -> dict:
    """Overlay, colour-mask and confidence subscribers, each created, waited on for one
    message and destroyed, in turn (the node computes those only while subscribed)."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    delays, res = [], []
    keys = ('overlay', 'color_mask', 'confidence')
    for k in range(n):
        key = keys[k % len(keys)]
        got = []
        sub = c.node.create_subscription(Image, IMAGE_OUTPUTS[key], got.append, QoSProfile(
            depth=1, reliability=ReliabilityPolicy.RELIABLE))
        t = time.monotonic()
        while not got and time.monotonic() - t < 10:
            time.sleep(0.01)
        delays.append(time.monotonic() - t if got else None)
        c.node.destroy_subscription(sub)
        res.append(proc_counts(pid))
    return summary('overlay / colour mask / confidence subscriber created and destroyed',
                   delays, res, 'from creation to its first message')


def live_parameters(c, pid: int, ns: str, n: int) -> dict:
    """overlay_alpha and latency_budget_ms set back and forth while frames flow; each
    accepted and followed by a mask."""
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters
    client = c.node.create_client(SetParameters, f'{ns}/enet_segmentation/set_parameters')
    assert client.wait_for_service(timeout_sec=30)
    delays, res, refused = [], [], 0
    for k in range(n):
        value = ParameterValue(type=ParameterType.PARAMETER_DOUBLE,
                               double_value=0.3 if k % 2 else 0.6)
        budget = ParameterValue(type=ParameterType.PARAMETER_DOUBLE,
                                double_value=200.0 if k % 2 else 400.0)
        future = client.call_async(SetParameters.Request(parameters=[
            Parameter(name='overlay_alpha', value=value),
            Parameter(name='latency_budget_ms', value=budget)]))
        t = time.monotonic()
        while not future.done() and time.monotonic() - t < 10:
            time.sleep(0.01)
        refused += not (future.done() and all(r.successful for r in future.result().results))
        delays.append(answered_after(c, time.time(), 10))
        res.append(proc_counts(pid))
    c.node.destroy_client(client)
    return summary('live parameters changed (overlay_alpha, latency_budget_ms)', delays, res,
                   f'{refused} refused')


def lifecycle_cycles(c, pid: int, ns: str, activations: int, reconfigures: int,
                     log) -> list[dict]:
    """deactivate/activate, then deactivate/cleanup/configure/activate, each followed by
    a mask of a frame sent after it."""
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState
    change = c.node.create_client(ChangeState, f'{ns}/enet_segmentation/change_state')
    assert change.wait_for_service(timeout_sec=60), log()

    def step(tid: int) -> None:
        future = change.call_async(ChangeState.Request(transition=Transition(id=tid)))
        t = time.monotonic()
        while not future.done() and time.monotonic() - t < 300:
            time.sleep(0.01)
        if not (future.done() and future.result().success):
            raise RuntimeError(f'lifecycle transition {tid} failed:\n{log()[-2000:]}')

    out = []
    for kind, n, steps in (
            ('managed node deactivated and activated', activations,
             (Transition.TRANSITION_DEACTIVATE, Transition.TRANSITION_ACTIVATE)),
            ('managed node cleaned up and configured', reconfigures,
             (Transition.TRANSITION_DEACTIVATE, Transition.TRANSITION_CLEANUP,
              Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_ACTIVATE))):
        delays, res = [], []
        for _ in range(n):
            for tid in steps:
                step(tid)
            delays.append(answered_after(c, time.time(), 10))
            res.append(proc_counts(pid))
        out.append(summary(kind, delays, res, 'from activation to a mask'))
    c.node.destroy_client(change)
    return out


def plain_node_runs(params: dict, restarts: int, subscribers: int, parameters: int) -> list:
    ns = '/churn'
    with NodeProcess(params, ros_args=['-r', f'__ns:={ns}']) as node:
        node.wait_ready(timeout=600)
        c = SegmentationClient(namespace=ns, keep=False, name='churn_client')
        try:
            c.wait_for_node()
            out = [publisher_restarts(c, node.proc.pid, ns, restarts)]
            cam = Camera(ns)
            cam.start()
            try:
                out.append(subscriber_churn(c, node.proc.pid, subscribers))
                out.append(live_parameters(c, node.proc.pid, ns, parameters))
            finally:
                cam.kill()
        finally:
            c.close()
        out.append(node.proc.poll() is None and 'Traceback' not in node.log())
    return out


def managed_node_runs(params: dict, activations: int, reconfigures: int) -> list:
    ns = '/churn_managed'
    with NodeProcess({**params, 'autostart': True}, ros_args=['-r', f'__ns:={ns}'],
                     module='enet_ros.managed_segmentation_node') as node:
        node.wait_ready(timeout=600)
        c = SegmentationClient(namespace=ns, keep=False, name='churn_managed_client')
        cam = Camera(ns)
        try:
            c.wait_for_node()
            cam.start()
            out = lifecycle_cycles(c, node.proc.pid, ns, activations, reconfigures, node.log)
        finally:
            cam.kill()
            c.close()
        out.append(node.proc.poll() is None and 'Traceback' not in node.log())
    return out


RSS_SECOND_HALF_MB = 2.0  # a leak grows in the second half as in the first


def within_bounds(r: dict) -> bool:
    """Every cycle answered within ANSWER_BOUND_S, and nothing grew in the second half: no
    thread, no descriptor, at most RSS_SECOND_HALF_MB of memory."""
    return (r['answered'] == r['cycles'] and r['slowest_s'] <= ANSWER_BOUND_S and
            r['threads'][2] <= r['threads'][1] and r['fds'][2] <= r['fds'][1] and
            r['rss_mb'][2] - r['rss_mb'][1] <= RSS_SECOND_HALF_MB)


def row(r: dict) -> list:
    return [r['kind'], r['cycles'], f'{r["answered"]} of {r["cycles"]}',
            f'{r["slowest_s"]:.2f}', '{:.0f} / {:.0f} / {:.0f}'.format(*r['rss_mb']),
            '{} / {} / {}'.format(*r['threads']), '{} / {} / {}'.format(*r['fds']),
            'met' if within_bounds(r) else 'NOT met', r['extra']]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--restarts', type=int, default=50)
    p.add_argument('--subscribers', type=int, default=100)
    p.add_argument('--activations', type=int, default=100)
    p.add_argument('--reconfigures', type=int, default=20)
    p.add_argument('--parameters', type=int, default=50)
    p.add_argument('--doc', action='store_true')
    args = p.parse_args()
    os.environ.update(ros_env())
    os.environ.setdefault('ROS_DOMAIN_ID', '80')
    import rclpy
    rclpy.init()
    try:
        *plain, plain_ok = plain_node_runs({}, args.restarts, args.subscribers,
                                           args.parameters)
        *managed, managed_ok = managed_node_runs({}, args.activations, args.reconfigures)
    finally:
        rclpy.try_shutdown()
    md = header('Churn: publishers, subscribers, lifecycle cycles and parameters')
    md += ('\nThe node with the shipped weights and default parameters (the managed node '
           'for the lifecycle rows, autostarted); a camera publisher process at 30 Hz. '
           '"slowest" is the longest time from a restarted camera\'s first frame, an '
           'activation or a parameter change to a mask of a frame after it (for '
           "subscribers: to their first message); resources are the node's after the first "
           'cycle / half-way / at the end (a leak grows in both halves; a pool that fills '
           'once does not). Node alive with no traceback at the end: '
           f'{"yes" if plain_ok and managed_ok else "NO"}.\n\n')
    md += (f'Bounds: every cycle answered within {ANSWER_BOUND_S:g} s; in the second half '
           f'no new thread or descriptor and at most {RSS_SECOND_HALF_MB:g} MB more '
           f'memory.\n\n')
    md += table(['what', 'cycles', 'answered', 'slowest s', 'RSS MB', 'threads', 'fds',
                 'bounds', 'note'], [row(r) for r in plain + managed])
    publish('churn', md, args.doc)


if __name__ == '__main__':
    main()

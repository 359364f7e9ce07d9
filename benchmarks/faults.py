"""The disk and cache faults of a vehicle's computer, each through a real node process.

    python -m benchmarks.faults [--doc]

The node with the shipped weights, compiled (fp32, so its masks can be compared with the
eager network's pixel for pixel), and its compile cache (``ENET_ROS_CACHE``) on:

- a 1 MB tmpfs, which fills while the first start compiles;
- a read-only tmpfs;
- a writable folder whose package has damaged bytes (built by a first start, then 64
  bytes flipped);

and, last, the weights file removed while the node serves. Each row: what the node said
(its warning or error line), whether it served, the agreement of its mask with the eager
network on a CamVid demo frame, and what the cache holds afterwards. Needs root (mount).
"""

from __future__ import annotations

import argparse
import contextlib
import os
from pathlib import Path
import shutil
import re
import subprocess
import tempfile

import cv2
import numpy as np

from reporting.tables import header, publish, REPO, table
from enet_ros.checkpoint import DEFAULT_WEIGHTS
from enet_ros.segmenter import Segmenter
from enet_ros.tools.client import NodeProcess, ros_env, SegmentationClient

NODE = {'backend': 'compile', 'precision': 'fp32', 'input_reliability': 'reliable'}


@contextlib.contextmanager
def tmpfs(path: Path, options: str):
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(['mount', '-t', 'tmpfs', '-o', options, 'tmpfs', str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(['umount', '-l', str(path)], check=False)


def frame() -> np.ndarray:
    path = sorted((REPO / 'enet_ros' / 'demo_frames').glob('*.jpg'))[0]
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def serve_once(cache: Path, ns: str, params: dict | None = None) -> dict:
    """Start the node on ``cache``, segment one frame; what it said and did."""
    env = {**os.environ, 'ENET_ROS_CACHE': str(cache)}
    env.pop('TORCHINDUCTOR_CACHE_DIR', None)
    img = frame()
    with NodeProcess({**NODE, **(params or {})}, ros_args=['-r', f'__ns:={ns}'],
                     env=env) as node:
        try:
            node.wait_ready(timeout=900)
        except RuntimeError:
            return {'said': said(node.log()), 'served': False, 'agreement': None}
        c = SegmentationClient(namespace=ns, name=f'{ns.strip("/")}_faults',
                               reliable_input=True)
        try:
            c.wait_for_node()
            c.publish(img)
            got = c.wait('mask', 1, 60)
        finally:
            c.close()
        log = node.log()
    if not got:
        return {'said': said(log), 'served': False, 'agreement': None}
    msg = c.received['mask'].messages[-1]
    mask = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.width)
    eager = Segmenter(DEFAULT_WEIGHTS, 'cpu', 'fp32', 'eager').segment(img)[0]
    return {'said': said(log), 'served': True, 'agreement': 100 * (mask == eager).mean(),
            'traceback': 'Traceback' in log}


def said(log: str) -> str:
    """The node's warnings and errors, with this run's temporary folders as $TMPDIR/..."""
    lines = [line.split(']: ', 1)[-1] for line in log.splitlines()
             if '[WARN]' in line or '[ERROR]' in line or 'warning' in line.lower()]
    text = ' / '.join(lines) or '(nothing)'
    return re.sub(re.escape(tempfile.gettempdir()) + r'/(enet_faults|enet_ros_cache)_\w+',
                  r'$TMPDIR/\1_XXXX', text)


def packages(cache: Path) -> str:
    found = sorted(p.name for p in (cache / 'aoti').glob('*.pt2')) if (cache / 'aoti').is_dir() \
        else []
    return ', '.join(found) or 'none'


def weights_removed(tmp: Path) -> dict:
    """The managed node serving from a copy of the weights, the copy deleted, then a
    reconfigure: does it keep serving, and what does the failed configure say?"""
    import time
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState
    path = tmp / 'weights.pt'
    shutil.copy(DEFAULT_WEIGHTS, path)
    ns = '/faults_gone'
    with NodeProcess({'model_path': str(path), 'autostart': True},
                     ros_args=['-r', f'__ns:={ns}'],
                     module='enet_ros.managed_segmentation_node') as node:
        node.wait_ready(timeout=900)
        c = SegmentationClient(namespace=ns, name='faults_gone', reliable_input=True)
        change = c.node.create_client(ChangeState, f'{ns}/enet_segmentation/change_state')

        def step(tid) -> bool:
            future = change.call_async(ChangeState.Request(transition=Transition(id=tid)))
            while not future.done():
                time.sleep(0.02)
            return future.result().success
        try:
            c.wait_for_node()
            path.unlink()
            before = c.received['mask'].count
            c.publish(frame())
            served = c.wait('mask', before + 1, 30)
            step(Transition.TRANSITION_DEACTIVATE)
            step(Transition.TRANSITION_CLEANUP)
            configured = step(Transition.TRANSITION_CONFIGURE)
            alive = node.proc.poll() is None
        finally:
            c.close()
        errors = [line.split(']: ', 1)[-1] for line in node.log().splitlines()
                  if 'configure failed' in line]
    return {'served': served, 'configured': configured, 'alive': alive,
            'said': ' / '.join(errors)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--doc', action='store_true')
    args = p.parse_args()
    os.environ.update(ros_env())
    os.environ.setdefault('ROS_DOMAIN_ID', '81')
    os.environ['PYTHONPATH'] = str(REPO)
    import rclpy
    rclpy.init()
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix='enet_faults_') as tmp:
            tmp = Path(tmp)
            for name, options in (('1 MB disk that fills during the compile', 'size=1M'),
                                  ('read-only disk', 'ro,size=1M')):
                with tmpfs(tmp / name.split()[0], options) as cache:
                    r = serve_once(cache, f'/faults_{len(rows)}')
                    rows.append([name, r['said'], 'yes' if r['served'] else 'no',
                                 f'{r["agreement"]:.2f}%' if r['agreement'] is not None
                                 else '-', packages(cache)])
            cache = tmp / 'damaged'
            serve_once(cache, '/faults_build')  # builds the package
            pkg = next((cache / 'aoti').glob('*.pt2'))
            data = bytearray(pkg.read_bytes())
            for k in range(len(data) // 3, len(data) // 3 + 64):
                data[k] ^= 0xFF
            pkg.write_bytes(bytes(data))
            r = serve_once(cache, '/faults_damaged')
            rows.append(['cached package with 64 damaged bytes', r['said'],
                         'yes' if r['served'] else 'no', f'{r["agreement"]:.2f}%',
                         f'{packages(cache)} (rebuilt, '
                         f'{"intact" if pkg.read_bytes() != bytes(data) else "still damaged"})'])
            g = weights_removed(tmp)
            rows.append(['weights file removed while serving, then cleanup and configure',
                         g['said'], f'{"yes" if g["served"] else "no"} (before the '
                         f'reconfigure); configure {"succeeded" if g["configured"] else "failed"}'
                         f', node {"alive" if g["alive"] else "DEAD"}', '-', '-'])
    finally:
        rclpy.try_shutdown()
    md = header('Disk and cache faults, through the node')
    md += ('\nThe shipped weights, backend compile, fp32; agreement = pixels whose class '
           'equals the eager fp32 network\'s on a demo frame. "said" is every warning or '
           'error line the node logged.\n\n')
    md += table(['fault', 'said', 'served', 'agreement', 'cache afterwards'], rows)
    publish('faults', md, args.doc)


if __name__ == '__main__':
    main()

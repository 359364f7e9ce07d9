"""The node over real DDS on one host: latency, transport loss, soak, several cameras.

    python -m benchmarks.node_perf latency   [--doc]  # e2e vs core inference, 640x360/720p
    python -m benchmarks.node_perf transport [--doc]  # FastDDS defaults vs config/fastdds.xml
    python -m benchmarks.node_perf soak      [--doc]  # 720p 30 Hz: mask only vs all outputs
    python -m benchmarks.node_perf cameras   [--doc]  # throughput with 1, 2, 4 cameras
    python -m benchmarks.node_perf shared    [--doc]  # idle vs a busy neighbour
    python -m benchmarks.node_perf peak      [--doc]  # highest rate with < 5% dropped
    python -m benchmarks.node_perf record    [--doc]  # segmentation/mask/compressed cost

Every run starts the node as its own process with the shipped weights and its default
device, precision and backend, as ``ros2 run`` would (``--backend`` etc. override).
"""

from __future__ import annotations

import argparse
import itertools
import os
from pathlib import Path
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np

from benchmarks.core_speed import reference_ms
from reporting.tables import header, publish, REPO, table
from enet_ros.checkpoint import DEFAULT_WEIGHTS
from enet_ros.camera_stats import STAGES
from enet_ros.topics import status_name
from enet_ros.dds import profiles_variable
from enet_ros.tools.client import NodeProcess, ros_env, SegmentationClient
from enet_ros.options import add_model_args

SIZES = {'640x360': (360, 640), '1280x720': (720, 1280), '1920x1080': (1080, 1920)}


def frame(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def rss_mb(pid: int) -> float:
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) / 1024
    return float('nan')


def start(args, extra: dict | None = None, ns: str = '', own_session: bool = True
          ) -> NodeProcess:
    params = {'device': args.device, 'precision': args.precision, 'backend': args.backend}
    params.update(extra or {})
    node = NodeProcess(params, ros_args=['-r', f'__ns:={ns}'] if ns else [],
                       own_session=own_session)
    node.wait_ready(timeout=600)
    return node


def latency(args) -> str:
    import rclpy
    rows = []
    for label in ('640x360', '1280x720'):
        h, w = SIZES[label]
        with start(args, ns='/bench'):
            rclpy.init()
            c = SegmentationClient(namespace='/bench', reliable_input=True, keep=False,
                                   name='bench_latency')
            try:
                c.wait_for_node()
                c.drive(itertools.repeat(frame(h, w), args.frames))  # lockstep
                time.sleep(1.2)
                lat = np.asarray(c.latencies()[5:]) * 1000  # skip the first few
                name = status_name('/bench')
                stage = {k: c.frame_mean(name, f'{k}_ms_mean') for k in STAGES}
                d = c.last_status(name)
            finally:
                c.close()
                rclpy.try_shutdown()
        mean = float(lat.mean())
        core = stage['preprocess'] + stage['inference'] + stage['postprocess']
        # the reference, in this process once the node has gone: eager fp32 network at
        # the input's size, unfused, as peer PyTorch ENets ship it (core_speed's)
        ref = reference_ms(DEFAULT_WEIGHTS, (h, w), 20)
        rows.append([label, d.get('precision'), d.get('backend'), f'{mean:.1f}',
                     f'{np.median(lat):.1f}', f'{np.percentile(lat, 95):.1f}',
                     f'{ref:.1f}', f'{ref / np.median(lat):.2f}x',
                     *(f'{stage[k]:.1f}' for k in STAGES), f'{core:.1f}',
                     f'{mean - core:.1f}', f'{100 * (mean - core) / core:.0f}%',
                     f'{100 * (mean - stage["inference"]) / stage["inference"]:.0f}%'])
    md = header('Node latency over DDS (lockstep, one frame in flight)')
    md += (f'\n{args.frames} frames per size published by another process, each after the '
           'previous mask arrived; e2e = publish to receipt of `segmentation/mask`. Stage '
           "times are the node's own diagnostics (per-frame mean: per-second means "
           'weighted by the frames of each second). Core = the '
           "inference core's `segment()` (preprocess + inference + postprocess: resize, "
           'normalise, network, argmax, resize back), what any user of the core pays. '
           "Node overhead = e2e - core: the node's own work (message conversion, publishing) "
           'and DDS transport both ways. The last column puts everything but the network '
           'against the network alone. Reference = the eager fp32 network at the input '
           'size, unfused, as peer PyTorch ENets ship it (`core_speed.py`), measured in '
           'the same run after the node stopped.\n\n')
    md += table(['input', 'precision', 'backend', 'e2e mean ms', 'e2e median ms',
                 'e2e p95 ms', 'reference ms', 'reference / e2e median',
                 *(f'{k} ms' for k in STAGES), 'core ms',
                 'node overhead ms', 'node overhead / core', 'all but network / network'],
                rows)
    return md


SUBSCRIBER = textwrap.dedent("""
    import sys, time, rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    rclpy.init()
    node = rclpy.create_node('transport_sub')
    got = []
    node.create_subscription(Image, 'transport', lambda m: got.append(1),
                             QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT))
    end = time.monotonic() + float(sys.argv[1])
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.05)
    print(len(got), flush=True)
""")

PUBLISHER = textwrap.dedent("""
    import sys, time, rclpy, numpy as np
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    h, w, n = (int(v) for v in sys.argv[1:4])
    rclpy.init()
    node = rclpy.create_node('transport_pub')
    pub = node.create_publisher(Image, 'transport', QoSProfile(
        depth=10, reliability=ReliabilityPolicy.BEST_EFFORT))
    while pub.get_subscription_count() == 0:
        time.sleep(0.05)
    time.sleep(2)  # let the subscriber side finish matching too
    data = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8).tobytes()
    t0 = time.monotonic()
    for i in range(n):
        pub.publish(Image(height=h, width=w, encoding='rgb8', step=w * 3, data=data))
        time.sleep(max(0.0, t0 + (i + 1) / 30 - time.monotonic()))
    time.sleep(1)
""")


def transport(args) -> str:
    rows = []
    for profile in ('FastDDS defaults', 'config/fastdds.xml', 'FASTDDS_BUILTIN_TRANSPORTS='
                    'LARGE_DATA'):
        for label, (h, w) in SIZES.items():
            received = transport_run(profile, h, w, args.frames)
            rows.append([profile, label, f'{h * w * 3 / 1e6:.1f}', args.frames, received,
                         f'{100 * (args.frames - received) / args.frames:.1f}%'])
    md = header('DDS transport loss between two processes, best effort, 30 Hz rgb8')
    md += ('\nA publisher process sends frames at 30 Hz to a best-effort subscriber (depth 10) '
           'in another process on the same host, both with the same middleware settings; '
           'no node involved. FastDDS reads its XML profile once per process, so each '
           'setting gets fresh processes.\n\n')
    md += table(['middleware settings', 'image', 'MB/frame', 'sent', 'received', 'lost'],
                rows)
    return md


def transport_run(setting: str, h: int, w: int, n: int) -> int:
    """Frames received of ``n`` sent between two fresh processes under ``setting``."""
    env = ros_env()
    if setting != 'config/fastdds.xml':
        env.pop(profiles_variable(), None)
    if setting.startswith('FASTDDS_BUILTIN_TRANSPORTS='):
        env['FASTDDS_BUILTIN_TRANSPORTS'] = setting.split('=', 1)[1]
    env['ROS_DOMAIN_ID'] = str(int(os.environ.get('ROS_DOMAIN_ID', '0')) + 1)
    duration = n / 30 + 8
    sub = subprocess.Popen([sys.executable, '-c', SUBSCRIBER, str(duration)], env=env,
                           stdout=subprocess.PIPE, text=True)
    subprocess.run([sys.executable, '-c', PUBLISHER, str(h), str(w), str(n)], env=env,
                   check=True, timeout=duration + 30)
    return int(sub.communicate(timeout=duration + 30)[0].split()[-1])


SOAK_OUTPUTS = {'mask only': ('mask',),
                'mask, overlay and colour mask (as rviz)': ('mask', 'overlay', 'color_mask')}


def soak_once(args, outputs: tuple[str, ...]) -> dict:
    import rclpy
    h, w = SIZES['1280x720']
    with start(args, ns='/soak') as node:
        rclpy.init()
        c = SegmentationClient(namespace='/soak', keep=False, name='bench_soak',
                               outputs=outputs)
        try:
            c.wait_for_node()
            rss, done, t0 = [], threading.Event(), time.monotonic()

            def sample() -> None:  # the node's memory every 5 s
                while True:
                    rss.append((time.monotonic() - t0, rss_mb(node.proc.pid)))
                    if done.wait(5):
                        return
            sampler = threading.Thread(target=sample)
            sampler.start()
            imgs = [frame(h, w, s) for s in range(4)]
            i = len(c.drive(itertools.cycle(imgs), 30, timeout=2, seconds=args.seconds))
            done.set()
            sampler.join()
            time.sleep(1.2)  # one more diagnostics period
            alive = node.proc.poll() is None
            lat = np.asarray(c.latencies()) * 1000
            name = status_name('/soak')
            frame_means = {k: c.frame_mean(name, f'{k}_ms_mean') for k in ('inference', 'publish')}
            d = c.last_status(name)
            got = {k: c.received[k].count for k in outputs}
        finally:
            c.close()
            rclpy.try_shutdown()
    base = next((r for t, r in rss if t >= 30), rss[0][1])  # after warm-up allocations
    end = rss[-1][1]
    return {
        'node alive at the end': alive, 'frames sent': i,
        'masks received': f"{got['mask']} ({100 * got['mask'] / i:.1f}%)",
        'overlays / colour masks received': ' / '.join(
            str(got[k]) for k in ('overlay', 'color_mask') if k in got) or '-',
        'node: received / processed / dropped / dropped before node / rejected':
            f'{d.get("frames_received")} / {d.get("frames_processed")} / '
            f'{d.get("frames_dropped")} / {d.get("frames_dropped_before_node")} / '
            f'{d.get("frames_rejected")}',
        **{f'node {stage} stage ms (per-frame mean)': f'{frame_means[stage]:.1f}'
           for stage in ('inference', 'publish')},
        'e2e latency median / p95 / max ms':
            f'{np.median(lat):.0f} / {np.percentile(lat, 95):.0f} / {lat.max():.0f}',
        'RSS at 30 s / at end (MB)': f'{base:.0f} / {end:.0f}',
        'RSS growth after 30 s': f'{100 * (end - base) / base:+.1f}%',
        'threads at the end (why)': d.get('threads', '?')}


def soak(args) -> str:
    runs = {name: soak_once(args, outputs) for name, outputs in SOAK_OUTPUTS.items()}
    md = header(f'Soak: 1280x720 rgb8 at 30 Hz for {args.seconds:g} s, default parameters')
    md += ('\nFrames from another process; the node computes the colour mask and overlay '
           'only while someone subscribes, so each subscription set is its own run.\n\n')
    metrics = list(next(iter(runs.values())))
    md += table(['metric'] + list(runs), [[m] + [r[m] for r in runs.values()]
                                          for m in metrics])
    return md


def cameras(args) -> str:
    import rclpy
    h, w = SIZES['640x360']
    rows = []
    for n in (1, 2, 4):
        names = [f'cam{k}' for k in range(n)]
        with start(args, {'cameras': names}, ns='/multi'):
            rclpy.init()
            clients = [SegmentationClient(namespace=f'/multi/{ns}', keep=False,
                                          name=f'bench_{ns}') for ns in names]
            try:
                for c in clients:
                    c.wait_for_node()
                img = frame(h, w)
                drivers = [threading.Thread(target=c.drive, args=(itertools.repeat(img), 30),
                                            kwargs={'timeout': 1, 'seconds': args.seconds})
                           for c in clients]
                for d in drivers:
                    d.start()
                for d in drivers:
                    d.join()
                got = [c.received['mask'].count for c in clients]
                lat = np.concatenate([np.asarray(c.latencies()) for c in clients]) * 1000
            finally:
                for c in clients:
                    c.close()
                rclpy.try_shutdown()
        rows.append([n, f'{30 * n}', f'{sum(got) / args.seconds:.1f}',
                     ' / '.join(f'{g / args.seconds:.1f}' for g in got),
                     f'{np.median(lat):.0f}', f'{np.percentile(lat, 95):.0f}'])
    md = header('Several cameras in one node process (one shared model), 640x360 at 30 Hz each')
    md += f'\nEach camera published by its own client for {args.seconds} s.\n\n'
    md += table(['cameras', 'input fps total', 'output fps total', 'per camera',
                 'e2e median ms', 'e2e p95 ms'], rows)
    return md


def shared(args) -> str:
    """Lockstep latency at 640x360 with the CPU idle, beside one busy process, and beside
    one at nice 19; the node's automatic thread count against a fixed team of all CPUs.
    The node runs in this script's session, as the busy process does, so that the kernel
    shares the CPU between their threads (no autogroup share of its own): this measures
    the thread choice alone."""
    import rclpy
    from enet_ros.threads import usable_cpus
    h, w = SIZES['640x360']
    img = frame(h, w)
    rows, idle = [], {}
    for threads in (0, usable_cpus()):
        label = 'auto (default)' if threads == 0 else f'fixed {threads}'
        for neighbour in ('none', 'busy', 'busy, nice 19'):
            busy = None
            if neighbour != 'none':
                cmd = [sys.executable, '-c', 'while True: pass']
                if 'nice' in neighbour:
                    cmd = ['nice', '-n', '19', *cmd]
                busy = subprocess.Popen(cmd)
            try:
                with start(args, {'num_threads': threads}, ns='/shared',
                           own_session=False):
                    rclpy.init()
                    c = SegmentationClient(namespace='/shared', reliable_input=True,
                                           keep=False, name='bench_shared')
                    try:
                        c.wait_for_node()
                        # the first half lets the node settle; the second is measured
                        measured_from = len(c.drive(itertools.repeat(img), timeout=30,
                                                    seconds=args.seconds / 2))
                        sent = measured_from + len(c.drive(itertools.repeat(img), timeout=30,
                                                           seconds=args.seconds / 2))
                        time.sleep(1.2)
                        lat = np.asarray(c.latencies()[measured_from:]) * 1000
                        got = c.received['mask'].count
                        d = c.last_status(status_name('/shared'))
                    finally:
                        c.close()
                        rclpy.try_shutdown()
            finally:
                if busy is not None:
                    busy.kill()
                    busy.wait()
            med = float(np.median(lat))
            idle.setdefault(label, med)
            rows.append([label, neighbour, f'{got} / {sent}', f'{med:.1f}',
                         f'{np.percentile(lat, 95):.1f}', f'{med / idle[label]:.2f}x',
                         d.get('threads', '?')])
    md = header('Sharing the CPU: 640x360 lockstep, idle and beside a busy process')
    md += ('\nFrames published by another process, each after the previous mask arrived, '
           f'for {args.seconds:g} s; the medians cover the second half (the first lets the '
           "thread choice settle). The neighbour is a Python busy loop, in the node's session "
           '(the kernel shares the CPU between their threads). "vs idle" compares '
           "with the same setting's idle row of this run.\n\n")
    md += table(['num_threads', 'neighbour', 'masks / frames', 'e2e median ms',
                 'e2e p95 ms', 'vs idle', 'threads at the end (why)'], rows)
    return md


def camvid_frames(h: int, w: int) -> list[np.ndarray]:
    """The package's CamVid demo frames at h x w, rgb8: real scenes, so that masks (and
    their PNG size) are those of a street, not of noise."""
    import cv2
    paths = sorted((REPO / 'enet_ros' / 'demo_frames').glob('*.jpg'))
    return [cv2.cvtColor(cv2.resize(cv2.imread(str(p)), (w, h)), cv2.COLOR_BGR2RGB)
            for p in paths]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/PID/stat)."""
    fields = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


ALL_OUTPUTS = ('mask', 'color_mask', 'overlay', 'confidence', 'mask_compressed')
PEAK_OUTPUTS = {'mask only': ('mask',), 'every output': ALL_OUTPUTS}


def dropped(c, imgs, rate: float, seconds: float) -> float:
    """The share of frames published at ``rate`` for ``seconds`` that got no mask."""
    before = c.received['mask'].count
    sent = len(c.drive(itertools.cycle(imgs), rate, timeout=2, seconds=seconds))
    return 1 - (c.received['mask'].count - before) / sent


def peak(args) -> str:
    """ros2_benchmark's figure for a perception node: the highest input rate it sustains
    with under 5% of frames dropped (doubling from 10 Hz until it fails, then bisecting),
    and the node's CPU use at 30 Hz."""
    import rclpy
    rows = []
    for size in ('640x360', '1280x720'):
        h, w = SIZES[size]
        imgs = camvid_frames(h, w)
        with start(args, ns='/peak') as node:
            for label, outputs in PEAK_OUTPUTS.items():
                rclpy.init()
                c = SegmentationClient(namespace='/peak', keep=False, name='bench_peak',
                                       outputs=outputs)
                try:
                    c.wait_for_node()
                    dropped(c, imgs, 10, 3)  # warm-up: thread choice, caches
                    good, bad, rate = 0.0, None, 10.0
                    while bad is None and rate <= 320:
                        if dropped(c, imgs, rate, args.seconds) < 0.05:
                            good, rate = rate, rate * 2
                        else:
                            bad = rate
                    for _ in range(4 if bad else 0):
                        mid = (good + bad) / 2
                        if dropped(c, imgs, mid, args.seconds) < 0.05:
                            good = mid
                        else:
                            bad = mid
                    cpu0, t0 = cpu_seconds(node.proc.pid), time.monotonic()
                    at30 = dropped(c, imgs, 30, args.seconds)
                    cpu = 100 * (cpu_seconds(node.proc.pid) - cpu0) / (time.monotonic() - t0)
                finally:
                    c.close()
                    rclpy.try_shutdown()
                rows.append([size, label, f'{good:.0f}', f'{cpu:.0f}%', f'{100 * at30:.1f}%'])
    md = header('Peak rate: the highest input rate with under 5% of frames dropped')
    md += ("\nAs ros2_benchmark measures Isaac ROS's segmentation nodes: CamVid frames "
           'resized to the input size, rgb8, published from another process at a fixed '
           f'rate for {args.seconds:g} s a step (doubling from 10 Hz, then bisecting four '
           'times); a frame counts as dropped when its mask never arrives. The node runs '
           'with its defaults (shipped weights, device, precision and backend auto). CPU is '
           "the node process's user + system time at 30 Hz, in percent of one core; the "
           'publisher and subscribers share the same two cores. "every output" subscribes '
           f'{", ".join(ALL_OUTPUTS)}.\n\n')
    md += table(['input', 'subscribed', 'peak rate (Hz, < 5% dropped)', 'node CPU at 30 Hz',
                 'dropped at 30 Hz'], rows)
    return md


def record(args) -> str:
    """What segmentation/mask/compressed costs the node and saves a recorder: the node's
    publish stage with and without a subscriber to it, and PNG against raw mask bytes."""
    import rclpy
    from enet_ros.image_codec import mask_to_png
    from enet_ros.segmenter import Segmenter
    seg = Segmenter(str(DEFAULT_WEIGHTS), 'cpu', 'fp32', 'eager')
    rows = []
    for size in ('640x360', '1280x720'):
        h, w = SIZES[size]
        imgs = camvid_frames(h, w)
        masks = [seg.segment(img)[0] for img in imgs]
        encode = []
        for _ in range(20):
            for m in masks:
                t = time.perf_counter()
                mask_to_png(m)
                encode.append(time.perf_counter() - t)
        png_kb = np.mean([len(mask_to_png(m)) for m in masks]) / 1024
        publish_ms = {}
        with start(args, ns='/rec'):
            for label, outputs in (('mask', ('mask',)),
                                   ('mask + mask/compressed', ('mask', 'mask_compressed'))):
                rclpy.init()
                c = SegmentationClient(namespace='/rec', keep=False, name='bench_rec',
                                       outputs=outputs)
                try:
                    c.wait_for_node()
                    c.drive(itertools.cycle(imgs), 10, timeout=2, seconds=args.seconds)
                    time.sleep(1.2)
                    publish_ms[label] = c.frame_mean(status_name('/rec'), 'publish_ms_mean')
                finally:
                    c.close()
                    rclpy.try_shutdown()
        raw_kb = h * w / 1024
        rows.append([size, f'{raw_kb:.0f}', f'{png_kb:.1f} ({raw_kb / png_kb:.0f}x smaller)',
                     f'{1e3 * np.median(encode):.2f}',
                     f'{publish_ms["mask"]:.2f} / {publish_ms["mask + mask/compressed"]:.2f}',
                     f'{30 * raw_kb / 1024:.1f} / {30 * png_kb / 1024:.2f}'])
    md = header('Recording the mask: segmentation/mask/compressed')
    md += ('\nMasks of the CamVid demo frames at each size (shipped weights). PNG: '
           "image_codec.mask_to_png (zlib level 1, run-length strategy, no row filter), median of "
           "120 encodes in this process. "
           "The node's publish stage (per-frame mean from its diagnostics, 10 Hz for "
           f'{args.seconds:g} s) with only segmentation/mask subscribed, and with '
           'mask/compressed subscribed as well: the PNG is made only while someone '
           'subscribes.\n\n')
    md += table(['mask', 'raw KB', 'PNG KB', 'PNG encode ms', 'node publish ms (mask / '
                 '+ compressed)', 'MB/s at 30 Hz (raw / PNG)'], rows)
    return md


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('what', choices=['latency', 'transport', 'soak', 'cameras', 'shared',
                                    'peak', 'record'])
    p.add_argument('--frames', type=int, default=100)
    p.add_argument('--seconds', type=float, default=None)
    add_model_args(p, weights=False)
    p.add_argument('--doc', action='store_true')
    args = p.parse_args()
    if args.seconds is None:
        args.seconds = {'soak': 120, 'peak': 5, 'record': 10}.get(args.what, 20)
    os.environ.update(ros_env())
    os.environ.setdefault('ROS_DOMAIN_ID', '77')
    os.environ['PYTHONPATH'] = str(REPO)
    md = {'latency': latency, 'transport': transport, 'soak': soak, 'cameras': cameras,
          'shared': shared, 'peak': peak, 'record': record}[
        args.what](args)
    publish(f'node_{args.what}', md, args.doc)


if __name__ == '__main__':
    main()

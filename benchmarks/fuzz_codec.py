"""Property-based fuzzing of the message boundary (``enet_ros.image_codec``): every field of
sensor_msgs/Image and CompressedImage, with a fixed seed and a case budget.

    python -m benchmarks.fuzz_codec [--cases 10000] [--node-cases 600] [--doc]

Each case is either converted (an (H, W, 3) uint8 image of the message's size, equal to an
independent numpy decoding where one exists) or rejected with ``ImageError``; any other
exception, a case slower than a second, or a decoded image above ``max_image_pixels``
fails the run. The test suite runs the same properties with a few hundred cases.

Through DDS (``through_node``): fuzzed Image messages drawn from the same strategy,
interleaved with good frames, published from this process to a running node. Each good
frame is sent after the fuzzed ones before it and waited for, so it must be answered; the
node must count as rejected exactly the fuzzed messages the codec rejects here, stay
alive, and log no traceback.
"""

from __future__ import annotations

import argparse
import resource
import time

import cv2
from hypothesis import HealthCheck, given, seed, settings, strategies as st
import numpy as np

from enet_ros.image_codec import ACCEPTED, compressed_to_array, image_to_array, ImageError
from reporting.tables import header, publish, table

MAX_PIXELS = 200_000  # what the fuzzed node would be configured with
ENCODINGS = ACCEPTED.split(', ') + ['16UC1', '32FC1', 'nv12', 'RGB8', '', 'bayer_rggb', 'yuv']
BPP = {'rgb8': 3, 'bgr8': 3, 'rgba8': 4, 'bgra8': 4, 'mono8': 1, 'mono16': 2, 'rgb16': 6,
       'bgr16': 6, 'rgba16': 8, 'bgra16': 8, 'yuv422': 2, 'uyvy': 2, 'yuv422_yuy2': 2,
       'yuyv': 2}


class Msg:
    """A message-like object with exactly the fields the codec reads."""

    def __init__(self, **fields):
        self.__dict__.update(fields)


def reference(msg) -> np.ndarray | None:
    """An independent numpy decoding for the layouts that need no OpenCV conversion."""
    enc, h, w, step = msg.encoding, msg.height, msg.width, msg.step
    channels = {'rgb8': 3, 'bgr8': 3, 'rgba8': 4, 'bgra8': 4, 'mono8': 1, 'mono16': 1,
                'rgb16': 3, 'bgr16': 3}.get(enc)
    if channels is None:
        return None
    wide = enc.endswith('16')
    rows = np.frombuffer(msg.data, np.uint8)[:step * h].reshape(h, step)
    rows = rows[:, :w * channels * (2 if wide else 1)]
    if wide:
        rows = (rows.copy().view('>u2' if msg.is_bigendian else '<u2') >> 8).astype(np.uint8)
    img = rows.reshape(h, w, channels)[:, :, :3]
    return np.repeat(img, 3, axis=2) if channels == 1 else img


@st.composite
def images(draw):
    enc = draw(st.sampled_from(ENCODINGS))
    h = draw(st.one_of(st.integers(0, 40), st.sampled_from([1, 2, 3, 10**5, 2**31 - 1])))
    w = draw(st.one_of(st.integers(0, 40), st.sampled_from([1, 2, 3, 10**5, 2**31 - 1])))
    row = w * BPP.get(enc, 1)
    step = draw(st.one_of(st.just(row), st.integers(0, row + 16),
                          st.sampled_from([0, 1, 2**32 - 1])))
    size = min(step * h, 200_000)
    n = draw(st.one_of(st.just(size), st.integers(0, size + 32)))
    data = draw(st.binary(min_size=min(n, 4096), max_size=min(n, 4096)))
    data = (data * (n // max(len(data), 1) + 1))[:n] if data else bytes(n)
    return Msg(encoding=enc, height=h, width=w, step=step, data=data,
               is_bigendian=draw(st.sampled_from([0, 1, 2])))


def check_image(msg) -> str:
    try:
        img, order = image_to_array(msg, MAX_PIXELS)
    except ImageError as exc:
        assert '\n' not in str(exc), str(exc)
        return 'rejected'
    assert img.dtype == np.uint8 and img.shape == (msg.height, msg.width, 3), img.shape
    assert order in ('rgb', 'bgr') and msg.height * msg.width <= MAX_PIXELS
    want = reference(msg)
    if want is not None:
        np.testing.assert_array_equal(img, want)
    return 'converted'


def streams() -> list[bytes]:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (24, 32, 3), np.uint8)
    out = [cv2.imencode(ext, img)[1].tobytes() for ext in ('.jpg', '.png', '.webp')]
    grey = cv2.imencode('.png', img[:, :, 0])[1].tobytes()
    return out + [grey]


STREAMS = streams()


@st.composite
def compressed(draw):
    base = draw(st.sampled_from(STREAMS))
    kind = draw(st.sampled_from(['whole', 'truncated', 'flipped', 'random', 'empty', 'claim']))
    data = bytearray(base)
    if kind == 'truncated':
        data = data[:draw(st.integers(0, len(data)))]
    elif kind == 'flipped':
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= 1 << draw(st.integers(0, 7))
    elif kind == 'random':
        data = bytearray(draw(st.binary(max_size=2048)))
    elif kind == 'empty':
        data = bytearray()
    elif kind == 'claim' and data[:8] == b'\x89PNG\r\n\x1a\n':  # a header bomb
        data[16:24] = draw(st.integers(1, 60000)).to_bytes(4, 'big') + \
            draw(st.integers(1, 60000)).to_bytes(4, 'big')
    fmt = draw(st.sampled_from(['jpeg', 'png', 'rgb8; jpeg compressed bgr8',
                                'mono8; png compressed ', '', 'tiff', 'webp']))
    return Msg(format=fmt, data=bytes(data))


def check_compressed(msg) -> str:
    try:
        img, order = compressed_to_array(msg, MAX_PIXELS)
    except ImageError as exc:
        assert '\n' not in str(exc), str(exc)
        return 'rejected'
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3, img.shape
    assert img.shape[0] * img.shape[1] <= MAX_PIXELS and order == 'bgr'
    return 'converted'


def _run(strategy, check, cases: int, fuzz_seed: int) -> dict:
    counts = {'converted': 0, 'rejected': 0, 'slowest_ms': 0.0}

    @seed(fuzz_seed)
    @settings(max_examples=cases, deadline=1000, database=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def run(msg):
        t = time.perf_counter()
        counts[check(msg)] += 1
        counts['slowest_ms'] = max(counts['slowest_ms'], 1e3 * (time.perf_counter() - t))
    run()
    return counts


def drawn(strategy, cases: int, fuzz_seed: int = 20261201) -> list:
    """``cases`` examples of ``strategy``, as hypothesis draws them under a fixed seed."""
    out = []

    @seed(fuzz_seed)
    @settings(max_examples=cases, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(msg):
        out.append(msg)
    collect()
    return out


def through_node(client, pid: int, cases: int, every: int = 3, rss_bound_mb: float = 100,
                 timeout: float = 10.0) -> dict:
    """Publish ``cases`` fuzzed Image messages to the node serving ``client``, a good frame
    after every ``every`` of them; return counts and the node's RSS growth. The node must
    run with ``max_image_pixels`` = MAX_PIXELS and default ``input_bits``."""
    from sensor_msgs.msg import Image
    from benchmarks.node_perf import rss_mb
    from enet_ros.image_codec import array_to_fields, stamp_key
    from enet_ros.topics import status_name
    fuzzed = drawn(images(), cases)
    rejected_here = sum(check_image(m) == 'rejected' for m in fuzzed)
    good = np.random.default_rng(0).integers(0, 256, (48, 64, 3), np.uint8)
    rss = [rss_mb(pid)]
    answered = missed = 0
    for k in range(0, len(fuzzed), every):
        for m in fuzzed[k:k + every]:
            client.publish(msg=Image(encoding=m.encoding, height=m.height, width=m.width,
                                     step=m.step, data=m.data, is_bigendian=m.is_bigendian))
            time.sleep(0.01)  # the node keeps the newest frame only: one at a time
        key = stamp_key(client.publish(msg=Image(**array_to_fields(good, 'rgb8'))).header)
        deadline = time.monotonic() + timeout  # fuzzed frames that convert are answered too
        while key not in client.received['mask'].stamps and time.monotonic() < deadline:
            time.sleep(0.005)
        if key in client.received['mask'].stamps:
            answered += 1
        else:
            missed += 1
        rss.append(rss_mb(pid))
    time.sleep(1.5)  # one more diagnostics period
    status = client.last_status(status_name(client.node.get_namespace()))
    return {'fuzzed': len(fuzzed), 'rejected here': rejected_here, 'sent': len(fuzzed) +
            answered + missed, 'received by node': int(status.get('frames_received', -1)),
            # superseded in the node's depth-1 queue before its callback took them, and
            # counted so from the publisher's sequence numbers
            'lost before node': int(status.get('frames_dropped_before_node', -1)),
            'rejected by node': int(status.get('frames_rejected', -1)),
            'good answered': answered, 'good missed': missed,
            'rss start MB': rss[0], 'rss max MB': max(rss), 'rss bound MB': rss_bound_mb}


def fuzz(cases: int, fuzz_seed: int = 20261201) -> dict[str, dict]:
    """Run both properties for ``cases`` cases each; returns outcome counts and the slowest
    case per kind. A property failure raises (hypothesis prints the smallest case)."""
    results = {}
    for name, strategy, check in (('sensor_msgs/Image', images(), check_image),
                                  ('sensor_msgs/CompressedImage', compressed(),
                                   check_compressed)):
        results[name] = _run(strategy, check, cases, fuzz_seed)
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--cases', type=int, default=10_000)
    p.add_argument('--node-cases', type=int, default=600,
                   help='fuzzed Image messages through DDS to a running node (0: none)')
    p.add_argument('--doc', action='store_true')
    args = p.parse_args()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    results = fuzz(args.cases)
    elapsed = time.perf_counter() - t
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    rows = [[name, r['converted'] + r['rejected'], r['converted'], r['rejected'],
             f'{r["slowest_ms"]:.1f}'] for name, r in results.items()]
    md = header('Fuzzing the message boundary (image_codec)')
    md += (f'\nHypothesis, fixed seed, {args.cases} cases per message type (hypothesis may '
           'run fewer where it exhausts a strategy), max_image_pixels '
           f'{MAX_PIXELS}: encodings known and unknown, sizes 0 to 2^31-1, inconsistent '
           'steps, data short and long, every is_bigendian; compressed streams whole, '
           'truncated, bit-flipped, random, empty and with header bombs, under any format. '
           'Converted cases equal an independent numpy decoding where one exists. Any other '
           'exception, or a case over 1 s, stops the run with the failing case, so a table '
           f'is only written when there was none. {elapsed:.0f} s; peak RSS grew '
           f'{grown:.0f} MB.\n\n')
    md += table(['message', 'cases', 'converted', 'rejected (ImageError)', 'slowest case ms'],
                rows)
    if args.node_cases:
        md += node_table(args.node_cases)
    publish('fuzz_codec', md, args.doc)


def node_table(cases: int) -> str:
    """The DDS fuzz against the node with the shipped weights, as ``ros2 run`` starts it."""
    import os
    import rclpy
    from enet_ros.tools.client import NodeProcess, ros_env, SegmentationClient
    os.environ.update(ros_env())
    os.environ.setdefault('ROS_DOMAIN_ID', '79')
    with NodeProcess({'max_image_pixels': MAX_PIXELS}, ros_args=['-r', '__ns:=/fuzz']) as node:
        node.wait_ready(timeout=600)
        rclpy.init()
        c = SegmentationClient(namespace='/fuzz', keep=False, name='fuzz_client',
                               reliable_input=True)
        try:
            c.wait_for_node()
            r = through_node(c, node.proc.pid, cases)
            alive = node.proc.poll() is None
        finally:
            c.close()
            rclpy.try_shutdown()
        log = node.log()
    good = r['good answered'] + r['good missed']
    md = (f'\nThrough DDS: {r["fuzzed"]} fuzzed Image messages from the same strategy, '
          f'10 ms apart, a good 64x48 frame after every three, to the node with the shipped '
          f'weights, its default (best-effort) input and max_image_pixels {MAX_PIXELS}.\n\n')
    md += table(['check', 'measured'], [
        ['good frames answered', f'{r["good answered"]} of {good}'],
        ['rejected by the node / by the codec here', f'{r["rejected by node"]} / '
                                                     f'{r["rejected here"]}'],
        ['sent / received by the node / lost before it (counted)',
         f'{r["sent"]} / {r["received by node"]} / {r["lost before node"]}'],
        ['node alive, tracebacks in its log', f'{alive}, {log.count("Traceback")}'],
        ['node RSS at start / highest (MB)', f'{r["rss start MB"]:.0f} / '
                                             f'{r["rss max MB"]:.0f}']])
    return md


if __name__ == '__main__':
    main()

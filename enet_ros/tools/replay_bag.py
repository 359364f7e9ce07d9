"""Replay a bag's image topic into a running segmentation node and measure it live.

    replay_bag BAG [--topic T] [--rate HZ | --lockstep] [--namespace NS]
               [--start-node [--weights FILE --device D --precision P --backend B]]
               [--compare-topic MASK_TOPIC] [--json FILE]

It publishes each frame over rclpy (at the recorded rate by default, at ``--rate`` Hz,
or with ``--lockstep`` each frame after the node's mask for the previous one), collects
the node's ``segmentation/mask`` and reports end-to-end latency (publish -> receipt),
frames sent, received and dropped, in the manner of Isaac ROS's benchmarks. Frames are
re-stamped at publish time so latency can be matched. ``--compare-topic`` names masks
recorded in the same bag (``segmentation/mask`` or ``segmentation/mask/compressed``, as
``ros2 bag record`` took them from a node): each live mask is compared with the recorded
one of the same frame, and the share of equal pixels is reported. ``--start-node`` runs the node as
a child process for the measurement; otherwise it talks to the node already running.
On a ROS 2 machine ``ros2 bag play`` plus the node does the same replay; this tool
exists for measuring.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import sys
import time

from enet_ros.bag_io import BagError, BagReader
from enet_ros.image_codec import ImageError, message_to_mask, stamp_key
from enet_ros.camera_stats import summarize_ms
from enet_ros.options import add_model_args
from enet_ros.topics import status_name


def get_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('bag', type=Path)
    p.add_argument('--topic', help='image topic (default: the only image topic)')
    pace = p.add_mutually_exclusive_group()
    pace.add_argument('--rate', type=float, help='publish at this many frames per second')
    pace.add_argument('--lockstep', action='store_true',
                      help='send the next frame when the mask of the last one arrived')
    p.add_argument('--namespace', default='', help="the node's namespace")
    p.add_argument('--start-node', action='store_true', help='run the node as a child process')
    add_model_args(p)
    p.add_argument('--compare-topic', help='recorded masks (mono8 or PNG) to compare the '
                   'live masks with, frame by frame')
    p.add_argument('--limit', type=int)
    p.add_argument('--timeout', type=float, default=5.0, help='seconds to wait for last masks')
    p.add_argument('--json', type=Path)
    return p.parse_args(argv)


def replay(args, client) -> dict:
    from sensor_msgs.msg import CompressedImage, Image
    with BagReader(args.bag) as reader:
        topic = reader.image_topic(args.topic)
        frames = []
        for i, f in enumerate(reader.messages(topic)):
            if args.limit is not None and i >= args.limit:
                break
            frames.append(f)
        read_error = reader.error
        recorded = {}
        if args.compare_topic:
            if args.compare_topic not in reader.topics():
                raise BagError(f'mask topic {args.compare_topic} is not in {args.bag}; its '
                               f'topics: {reader.describe_topics()}')
            try:
                recorded = {f.stamp: message_to_mask(f.msg)
                            for f in reader.messages(args.compare_topic)}
            except ImageError as exc:
                raise BagError(f'{args.compare_topic}: {exc}') from None
    if not frames:
        raise BagError(f'no frames on {topic} in {args.bag}')
    messages = []
    for f in frames:
        m = f.msg
        if m.__msgtype__ == 'sensor_msgs/msg/CompressedImage':
            ros_msg = CompressedImage(format=m.format, data=m.data.tobytes())
        else:
            ros_msg = Image(height=m.height, width=m.width, encoding=m.encoding,
                            is_bigendian=m.is_bigendian, step=m.step, data=m.data.tobytes())
        ros_msg.header.frame_id = m.header.frame_id
        messages.append(ros_msg)
    if args.lockstep:
        pace = None
    elif args.rate:
        pace = args.rate
    else:  # the recorded timing
        pace = [(f.timestamp - frames[0].timestamp) / 1e9 for f in frames]
    t0 = time.monotonic()
    sent = client.drive(messages, pace, timeout=args.timeout)
    time.sleep(1.2)  # one more diagnostics period
    received = client.received['mask'].count
    diag = client.last_status(status_name(args.namespace))
    comparison = compare(client, sent, frames, recorded) if args.compare_topic else None
    sent = len(sent)
    return {
        'bag': str(args.bag), 'topic': topic,
        'pace': 'lockstep' if args.lockstep else (f'{args.rate} Hz' if args.rate
                                                  else 'recorded rate'),
        'frames_sent': sent, 'frames_received': received, 'frames_lost': sent - received,
        'node_frames_dropped': int(diag.get('frames_dropped', 0)) if diag else None,
        'node_frames_rejected': int(diag.get('frames_rejected', 0)) if diag else None,
        'duration_s': time.monotonic() - t0,
        'latency': summarize_ms(client.latencies('mask')),
        'bag_read_error': read_error,
        'recorded_masks': comparison,
    }


def compare(client, sent: list, frames: list, recorded: dict) -> dict:
    """Live masks against the recorded ones of the same frames (by the frame's recorded
    stamp): frames compared and the share of equal pixels over them."""
    original = {stamp_key(header): f.stamp for header, f in zip(sent, frames)}
    equal = total = compared = 0
    with client.lock:
        live = list(client.received['mask'].messages)
    for mask in live:
        want = recorded.get(original.get(stamp_key(mask.header)))
        got = message_to_mask(mask)
        if want is None or want.shape != got.shape:
            continue
        compared += 1
        equal += int((want == got).sum())
        total += got.size
    return {'frames_compared': compared,
            'pixel_agreement': equal / total if total else None}


def main(argv=None) -> int:
    args = get_args(argv)
    from enet_ros.tools.client import apply_ros_env, NodeProcess, SegmentationClient
    apply_ros_env()
    import rclpy
    node = None
    try:
        if args.start_node:
            ros_args = ['-r', f'__ns:={args.namespace}'] if args.namespace else []
            node = NodeProcess({'model_path': args.weights, 'device': args.device,
                                'precision': args.precision, 'backend': args.backend},
                               ros_args=ros_args)
            node.wait_ready(timeout=600, progress='replay_bag')
        rclpy.init()
        client = SegmentationClient(namespace=args.namespace, keep=bool(args.compare_topic),
                                    name='replay_bag')
        try:
            client.wait_for_node(timeout=30)
            result = replay(args, client)
        finally:
            client.close()
            rclpy.try_shutdown()
    except (BagError, TimeoutError, RuntimeError) as exc:
        print(f'replay_bag: {exc}', file=sys.stderr)
        return 1
    finally:
        if node is not None:
            node.stop()
    lat = result['latency']
    print(f'sent {result["frames_sent"]}, received {result["frames_received"]}, '
          f'lost {result["frames_lost"]} (node dropped {result["node_frames_dropped"]}, '
          f'rejected {result["node_frames_rejected"]}) at {result["pace"]}')
    if lat['mean_ms'] is not None:
        print(f'end-to-end latency: mean {lat["mean_ms"]:.1f} ms, median '
              f'{lat["median_ms"]:.1f}, p95 {lat["p95_ms"]:.1f}, max {lat["max_ms"]:.1f}')
    cmp = result['recorded_masks']
    if cmp is not None:
        agreement = 'n/a' if cmp['pixel_agreement'] is None else \
            f'{100 * cmp["pixel_agreement"]:.2f}% of pixels equal'
        print(f'against {args.compare_topic}: {cmp["frames_compared"]} frames, {agreement}')
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    if result['bag_read_error']:
        print(f'replay_bag: replayed the {result["frames_sent"]} readable frames; the bag '
              f'stopped there: {result["bag_read_error"]}', file=sys.stderr)
        return 3
    return 0


if __name__ == '__main__':
    sys.exit(main())

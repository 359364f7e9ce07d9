"""Replay a bag's image topic into a running segmentation node and measure it live.

    replay_bag BAG [--topic T] [--rate HZ | --lockstep] [--namespace NS]
               [--start-node [--weights FILE --device D --precision P --backend B]]
               [--json FILE]

It publishes each frame over rclpy (at the recorded rate by default, at ``--rate`` Hz,
or with ``--lockstep`` each frame after the node's mask for the previous one), collects
the node's ``segmentation/mask`` and reports end-to-end latency (publish -> receipt),
frames sent, received and dropped, in the manner of Isaac ROS's benchmarks. Frames are
re-stamped at publish time so latency can be matched. ``--start-node`` runs the node as
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
from enet_ros.metrics import summarize_ms
from enet_ros.tools.cli import add_model_args
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
    sent = len(client.drive(messages, pace, timeout=args.timeout))
    time.sleep(1.2)  # one more diagnostics period
    received = client.received['mask'].count
    diag = client.last_status(status_name(args.namespace))
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
    }


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
            node.wait_ready(timeout=600)
        rclpy.init()
        client = SegmentationClient(namespace=args.namespace, keep=False, name='replay_bag')
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
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    if result['bag_read_error']:
        print(f'replay_bag: replayed the {result["frames_sent"]} readable frames; the bag '
              f'stopped there: {result["bag_read_error"]}', file=sys.stderr)
        return 3
    return 0


if __name__ == '__main__':
    sys.exit(main())

"""A camera driver's stand-in for the launch tests: the demo frames (160x120 rgb8) on TOPIC
at RATE Hz, frame_id FRAME, until SIGINT (exit 0, as a launched driver ends).

    python test/launch/camera.py TOPIC RATE FRAME [--clock START]

``--clock START``: also publish ``/clock`` from START seconds (10x a frame's period per
step) and stamp every frame with that simulated time, as a bag replay with ``--clock``
does; the camera node itself then uses that clock (use_sim_time).
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np
import rclpy
from rclpy.signals import SignalHandlerOptions
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image

from enet_ros.image_codec import array_to_fields
from enet_ros.tools.demo import DEMO_FRAMES, load_frames


def frames() -> list[dict]:
    out = []
    for bgr in load_frames(DEMO_FRAMES, None):
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        out.append(array_to_fields(np.ascontiguousarray(cv2.resize(rgb, (160, 120))), 'rgb8'))
    return out


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument('topic')
    p.add_argument('rate', type=float)
    p.add_argument('frame')
    p.add_argument('--clock', type=float)
    args = p.parse_args()
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)  # Ctrl-C: stop below
    node = rclpy.create_node('test_camera_' + args.frame)
    pub = node.create_publisher(Image, args.topic, QoSProfile(
        depth=1, reliability=ReliabilityPolicy.BEST_EFFORT))
    clock = node.create_publisher(Clock, '/clock', 10) if args.clock is not None else None
    images = frames()
    period = 1.0 / args.rate
    t0, k = time.monotonic(), 0
    try:
        while True:
            msg = Image(**images[k % len(images)])
            if clock is None:
                msg.header.stamp = node.get_clock().now().to_msg()
            else:
                sim = args.clock + k * period
                msg.header.stamp.sec, msg.header.stamp.nanosec = int(sim), int(sim % 1 * 1e9)
                clock.publish(Clock(clock=msg.header.stamp))
            msg.header.frame_id = args.frame
            pub.publish(msg)
            k += 1
            time.sleep(max(0.0, t0 + k * period - time.monotonic()))
    except KeyboardInterrupt:
        pass
    node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == '__main__':
    raise SystemExit(main())

"""A camera driver's stand-in for the churn runs: rgb8 frames on NAMESPACE/image at RATE Hz
until killed. Once the segmentation node subscribes it publishes, and prints the first
frame's header stamp (seconds) as ``publishing <stamp>``.

    python -m benchmarks.camera_publisher NAMESPACE RATE
"""

from __future__ import annotations

import sys
import time

import numpy as np
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from enet_ros.image_codec import array_to_fields, stamp_ns


def main() -> None:
    ns, rate = sys.argv[1], float(sys.argv[2])
    rclpy.init()
    node = rclpy.create_node('camera', namespace=ns)
    pub = node.create_publisher(Image, 'image', QoSProfile(
        depth=1, reliability=ReliabilityPolicy.BEST_EFFORT))
    fields = array_to_fields(np.random.default_rng(0).integers(0, 256, (48, 64, 3), np.uint8),
                             'rgb8')
    while pub.get_subscription_count() == 0:
        time.sleep(0.02)
    t0, k = time.monotonic(), 0
    while True:
        msg = Image(**fields)
        msg.header.stamp = node.get_clock().now().to_msg()
        msg.header.frame_id = 'camera'
        pub.publish(msg)
        if k == 0:
            print(f'publishing {stamp_ns(msg.header) / 1e9:.6f}', flush=True)
        k += 1
        time.sleep(max(0.0, t0 + k / rate - time.monotonic()))


if __name__ == '__main__':
    main()

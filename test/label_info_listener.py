"""A late subscriber in its own process: ``python -m label_info_listener NAMESPACE`` prints,
as one JSON line, the latched class map it receives on NAMESPACE/segmentation/label_info
(vision_msgs/LabelInfo, needs the test-built vision_msgs) and .../class_info."""

import json
import sys
import time

import rclpy
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import String
from vision_msgs.msg import LabelInfo


def main(namespace: str) -> None:
    rclpy.init()
    node = rclpy.create_node('label_info_listener')
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
    got = {}
    node.create_subscription(LabelInfo, f'{namespace}/segmentation/label_info', lambda m: got.
                             setdefault('label_info', {'class_map': [[c.class_id, c.class_name]
                                                                     for c in m.class_map],
                                                       'threshold': m.threshold}), latched)
    node.create_subscription(String, f'{namespace}/segmentation/class_info',
                             lambda m: got.setdefault('class_info', json.loads(m.data)), latched)
    deadline = time.monotonic() + 20.0
    while len(got) < 2 and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.1)
    print(json.dumps(got), flush=True)
    node.destroy_node()
    rclpy.shutdown()


if __name__ == '__main__':
    main(sys.argv[1])

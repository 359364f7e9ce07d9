"""Run by the tests: a SegmentationNode in this process, inspected from inside; prints JSON.

    python test/inspect_node.py WEIGHTS parameters     # every declared parameter's value
    python test/inspect_node.py WEIGHTS sequence_gaps  # camera totals after a gap in the
                                                       # publication sequence numbers
"""

import json
import sys

import rclpy
from rclpy.subscription import Subscription
from sensor_msgs.msg import Image

from enet_ros.segmentation_node import SegmentationNode

weights, what = sys.argv[1:3]
rclpy.init(args=['--ros-args', '-p', f'model_path:={weights}', '-p', 'backend:=eager'])
node = SegmentationNode()
if what == 'parameters':
    print(json.dumps({k: p.value for k, p in node._parameters.items()}))
else:
    cam = node.cameras[0]
    assert cam.sub._callback_type == Subscription.CallbackType.WithMessageInfo
    for seq in (1, 2, 6, 7):  # 3, 4 and 5 never arrived
        cam.on_frame(Image(), {'publication_sequence_number': seq})
    print(json.dumps(cam.stats.totals))
node.shutdown()
node.destroy_node()
rclpy.shutdown()

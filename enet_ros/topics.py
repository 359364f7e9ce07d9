"""The node's name, its topics (relative: under the node's namespace and each camera's),
the names of its diagnostics statuses, and its ``--help``: for the node, its tools,
benchmarks and tests."""

from __future__ import annotations

import os
import sys

from enet_ros.image_codec import ACCEPTED
from enet_ros.parameters import PARAMETERS

NODE_NAME = 'enet_segmentation'

IMAGE = 'image'
COMPRESSED_IMAGE = 'image/compressed'
CAMERA_INFO = 'camera_info'
MASK = 'segmentation/mask'
MASK_COMPRESSED = 'segmentation/mask/compressed'  # image_transport's compressed transport
COLOR_MASK = 'segmentation/color_mask'
OVERLAY = 'segmentation/overlay'
CONFIDENCE = 'segmentation/confidence'
MASK_CAMERA_INFO = 'segmentation/camera_info'
CLASS_INFO = 'segmentation/class_info'
LABEL_INFO = 'segmentation/label_info'
DIAGNOSTICS = '/diagnostics'

# the image outputs by short name (Segmenter.render's keys, the test client's outputs)
IMAGE_OUTPUTS = {'mask': MASK, 'color_mask': COLOR_MASK, 'overlay': OVERLAY,
                 'confidence': CONFIDENCE, 'mask_compressed': MASK_COMPRESSED}


def status_name(namespace: str = '', camera: str = '') -> str:
    """The diagnostics status of one camera: '<node's full name>: <camera or image>'."""
    return f'{namespace.rstrip("/")}/{NODE_NAME}: {camera or IMAGE}'


TOPICS = (
    (IMAGE, f'sensor_msgs/Image in ({ACCEPTED})'),
    (COMPRESSED_IMAGE, 'sensor_msgs/CompressedImage in, with image_transport compressed '
     '(jpeg, png)'),
    (MASK, 'sensor_msgs/Image mono8 out: class ids, 255 = no class'),
    (MASK_COMPRESSED, 'sensor_msgs/CompressedImage out: the mask as lossless PNG (while '
     'subscribed; for recording)'),
    (COLOR_MASK, 'sensor_msgs/Image out: palette colours (while subscribed)'),
    (OVERLAY, 'sensor_msgs/Image out: input blended with colours'),
    (CONFIDENCE, 'sensor_msgs/Image mono8 out: 255 x softmax maximum (while subscribed)'),
    (CAMERA_INFO, 'sensor_msgs/CameraInfo in: beside the image topic as remapped '
     '(X/image_raw -> X/camera_info) unless remapped itself'),
    (MASK_CAMERA_INFO, "sensor_msgs/CameraInfo out with each mask's header"),
    (CLASS_INFO, 'std_msgs/String out, JSON class map (transient local)'),
    (LABEL_INFO, 'vision_msgs/LabelInfo out, the same class map (transient local), where '
     'vision_msgs is importable'),
    (DIAGNOSTICS, 'diagnostic_msgs/DiagnosticArray out, once a second per camera'),
)


def command(managed: bool = False) -> str:
    """How this process was started: ``python -m enet_ros.<module>``, or the executable's
    name (``ros2 run``, the venv's console script)."""
    name = 'managed_segmentation_node' if managed else 'segmentation_node'
    started = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ''
    if started.endswith('.py') or started in ('', '-c', '-m'):
        return f'python -m enet_ros.{name}'
    return started


def usage_line(managed: bool = False) -> str:
    return f'usage: {command(managed)} [-h] [--ros-args -p NAME:=VALUE -r FROM:=TO ...]'


def usage(managed: bool = False) -> str:
    """The answer to ``--help``: how to run the node, its topics and parameters."""
    lines = [usage_line(managed), '', 'Everything after --ros-args goes to ROS (parameters, '
             'remappings, --params-file FILE, --log-level LEVEL).', '',
             f'Node {NODE_NAME}: ENet semantic segmentation. Topics (relative, per camera '
             f'namespace):']
    lines += [f'  {t:<26}{d}' for t, d in TOPICS]
    lines += ['', 'Parameters (name, default, description):']
    for param in PARAMETERS:
        extra = f' One of: {", ".join(param.choices)}.' if param.choices else ''
        ro = ' Read-only.' if param.read_only else ''
        default = '(from the weights)' if param.from_model else repr(param.default)
        lines.append(f'  {param.name} = {default}: {param.description}{extra}{ro}')
    return '\n'.join(lines)

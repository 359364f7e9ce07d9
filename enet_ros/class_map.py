"""The class map the node publishes: ``segmentation/class_info`` (JSON) and, where
vision_msgs is importable, ``segmentation/label_info`` (vision_msgs/LabelInfo)."""

from __future__ import annotations

import json

from enet_ros.checkpoint import ModelMeta, NO_CLASS
from enet_ros.colors import distinct_palette

try:  # vision_msgs is optional: segmentation/class_info (JSON) carries the same class map
    from vision_msgs.msg import LabelInfo, VisionClass
except ImportError:
    LabelInfo = VisionClass = None


def class_info(meta: ModelMeta, weights: str) -> str:
    """The JSON of segmentation/class_info: each class's id, name, colour (in the colour
    mask: the weights' palette) and overlay colour (``colors.distinct_palette``), the id
    of pixels with no class, and the model (weights file, dataset, input size, held-out
    class IoU per drive)."""
    card = meta.card
    overlay = distinct_palette(meta.num_classes)
    return json.dumps({
        'classes': [{'id': i, 'name': n, 'color': list(c), 'overlay_color': list(o)}
                    for i, (n, c, o) in enumerate(zip(meta.class_names, meta.palette,
                                                      overlay))],
        'ignore_id': NO_CLASS,
        'model': {'weights': weights, 'dataset': meta.dataset,
                  'input_size': list(meta.input_size),
                  'heldout_class_iou': {seq: round(m['mean_iou'], 1) for seq, m in
                                        (card.heldout if card else {}).items()}}})


def label_info(meta: ModelMeta, stamp):
    """vision_msgs/LabelInfo of the class map, stamped ``stamp``; None without vision_msgs."""
    if LabelInfo is None:
        return None
    msg = LabelInfo(class_map=[VisionClass(class_id=i, class_name=n)
                               for i, n in enumerate(meta.class_names)])
    msg.header.stamp = stamp
    return msg

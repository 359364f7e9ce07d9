"""One camera of the node: its subscriptions, its publishers and its counters."""

from __future__ import annotations

import copy
import inspect
import time

try:
    from rclpy.event_handler import SubscriptionEventCallbacks
except ImportError:  # Humble
    from rclpy.qos_event import SubscriptionEventCallbacks
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.subscription import Subscription
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import String

from enet_ros import parameters, topics
from enet_ros.camera_stats import CameraStats
from enet_ros.class_map import LabelInfo
from enet_ros.image_codec import (array_to_fields, ImageError, MASK_PNG_FORMAT, mask_to_png,
                                  stamp_ns)

# the parameters' reliability names, as rclpy's policies
RELIABILITY = {name: ReliabilityPolicy[name.upper()] for name in parameters.RELIABILITY}
# rclpy passes a message's info (publication sequence number) to two-argument callbacks
# since Iron; Humble's calls every callback with the message alone. There the node takes
# the message alone and cannot count frames lost before it (diagnostics say so).
MESSAGE_INFO = hasattr(Subscription, 'CallbackType')
# The subscription matched event (publishers connecting and leaving), since Iron.
MATCHED_EVENT = 'matched' in inspect.signature(SubscriptionEventCallbacks).parameters


def image_message(header, array, encoding: str) -> Image:
    """A sensor_msgs/Image of an (H, W[, C]) uint8 array with ``header``."""
    out = Image(header=header)
    for k, v in array_to_fields(array, encoding).items():
        setattr(out, k, v)
    return out


class CameraStream:
    """One input (namespace ``ns``) of ``node``: the topics it subscribes and publishes,
    and its statistics (guarded by the node's pipeline lock)."""

    def __init__(self, node, ns: str, num_classes: int):
        self.ns, self.node = ns, node
        self.name = ns or topics.IMAGE
        self.publishers_now = self.publishers_connected = 0
        prefix = self._prefix = f'{ns}/' if ns else ''
        cfg = node.config
        out_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=cfg.output_depth,
                             reliability=RELIABILITY[cfg.output_reliability])
        self._in_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                                  reliability=RELIABILITY[cfg.input_reliability])
        latched = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                             reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        pub = node.create_publisher
        self.pub_mask = pub(Image, prefix + topics.MASK, out_qos)
        self.pub_mask_png = pub(CompressedImage, prefix + topics.MASK_COMPRESSED, out_qos)
        self.pub_color = pub(Image, prefix + topics.COLOR_MASK, out_qos)
        self.pub_overlay = pub(Image, prefix + topics.OVERLAY, out_qos)
        self.pub_confidence = pub(Image, prefix + topics.CONFIDENCE, out_qos)
        self.pub_camera_info = pub(CameraInfo, prefix + topics.MASK_CAMERA_INFO, out_qos)
        self.pub_class_info = pub(String, prefix + topics.CLASS_INFO, latched)
        self.pub_label_info = None if LabelInfo is None else pub(
            LabelInfo, prefix + topics.LABEL_INFO, latched)
        self.camera_info = None  # the newest CameraInfo beside the image
        self.sub = self.sub_camera_info = None
        self.topic = prefix + (topics.COMPRESSED_IMAGE if cfg.compressed else topics.IMAGE)
        self.stats = CameraStats(num_classes, MESSAGE_INFO)

    def subscribe(self) -> None:
        node = self.node
        self.sub_camera_info = node.create_subscription(
            CameraInfo, self.camera_info_topic(), self.on_camera_info, self._in_qos)
        msg_type = CompressedImage if node.config.compressed else Image
        callback = self.on_frame if MESSAGE_INFO else lambda msg: self.on_frame(msg, None)
        events = SubscriptionEventCallbacks(matched=self.on_matched) if MATCHED_EVENT \
            else None
        self.sub = node.create_subscription(msg_type, self.topic, callback, self._in_qos,
                                            event_callbacks=events)
        self.stats.last_seq = None

    def on_matched(self, info) -> None:
        """A camera publisher connected or left (a driver restarted, a bag started)."""
        self.publishers_now = info.current_count
        self.publishers_connected += max(info.total_count_change, 0)

    def publishers(self) -> str:
        """The diagnostics' account of this camera's publishers."""
        if not MATCHED_EVENT:
            return 'not counted (this rclpy has no matched event)'
        return f'{self.publishers_now} now, {self.publishers_connected} connected since start'

    def camera_info_topic(self) -> str:
        """``camera_info`` as remapped; if it is not, the camera info beside the image
        topic as remapped, as image_transport pairs them: X/image_raw -> X/camera_info."""
        node, own = self.node, self._prefix + topics.CAMERA_INFO
        remapped = node.resolve_topic_name(own)
        if remapped != node.resolve_topic_name(own, only_expand=True):
            return remapped
        image = node.resolve_topic_name(self._prefix + topics.IMAGE)
        return f'{image.rsplit("/", 1)[0]}/{topics.CAMERA_INFO}'

    def unsubscribe(self) -> None:
        for sub in (self.sub, self.sub_camera_info):
            if sub is not None:
                self.node.destroy_subscription(sub)
        self.sub = self.sub_camera_info = None

    def destroy(self) -> None:
        self.unsubscribe()
        for pub in (self.pub_mask, self.pub_mask_png, self.pub_color, self.pub_overlay,
                    self.pub_confidence, self.pub_camera_info, self.pub_class_info,
                    self.pub_label_info):
            if pub is not None:
                self.node.destroy_publisher(pub)

    def on_camera_info(self, msg) -> None:
        self.camera_info = msg

    def on_frame(self, msg, info) -> None:
        """Convert and resize the frame as it arrives (while the network runs on the
        previous one) and offer it to the pipeline; a bad frame is counted and named."""
        # (msg, info) with no default: rclpy passes the message info (publication sequence
        # number) only to callbacks that cannot be called with the message alone
        seq = info.get('publication_sequence_number') if info else None
        now = time.monotonic()
        node = self.node
        frame, error = None, None
        try:
            frame = node.prepare(msg, now)
        except ImageError as exc:
            error = exc
        except Exception as exc:  # a fault in preprocessing: report, keep serving
            node.failed(self, 'preprocessing failed', exc)
        with node.pipeline.lock:
            dropped = frame is not None and node.pipeline.offer(self, frame)
            self.stats.frame_received(now, dropped, seq, self.sub.get_publisher_count() <= 1)
            self.stats.stamp_seen(stamp_ns(msg.header))
            if error is not None:
                self.stats.frame_rejected(str(error))
        if error is not None:
            node.throttled_error(f'reject:{self.name}', f'[{self.name}] frame skipped: {error}')

    def publish(self, frame, result, color_order: str | None, alpha: float | None,
                render) -> None:
        """The frame's outputs: the mask always; its PNG, the confidence, the camera info,
        the colour mask and the overlay only where someone subscribes (``color_order`` and
        ``alpha`` None where not wanted; ``render`` is the core's ``Segmenter.render``)."""
        header, labels = frame.msg.header, result.labels
        self.pub_mask.publish(image_message(header, labels, 'mono8'))
        if self.pub_mask_png.get_subscription_count() > 0:
            self.pub_mask_png.publish(CompressedImage(header=header, format=MASK_PNG_FORMAT,
                                                      data=mask_to_png(labels)))
        if result.confidence is not None:
            self.pub_confidence.publish(image_message(header, result.confidence, 'mono8'))
        if self.camera_info is not None and self.pub_camera_info.get_subscription_count() > 0:
            info = copy.copy(self.camera_info)  # the mask is at the input's resolution: same K
            info.header = header
            self.pub_camera_info.publish(info)
        color_order = color_order if self.pub_color.get_subscription_count() > 0 else None
        alpha = alpha if self.pub_overlay.get_subscription_count() > 0 else None
        # the overlay keeps the input's colour order (mono8 input becomes rgb8)
        for name, (array, encoding) in render(frame.image, frame.order, labels, color_order,
                                              alpha).items():
            pub = self.pub_color if name == 'color_mask' else self.pub_overlay
            pub.publish(image_message(header, array, encoding))

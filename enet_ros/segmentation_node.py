"""rclpy node ``enet_segmentation``: camera images in, class ids, colour mask and overlay out.

Per camera namespace ``ns`` (parameter ``cameras``; default one camera, no namespace):
  subscribes ``ns/image`` (sensor_msgs/Image) or ``ns/image/compressed``,
  publishes ``ns/segmentation/mask`` (mono8 ids, 255 = no class),
  ``ns/segmentation/color_mask`` and ``ns/segmentation/overlay`` (only when subscribed),
  and ``/diagnostics`` once a second.

Only the newest frame of each camera is processed: the subscription callback parks the
message in a one-slot mailbox and returns; one inference thread, shared by all cameras
and holding the one loaded model, takes the newest frames round-robin. A frame replaced
in its mailbox before inference is counted as dropped.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import sys
import threading
import time
from types import SimpleNamespace
from typing import NamedTuple

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
import numpy as np
import rclpy
from rcl_interfaces.msg import SetParametersResult
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from rclpy.subscription import Subscription
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import String
import torch

from enet_ros import camera_stats
from enet_ros.adaptation import camera_time
from enet_ros.bag_io import stamp_ns
from enet_ros.camera_stats import CameraStats
from enet_ros.checkpoint import CheckpointError, DEFAULT_WEIGHTS
from enet_ros.dds import segment_warning
from enet_ros.image_codec import (ACCEPTED, array_to_fields, ImageError, MASK_PNG_FORMAT,
                                  mask_to_png, message_to_array)
from enet_ros.segmenter import Prepared, Result, Segmenter, SegmenterError
from enet_ros import topics
from enet_ros.topics import NODE_NAME
from enet_ros.parameters import Param, PARAMETERS
from enet_ros.threads import starting_threads, ThreadChooser, usable_cpus
from enet_ros.watch import card_summary, judge, reference_of

RELIABILITY = {'best_effort': ReliabilityPolicy.BEST_EFFORT,
               'reliable': ReliabilityPolicy.RELIABLE}
ERROR_THROTTLE_S = 5.0
TOPICS = (
    (topics.IMAGE, f'sensor_msgs/Image in ({ACCEPTED})'),
    (topics.COMPRESSED_IMAGE, 'sensor_msgs/CompressedImage in, with image_transport '
     'compressed (jpeg, png)'),
    (topics.MASK, 'sensor_msgs/Image mono8 out: class ids, 255 = no class'),
    (topics.MASK_COMPRESSED, 'sensor_msgs/CompressedImage out: the mask as lossless PNG '
     '(while subscribed; for recording)'),
    (topics.COLOR_MASK, 'sensor_msgs/Image out: palette colours (while subscribed)'),
    (topics.OVERLAY, 'sensor_msgs/Image out: input blended with colours'),
    (topics.CONFIDENCE, 'sensor_msgs/Image mono8 out: 255 x softmax maximum '
     '(while subscribed)'),
    (topics.CAMERA_INFO, 'sensor_msgs/CameraInfo in: beside the image topic as remapped '
     '(X/image_raw -> X/camera_info) unless remapped itself'),
    (topics.MASK_CAMERA_INFO, "sensor_msgs/CameraInfo out with each mask's header"),
    (topics.CLASS_INFO, 'std_msgs/String out, JSON class map (transient local)'),
    (topics.LABEL_INFO, 'vision_msgs/LabelInfo out, the same class map (transient '
     'local), where vision_msgs is importable'),
    (topics.DIAGNOSTICS, 'diagnostic_msgs/DiagnosticArray out, once a second per camera'),
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
        lines.append(f'  {param.name} = {param.default!r}: {param.description}{extra}{ro}')
    return '\n'.join(lines)


try:  # vision_msgs is optional: segmentation/class_info (JSON) carries the same class map
    from vision_msgs.msg import LabelInfo, VisionClass
except ImportError:
    LabelInfo = VisionClass = None

# rclpy passes a message's info (publication sequence number) to two-argument callbacks
# since Iron; Humble's calls every callback with the message alone. There the node takes
# the message alone and cannot count frames lost before it (diagnostics say so).
MESSAGE_INFO = hasattr(Subscription, 'CallbackType')
# Set while a signal has nothing to stop but the process: until ``main`` has built the
# node, and while a managed node's configure loads or compiles (``stop_on_signals``).
LOADING = threading.Event()


class Frame(NamedTuple):
    """One camera frame on its way through the node, prepared as it arrived."""

    msg: object  # the Image or CompressedImage message
    received: float  # monotonic receipt time
    image: np.ndarray  # its pixels (the overlay blends them)
    order: str  # their channel order, 'rgb' or 'bgr'
    convert: float  # seconds from message to array
    prepared: Prepared


class CameraStream:
    """One input: its mailbox, publishers and counters."""

    def __init__(self, node: 'SegmentationNode', ns: str):
        self.ns = ns
        self.name = ns or topics.IMAGE
        prefix = f'{ns}/' if ns else ''
        cfg = node.config
        out_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=cfg.output_depth,
                             reliability=RELIABILITY[cfg.output_reliability])
        in_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                            reliability=RELIABILITY[cfg.input_reliability])
        self.pub_mask = node.create_publisher(Image, prefix + topics.MASK, out_qos)
        self.pub_mask_png = node.create_publisher(CompressedImage,
                                                  prefix + topics.MASK_COMPRESSED, out_qos)
        self.pub_color = node.create_publisher(Image, prefix + topics.COLOR_MASK, out_qos)
        self.pub_overlay = node.create_publisher(Image, prefix + topics.OVERLAY, out_qos)
        self.pub_confidence = node.create_publisher(Image, prefix + topics.CONFIDENCE,
                                                    out_qos)
        self.pub_camera_info = node.create_publisher(
            CameraInfo, prefix + topics.MASK_CAMERA_INFO, out_qos)
        latched = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                             reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.pub_class_info = node.create_publisher(String, prefix + topics.CLASS_INFO,
                                                    latched)
        self.pub_label_info = None if LabelInfo is None else node.create_publisher(
            LabelInfo, prefix + topics.LABEL_INFO, latched)
        self.camera_info = None  # the newest CameraInfo beside the image
        self._prefix, self._in_qos = prefix, in_qos
        self.sub = self.sub_camera_info = None
        self.topic = prefix + (topics.COMPRESSED_IMAGE if cfg.compressed else topics.IMAGE)
        self.node = node
        self.pending: Frame | None = None
        self.stats = CameraStats(node.segmenter.meta.num_classes, MESSAGE_INFO)  # node.lock

    def subscribe(self) -> None:
        node = self.node
        self.sub_camera_info = node.create_subscription(
            CameraInfo, self.camera_info_topic(), self.on_camera_info, self._in_qos)
        msg_type = CompressedImage if node.config.compressed else Image
        callback = self.on_frame if MESSAGE_INFO else lambda msg: self.on_frame(msg, None)
        self.sub = node.create_subscription(msg_type, self.topic, callback, self._in_qos)
        self.stats.last_seq = None

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
        # (msg, info) with no default: rclpy passes the message info (publication sequence
        # number) only to callbacks that cannot be called with the message alone
        seq = info.get('publication_sequence_number') if info else None
        now = time.monotonic()
        node = self.node
        # converted and resized here, as it arrives, while the inference thread runs the
        # network on the previous frame
        frame, error = None, None
        try:
            frame = node.prepare(msg, now)
        except ImageError as exc:
            error = exc
        except Exception as exc:  # a fault in preprocessing: report, keep serving
            node._failed(self, 'preprocessing failed', exc)
        with node.lock:
            self.stats.frame_received(now, self.pending is not None and frame is not None,
                                      seq, self.sub.get_publisher_count() <= 1)
            if error is not None:
                self.stats.frame_rejected(str(error))
            if frame is not None:
                self.pending = frame
                node.wakeup.notify()
        if error is not None:
            node._throttled_error(f'reject:{self.name}', f'[{self.name}] frame skipped: {error}')


class Segmentation:
    """The node's behaviour, shared by the plain node and the managed (lifecycle) one:
    ``load`` (weights, compile, warm-up), ``open_outputs``, ``serve`` (subscriptions,
    inference thread, diagnostics), and their inverses."""

    segmenter = None
    cameras: tuple = ()

    def load(self) -> None:
        """Load the weights, compile if asked, run one frame; raises on start-up errors."""
        model_path = self.config.model_path or str(DEFAULT_WEIGHTS)
        size = None
        if self.config.input_width or self.config.input_height:
            size = (self.config.input_height, self.config.input_width)
        t = time.perf_counter()
        log = self.get_logger()
        log.info(f'loading {model_path} (backend {self.config.backend})')
        # Build and warm up with one intra-op thread here, and let the inference thread use
        # them all: once this (executor) thread has run torch with a thread team, the network
        # ran 2-2.7x slower on the inference thread (16 ms against 33 ms at 480x360 here).
        threads, reason, shared = starting_threads(self.config.num_threads)
        if shared:
            log.info(f'threads: {reason}')
        self.chooser = ThreadChooser(usable_cpus(), self.config.num_threads, start=threads,
                                     reason=reason)
        torch.set_num_threads(1)
        self.segmenter = Segmenter(model_path, self.config.device, self.config.precision,
                                   self.config.backend, size, info=log.info, warn=log.warning,
                                   adapt=self.config.adapt_statistics)
        self.load_s = time.perf_counter() - t
        self._declare_model_parameters()
        self.warm_up()

    def open_outputs(self) -> None:
        self.lock = threading.Lock()
        self.wakeup = threading.Condition(self.lock)  # a frame arrived
        self.handed = threading.Condition(self.lock)  # the outbox was filled or emptied
        self.running = False
        self.outbox = None  # (camera, Frame, Result): one frame on its way out (_work)
        self.workers: list[threading.Thread] = []
        self.diag_timer = None
        self._next = 0
        self._log_times: dict[str, float] = {}
        card = self.segmenter.meta.metrics.get('model_card', {})
        self.watch_reference, self.card_summary = reference_of(card), card_summary(card)
        self.cameras = [CameraStream(self, ns) for ns in self.config.cameras]
        self.pub_diag = self.create_publisher(DiagnosticArray, topics.DIAGNOSTICS, 10)
        self.publish_class_info()

    def serve(self) -> None:
        """Subscribe, start the inference thread and the diagnostics timer."""
        for cam in self.cameras:
            cam.subscribe()
        self.running = True
        self.workers = [threading.Thread(target=self._work, name='enet_inference', daemon=True),
                        threading.Thread(target=self._send, name='enet_publish', daemon=True)]
        for worker in self.workers:
            worker.start()
        self.diag_timer = self.create_timer(1.0, self._publish_diagnostics)
        self.get_logger().info(
            f'{self.segmenter.describe()}; listening on '
            f'{", ".join(c.sub.topic_name for c in self.cameras)} (camera info '
            f'{", ".join(c.sub_camera_info.topic_name for c in self.cameras)})')

    def stop_serving(self) -> None:
        """Unsubscribe and stop the inference thread; model and publishers stay."""
        for cam in self.cameras:
            cam.unsubscribe()
        with self.lock:
            self.running = False
            for cam in self.cameras:
                cam.pending = None
            self.outbox = None  # a deactivated node publishes nothing more
            self.wakeup.notify_all()
            self.handed.notify_all()
        for worker in self.workers:
            worker.join(timeout=5.0)
        if self.diag_timer is not None:
            self.destroy_timer(self.diag_timer)
        self.workers, self.diag_timer = [], None
        if self.segmenter.adapter is not None:  # served again, each camera starts afresh
            self.segmenter.adapter.reset()

    def close_outputs(self) -> None:
        for cam in self.cameras:
            cam.destroy()
        self.destroy_publisher(self.pub_diag)
        self.cameras = []

    def unload(self) -> None:
        self.segmenter = None

    def shutdown(self) -> None:
        if getattr(self, 'running', False):
            self.stop_serving()


    # -- parameters ------------------------------------------------------------------

    def _declare_parameters(self) -> SimpleNamespace:
        """Declare every parameter; return the read-only ones (start-up configuration)."""
        for param in PARAMETERS:
            self.declare_parameter(param.name, param.default, param.descriptor())
        config = {}
        for param in PARAMETERS:
            value = self.get_parameter(param.name).value
            if param.choices and value not in param.choices:
                raise SegmenterError(f'parameter {param.name}={value!r} is not one of '
                                     f'{", ".join(param.choices)}')
            if param.read_only:
                config[param.name] = value
        if config['input_compressed']:
            self.get_logger().warning('parameter input_compressed is deprecated: set '
                                      'image_transport to compressed instead')
        config['compressed'] = config['input_compressed'] or \
            config['image_transport'] == 'compressed'
        config['cameras'] = cameras = tuple(config['cameras'] or [''])
        if len(set(cameras)) != len(cameras):
            raise SegmenterError(f'parameter cameras lists a namespace twice: {list(cameras)}')
        warning = segment_warning()
        if warning:
            self.get_logger().warning(warning)
        return SimpleNamespace(**config)

    def _declare_model_parameters(self) -> None:
        meta = self.segmenter.meta
        if self.has_parameter('class_names'):  # an earlier configure (the same model_path)
            return
        self.declare_parameter('class_names', list(meta.class_names), Param(
            'class_names', [], 'Class names from the checkpoint; mask value i is '
            'class_names[i].', True).descriptor())
        palette = [v for c in meta.palette for v in c]
        self.declare_parameter('palette', palette, Param(
            'palette', 0, 'Class colours from the checkpoint, flattened r, g, b per class.',
            True).descriptor())

    def _on_set_parameters(self, params) -> SetParametersResult:
        for param in params:
            if param.name == 'color_order' and param.value not in ('rgb', 'bgr'):
                return SetParametersResult(successful=False,
                                           reason=f'color_order must be rgb or bgr, '
                                                  f'got {param.value!r}')
        return SetParametersResult(successful=True)

    # -- processing ------------------------------------------------------------------

    def warm_up(self) -> None:
        """Run one frame so compilation (if any) happens now, not on the first camera frame."""
        t = time.perf_counter()
        h, w = self.segmenter.input_size
        self.segmenter.segment(np.zeros((h, w, 3), np.uint8))
        self.warmup_s = time.perf_counter() - t
        self.get_logger().info(f'first inference (warm-up) took {self.warmup_s:.1f} s')

    def _throttled_error(self, key: str, text: str) -> None:
        now = time.monotonic()
        if now - self._log_times.get(key, -1e9) >= ERROR_THROTTLE_S:
            self._log_times[key] = now
            self.get_logger().error(text)

    def _take(self):
        with self.lock:
            while self.running:
                n = len(self.cameras)
                for k in range(n):  # round-robin, starting after the last camera served
                    cam = self.cameras[(self._next + k) % n]
                    if cam.pending is not None:
                        frame, cam.pending = cam.pending, None
                        self._next = (self._next + k + 1) % n
                        return cam, frame
                self.wakeup.wait(0.5)
        return None

    def _work(self) -> None:
        """The inference thread: the newest prepared frame through the network, handed to
        ``_send``.

        Frames are converted and resized as they arrive (``CameraStream.on_frame``), and
        published (colour mask, overlay, message copies: 6 ms a frame at 1280x720) on a
        thread of their own while this one runs the network on the next; at most one frame
        waits between them, so no frame is dropped there and none is published late."""
        torch.set_num_threads(self.chooser.threads)  # per thread: this one runs the network
        while True:
            item = self._take()
            if item is None:
                return
            cam, frame = item
            want_confidence = cam.pub_confidence.get_subscription_count() > 0
            try:
                result = self.segmenter.infer(frame.prepared, want_confidence, cam.name,
                                              camera_time(stamp_ns(frame.msg.header)))
            except Exception as exc:  # inference failure: report, keep serving
                self._failed(cam, 'inference failed', exc)
                continue
            threads = self.chooser.record(result.timings.inference)
            if threads != torch.get_num_threads():
                torch.set_num_threads(threads)
            with self.lock:
                while self.outbox is not None and self.running:
                    self.handed.wait()
                if not self.running:
                    return
                self.outbox = (cam, frame, result)
                self.handed.notify_all()

    def _send(self) -> None:
        """The publishing thread: each segmented frame's outputs, then its statistics."""
        while True:
            with self.lock:
                while self.outbox is None and self.running:
                    self.handed.wait(0.5)
                if not self.running:
                    return
                out = self.outbox
            try:
                self._publish(*out)
            except Exception as exc:  # a publisher failed: report, keep serving
                self._failed(out[0], 'publishing failed', exc)
            with self.lock:
                self.outbox = None
                self.handed.notify_all()

    def _failed(self, cam: CameraStream, what: str, exc: Exception) -> None:
        with self.lock:
            cam.stats.frame_failed(f'{what}: {type(exc).__name__}: {exc}')
        self._throttled_error(f'fail:{cam.name}',
                              f'[{cam.name}] {what}: {type(exc).__name__}: {exc}')

    def prepare(self, msg, received: float) -> Frame:
        """One camera message ready for the network; raises ImageError for a message that
        cannot be segmented."""
        t0 = time.perf_counter()
        image, order = message_to_array(msg, self.get_parameter('max_image_pixels').value,
                                        self.get_parameter('input_bits').value)
        convert = time.perf_counter() - t0
        try:
            return Frame(msg, received, image, order, convert,
                         self.segmenter.prepare(image, order))
        except ValueError as exc:
            raise ImageError(str(exc)) from exc

    def _publish(self, cam: CameraStream, frame: Frame, result: Result) -> None:
        msg, image, order = frame.msg, frame.image, frame.order
        labels, confidence, timings = result.labels, result.confidence, result.timings
        t1 = time.perf_counter()
        cam.pub_mask.publish(self._image(msg.header, labels, 'mono8'))
        if cam.pub_mask_png.get_subscription_count() > 0:
            cam.pub_mask_png.publish(CompressedImage(header=msg.header, format=MASK_PNG_FORMAT,
                                                     data=mask_to_png(labels)))
        if confidence is not None:
            cam.pub_confidence.publish(self._image(msg.header, confidence, 'mono8'))
        if cam.camera_info is not None and cam.pub_camera_info.get_subscription_count() > 0:
            info = copy.copy(cam.camera_info)  # the mask is at the input's resolution: same K
            info.header = msg.header
            cam.pub_camera_info.publish(info)
        want_color = (self.get_parameter('publish_color_mask').value
                      and cam.pub_color.get_subscription_count() > 0)
        want_overlay = (self.get_parameter('publish_overlay').value
                        and cam.pub_overlay.get_subscription_count() > 0)
        # the overlay keeps the input's colour order (mono8 input becomes rgb8)
        rendered = self.segmenter.render(
            image, order, labels,
            self.get_parameter('color_order').value if want_color else None,
            self.get_parameter('overlay_alpha').value if want_overlay else None)
        for name, (array, encoding) in rendered.items():
            pub = cam.pub_color if name == 'color_mask' else cam.pub_overlay
            pub.publish(self._image(msg.header, array, encoding))
        publish = time.perf_counter() - t1
        age = self._message_age(msg.header)
        times = {'convert': frame.convert, 'preprocess': timings.preprocess,
                 'inference': timings.inference, 'postprocess': timings.postprocess,
                 'publish': publish, 'processing': time.monotonic() - frame.received,
                 'message_age': age}
        with self.lock:
            cam.stats.frame_processed(times, labels, result.mean_confidence)

    def _message_age(self, header) -> float:
        """Seconds from the header stamp to now on the node's ROS clock (simulated time
        under use_sim_time), NaN where that means nothing: no clock yet, a stamp from
        the future, or one more than an hour old (a bag replaying its recorded stamps)."""
        now = self.get_clock().now().nanoseconds
        age = (now - stamp_ns(header)) / 1e9
        return age if now > 0 and 0 <= age <= 3600 else float('nan')

    def publish_class_info(self) -> None:
        meta = self.segmenter.meta
        card = meta.metrics.get('model_card', {})
        info = json.dumps({
            'classes': [{'id': i, 'name': n, 'color': list(c)}
                        for i, (n, c) in enumerate(zip(meta.class_names, meta.palette))],
            'ignore_id': 255,
            'model': {'weights': self.segmenter.model_path.name, 'dataset': meta.dataset,
                      'input_size': list(meta.input_size),
                      'heldout_class_iou': {seq: round(m['mean_iou'], 1) for seq, m in
                                            card.get('heldout', {}).items()}}})
        label_info = None if LabelInfo is None else LabelInfo(class_map=[
            VisionClass(class_id=i, class_name=n) for i, n in enumerate(meta.class_names)])
        for cam in self.cameras:
            cam.pub_class_info.publish(String(data=info))
            if label_info is not None:
                label_info.header.stamp = self.get_clock().now().to_msg()
                cam.pub_label_info.publish(label_info)

    def _image(self, header, array: np.ndarray, encoding: str) -> Image:
        out = Image(header=header)
        for k, v in array_to_fields(array, encoding).items():
            setattr(out, k, v)
        return out

    # -- diagnostics -----------------------------------------------------------------

    def _publish_diagnostics(self) -> None:
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        budget = self.get_parameter('latency_budget_ms').value / 1000
        stale = self.get_parameter('stale_timeout_s').value
        now = time.monotonic()
        for cam in self.cameras:
            with self.lock:
                window = cam.stats.take()
            arr.status.append(self._status(cam, window, budget, stale, now))
        self.pub_diag.publish(arr)

    def _status(self, cam, window, budget: float, stale: float, now: float):
        s = self.segmenter
        doubt, seen_values = judge(*window.seen, self.watch_reference, s.class_names,
                                   self.get_parameter('min_confidence_ratio').value,
                                   self.get_parameter('max_class_mix_distance').value)
        level, message, values = camera_stats.assess(window, now, budget, stale, doubt)
        values = [('model', f'{s.model_path.name} ({s.meta.dataset}, '
                            f'{s.meta.num_classes} classes)'),
                  ('device', s.device.type), ('precision', s.precision),
                  ('precision_reason', s.precision_reason),
                  ('model_card', self.card_summary), ('backend', s.backend),
                  ('input_size', f'{s.input_size[1]}x{s.input_size[0]}'),
                  ('threads', f'{self.chooser.threads} ({self.chooser.reason})'),
                  ('input_topic', cam.sub.topic_name),
                  ('statistics', s.statistics(cam.name))] + values + seen_values
        return DiagnosticStatus(name=topics.status_name(self.get_namespace(), cam.ns),
                                hardware_id=s.device.type, level=bytes([level]),
                                message=message,
                                values=[KeyValue(key=k, value=v) for k, v in values])


class SegmentationNode(Segmentation, Node):
    """The plain node: loads, opens its outputs and serves at construction."""

    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        self.config = self._declare_parameters()
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.load()
        self.open_outputs()
        self.serve()


class ManagedSegmentationNode(Segmentation, LifecycleNode):
    """The managed (lifecycle) node, as Nav2 and Autoware run perception: configure loads
    the weights and compiles, activate subscribes and publishes, deactivate stops without
    freeing, cleanup frees, shutdown ends. Same parameters and topics as the plain node."""

    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        self.config = self._declare_parameters()
        self.add_on_set_parameters_callback(self._on_set_parameters)
        if self.config.autostart:
            self.bring_up()

    def bring_up(self) -> None:
        """configure, then activate: the node's own autostart (parameter ``autostart``).
        A failed step is logged and leaves the node where it stopped (unconfigured after a
        failed load), so a lifecycle manager or a user can still act on it."""
        log = self.get_logger()
        for step, trigger in (('configure', self.trigger_configure),
                              ('activate', self.trigger_activate)):
            if trigger() != TransitionCallbackReturn.SUCCESS:
                log.error(f'autostart: {step} failed; the node stays unconfigured'
                          if step == 'configure' else f'autostart: {step} failed')
                return
        log.info('autostart: configured and active')

    def on_configure(self, state) -> TransitionCallbackReturn:
        loading = LOADING.is_set()  # already set while an autostart runs in main's start-up
        LOADING.set()
        try:
            self.load()
        except (CheckpointError, SegmenterError, ValueError) as exc:
            self.get_logger().error(f'configure failed: {exc}')
            return TransitionCallbackReturn.FAILURE
        finally:
            if not loading:
                LOADING.clear()
        self.open_outputs()
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state) -> TransitionCallbackReturn:
        self.serve()
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        self.stop_serving()
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        self.close_outputs()
        self.unload()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state) -> TransitionCallbackReturn:
        self.shutdown()
        if self.cameras:
            self.close_outputs()
        self.unload()
        return TransitionCallbackReturn.SUCCESS


def leave_at_once() -> None:
    """Exit now, without unwinding: for a stop while the network loads or compiles."""
    rclpy.try_shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def stop_on_signals() -> None:
    """SIGINT and SIGTERM stop the node, once.

    rclpy's own handlers only shut the context down: a signal during the first compile
    was then ignored until the compile ended, and the inference thread went on publishing
    into the dead context. While ``LOADING`` is set (loading, compiling) the process
    leaves at once: an exception raised inside the compiler can leave its fake-tensor mode
    set and abort the process as it unwinds, and compile workers may still run in threads
    that interpreter exit would wait for. Otherwise KeyboardInterrupt in the main thread
    lets ``main`` stop the inference thread before it shuts rclpy down.
    """
    def handler(signum, frame):
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        if LOADING.is_set():
            leave_at_once()
        raise KeyboardInterrupt
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)


def main(args=None, node_class=SegmentationNode) -> int:
    argv = sys.argv[1:] if args is None else list(args)
    own = argv[:argv.index('--ros-args')] if '--ros-args' in argv else argv
    managed = node_class is ManagedSegmentationNode
    if '-h' in own or '--help' in own:
        print(usage(managed))
        return 0
    if own:  # one line, exit status 2, as the tools' argparse errors
        print(f'{command(managed)}: error: unrecognized arguments: {" ".join(own)} (node '
              f'parameters go after --ros-args: -p NAME:=VALUE; --help lists them)',
              file=sys.stderr)
        return 2
    LOADING.set()
    stop_on_signals()
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    node = None
    try:
        node = node_class()
    except (CheckpointError, SegmenterError, ValueError) as exc:
        print(f'[{NODE_NAME}] start-up failed: {exc}', file=sys.stderr, flush=True)
        rclpy.try_shutdown()
        return 1
    except ExternalShutdownException:
        leave_at_once()
    LOADING.clear()
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        while True:  # wake at least twice a second, so a signal is handled promptly even
            executor.spin_once(timeout_sec=0.5)  # with no timer (an inactive managed node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def main_managed(args=None) -> int:
    """The managed node: it starts unconfigured and waits for lifecycle transitions."""
    return main(args, ManagedSegmentationNode)


if __name__ == '__main__':
    sys.exit(main())

"""rclpy node ``enet_segmentation``: camera images in, class ids, colour mask and overlay out.

Per camera namespace ``ns`` (parameter ``cameras``; default one camera, no namespace):
  subscribes ``ns/image`` (sensor_msgs/Image) or ``ns/image/compressed``,
  publishes ``ns/segmentation/mask`` (mono8 ids, 255 = no class) and the other outputs
  (only while subscribed), and ``/diagnostics`` once a second. ``--help`` lists them all.

The ROS shell: parameters declared from ``parameters.PARAMETERS``, one ``CameraStream`` per
camera, frames handed to the ROS-free ``Pipeline``, whose work is the ``Segmenter``'s.
"""

from __future__ import annotations

import sys
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
import numpy as np
import rclpy
from rclpy.clock import Clock, ClockType
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions
from std_msgs.msg import String
import torch

from enet_ros import camera_stats, parameters, topics
from enet_ros.adaptation import camera_time
from enet_ros.camera_stream import CameraStream
from enet_ros.checkpoint import card_summary, CheckpointError, DEFAULT_WEIGHTS
from enet_ros.class_map import class_info, label_info
from enet_ros.dds import segment_warning
from enet_ros.image_codec import ImageError, message_to_array, stamp_ns
from enet_ros.pipeline import Frame, Pipeline
from enet_ros.segmenter import Segmenter, SegmenterError
from enet_ros.shutdown import keep_serving, leave_at_once, LOADING, stop_on_signals
from enet_ros.threads import starting_threads, ThreadChooser, usable_cpus
from enet_ros.watch import judge, reference_of, WATCH_OFF

ERROR_THROTTLE_S = 5.0
START_ERRORS = (CheckpointError, SegmenterError, ValueError)  # one line, exit code 1


class Segmentation:
    """The node's behaviour, shared by the plain node and the managed (lifecycle) one:
    ``load`` (weights, compile, warm-up), ``open_outputs``, ``serve`` (subscriptions,
    pipeline, diagnostics), and their inverses."""

    segmenter = None
    cameras: tuple = ()
    pipeline = None
    managed = False  # the lifecycle node (managed_segmentation_node) says True

    def setup(self) -> None:
        """Parameters, read once; warnings about them and the middleware."""
        self.config = parameters.declare(self)
        self.add_on_set_parameters_callback(parameters.check_change)
        log = self.get_logger()
        if self.config.input_compressed:
            log.warning('parameter input_compressed is deprecated: set image_transport to '
                        'compressed instead')
        warning = segment_warning()
        if warning:
            log.warning(warning)
        self._log_times: dict[str, float] = {}
        self.clock_watch = camera_stats.ClockWatch()

    def load(self) -> None:
        """Load the weights, compile if asked, run one frame; raises on start-up errors."""
        model_path = self.config.model_path or str(DEFAULT_WEIGHTS)
        size = None
        if self.config.input_width or self.config.input_height:
            size = (self.config.input_height, self.config.input_width)
        log = self.get_logger()
        log.info(f'loading {model_path} (backend {self.config.backend})')
        threads, reason, shared = starting_threads(self.config.num_threads)
        if shared:
            log.info(f'threads: {reason}')
        self.chooser = ThreadChooser(usable_cpus(), self.config.num_threads, start=threads,
                                     reason=reason)
        # Build and warm up with one intra-op thread here, and let the inference thread use
        # them all: once this (executor) thread has run torch with a thread team, the network
        # ran 2-2.7x slower on the inference thread (16 ms against 33 ms at 480x360 here).
        torch.set_num_threads(1)
        self.segmenter = Segmenter(model_path, self.config.device, self.config.precision,
                                   self.config.backend, size, info=log.info, warn=log.warning,
                                   adapt=self.config.adapt_statistics)
        meta = self.segmenter.meta
        parameters.declare_model(self, meta.class_names, meta.palette)
        t = time.perf_counter()
        h, w = self.segmenter.input_size  # compiling (if any) now, not on a camera's frame
        self.segmenter.segment(np.zeros((h, w, 3), np.uint8))
        log.info(f'first inference (warm-up) took {time.perf_counter() - t:.1f} s')

    def open_outputs(self) -> None:
        card = self.segmenter.meta.card
        self.watch_reference, self.card_summary = reference_of(card), card_summary(card)
        if self.watch_reference is None:
            self.get_logger().info(WATCH_OFF)
        meta = self.segmenter.meta
        self.cameras = [CameraStream(self, ns, meta.num_classes) for ns in self.config.cameras]
        if self.pipeline is None:  # one for the node's life: new threads pile up arenas
            self.pipeline = Pipeline([], self.infer, self.publish, self.failed,
                                     lambda: torch.set_num_threads(self.chooser.threads))
        self.pipeline.use(self.cameras)
        self.pub_diag = self.create_publisher(DiagnosticArray, topics.DIAGNOSTICS, 10)
        self.diag_timer = None
        info = String(data=class_info(meta, self.segmenter.model_path.name))
        for cam in self.cameras:
            cam.pub_class_info.publish(info)
            if cam.pub_label_info is not None:
                cam.pub_label_info.publish(label_info(meta, self.get_clock().now().to_msg()))

    def serve(self) -> None:
        """Subscribe, start the pipeline and the diagnostics timer."""
        for cam in self.cameras:
            cam.subscribe()
        self.pipeline.start()
        # on the steady clock: under use_sim_time a stopped /clock must not stop diagnostics
        self.diag_timer = self.create_timer(1.0, self.publish_diagnostics,
                                            clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.get_logger().info(
            f'{self.segmenter.describe()}; listening on '
            f'{", ".join(c.sub.topic_name for c in self.cameras)} (camera info '
            f'{", ".join(c.sub_camera_info.topic_name for c in self.cameras)})')

    def stop_serving(self) -> None:
        """Unsubscribe and stop the pipeline; model and publishers stay."""
        for cam in self.cameras:
            cam.unsubscribe()
        self.pipeline.stop()  # a deactivated node publishes nothing more
        if self.diag_timer is not None:
            self.destroy_timer(self.diag_timer)
        self.diag_timer = None
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
        if self.pipeline is not None and self.pipeline.running:
            self.stop_serving()

    # -- the pipeline's three stages -------------------------------------------------

    def prepare(self, msg, received: float) -> Frame:
        """One camera message ready for the network (on the subscription's thread); raises
        ImageError for a message that cannot be segmented."""
        t0 = time.perf_counter()
        image, order = message_to_array(msg, self.get_parameter('max_image_pixels').value,
                                        self.get_parameter('input_bits').value)
        convert = time.perf_counter() - t0
        try:
            return Frame(msg, received, image, order, convert,
                         self.segmenter.prepare(image, order))
        except ValueError as exc:
            raise ImageError(str(exc)) from exc

    def infer(self, cam: CameraStream, frame: Frame):
        """The network on one frame (the inference thread), and its time to the chooser."""
        want_confidence = cam.pub_confidence.get_subscription_count() > 0
        result = self.segmenter.infer(frame.prepared, want_confidence, cam.name,
                                      camera_time(stamp_ns(frame.msg.header)))
        threads = self.chooser.record(result.timings.inference)
        if threads != torch.get_num_threads():
            torch.set_num_threads(threads)
        return result

    def publish(self, cam: CameraStream, frame: Frame, result) -> None:
        """Every output of one frame (the publishing thread), then its statistics."""
        t = time.perf_counter()
        param = self.get_parameter
        cam.publish(frame, result,
                    param('color_order').value if param('publish_color_mask').value else None,
                    param('overlay_alpha').value if param('publish_overlay').value else None,
                    self.segmenter.render)
        timings = result.timings
        times = {'convert': frame.convert, 'preprocess': timings.preprocess,
                 'inference': timings.inference, 'postprocess': timings.postprocess,
                 'publish': time.perf_counter() - t,
                 'processing': time.monotonic() - frame.received,
                 'message_age': self.message_age(frame.msg.header)}
        with self.pipeline.lock:
            cam.stats.frame_processed(times, result.labels, result.mean_confidence)

    def failed(self, cam: CameraStream, what: str, exc: Exception) -> None:
        with self.pipeline.lock:
            cam.stats.frame_failed(f'{what}: {type(exc).__name__}: {exc}')
        self.throttled_error(f'fail:{cam.name}',
                             f'[{cam.name}] {what}: {type(exc).__name__}: {exc}')

    def throttled_error(self, key: str, text: str) -> None:
        now = time.monotonic()
        if now - self._log_times.get(key, -1e9) >= ERROR_THROTTLE_S:
            self._log_times[key] = now
            self.get_logger().error(text)

    def message_age(self, header) -> float:
        """Seconds from the header stamp to now on the node's ROS clock (simulated time
        under use_sim_time), NaN where that means nothing: no clock yet, a stamp from
        the future, or one more than an hour old (a bag replaying its recorded stamps)."""
        now = self.get_clock().now().nanoseconds
        age = (now - stamp_ns(header)) / 1e9
        return age if now > 0 and 0 <= age <= 3600 else float('nan')

    # -- diagnostics -----------------------------------------------------------------

    def publish_diagnostics(self) -> None:
        clock, param, s = self.get_clock(), self.get_parameter, self.segmenter
        now, ros_now = time.monotonic(), clock.now()
        arr = DiagnosticArray()
        arr.header.stamp = ros_now.to_msg()
        simulated = clock.clock_type == ClockType.ROS_TIME and clock.ros_time_is_active
        clock_state = self.clock_watch.state(simulated, ros_now.nanoseconds, now)
        for cam in self.cameras:
            with self.pipeline.lock:
                window = cam.stats.take()
            watched = judge(*window.seen, self.watch_reference, s.class_names,
                            param('min_confidence_ratio').value,
                            param('max_class_mix_distance').value)
            level, message, values = camera_stats.status(
                window, now, param('latency_budget_ms').value / 1000,
                param('stale_timeout_s').value, watched, about=[
                    ('model', f'{s.model_path.name} ({s.meta.dataset}, '
                              f'{s.meta.num_classes} classes)'),
                    ('device', s.device.type), ('precision', s.precision),
                    ('precision_reason', s.precision_reason),
                    ('model_card', self.card_summary), ('backend', s.backend),
                    ('input_size', f'{s.input_size[1]}x{s.input_size[0]}'),
                    ('threads', f'{self.chooser.threads} ({self.chooser.reason})'),
                    ('input_topic', cam.sub.topic_name),
                    ('input_publishers', cam.publishers()),
                    ('ros_clock', clock_state),
                    ('statistics', s.statistics(cam.name))])
            arr.status.append(DiagnosticStatus(
                name=topics.status_name(self.get_namespace(), cam.ns),
                hardware_id=s.device.type, level=bytes([level]), message=message,
                values=[KeyValue(key=k, value=v) for k, v in values]))
        self.pub_diag.publish(arr)


class SegmentationNode(Segmentation, Node):
    """The plain node: loads, opens its outputs and serves at construction."""

    def __init__(self, **kwargs):
        super().__init__(topics.NODE_NAME, **kwargs)
        self.setup()
        self.load()
        self.open_outputs()
        self.serve()


def main(args=None, node_class=SegmentationNode) -> int:
    argv = sys.argv[1:] if args is None else list(args)
    own = argv[:argv.index('--ros-args')] if '--ros-args' in argv else argv
    managed = node_class.managed
    if '-h' in own or '--help' in own:
        print(topics.usage(managed))
        return 0
    if own:  # one line, exit status 2, as the tools' argparse errors
        print(f'{topics.command(managed)}: error: unrecognized arguments: {" ".join(own)} '
              f'(node parameters go after --ros-args: -p NAME:=VALUE; --help lists them)',
              file=sys.stderr)
        return 2
    LOADING.set()
    stop_on_signals()
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    node = None
    try:
        node = node_class()
    except START_ERRORS as exc:
        print(f'[{topics.NODE_NAME}] start-up failed: {exc}', file=sys.stderr, flush=True)
        rclpy.try_shutdown()
        return 1
    except ExternalShutdownException:
        leave_at_once()
    LOADING.clear()
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        while keep_serving(node.get_logger()):  # wake at least twice a second, so a
            executor.spin_once(timeout_sec=0.5)  # signal is seen with no timer running
    except ExternalShutdownException:
        pass
    finally:
        node.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())

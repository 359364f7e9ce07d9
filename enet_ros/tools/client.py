"""The node as a child process and a client that drives it over DDS: one ``drive`` loop
and one diagnostics reader for the demo, the replay tool, the benchmarks and the tests.
"""

from __future__ import annotations

import os
from pathlib import Path
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import yaml

from enet_ros import topics
from enet_ros.dds import profiles_variable, share_file
from enet_ros.image_codec import array_to_fields, stamp_key
from enet_ros.launch_args import LOG_FORMAT
from enet_ros.shutdown import PARENT_VARIABLE
from enet_ros.tools.session import child_env

def ros_env(base: dict | None = None) -> dict:
    """Environment for every process of the graph: the shipped FastDDS profile (32 MB
    shared-memory segments) unless the user set one, and discovery kept on this host."""
    env = dict(os.environ if base is None else base)
    env.setdefault(profiles_variable(), str(share_file('config/fastdds.xml')))
    env.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    env.setdefault('RMW_IMPLEMENTATION', 'rmw_fastrtps_cpp')
    env.setdefault('RCUTILS_CONSOLE_OUTPUT_FORMAT', LOG_FORMAT)  # as the launch file does
    env['PYTHONUNBUFFERED'] = '1'
    return env


def apply_ros_env() -> None:
    """Set ros_env() in this process; call before rclpy.init()."""
    os.environ.update(ros_env())


# what the node logs while it starts, shown by tools that start it
STARTUP_STEPS = ('loading ', 'compiling the network', 'compiled in', 'not writable',
                 'discarding cached', 'first inference', 'threads: ')


class NodeProcess:
    """``python -m enet_ros.segmentation_node --ros-args --params-file <yaml>`` as a child
    (``module``: another entry point, e.g. enet_ros.managed_segmentation_node).

    The node runs as a session of its own, as a service does, unless ``own_session`` is
    False: it then gets a session's share of the CPU (``tools.session``), and stops once
    this process is gone, as no hang-up or Ctrl-C of the terminal reaches it.
    """

    def __init__(self, params: dict, ros_args: list[str] | None = None,
                 log_path: Path | None = None, env: dict | None = None,
                 module: str = 'enet_ros.segmentation_node', own_session: bool = True):
        self._tmp = tempfile.TemporaryDirectory(prefix='enet_node_')
        self.params_file = Path(self._tmp.name) / 'params.yaml'
        self.params_file.write_text(yaml.safe_dump({'/**': {'ros__parameters': params}}))
        self.log_path = log_path or Path(self._tmp.name) / 'node.log'
        self._log = open(self.log_path, 'wb')
        cmd = [sys.executable, '-m', module, '--ros-args',
               '--params-file', str(self.params_file)] + (ros_args or [])
        env = child_env(env)
        if not own_session:
            del env[PARENT_VARIABLE]
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=ros_env(env), start_new_session=own_session)

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors='replace')

    def wait_ready(self, timeout: float = 120.0, progress: str | None = None) -> None:
        """Block until the node logs that it listens (after loading and warm-up). With
        ``progress`` (a tool's name), echo the node's start-up steps on stdout meanwhile:
        loading, compiling (a first start's compile takes a while) and warm-up."""
        deadline = time.monotonic() + timeout
        shown = 0
        while time.monotonic() < deadline:
            log = self.log()
            if progress:
                lines = log.splitlines()
                for line in lines[shown:]:
                    if any(k in line for k in STARTUP_STEPS):
                        print(f'{progress}: node: {line.split("]: ", 1)[-1]}', flush=True)
                shown = len(lines) - (0 if log.endswith('\n') else 1)
            if 'listening on' in log:
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f'node exited with {self.proc.returncode}:\n{self.log()}')
            time.sleep(0.1)
        raise TimeoutError(f'node not ready after {timeout} s:\n{self.log()}')

    def stop(self, sig: int = 2, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def __enter__(self) -> 'NodeProcess':
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
        self._log.close()
        self._tmp.cleanup()


class Received:
    """What the client got on one topic: messages and monotonic receipt times."""

    def __init__(self, keep: bool):
        self.keep = keep
        self.messages: list = []
        self.stamps: list[tuple[int, int]] = []
        self.times: list[float] = []
        self.count = 0


class SegmentationClient:
    """An rclpy node in this process that publishes images to the segmentation node and
    records its outputs. Call ``rclpy.init()`` (after ``apply_ros_env()``) first."""

    def __init__(self, namespace: str = '', reliable_input: bool = False,
                 outputs: tuple[str, ...] = ('mask',), keep: bool = True,
                 compressed: bool = False, name: str = 'enet_client'):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CompressedImage, Image
        from diagnostic_msgs.msg import DiagnosticArray
        self.node = rclpy.create_node(name, namespace=namespace)
        pub_qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE
                             if reliable_input else ReliabilityPolicy.BEST_EFFORT)
        if compressed:
            self.pub = self.node.create_publisher(CompressedImage, 'image/compressed', pub_qos)
        else:
            self.pub = self.node.create_publisher(Image, topics.IMAGE, pub_qos)
        self.received: dict[str, Received] = {}
        self.subscriptions: list = []
        self.publish_times: dict[tuple[int, int], float] = {}
        self.lock = threading.Lock()
        for name_ in outputs:
            self._subscribe(CompressedImage if name_.endswith('compressed') else Image,
                            topics.IMAGE_OUTPUTS[name_], name_, keep)
        self._subscribe(DiagnosticArray, topics.DIAGNOSTICS, 'diagnostics', True)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self._spin = threading.Thread(target=self._run, daemon=True)
        self._running = True
        self._spin.start()

    def _subscribe(self, msg_type, topic: str, key: str, keep: bool) -> None:
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        rec = self.received[key] = Received(keep)

        def callback(msg, rec=rec):
            now = time.monotonic()
            with self.lock:
                rec.count += 1
                rec.times.append(now)
                rec.stamps.append(stamp_key(msg.header))
                if rec.keep:
                    rec.messages.append(msg)

        qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self.subscriptions.append(self.node.create_subscription(msg_type, topic, callback, qos))

    def _run(self) -> None:
        while self._running:
            self.executor.spin_once(timeout_sec=0.05)

    def wait_for_node(self, timeout: float = 60.0) -> None:
        """Until the segmentation node's subscription and our subscriptions are matched."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pub.get_subscription_count() > 0 and all(
                    sub.get_publisher_count() > 0 for sub in self.subscriptions):
                time.sleep(0.3)  # matching is seen on each side at its own time
                return
            time.sleep(0.05)
        raise TimeoutError('the segmentation node did not subscribe to '
                           f'{self.pub.topic_name} within {timeout} s')

    def stamp_now(self):
        return self.node.get_clock().now().to_msg()

    def publish(self, image: np.ndarray | None = None, encoding: str = 'rgb8', stamp=None,
                frame_id: str = 'camera', msg=None):
        """Publish an (H, W[, C]) uint8 array (or a ready message); returns the message."""
        from sensor_msgs.msg import Image
        if msg is None:
            msg = Image(**array_to_fields(image, encoding))
        msg.header.frame_id = frame_id
        msg.header.stamp = stamp or self.stamp_now()
        key = stamp_key(msg.header)
        with self.lock:
            self.publish_times[key] = time.monotonic()
        self.pub.publish(msg)
        return msg

    def drive(self, frames, pace: float | list[float] | None = None, timeout: float = 10.0,
              seconds: float | None = None, encoding: str = 'rgb8',
              frame_id: str = 'camera', answers: tuple[str, ...] = ('mask',)) -> list:
        """Publish ``frames`` in turn (arrays, published as ``encoding``, or ready
        messages) and return the headers sent (not the messages: an endless drive would
        keep every frame's pixels).

        ``pace``: None for lockstep (each frame once the previous one's ``answers`` arrived:
        its mask, or every output a recorder keeps; or after ``timeout``), a rate in frames
        per second, or each frame's due time in seconds after the first. ``seconds``:
        stop after that long (``frames`` may be endless). Then waits up to ``timeout`` for
        the last masks.
        """
        sent = []
        t0 = time.monotonic()
        start = self.received['mask'].count
        before = {key: self.received[key].count for key in answers}
        for k, frame in enumerate(frames):
            if seconds is not None and time.monotonic() - t0 >= seconds:
                break
            if pace is None and sent:  # a lost frame costs one timeout, not the rest
                deadline = time.monotonic() + timeout
                for key in answers:
                    self.wait(key, before[key] + 1, max(0.0, deadline - time.monotonic()))
            elif pace is not None:
                due = pace[k] if isinstance(pace, list) else k / pace
                time.sleep(max(0.0, t0 + due - time.monotonic()))
            before = {key: self.received[key].count for key in answers}
            if isinstance(frame, np.ndarray):
                msg = self.publish(frame, encoding, frame_id=frame_id)
            else:
                msg = self.publish(msg=frame, frame_id=frame.header.frame_id or frame_id)
            sent.append(msg.header)
        if sent:
            self.wait('mask', before['mask'] + 1 if pace is None else start + len(sent),
                      timeout)
        return sent

    def wait(self, key: str, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.received[key].count >= count:
                return True
            time.sleep(0.02)
        return False

    def latencies(self, key: str = 'mask') -> list[float]:
        """Publish-to-receipt seconds of every output message, matched by stamp."""
        out = []
        rec = self.received[key]
        with self.lock:
            for stamp, t in zip(rec.stamps, rec.times):
                sent = self.publish_times.get(stamp)
                if sent is not None:
                    out.append(t - sent)
        return out

    def statuses(self, name: str) -> list[dict]:
        """Key/values of every diagnostics status named ``name`` received so far."""
        with self.lock:
            arrays = list(self.received['diagnostics'].messages)
        return [{kv.key: kv.value for kv in s.values}
                for arr in arrays for s in arr.status if s.name == name]

    def frame_mean(self, name: str, key: str) -> float:
        """Per-frame mean over the run of a per-second diagnostics mean (``key``, e.g.
        ``inference_ms_mean``): each window weighted by the frames it processed."""
        pairs = [(float(s[key]), float(s['output_fps'])) for s in self.statuses(name)
                 if s.get(key, 'nan') != 'nan' and float(s.get('output_fps', 0)) > 0]
        if not pairs:
            return float('nan')
        means, frames = np.asarray(pairs).T
        return float((means * frames).sum() / frames.sum())

    def last_status(self, name: str) -> dict:
        """The newest diagnostics status named ``name`` ({} if none yet)."""
        found = self.statuses(name)
        return found[-1] if found else {}

    def close(self) -> None:
        self._running = False
        self._spin.join(timeout=2)
        self.executor.remove_node(self.node)
        self.node.destroy_node()

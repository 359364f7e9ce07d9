"""What the launch tests share: the installed ``segmentation.launch.py`` with arguments, a
test camera, and ``Probe``, the test process's own rclpy node that listens to the launched
graph and calls its services.

Run by ``test/test_launch.py`` through ``launch_test``, in the environment of a colcon
workspace holding the package (``source install/setup.bash``), with ``ENET_TEST_WEIGHTS``
naming small random-weight checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path
import sys
import threading
import time
import unittest

from ament_index_python.packages import get_package_share_directory
import launch
from launch.actions import ExecuteProcess, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
import launch_testing
import launch_testing.actions
import launch_testing.asserts

HERE = Path(__file__).resolve().parent
WEIGHTS = os.environ.get('ENET_TEST_WEIGHTS', '')
# the node as the launch tests run it: small random weights, eager (nothing to compile)
NODE = {'model_path': WEIGHTS, 'backend': 'eager', 'device': 'cpu', 'precision': 'fp32'}
RATE = 10.0  # Hz, the test cameras'


def segmentation(node: dict | None = None, **args: str) -> IncludeLaunchDescription:
    """The package's launch file as installed, with these launch arguments (and ``node``'s,
    by default the test node's model arguments)."""
    path = Path(get_package_share_directory('enet_ros')) / 'launch' / 'segmentation.launch.py'
    given = {**(NODE if node is None else node), **args}
    return IncludeLaunchDescription(PythonLaunchDescriptionSource(str(path)),
                                    launch_arguments=given.items())


def camera(topic: str, frame: str, clock: float | None = None) -> ExecuteProcess:
    """A test camera publishing the demo frames on ``topic`` at RATE (see camera.py)."""
    cmd = [sys.executable, str(HERE / 'camera.py'), topic, str(RATE), frame]
    return ExecuteProcess(cmd=cmd + (['--clock', str(clock)] if clock is not None else []),
                          name=f'camera_{frame}', output='screen')


def description(*actions) -> launch.LaunchDescription:
    return launch.LaunchDescription([*actions, launch_testing.actions.ReadyToTest()])


class ProbeTest(unittest.TestCase):
    """Active tests with a ``Probe`` of their own (``self.probe``)."""

    @classmethod
    def setUpClass(cls):
        cls.probe = Probe()

    @classmethod
    def tearDownClass(cls):
        cls.probe.close()


@launch_testing.post_shutdown_test()
class EveryProcessExits0(unittest.TestCase):
    """Imported by a test description: its processes ended with exit code 0 on shutdown."""

    def test_every_process_exits_0(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)


class Probe:
    """An rclpy node in the test process: subscriptions that keep what arrives (``got``),
    service calls, and the graph as ``ros2 topic list -t`` sees it."""

    def __init__(self, name: str = 'launch_probe'):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        rclpy.init()
        self.node = rclpy.create_node(name)
        self.got: dict[str, list] = {}
        self.lock = threading.Lock()
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self._running = True
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while self._running:
            self.executor.spin_once(timeout_sec=0.05)

    def listen(self, msg_type, topic: str, latched: bool = False,
               best_effort: bool = False) -> str:
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT if best_effort
                         else ReliabilityPolicy.RELIABLE)
        if latched:
            qos.durability = DurabilityPolicy.TRANSIENT_LOCAL
        self.got[topic] = []

        def keep(msg, topic=topic):
            with self.lock:
                self.got[topic].append(msg)
        self.node.create_subscription(msg_type, topic, keep, qos)
        return topic

    def count(self, topic: str) -> int:
        with self.lock:
            return len(self.got[topic])

    def wait(self, topic: str, count: int = 1, timeout: float = 60.0) -> list:
        """The messages on ``topic`` once ``count`` have arrived; fails after ``timeout``."""
        deadline = time.monotonic() + timeout
        while self.count(topic) < count:
            assert time.monotonic() < deadline, \
                f'{self.count(topic)} of {count} messages on {topic} within {timeout} s'
            time.sleep(0.05)
        with self.lock:
            return list(self.got[topic])

    def call(self, srv_type, name: str, request, timeout: float = 60.0):
        """The service's answer. A request is sent again after 5 s without one: FastDDS
        drops a response whose reader the server has not matched yet ("failed to send
        response (timeout)" in the server's log), which a loaded CI machine met."""
        client = self.node.create_client(srv_type, name)
        try:
            assert client.wait_for_service(timeout_sec=timeout), f'no service {name}'
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                future = client.call_async(request)
                retry = time.monotonic() + 5.0
                while not future.done() and time.monotonic() < min(retry, deadline):
                    time.sleep(0.02)
                if future.done():
                    return future.result()
                client.remove_pending_request(future)
            raise AssertionError(f'{name} did not answer in {timeout} s')
        finally:
            self.node.destroy_client(client)

    def parameters(self, node: str, names: list[str]) -> dict:
        """``ros2 param get``'s answer: the node's GetParameters service."""
        from rcl_interfaces.srv import GetParameters
        from rclpy.parameter import parameter_value_to_python
        reply = self.call(GetParameters, f'{node}/get_parameters', GetParameters.Request(
            names=names))
        return {n: parameter_value_to_python(v) for n, v in zip(names, reply.values)}

    def lifecycle_state(self, node: str) -> str:
        from lifecycle_msgs.srv import GetState
        return self.call(GetState, f'{node}/get_state', GetState.Request()).current_state.label

    def transition(self, node: str, label: str) -> bool:
        from lifecycle_msgs.msg import Transition
        from lifecycle_msgs.srv import ChangeState
        ids = {'configure': Transition.TRANSITION_CONFIGURE,
               'activate': Transition.TRANSITION_ACTIVATE,
               'deactivate': Transition.TRANSITION_DEACTIVATE}
        done = self.call(ChangeState, f'{node}/change_state', ChangeState.Request(
            transition=Transition(id=ids[label]))).success
        # a request sent again after a lost response fails: the first one did it
        return done or self.lifecycle_state(node) == {'configure': 'inactive',
                                                      'activate': 'active',
                                                      'deactivate': 'inactive'}[label]

    def topics_of(self, name: str, namespace: str, timeout: float = 30.0) -> tuple[dict, dict]:
        """(published, subscribed): topic -> types of the node ``namespace/name``, as the
        graph has them (``ros2 node info``), once it publishes its segmentation outputs."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                pubs = dict(self.node.get_publisher_names_and_types_by_node(name, namespace))
                subs = dict(self.node.get_subscriber_names_and_types_by_node(name, namespace))
                if any('/segmentation/' in t for t in pubs):
                    return pubs, subs
            except Exception:  # the node is not in the graph yet
                pass
            assert time.monotonic() < deadline, f'{namespace}/{name} not in the graph'
            time.sleep(0.2)

    def close(self) -> None:
        import rclpy
        self._running = False
        self._thread.join()
        self.node.destroy_node()
        rclpy.try_shutdown()


# rviz2 display classes of config/segmentation.rviz -> the message type each one shows
RVIZ_TYPES = {'rviz_default_plugins/Image': 'sensor_msgs/msg/Image'}


def rviz_view(image: str, namespace: str = '') -> list[tuple[str, str]]:
    """(topic, type) of every display of the installed config/segmentation.rviz, as the
    launch file's remappings and namespace resolve them for rviz2."""
    import yaml
    from enet_ros.launch_args import rviz_remappings
    share = Path(get_package_share_directory('enet_ros'))
    config = yaml.safe_load((share / 'config' / 'segmentation.rviz').read_text())
    remap = dict(rviz_remappings(image))
    view = []
    for display in config['Visualization Manager']['Displays']:
        if 'Topic' in display:
            topic = remap.get(display['Topic']['Value'], display['Topic']['Value'])
            if not topic.startswith('/'):
                topic = f'/{namespace}/{topic}' if namespace else f'/{topic}'
            view.append((topic, RVIZ_TYPES[display['Class']]))
    assert view, 'the rviz config shows no topic'
    return view


def stamp(msg) -> tuple[int, int]:
    return msg.header.stamp.sec, msg.header.stamp.nanosec


def assert_stamps_sent(probe: Probe, output: str, sent: str) -> list:
    """Outputs on ``output`` from frames sent since the probe first saw the camera on
    ``sent`` carry the stamp of a frame the camera sent (the probe may match the node
    before the camera, so earlier outputs are not judged); returns the outputs."""
    probe.wait(sent, 3)
    got = probe.wait(output, probe.count(output) + 3)
    stamps = {stamp(m) for m in probe.wait(sent)}
    later = [stamp(m) for m in got if stamp(m) >= min(stamps)]
    assert later, f'no output from the frames seen: {sorted(stamps)[:3]}...'
    assert set(later) <= stamps, f'stamps never sent: {sorted(set(later) - stamps)}'
    return got

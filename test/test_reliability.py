"""Days on a vehicle, in short: fuzzed frames through DDS, publishers and subscribers that
come and go, lifecycle cycles and live parameters, all while frames flow. The long
versions (hundreds of cycles, a 30-minute soak) are benchmarks/churn.py and soak.py."""

from __future__ import annotations

from benchmarks.fuzz_codec import MAX_PIXELS, through_node
from enet_ros.tools.client import NodeProcess, SegmentationClient


def test_fuzzed_frames_through_dds_are_rejected_and_good_ones_answered(weights, ros):
    with NodeProcess({'model_path': str(weights), 'backend': 'eager',
                      'max_image_pixels': MAX_PIXELS, 'input_reliability': 'reliable'},
                     ros_args=['-r', '__ns:=/fuzz']) as proc:
        proc.wait_ready()
        c = SegmentationClient(namespace='/fuzz', keep=False, name='fuzz_client',
                               reliable_input=True)
        try:
            c.wait_for_node()
            r = through_node(c, proc.proc.pid, cases=150)
        finally:
            c.close()
        assert proc.proc.poll() is None, proc.log()
        log = proc.log()
    assert r['good missed'] == 0 and r['good answered'] == 50, r
    assert 0 < r['rejected here'] < r['fuzzed'], r  # the cases exercise both outcomes
    # every message accounted for: received, or superseded in the node's depth-1 queue
    # (10 ms apart, a busy callback can let one pass) and counted as lost before it
    assert r['received by node'] + r['lost before node'] == r['sent'], r
    assert r['lost before node'] <= r['sent'] // 50, r
    assert r['rejected by node'] <= r['rejected here'] <= \
        r['rejected by node'] + r['lost before node'], r
    assert r['rss max MB'] - r['rss start MB'] < r['rss bound MB'], r
    assert 'Traceback' not in log, log
    assert 'frame skipped' in log  # the rejections are named (throttled)


# num_threads fixed: the thread chooser may legitimately grow the OpenMP team once, which
# would read as a leaked thread
CHURN_NODE = {'backend': 'eager', 'num_threads': 1}
RSS_BOUND_MB = 30  # a few cycles of each: a leak of a frame a cycle would show


def assert_left_nothing(r: dict, bound_s: float = 5.0) -> None:
    """Every cycle answered, promptly; no thread, descriptor or memory left behind."""
    assert r['answered'] == r['cycles'] and r['slowest_s'] < bound_s, r
    assert r['threads'][-1] <= r['threads'][0] and r['fds'][-1] <= r['fds'][0], r
    assert r['rss_mb'][-1] - r['rss_mb'][0] < RSS_BOUND_MB, r


def test_publishers_subscribers_and_parameters_come_and_go(weights, ros):
    """The camera publisher killed and restarted, output subscribers created and destroyed,
    live parameters changed back and forth, all while frames flow."""
    from benchmarks.churn import plain_node_runs
    *runs, clean = plain_node_runs({'model_path': str(weights), **CHURN_NODE}, restarts=4,
                                   subscribers=6, parameters=4)
    assert clean  # the node alive, no traceback in its log
    restarts, subscribers, parameters = runs
    for r in runs:
        assert_left_nothing(r)
    # four camera processes and the client's own image publisher (a killed process's
    # publisher counts as connected until its DDS lease runs out)
    assert restarts['extra'].endswith(', 5 connected since start'), restarts
    assert parameters['extra'] == '0 refused', parameters


def test_lifecycle_cycles_while_frames_flow(weights, ros):
    from benchmarks.churn import managed_node_runs
    *runs, clean = managed_node_runs({'model_path': str(weights), **CHURN_NODE},
                                     activations=4, reconfigures=2)
    assert clean
    for r in runs:
        assert_left_nothing(r)


def test_stamps_that_jump_back_and_a_clock_that_stops(weights, ros):
    """Under use_sim_time, a bag replayed twice (header stamps and /clock start again),
    then /clock stopping while frames still come: every frame answered, the jump counted,
    diagnostics go on (on the steady clock) and say that simulated time stopped, and the
    message age stays sane or NaN, never a huge figure."""
    import math
    import time
    import numpy as np
    from builtin_interfaces.msg import Time
    from rosgraph_msgs.msg import Clock
    from enet_ros.topics import status_name

    def at(t: float) -> Time:
        return Time(sec=int(t), nanosec=int(t % 1 * 1e9))

    with NodeProcess({'model_path': str(weights), 'backend': 'eager', 'use_sim_time': True,
                      'adapt_statistics': True}, ros_args=['-r', '__ns:=/replay']) as proc:
        proc.wait_ready()
        c = SegmentationClient(namespace='/replay', name='replay_client', reliable_input=True)
        clock = c.node.create_publisher(Clock, '/clock', 10)
        img = np.zeros((64, 96, 3), np.uint8)
        try:
            c.wait_for_node()
            for _ in range(2):  # the same 2 s of a bag, twice
                for k in range(10):
                    t = 1000.0 + 0.2 * k
                    clock.publish(Clock(clock=at(t)))
                    before = c.received['mask'].count
                    c.publish(img, stamp=at(t - 0.1))
                    assert c.wait('mask', before + 1, 10), proc.log()
            before = c.received['diagnostics'].count
            for k in range(25):  # /clock stops at 1001.8; frames go on, 2.5 s
                before_mask = c.received['mask'].count
                c.publish(img, stamp=at(1002.0 + 0.1 * k))
                assert c.wait('mask', before_mask + 1, 10), proc.log()
                time.sleep(0.1)
            assert c.wait('diagnostics', before + 2, 10)  # diagnostics go on
            status = c.last_status(status_name('/replay'))
        finally:
            c.close()
        assert proc.proc.poll() is None and 'Traceback' not in proc.log(), proc.log()
    assert status['stamps_back'] == '1', status
    assert status['ros_clock'].startswith('simulated time (/clock) stopped'), status
    age = float(status['message_age_ms_max'])
    assert math.isnan(age) or age < 1000, status  # frames newer than the stopped clock


def test_weights_that_disappear_after_start(weights, ros, tmp_path):
    """The weights file removed while the node serves: it goes on serving (the network is
    in memory); a reconfigure then fails with one line naming the path, the node stays up
    unconfigured, and configures again once the file is back."""
    import shutil
    import time
    import numpy as np
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState
    path = tmp_path / 'weights.pt'
    shutil.copy(weights, path)
    with NodeProcess({'model_path': str(path), **CHURN_NODE, 'autostart': True},
                     ros_args=['-r', '__ns:=/gone'],
                     module='enet_ros.managed_segmentation_node') as proc:
        proc.wait_ready()
        c = SegmentationClient(namespace='/gone', name='gone_client', reliable_input=True)
        change = c.node.create_client(ChangeState, '/gone/enet_segmentation/change_state')

        def step(tid) -> bool:
            future = change.call_async(ChangeState.Request(transition=Transition(id=tid)))
            deadline = time.monotonic() + 120
            while not future.done() and time.monotonic() < deadline:
                time.sleep(0.02)
            return future.result().success

        def answered() -> bool:
            c.wait_for_node()
            before = c.received['mask'].count
            c.publish(np.zeros((64, 96, 3), np.uint8))
            return c.wait('mask', before + 1, 10)

        try:
            assert change.wait_for_service(timeout_sec=30)
            path.unlink()
            assert answered(), proc.log()
            assert step(Transition.TRANSITION_DEACTIVATE)
            assert step(Transition.TRANSITION_CLEANUP)
            assert not step(Transition.TRANSITION_CONFIGURE)
            failed = [line for line in proc.log().splitlines() if 'configure failed' in line]
            assert len(failed) == 1 and str(path) in failed[0], proc.log()
            assert proc.proc.poll() is None
            shutil.copy(weights, path)
            assert step(Transition.TRANSITION_CONFIGURE) and step(Transition.TRANSITION_ACTIVATE)
            assert answered(), proc.log()
        finally:
            c.close()
        assert 'Traceback' not in proc.log(), proc.log()

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
    assert r['rejected by node'] == r['rejected here'], r
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

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

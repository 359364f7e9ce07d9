"""``use_sim_time:=true`` with a ``/clock`` publisher (a camera replaying from t = 1000 s):
the outputs carry the input's stamps and the diagnostics are stamped on the simulated
clock, not the wall clock."""


from diagnostic_msgs.msg import DiagnosticArray
import pytest
from sensor_msgs.msg import Image

from launching import assert_stamps_sent, camera, description, segmentation
# ProbeTest: a probe per test class; EveryProcessExits0: the post-shutdown test
from launching import EveryProcessExits0, ProbeTest  # noqa: F401

TOPIC = '/sim_camera/image_raw'
START = 1000.0  # simulated seconds; the wall clock is past 1.7e9


@pytest.mark.launch_test
def generate_test_description():
    return description(camera(TOPIC, 'sim_camera', clock=START),
                       segmentation(image=TOPIC, use_sim_time='true'))


class TestSimTime(ProbeTest):

    def test_outputs_follow_the_input_stamps(self):
        sent = self.probe.listen(Image, TOPIC, best_effort=True)
        masks = self.probe.listen(Image, '/segmentation/mask')
        got = assert_stamps_sent(self.probe, masks, sent)
        assert all(START <= m.header.stamp.sec < START + 3600 for m in got)

    def test_diagnostics_are_stamped_on_the_simulated_clock(self):
        diagnostics = self.probe.listen(DiagnosticArray, '/diagnostics')
        arrays = self.probe.wait(diagnostics, 3)
        ours = [a for a in arrays if any('enet_segmentation' in s.name for s in a.status)]
        assert ours, 'no diagnostics from the node'
        assert all(START <= a.header.stamp.sec < START + 3600 for a in ours[1:]), \
            [a.header.stamp.sec for a in ours]


"""``image:=`` remaps the node onto a camera: masks, overlays and colour masks come back on
segmentation/* with the camera's header; the shipped rviz view shows topics that exist."""


import pytest
from sensor_msgs.msg import Image

from launching import assert_stamps_sent, camera, description, rviz_view, segmentation
# ProbeTest: a probe per test class; EveryProcessExits0: the post-shutdown test
from launching import EveryProcessExits0, ProbeTest  # noqa: F401

TOPIC = '/test_camera/image_raw'


@pytest.mark.launch_test
def generate_test_description():
    return description(camera(TOPIC, 'test_camera'), segmentation(image=TOPIC))


class TestRemappedCamera(ProbeTest):

    def test_outputs_carry_the_camera_header(self):
        p = self.probe
        sent = p.listen(Image, TOPIC, best_effort=True)
        outputs = [p.listen(Image, f'/segmentation/{name}')
                   for name in ('mask', 'overlay', 'color_mask')]
        for topic in outputs:
            p.wait(topic, 3)
        for topic in outputs:
            got = assert_stamps_sent(p, topic, sent)
            assert all(m.header.frame_id == 'test_camera' for m in got), topic
            assert (got[-1].height, got[-1].width) == (120, 160), topic
        assert p.wait(outputs[0])[-1].encoding == 'mono8'

    def test_the_rviz_view_shows_topics_of_the_graph(self):
        pubs, subs = self.probe.topics_of('enet_segmentation', '/')
        for topic, kind in rviz_view(TOPIC):
            assert kind in pubs.get(topic, []) + subs.get(topic, []), \
                f'rviz shows {topic} ({kind}); the node has {sorted(pubs) + sorted(subs)}'


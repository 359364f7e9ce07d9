"""``namespace:=``: two launches in two namespaces serve two cameras side by side; each
node's topics, class map and diagnostics status are under its namespace, and the shipped
rviz view, launched in a namespace, shows topics that exist."""

import json

from diagnostic_msgs.msg import DiagnosticArray
import pytest
from sensor_msgs.msg import Image
from std_msgs.msg import String

from launching import camera, description, rviz_view, segmentation
# ProbeTest: a probe per test class; EveryProcessExits0: the post-shutdown test
from launching import EveryProcessExits0, ProbeTest  # noqa: F401

CAMERAS = {'cam_front': '/front/image_raw', 'cam_rear': 'rear_camera/image_raw'}
# ROS-wide topics every node has, and the diagnostics topic diagnostic_aggregator reads
GLOBAL = {'/rosout', '/parameter_events', '/diagnostics'}


@pytest.mark.launch_test
def generate_test_description():
    return description(
        camera('/front/image_raw', 'front'), camera('/cam_rear/rear_camera/image_raw', 'rear'),
        *[segmentation(namespace=ns, image=image) for ns, image in CAMERAS.items()])


class TestTwoNamespaces(ProbeTest):

    def test_each_namespace_serves_its_own_camera(self):
        masks = {ns: self.probe.listen(Image, f'/{ns}/segmentation/mask') for ns in CAMERAS}
        for ns, frame in (('cam_front', 'front'), ('cam_rear', 'rear')):
            got = self.probe.wait(masks[ns], 3)
            assert {m.header.frame_id for m in got} == {frame}, ns

    def test_every_topic_class_map_and_status_is_namespaced(self):
        diagnostics = self.probe.listen(DiagnosticArray, '/diagnostics')
        for ns in CAMERAS:
            pubs, subs = self.probe.topics_of('enet_segmentation', f'/{ns}')
            camera = CAMERAS[ns].rsplit('/', 1)[0] + '/'  # its image and camera_info
            outside = [t for t in {**pubs, **subs} if t not in GLOBAL and not
                       t.startswith(f'/{ns}/') and not t.startswith(camera)]
            assert not outside, f'{ns}: topics outside /{ns}/: {outside}'
            assert f'/{ns}/segmentation/class_info' in pubs
            info = self.probe.wait(self.probe.listen(
                String, f'/{ns}/segmentation/class_info', latched=True))
            assert len(json.loads(info[-1].data)['classes']) == 11
        names = set()
        for _ in range(60):
            arrays = self.probe.wait(diagnostics, len(names) + 1, timeout=10)
            names = {s.name for a in arrays for s in a.status}
            if {'/cam_front/enet_segmentation: image',
                    '/cam_rear/enet_segmentation: image'} <= names:
                break
        assert {'/cam_front/enet_segmentation: image',
                '/cam_rear/enet_segmentation: image'} <= names, names

    def test_the_rviz_view_in_a_namespace_shows_topics_of_the_graph(self):
        for ns, image in CAMERAS.items():
            pubs, subs = self.probe.topics_of('enet_segmentation', f'/{ns}')
            for topic, kind in rviz_view(image, ns):
                assert kind in pubs.get(topic, []) + subs.get(topic, []), \
                    f'rviz in {ns} shows {topic}; the node has {sorted(pubs) + sorted(subs)}'


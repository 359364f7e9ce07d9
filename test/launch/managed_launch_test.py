"""``managed:=true``: with ``autostart:=true`` the lifecycle node reaches active by itself;
with ``autostart:=false`` it stays unconfigured until told, and deactivating it stops the
masks."""

import time

import pytest
from sensor_msgs.msg import Image

from launching import camera, description, RATE, segmentation
# ProbeTest: a probe per test class; EveryProcessExits0: the post-shutdown test
from launching import EveryProcessExits0, ProbeTest  # noqa: F401


@pytest.mark.launch_test
def generate_test_description():
    return description(
        camera('/auto/image_raw', 'auto'), camera('/manual/image_raw', 'manual'),
        segmentation(namespace='auto', image='/auto/image_raw', managed='true',
                     autostart='true'),
        segmentation(namespace='manual', image='/manual/image_raw', managed='true',
                     autostart='false'))


class TestManaged(ProbeTest):

    def test_autostart_reaches_active_by_itself(self):
        masks = self.probe.listen(Image, '/auto/segmentation/mask')
        self.probe.wait(masks, 3)
        assert self.probe.lifecycle_state('/auto/enet_segmentation') == 'active'

    def test_without_autostart_it_waits_then_serves_until_deactivated(self):
        p, node = self.probe, '/manual/enet_segmentation'
        masks = p.listen(Image, '/manual/segmentation/mask')
        assert p.lifecycle_state(node) == 'unconfigured'
        time.sleep(10 / RATE)  # ten camera frames
        assert p.lifecycle_state(node) == 'unconfigured' and p.count(masks) == 0
        assert p.transition(node, 'configure')
        assert p.lifecycle_state(node) == 'inactive'
        assert p.transition(node, 'activate')
        assert p.lifecycle_state(node) == 'active'
        p.wait(masks, 3)
        assert p.transition(node, 'deactivate')
        assert p.lifecycle_state(node) == 'inactive'
        time.sleep(0.5)  # a frame already taken may still come out
        stopped = p.count(masks)
        time.sleep(10 / RATE)
        assert p.count(masks) == stopped, 'masks published while inactive'


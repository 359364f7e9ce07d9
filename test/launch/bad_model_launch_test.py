"""A bad ``model_path:=`` ends the node with one clear line and a non-zero exit code, never
a traceback."""

import unittest

import launch_testing
import launch_testing.asserts
import launch_testing.markers
import pytest

from launching import description, NODE, segmentation

MISSING = '/nonexistent/enet_camvid.pt'


@pytest.mark.launch_test
@launch_testing.markers.keep_alive  # the node ends by itself; the tests see it end
def generate_test_description():
    return description(segmentation({**NODE, 'model_path': MISSING}))


class TestBadModel(unittest.TestCase):

    def test_the_node_ends_by_itself(self, proc_info):
        proc_info.assertWaitForShutdown(process='segmentation_node', timeout=60)


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):

    def test_exit_code_1_with_one_clear_line(self, proc_info, proc_output):
        launch_testing.asserts.assertExitCodes(proc_info, [1], process='segmentation_node')
        text = ''.join(o.text.decode() for o in proc_output)
        assert 'Traceback' not in text, text
        failed = [line for line in text.splitlines() if 'start-up failed' in line]
        assert len(failed) == 1 and f'model file {MISSING} does not exist' in failed[0], text

"""``params_file:=`` a file of the test's own: the node answers the parameter services (what
``ros2 param get`` asks) with its values, and a launch argument overrides the file only
where it is given."""

import tempfile

import pytest
from sensor_msgs.msg import Image
import yaml

from launching import camera, description, NODE, Probe, segmentation
# ProbeTest: a probe per test class; EveryProcessExits0: the post-shutdown test
from launching import EveryProcessExits0, ProbeTest  # noqa: F401

TOPIC = '/params_camera/image_raw'
FILE = {**NODE, 'input_width': 128, 'input_height': 96, 'overlay_alpha': 0.25,
        'output_depth': 3, 'color_order': 'bgr', 'num_threads': 1}
GIVEN = {'input_width': '160'}  # given on the command line: wins over the file


@pytest.mark.launch_test
def generate_test_description():
    params = tempfile.NamedTemporaryFile('w', suffix='.yaml', delete=False)
    yaml.safe_dump({'/**': {'ros__parameters': FILE}}, params)
    params.close()
    return description(camera(TOPIC, 'params_camera'),
                       segmentation({}, params_file=params.name, image=TOPIC, **GIVEN))


class TestParamsFile(ProbeTest):

    @classmethod
    def setUpClass(cls):
        cls.probe = Probe()
        cls.probe.wait(cls.probe.listen(Image, '/segmentation/mask'))  # the node is up

    def test_the_file_values_are_the_node_parameters(self):
        names = [n for n in FILE if n not in GIVEN]
        got = self.probe.parameters('/enet_segmentation', names)
        self.assertEqual(got, {n: FILE[n] for n in names})

    def test_a_given_argument_overrides_the_file(self):
        got = self.probe.parameters('/enet_segmentation', list(GIVEN))
        assert got == {'input_width': 160}

    def test_a_live_parameter_set_is_answered(self):
        from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
        from rcl_interfaces.srv import SetParameters
        value = ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=False)
        reply = self.probe.call(SetParameters, '/enet_segmentation/set_parameters',
                                SetParameters.Request(parameters=[
                                    Parameter(name='publish_overlay', value=value)]))
        assert reply.results[0].successful, reply.results[0].reason
        assert self.probe.parameters('/enet_segmentation', ['publish_overlay']) == \
            {'publish_overlay': False}


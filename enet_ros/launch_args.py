"""What ``segmentation.launch.py`` starts, without needing ``launch`` itself.

A launch argument overrides the parameters file only when the user gives it: every
node-parameter argument defaults to '' (not given), and ``overrides`` drops those, so the
params file decides everything the command line did not say. Values are typed from the
parameter table (``enet_ros.parameters``). ``node_spec`` turns the launch arguments into
the executable, parameters, remappings and environment of the node, so the launch file
only hands them to ``launch_ros`` and a test can start the same process without it.
"""

from __future__ import annotations

from enet_ros.dds import profiles_variable, share_file
from enet_ros.parameters import PARAMETERS

# node parameters people set on the command line (the rest live in the params file)
LAUNCH_PARAMETERS = ('model_path', 'device', 'precision', 'backend', 'adapt_statistics',
                     'input_width', 'input_height', 'image_transport', 'input_compressed',
                     'cameras', 'num_threads')
_TABLE = {p.name: p for p in PARAMETERS}
# the node's log lines with a readable wall-clock time (rcutils' {date_time_with_ms},
# Jazzy on; the default format gives seconds since 1970)
LOG_FORMAT = '[{severity}] [{date_time_with_ms}] [{name}]: {message}'
# the launch file's own arguments: name -> (default, description)
ARGUMENTS = {
    'params_file': (str(share_file('config/segmentation.yaml')), 'Parameters file for the node'),
    'image': ('image', "Input image topic (remapped onto the node's image; its "
                       'image/compressed follows it)'),
    'camera_info': ('', 'Camera info topic; empty = the camera_info beside the image topic '
                        '(/camera/image_raw -> /camera/camera_info), as image_transport pairs '
                        'them'),
    'namespace': ('', 'Namespace for the node and its topics'),
    'use_sim_time': ('', 'true: follow /clock (bag replay, simulation). Empty: the params '
                         'file decides.'),
    'log_level': ('info', 'Logging level: debug, info, warn, error'),
    'use_rviz': ('false', 'Also start rviz2 with config/segmentation.rviz'),
    'managed': ('false', 'true: the lifecycle node (managed_segmentation_node), as Nav2 and '
                         'Autoware bring perception up'),
    'autostart': ('true', 'With managed:=true: configure and activate it at start; false '
                          'when your lifecycle manager lists it in node_names'),
    'dds_profile': (str(share_file('config/fastdds.xml')),
                    'FastDDS XML profile set for the node (32 MB shared-memory segment for '
                    'camera frames); empty = leave the environment alone'),
}


def rviz_remappings(image) -> list[tuple]:
    """config/segmentation.rviz names its topics absolutely (/image, /segmentation/...); the
    launch file remaps them onto the camera's image (the ``image`` argument, a string or a
    substitution) and the node's outputs, both resolved in the launch's namespace."""
    return [('/image', image), ('/segmentation/overlay', 'segmentation/overlay'),
            ('/segmentation/color_mask', 'segmentation/color_mask')]


def description(name: str) -> str:
    return f'{_TABLE[name].description} Empty: the params file decides.'


def _flag(name: str, text: str) -> bool:
    if text.lower() not in ('true', 'false'):
        raise ValueError(f'launch argument {name}:={text!r}: expected true or false')
    return text.lower() == 'true'


def _typed(name: str, text: str):
    default = _TABLE[name].default
    if isinstance(default, bool):
        return _flag(name, text)
    if isinstance(default, int):
        try:
            return int(text)
        except ValueError:
            raise ValueError(f'launch argument {name}:={text!r}: expected an integer') from None
    if isinstance(default, list):  # cameras:=front,rear
        return [v.strip() for v in text.split(',')]
    return text


def overrides(given: dict[str, str], use_sim_time: str = '') -> dict:
    """Node parameters for the launch arguments the user gave ('' = not given)."""
    out = {name: _typed(name, value) for name, value in given.items()
           if name in LAUNCH_PARAMETERS and value != ''}
    if use_sim_time != '':
        out['use_sim_time'] = use_sim_time.lower() == 'true'
    return out


def node_spec(given: dict[str, str]) -> dict:
    """The node the launch file starts, from the launch arguments as strings (missing ones
    take their defaults): ``executable``, ``parameters`` (overrides of the params file),
    ``remappings`` and ``env`` (added to the node's environment)."""
    arg = {name: given.get(name, default) for name, (default, _) in ARGUMENTS.items()}
    managed = _flag('managed', arg['managed'])
    parameters = overrides(given, arg['use_sim_time'])
    if managed:
        parameters['autostart'] = _flag('autostart', arg['autostart'])
    image = arg['image']
    remappings = [('image', image), ('image/compressed', f'{image}/compressed')]
    if arg['camera_info']:
        remappings.append(('camera_info', arg['camera_info']))
    env = {'RCUTILS_CONSOLE_OUTPUT_FORMAT': LOG_FORMAT}
    if arg['dds_profile']:
        env[profiles_variable()] = arg['dds_profile']
    return {'executable': 'managed_segmentation_node' if managed else 'segmentation_node',
            'parameters': parameters, 'remappings': remappings, 'env': env}

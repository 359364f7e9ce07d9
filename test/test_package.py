"""The ROS package as colcon and launch see it, and the lint checks."""

from __future__ import annotations

import ast
import os
import subprocess
import sys

import re

import pytest
import yaml

from conftest import REPO, run_python


def test_ruff_lint():
    subprocess.run([sys.executable, '-m', 'ruff', 'check', str(REPO)], check=True)


def test_package_xml_format3_and_matches_setup():
    from catkin_pkg.package import parse_package
    pkg = parse_package(str(REPO / 'package.xml'))
    assert pkg.package_format == 3 and pkg.name == 'enet_ros'
    assert any(e.tagname == 'build_type' and e.content == 'ament_python' for e in pkg.exports)
    deps = {d.name for d in pkg.exec_depends}
    assert {'rclpy', 'sensor_msgs', 'diagnostic_msgs'} <= deps
    setup = (REPO / 'setup.py').read_text()
    assert f"version='{pkg.version}'" in setup
    assert (REPO / 'resource' / 'enet_ros').is_file()
    assert 'lib/enet_ros' in (REPO / 'setup.cfg').read_text()


def test_every_package_xml_key_is_one_rosdep_knows():
    """What ``rosdep install --from-paths src`` would resolve, checked offline against the
    key list kept in test/rosdep_keys.txt (its header says where it came from)."""
    from catkin_pkg.package import parse_package
    pkg = parse_package(str(REPO / 'package.xml'))
    known = {line.strip() for line in (REPO / 'test' / 'rosdep_keys.txt').read_text()
             .splitlines() if line.strip() and not line.startswith('#')}
    keys = {d.name for d in pkg.build_depends + pkg.exec_depends + pkg.test_depends +
            pkg.buildtool_depends}
    assert {'rclpy', 'launch_testing', 'python3-torch'} <= keys
    assert not keys - known, f'package.xml keys rosdep does not know: {sorted(keys - known)}'


@pytest.fixture(scope='module')
def colcon_install(workspace):
    return workspace / 'install' / 'enet_ros'


def test_colcon_build_installs_share_and_executables(colcon_install):
    share = colcon_install / 'share' / 'enet_ros'
    assert (share / 'launch' / 'segmentation.launch.py').is_file()
    for name in ('segmentation.yaml', 'segmentation.rviz', 'fastdds.xml'):
        assert (share / 'config' / name).is_file(), name
    assert (share / 'package.xml').is_file()
    index = colcon_install / 'share' / 'ament_index' / 'resource_index' / 'packages'
    assert (index / 'enet_ros').is_file()
    for exe in ('segmentation_node', 'managed_segmentation_node', 'demo', 'evaluate_bag',
                'replay_bag', 'make_bag'):
        assert (colcon_install / 'lib' / 'enet_ros' / exe).is_file(), exe
    weights = list(colcon_install.glob('lib/python3*/site-packages/enet_ros/weights/*.pt'))
    assert [w.name for w in weights] == ['enet_camvid.pt']


def test_ros2_launch_show_args_documents_every_argument(workspace_env):
    from enet_ros.launch_args import ARGUMENTS, LAUNCH_PARAMETERS
    from conftest import ros_tool
    done = subprocess.run([ros_tool('ros2'), 'launch', 'enet_ros', 'segmentation.launch.py',
                           '--show-args'], env=workspace_env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    shown = re.findall(r"^    '(\w+)':\n        (\S.*)$", done.stdout, re.M)
    assert {name for name, _ in shown} >= set(ARGUMENTS) | set(LAUNCH_PARAMETERS) | {'use_rviz'}
    assert all(text for _, text in shown)


def test_colcon_test_runs_the_package_tests(workspace, workspace_env):
    """``colcon test`` as ROS CI runs it (here on the architecture test alone: the rest of
    the suite is this run), and ``colcon test-result`` reads its verdict."""
    from conftest import ros_tool
    colcon = ros_tool('colcon')
    env = {**workspace_env, 'PYTHONPATH': os.pathsep.join([str(REPO), str(REPO / 'test'),
                                                           workspace_env.get('PYTHONPATH', '')])}
    done = subprocess.run([colcon, 'test', '--packages-select', 'enet_ros', '--pytest-args',
                           str(REPO / 'test' / 'test_architecture.py')], cwd=workspace, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    result = subprocess.run([colcon, 'test-result', '--verbose'], cwd=workspace, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0 and re.search(r'\d+ tests, 0 errors, 0 failures',
                                                result.stdout), result.stdout


def _node_parameters(weights) -> dict:
    """Parameter names and values the node declares, read from a real node."""
    import json
    out = run_python(REPO / 'test' / 'inspect_node.py', weights, 'parameters', check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_params_file_matches_node_parameters(weights):
    declared = _node_parameters(weights)
    params = yaml.safe_load((REPO / 'config' / 'segmentation.yaml').read_text())
    values = params['/**']['ros__parameters']
    runtime_only = {'class_names', 'palette', 'use_sim_time', 'start_type_description_service'}
    assert set(values) == set(declared) - runtime_only
    for key, value in values.items():
        if key not in ('model_path', 'backend'):  # set differently by _node_parameters
            assert declared[key] == value, key


def test_launch_arguments_match_node_parameters(weights):
    from enet_ros.launch_args import ARGUMENTS, LAUNCH_PARAMETERS
    tree = ast.parse((REPO / 'launch' / 'segmentation.launch.py').read_text())
    # the launch file declares ARGUMENTS and LAUNCH_PARAMETERS in loops, params_file alone
    assert 'ARGUMENTS.items()' in ast.unparse(tree)
    assert 'for name in LAUNCH_PARAMETERS' in ast.unparse(tree)
    args = set(LAUNCH_PARAMETERS) | set(ARGUMENTS)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, 'id', '') == 'DeclareLaunchArgument':
            kw = {k.arg: k.value for k in node.keywords}
            assert 'description' in kw, ast.unparse(node)
            if isinstance(node.args[0], ast.Constant):
                args.add(node.args[0].value)
    assert {'image', 'camera_info', 'namespace', 'params_file', 'use_sim_time', 'log_level',
            'use_rviz', 'managed', 'autostart', 'dds_profile'} <= args
    assert all(text for _, text in ARGUMENTS.values())
    declared = _node_parameters(weights)
    assert set(LAUNCH_PARAMETERS) <= set(declared)
    # every LaunchConfiguration named by a string is a declared argument
    used = {n.args[0].value for n in ast.walk(tree) if isinstance(n, ast.Call)
            and getattr(n.func, 'id', '') == 'LaunchConfiguration'
            and isinstance(n.args[0], ast.Constant)}
    assert used <= args
    assert "executable=spec['executable']" in ast.unparse(tree)


def test_launch_spec_plain_managed_profile_and_camera_info():
    from enet_ros.dds import profiles_variable
    from enet_ros.launch_args import node_spec
    plain = node_spec({})
    assert plain['executable'] == 'segmentation_node' and plain['parameters'] == {}
    assert plain['remappings'] == [('image', 'image'), ('image/compressed', 'image/compressed')]
    assert plain['env'][profiles_variable()].endswith('config/fastdds.xml')
    assert '{date_time_with_ms}' in plain['env']['RCUTILS_CONSOLE_OUTPUT_FORMAT']
    managed = node_spec({'managed': 'true', 'image': '/cam/image_raw', 'dds_profile': '',
                         'image_transport': 'compressed'})
    assert managed['executable'] == 'managed_segmentation_node'
    assert managed['parameters'] == {'autostart': True, 'image_transport': 'compressed'}
    assert profiles_variable() not in managed['env']  # empty: the environment decides
    assert ('image/compressed', '/cam/image_raw/compressed') in managed['remappings']
    assert not any(old == 'camera_info' for old, _ in managed['remappings'])  # beside image
    own = node_spec({'managed': 'true', 'autostart': 'false', 'camera_info': '/cam/info'})
    assert own['parameters'] == {'autostart': False}
    assert ('camera_info', '/cam/info') in own['remappings']
    with pytest.raises(ValueError, match="managed:='yes': expected true or false"):
        node_spec({'managed': 'yes'})


def test_launch_overrides_the_params_file_only_where_given():
    from enet_ros.launch_args import overrides
    given = {'device': '', 'precision': 'bf16', 'input_compressed': 'true', 'backend': '',
             'cameras': 'front,rear', 'input_width': '640', 'model_path': ''}
    assert overrides(given) == {'precision': 'bf16', 'input_compressed': True,
                                'cameras': ['front', 'rear'], 'input_width': 640}
    assert overrides({'device': ''}) == {}  # nothing given: the params file decides all
    assert overrides({}, use_sim_time='true') == {'use_sim_time': True}
    with pytest.raises(ValueError, match="input_width:='wide': expected an integer"):
        overrides({'input_width': 'wide'})


def test_rviz_config_shows_image_overlay_and_mask():
    rviz = yaml.safe_load((REPO / 'config' / 'segmentation.rviz').read_text())
    topics = [d['Topic']['Value'] for d in rviz['Visualization Manager']['Displays']]
    assert topics == ['/image', '/segmentation/overlay', '/segmentation/color_mask']

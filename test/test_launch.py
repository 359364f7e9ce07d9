"""segmentation.launch.py as ROS packages test their launch files: each file of test/launch/
is a launch_testing test description (the installed launch file with arguments, a test
camera, ``ReadyToTest``; active tests over DDS; post-shutdown tests on exit codes), run by
``launch_test`` in a shell that sourced a colcon workspace holding this package.

launch_testing's pytest plugin is not used: its Jazzy hook is refused by pytest 9 (see
pytest.ini), so each description runs as ``launch_test FILE``, its verdict its exit code.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from conftest import REPO, ros_tool

DESCRIPTIONS = sorted((REPO / 'test' / 'launch').glob('*_launch_test.py'))


def test_every_launch_described_has_a_test():
    """The launches issue #52 names, each with a test description of its own."""
    assert {p.name.removesuffix('_launch_test.py') for p in DESCRIPTIONS} >= {
        'remap', 'params_file', 'namespaces', 'managed', 'sim_time', 'bad_model'}


@pytest.mark.parametrize('path', DESCRIPTIONS, ids=lambda p: p.stem)
def test_launch(path, workspace_env, weights):
    launch_test = ros_tool('launch_test')
    env = {**workspace_env, 'ENET_TEST_WEIGHTS': str(weights),
           'PYTHONPATH': os.pathsep.join([str(path.parent), workspace_env.get('PYTHONPATH', '')])}
    done = subprocess.run([launch_test, str(path)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, f'launch_test {path.name}: exit {done.returncode}\n' \
                                 f'{done.stdout[-6000:]}\n{done.stderr[-6000:]}'

"""Shared fixtures. Every test runs on CPU with small random-weight checkpoints unless it
says otherwise; ROS tests use a domain id of their own so parallel runs do not mix."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
import random

import cv2
import numpy as np
import pytest
import torch

from enet_ros.checkpoint import ModelMeta, save_checkpoint
from enet_ros.dds import profiles_variable
from enet_ros.model import ENet
from training.datasets import CAMVID_CLASSES as CAMVID_NAMES, CAMVID_PALETTE  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
# launch_testing descriptions (named *_launch_test.py, as ROS packages name them): run by
# test_launch.py through launch_test, not collected as tests of their own
collect_ignore = ['launch']
CAMVID = (REPO / '..' / 'shared' / 'data' / 'camvid').resolve()

os.environ.setdefault('ROS_DOMAIN_ID', str(random.Random(os.getpid()).randint(20, 200)))
os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
os.environ.setdefault(profiles_variable(), str(REPO / 'config' / 'fastdds.xml'))
os.environ.setdefault('ENET_ROS_CACHE', str(REPO / 'build' / 'test-cache'))


def run_python(*args, **kw) -> subprocess.CompletedProcess:
    """``python ARGS`` with the repository on PYTHONPATH (scripts in test/ import the
    package as the tests do), text output captured."""
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join(
        p for p in (str(REPO), os.environ.get('PYTHONPATH', '')) if p)}
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True,
                          env=env, **kw)


def randomize_batch_norm(model: torch.nn.Module) -> torch.nn.Module:
    """Non-trivial batch-norm statistics and affine terms, so folding them is tested."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.3, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    return model


def own_classes(n: int) -> tuple[tuple[str, ...], tuple[tuple[int, int, int], ...]]:
    """``n`` class names and distinct colours that are not CamVid's."""
    rng = np.random.default_rng(n)
    colours = {tuple(int(v) for v in rng.integers(0, 256, 3)) for _ in range(4 * n)}
    return tuple(f'class_{i}' for i in range(n)), tuple(sorted(colours))[:n]


def make_weights(path: Path, input_size=(64, 96), seed: int = 0,
                 classes: int | None = None) -> Path:
    """A random-weight checkpoint whose batch-norm statistics are not trivial: CamVid's
    classes, or ``classes`` others (``own_classes``)."""
    torch.manual_seed(seed)
    names, palette = own_classes(classes) if classes else (CAMVID_NAMES, CAMVID_PALETTE)
    model = randomize_batch_norm(ENet(len(names)))
    meta = ModelMeta(dataset='own' if classes else 'camvid', class_names=names,
                     palette=palette, input_size=input_size, mean=(0.4, 0.4, 0.4),
                     std=(0.3, 0.3, 0.3))
    save_checkpoint(path, model, meta)
    return path


def decompression_bomb(ext: str) -> bytes:
    """A small real stream of ``ext`` whose header claims a huge image."""
    params = [cv2.IMWRITE_WEBP_QUALITY, 80] if ext == '.webp' else []
    data = bytearray(cv2.imencode(ext, np.zeros((16, 16, 3), np.uint8), params)[1])
    if ext == '.png':
        data[16:24] = (40000).to_bytes(4, 'big') + (30000).to_bytes(4, 'big')
    elif ext == '.jpg':
        i = 2
        while data[i + 1] not in (0xC0, 0xC2):
            i += 2 + int.from_bytes(data[i + 2:i + 4], 'big')
        data[i + 5:i + 9] = (30000).to_bytes(2, 'big') + (40000).to_bytes(2, 'big')
    else:  # lossy WebP: VP8 frame header, 14-bit sizes
        data[26:30] = (12000).to_bytes(2, 'little') + (12000).to_bytes(2, 'little')
    return bytes(data)


@pytest.fixture(scope='session')
def weights(tmp_path_factory) -> Path:
    return make_weights(tmp_path_factory.mktemp('weights') / 'enet_random.pt')


@pytest.fixture(scope='session')
def camvid_root() -> Path:
    """The dataset beside the checkout. Without it (``colcon test`` in a workspace) the
    dataset tests are skipped with this reason; in CI, which has it, its absence fails."""
    if not (CAMVID / 'val').is_dir():
        why = f'CamVid not found at {CAMVID} (../shared/data/camvid beside the checkout)'
        if os.environ.get('CI'):
            pytest.fail(f'{why}: CI must run every dataset test')
        pytest.skip(f'{why}: dataset test skipped')
    return CAMVID


@pytest.fixture(scope='session')
def ros():
    import rclpy
    rclpy.init()
    yield
    rclpy.try_shutdown()


@pytest.fixture(scope='session')
def vision_msgs_env(tmp_path_factory) -> dict:
    """Build the test-only vision_msgs interfaces (test/interfaces/vision_msgs) with cmake
    against this environment's ROS 2 (the sourced one, else the venv's wheels); returns
    the environment a process needs to import and use them. Needs cmake and a C compiler."""
    if shutil.which('cmake') is None or shutil.which('cc') is None:
        pytest.fail('cmake and a C compiler are needed to build the test vision_msgs '
                    '(apt-get install cmake gcc g++)')
    out = tmp_path_factory.mktemp('vision_msgs')
    install = out / 'install'
    ros = os.environ.get('AMENT_PREFIX_PATH', sys.prefix) if os.environ.get('ROS_DISTRO') \
        else sys.prefix
    source = Path(__file__).parent / 'interfaces' / 'vision_msgs'
    steps = [['cmake', '-S', str(source), '-B', str(out / 'build'),
              f'-DCMAKE_PREFIX_PATH={ros.replace(os.pathsep, ";")}',
              f'-DCMAKE_INSTALL_PREFIX={install}', f'-DPython3_EXECUTABLE={sys.executable}',
              '-DBUILD_TESTING=OFF'],
             ['cmake', '--build', str(out / 'build'), '-j2'],
             ['cmake', '--install', str(out / 'build')]]
    for step in steps:
        done = subprocess.run(step, env={**os.environ, 'AMENT_PREFIX_PATH': ros},
                              capture_output=True, text=True)
        assert done.returncode == 0, f'{" ".join(step)}:\n' + (done.stdout + done.stderr)[-3000:]
    found = list(install.glob('lib/python3*/site-packages'))
    assert found, 'the vision_msgs build installed no Python package'

    def joined(name: str, first: Path) -> str:
        return os.pathsep.join(p for p in [str(first), os.environ.get(name, '')] if p)
    return {'PYTHONPATH': joined('PYTHONPATH', found[0]),
            'LD_LIBRARY_PATH': joined('LD_LIBRARY_PATH', install / 'lib'),
            'AMENT_PREFIX_PATH': os.pathsep.join([str(install), ros])}


def ros_tool(name: str) -> str:
    """The path of a ROS 2 command (``ros2``, ``launch_test``): the sourced ROS 2's, else the
    venv's (scripts/setup.sh installs the vendored Jazzy tools there). Without them the test
    is skipped with this reason; in CI, which has them, their absence fails."""
    found = shutil.which(name) or (str(Path(sys.executable).parent / name)
                                   if (Path(sys.executable).parent / name).exists() else None)
    if found is None:
        why = (f'{name} not found: no ROS 2 is sourced and ../shared/vendor/ros2-jazzy-python '
               'was not installed into the venv (scripts/setup.sh does it when it is there)')
        if os.environ.get('CI'):
            pytest.fail(f'{why}: CI must run every ROS tool test')
        pytest.skip(why)
    return found


def sourced(script: Path, env: dict | None = None) -> dict:
    """The environment after ``source SCRIPT`` in bash (a colcon workspace's setup.bash)."""
    out = subprocess.run(['bash', '-c', f'source "{script}" && env -0'], env=env or os.environ,
                         check=True, capture_output=True).stdout
    return dict(item.split('=', 1) for item in out.decode().split('\0') if '=' in item)


@pytest.fixture(scope='session')
def workspace(tmp_path_factory) -> Path:
    """A colcon workspace holding this package (src/enet_ros -> the repository), built
    with ``colcon build`` as the README does; returns its root."""
    colcon = ros_tool('colcon')
    ws = tmp_path_factory.mktemp('ws')
    (ws / 'src').mkdir()
    (ws / 'src' / 'enet_ros').symlink_to(REPO)
    done = subprocess.run([colcon, 'build', '--packages-select', 'enet_ros'], cwd=ws,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return ws


@pytest.fixture(scope='session')
def workspace_env(workspace) -> dict:
    """The environment of a shell that sourced the workspace (``source install/setup.bash``),
    with the FastDDS profile and the test domain."""
    from enet_ros.tools.client import ros_env
    return ros_env(sourced(workspace / 'install' / 'setup.bash'))

"""The README's main job, with a random-weight checkpoint so it runs in seconds."""

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from enet_ros.colors import distinct_palette

from conftest import CAMVID_NAMES, REPO


def _run_demo(args, cwd):
    return subprocess.run([sys.executable, '-m', 'enet_ros.tools.demo', '--backend', 'eager',
                           '--precision', 'fp32', '--loops', '1'] + args,
                          cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**__import__('os').environ, 'PYTHONPATH': str(REPO)})


def test_demo_on_embedded_frames(weights, tmp_path):
    out = tmp_path / 'demo'
    res = _run_demo(['--weights', str(weights), '--output', str(out)], tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    overlays = sorted(out.glob('overlay_*.png'))
    assert overlays, res.stdout
    img = cv2.imread(str(overlays[0]))
    assert img.shape == (360, 480 + 170, 3)  # the frame and the legend beside it
    masks = sorted(out.glob('color_mask_*.png'))
    assert [p.name[-8:] for p in masks] == [p.name[-8:] for p in overlays]
    legend = cv2.imread(str(out / 'legend.png'))
    assert legend.shape[1] == 170
    # the legend's swatches are the palette's colours (BGR), Sky's first
    assert tuple(int(v) for v in legend[10, 12]) == (128, 128, 128)
    assert tuple(int(v) for v in legend[10 + 28, 12]) == (0, 0, 128)  # Building
    # the overlay's legend (beside each overlay) shows the overlay's colours, told apart
    overlay_legend = cv2.imread(str(out / 'legend_overlay.png'))
    assert (img[:, 480:] == overlay_legend[:360]).all()
    for k, rgb in enumerate(distinct_palette(len(CAMVID_NAMES))):
        assert tuple(int(v) for v in overlay_legend[10 + 28 * k, 12]) == rgb[::-1]
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['compile'] == 'compile: none (eager)'
    text = (out / 'summary.txt').read_text()
    assert 'cpu fp32 eager' in text and 'compile: none (eager)' in text
    assert summary['frames_sent'] == 6
    # by default each frame goes once the previous one is answered: every frame gets an
    # overlay
    assert summary['masks_received'] == 6 and len(overlays) == 6, text
    assert "each once the previous frame's outputs arrived" in text and summary['rate_hz'] is None
    assert summary['end_to_end_latency']['median_ms'] > 0
    assert 'end-to-end latency' in res.stdout


def test_demo_at_a_camera_rate_accounts_for_every_frame(weights, tmp_path):
    out = tmp_path / 'paced'
    res = _run_demo(['--weights', str(weights), '--output', str(out), '--rate', '30',
                     '--loops', '2'], tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['frames_sent'] == 12 and summary['rate_hz'] == 30
    assert summary['masks_received'] + summary['frames_dropped_by_node'] == 12
    assert 'x 2 passes) at 30 Hz' in (out / 'summary.txt').read_text()


def test_demo_on_a_video_file(weights, tmp_path):
    video = tmp_path / 'clip.avi'
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*'MJPG'), 10, (160, 120))
    for i in range(4):
        writer.write(np.full((120, 160, 3), 40 * i, np.uint8))
    writer.release()
    out = tmp_path / 'video_demo'
    res = _run_demo(['--weights', str(weights), '--input', str(video), '--output', str(out)],
                    tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert cv2.imread(str(next(out.glob('overlay_*.png')))).shape == (120, 160 + 170, 3)


def test_demo_bad_input_says_why(tmp_path):
    res = _run_demo(['--input', str(tmp_path / 'missing')], tmp_path)
    assert res.returncode != 0
    assert 'neither a folder of images nor a video file' in res.stderr


def test_demo_bad_arguments_one_line_exit_2(tmp_path):
    for args, message in ((['--precision', 'fp8'], "invalid choice: 'fp8'"),
                          (['--weights', str(tmp_path / 'missing.pt')], 'does not exist')):
        res = _run_demo(args, tmp_path)
        assert res.returncode == 2, res.stderr
        assert message in res.stderr and 'Traceback' not in res.stderr


def test_node_answers_help_with_its_topics_and_parameters():
    res = subprocess.run([sys.executable, '-m', 'enet_ros.segmentation_node', '--help'],
                         capture_output=True, text=True, timeout=60, cwd=REPO)
    assert res.returncode == 0, res.stderr
    assert 'segmentation/mask' in res.stdout and 'max_image_pixels = 8294400' in res.stdout
    assert res.stdout.startswith('usage: python -m enet_ros.segmentation_node ')


@pytest.mark.parametrize('module', ['segmentation_node', 'managed_segmentation_node'])
def test_node_refuses_unknown_arguments_in_one_line(module):
    res = subprocess.run([sys.executable, '-m', f'enet_ros.{module}', '--bogus', '--ros-args',
                          '-p', 'device:=cpu'], capture_output=True, text=True, timeout=60,
                         cwd=REPO)
    assert res.returncode == 2 and res.stdout == '', res.stdout
    assert res.stderr.splitlines() == [
        f'python -m enet_ros.{module}: error: unrecognized arguments: --bogus (node '
        'parameters go after --ros-args: -p NAME:=VALUE; --help lists them)']

"""Batch-norm means that follow each camera's drive (``enet_ros.adaptation``, the
node's ``adapt_statistics``), checked against their definition computed apart on the
unfused network."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from enet_ros.checkpoint import load_checkpoint
from enet_ros.segmenter import Segmenter

H, W = 64, 96  # conftest.make_weights' input size


def drive(n: int, seed: int, brightness: float) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.clip(rng.normal(brightness, 50, (H, W, 3)), 0, 255).astype(np.uint8)
            for _ in range(n)]


def norms(model):
    return [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]


@torch.no_grad()
def by_definition(weights, frames, stamps) -> list[np.ndarray]:
    """Class ids of the unfused network whose batch norms subtract half the training mean
    and half an average of the frames' own means (variances as trained): one frame per
    second of stamp time observed, the average forgetting with a 10 s time constant."""
    model, meta = load_checkpoint(weights)
    model.eval()
    source = [m.running_mean.clone() for m in norms(model)]
    average = [m.clone() for m in source]
    mean = torch.tensor(meta.mean).view(1, 3, 1, 1)
    std = torch.tensor(meta.std).view(1, 3, 1, 1)
    out, last = [], None
    for image, t in zip(frames, stamps):
        x = (torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255 - mean) / std
        if last is None or t - last >= 1.0:
            weight = 1 - math.exp(-(1.0 if last is None else t - last) / 10)
            frame = copy.deepcopy(model)
            for m in norms(frame):
                m.reset_running_stats()
                m.momentum = None
                m.train()
            frame(x)
            for a, m in zip(average, norms(frame)):
                a.lerp_(m.running_mean, weight)
            last = t
        net = copy.deepcopy(model)
        for m, sm, am in zip(norms(net), source, average):
            m.running_mean.copy_((sm + am) / 2)
        out.append(net(x).argmax(1)[0].numpy())
    return out


def agree(a, b) -> float:
    return float(np.mean([np.mean(x == y) for x, y in zip(a, b)]))


@pytest.fixture(scope='module')
def trained(weights):
    return Segmenter(weights, 'cpu', 'fp32', 'eager')


def test_masks_follow_the_definition_and_differ_from_the_trained_statistics(weights, trained):
    seg = Segmenter(weights, 'cpu', 'fp32', 'eager', adapt=True)
    frames = drive(8, 0, 60)  # a dark drive: far from the training statistics
    stamps = [100.0, 101.0, 101.5, 102.0, 103.5, 104.0, 110.0, 110.2]
    got = [seg.segment_with_confidence(f, 'rgb', False, 'front', t).labels
           for f, t in zip(frames, stamps)]
    assert seg.adapter.stream('front').observed == 5  # 101.5, 104.0 and 110.2 come too soon
    # folded and unfused arithmetic differ only in rounding
    assert agree(got, by_definition(weights, frames, stamps)) > 0.999
    as_trained = [trained.segment(f)[0] for f in frames]
    assert agree(got[1:], as_trained[1:]) < 0.9


def test_unstamped_frames_and_other_cameras_keep_their_own_statistics(weights, trained):
    seg = Segmenter(weights, 'cpu', 'fp32', 'eager', adapt=True)
    front, rear = drive(4, 1, 60), drive(4, 2, 200)
    alone = Segmenter(weights, 'cpu', 'fp32', 'eager', adapt=True)
    want = [alone.segment_with_confidence(f, 'rgb', False, 'front', 10.0 + i).labels
            for i, f in enumerate(front)]
    got = []
    for i, (f, r) in enumerate(zip(front, rear)):
        got.append(seg.segment_with_confidence(f, 'rgb', False, 'front', 10.0 + i).labels)
        seg.segment_with_confidence(r, 'rgb', False, 'rear', 5000.0 + i)
        # a frame without a stamp: the trained statistics, whatever the streams learnt
        assert np.array_equal(seg.segment(r)[0], trained.segment(r)[0])
    assert all(np.array_equal(a, b) for a, b in zip(got, want))
    assert 'adapting to this camera: 4 frames observed' in seg.statistics('rear')
    assert 'as trained' in trained.statistics('rear')
    seg.adapter.reset()  # the node, deactivated: every camera starts again
    assert 'adapting to this camera: 0 frames observed' in seg.statistics('rear')
    again = seg.segment_with_confidence(front[0], 'rgb', False, 'front', 10.0).labels
    assert np.array_equal(again, want[0])  # as the first frame of a fresh stream


@pytest.mark.parametrize('then', [50.0, 500.0], ids=['time went back', 'a long gap'])
def test_a_stream_starts_again_when_time_goes_back_or_jumps(weights, then):
    seg = Segmenter(weights, 'cpu', 'fp32', 'eager', adapt=True)
    fresh = Segmenter(weights, 'cpu', 'fp32', 'eager', adapt=True)
    for i, f in enumerate(drive(5, 3, 60)):
        seg.segment_with_confidence(f, 'rgb', False, 'cam', 100.0 + i)
    image = drive(1, 4, 200)[0]
    got = seg.segment_with_confidence(image, 'rgb', False, 'cam', then).labels
    assert seg.adapter.stream('cam').observed == 1
    assert np.array_equal(got, fresh.segment_with_confidence(image, 'rgb', False, 'cam',
                                                             then).labels)


def test_compiled_network_adapts_as_the_eager_one(weights, tmp_path, monkeypatch):
    """The compiled package takes the adjustments as an input: its masks follow the
    eager network's through a drive, the adjustments changing as it goes."""
    monkeypatch.setenv('ENET_ROS_CACHE', str(tmp_path))
    eager = Segmenter(weights, 'cpu', 'fp32', 'eager', adapt=True)
    compiled = Segmenter(weights, 'cpu', 'fp32', 'compile', adapt=True)
    frames = drive(4, 6, 60)
    got, want = ([seg.segment_with_confidence(f, 'rgb', False, 'cam', 7.0 + i).labels
                  for i, f in enumerate(frames)] for seg in (compiled, eager))
    assert compiled.adapter.stream('cam').observed == 4
    assert agree(got, want) > 0.999
    assert agree(want, by_definition(weights, frames, [7.0 + i for i in range(4)])) > 0.999

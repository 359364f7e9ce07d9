"""Batch-norm means that follow the drive a camera sees (test-time adaptation).

Each batch-norm layer normalises with the mean and variance its channel had over the
training frames. A drive the network never saw, and dusk most of all, shifts those
statistics; normalising with a mix of the training statistics and the new drive's
recovers much of what the shift costs (AdaBN, Li et al. 2016; Schneider et al. 2020 mix
the two the same way). Here each stream (camera) keeps an exponential average of its own
frames' channel means, and every batch norm subtracts the half-and-half mix of that
average and the training mean; variances stay as trained:

- one frame per second of camera time (header stamps, so a bag gives the same masks at
  any replay speed) is observed: one forward pass of the unfused fp32 network, each
  batch-norm layer measuring the frame's own statistics;
- the average forgets with a 10 s time constant;
- a stamp going backwards or a gap of over a minute starts the stream again from the
  training statistics, as does ``reset``.

The fused network is not folded again: it takes, per folded batch norm, the per-channel
shift that turns its output into the adapted one (``enet_ros.model.Adjust``), as an input,
so the compiled package adapts too. Adapting the variances as well (a per-channel scale
too) was no more accurate on the held-out drives. Measured on held-out CamVid drives by
``python -m training.evaluate --adapt`` (doc/model.md): the gain is largest at dusk.
"""

from __future__ import annotations

import math

import torch

from enet_ros.model import ENet

OBSERVE_EVERY = 1.0  # seconds of camera time between observed frames
TIME_CONSTANT = 10.0  # seconds: the average's memory
MIX = 0.5  # weight of the stream's statistics against the training statistics
GAP = 60.0  # seconds without frames after which a stream starts again


def camera_time(stamp_ns: int) -> float | None:
    """A header stamp (nanoseconds) in seconds; None for an unset (zero) stamp, whose
    frame is normalised with the training statistics."""
    return stamp_ns / 1e9 if stamp_ns else None


def batch_norms(model: ENet) -> dict[str, torch.nn.BatchNorm2d]:
    return {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm2d)}


class Stream:
    """One camera's averaged channel means and the shifts (``enet_ros.model.Adjust``) that
    make the fused network subtract their mix with the training means."""

    def __init__(self, adapter: 'Adapter'):
        self.adapter = adapter
        self.reset()

    def reset(self) -> None:
        self.means = {n: m.clone() for n, m in self.adapter.source.items()}
        self.last: float | None = None
        self.observed = 0
        self.adjustments = self.adapter.identity

    def observe(self, image: torch.Tensor, stamp: float) -> None:
        """Observe (1, H, W, 3) uint8 ``image`` stamped ``stamp`` seconds if it is due."""
        if self.last is not None and not 0 <= stamp - self.last <= GAP:
            self.reset()
        if self.last is not None and stamp - self.last < OBSERVE_EVERY:
            return
        since = OBSERVE_EVERY if self.last is None else stamp - self.last
        weight = 1.0 - math.exp(-since / TIME_CONSTANT)
        for name, m in self.adapter.frame_means(image).items():
            self.means[name].lerp_(m, weight)
        self.last = stamp
        self.observed += 1
        self.adjustments = self.adapter.adjustments(self.means)


class Adapter:
    """Per-stream means for ``model`` (unfused, fp32, on the device; the adapter takes it
    over: its batch norms measure each observed frame), as the fp32 shifts a network fused
    with ``layout`` (``enet_ros.model.Adjustments``) takes."""

    def __init__(self, model: ENet, normalise, layout: list[tuple[str, int, int]]):
        self.model = model.eval().requires_grad_(False)
        self.normalise = normalise  # (1, H, W, 3) uint8 -> (1, 3, H, W) normalised fp32
        self.layout = layout
        self.norms = batch_norms(self.model)
        self.source = {n: m.running_mean.clone() for n, m in self.norms.items()}
        self.variances = {n: m.running_var.clone() for n, m in self.norms.items()}
        self.identity = self.adjustments(self.source)
        self.streams: dict[str, Stream] = {}

    def stream(self, key: str) -> Stream:
        if key not in self.streams:
            self.streams[key] = Stream(self)
        return self.streams[key]

    def reset(self) -> None:
        for stream in self.streams.values():
            stream.reset()

    @torch.no_grad()
    def frame_means(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each batch-norm layer's channel means over one frame, every layer normalising
        with the frame's own statistics (dropout stays off)."""
        momenta = {n: m.momentum for n, m in self.norms.items()}
        for m in self.norms.values():
            m.reset_running_stats()
            m.momentum = None  # running stats = this pass's statistics
            m.train()
        try:
            self.model(self.normalise(image).float())
            return {n: m.running_mean.clone() for n, m in self.norms.items()}
        finally:
            for n, m in self.norms.items():
                m.eval()
                m.momentum = momenta[n]
                m.running_mean.copy_(self.source[n])
                m.running_var.copy_(self.variances[n])

    @torch.no_grad()
    def adjustments(self, means: dict[str, torch.Tensor]) -> torch.Tensor:
        """(channels,) shifts turning each folded batch norm (training mean mean0) into one
        that subtracts ``MIX`` of ``means`` against it (mean1): weight (mean0 - mean1) /
        sqrt(var + eps)."""
        out = torch.empty(sum(c for _, _, c in self.layout),
                          device=self.model.fullconv.weight.device)
        for name, offset, channels in self.layout:
            bn = self.norms[name]
            mean0 = self.source[name]
            mean1 = torch.lerp(mean0, means[name], MIX)
            out[offset:offset + channels] = (bn.weight * (mean0 - mean1)
                                             / torch.sqrt(self.variances[name] + bn.eps))
        return out

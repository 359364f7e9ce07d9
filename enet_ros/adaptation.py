"""Batch-norm statistics that follow the drive a camera sees (test-time adaptation).

Each batch-norm layer normalises with the mean and variance its channel had over the
training frames. A drive the network never saw, and dusk most of all, shifts those
statistics; normalising with a mix of the training statistics and the new drive's
recovers much of what the shift costs (AdaBN, Li et al. 2016; Schneider et al. 2020 mix
the two the same way). Here each stream (camera) keeps an exponential average of its own
frames' statistics and the network normalises with the half-and-half mix of that average
and the training statistics:

- one frame per second of camera time (header stamps, so a bag gives the same masks at
  any replay speed) is observed: one forward pass of the unfused fp32 network, each
  batch-norm layer measuring the frame's own statistics;
- the average forgets with a 10 s time constant;
- a stamp going backwards or a gap of over a minute starts the stream again from the
  training statistics, as does ``reset``.

Measured on held-out CamVid drives by ``python -m training.evaluate --adapt`` (README):
the gain is largest at dusk. Frames whose stamps do not advance are never observed, so
the network then runs exactly as trained.
"""

from __future__ import annotations

import math

import torch

from enet_ros.model import ENet, fuse_for_inference

OBSERVE_EVERY = 1.0  # seconds of camera time between observed frames
TIME_CONSTANT = 10.0  # seconds: the average's memory
MIX = 0.5  # weight of the stream's statistics against the training statistics
GAP = 60.0  # seconds without frames after which a stream starts again


def batch_norms(model: ENet) -> list[torch.nn.BatchNorm2d]:
    return [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]


class Stream:
    """One camera's averaged statistics and the fused parameters that normalise with the
    mix of them and the training statistics."""

    def __init__(self, adapter: 'Adapter'):
        self.adapter = adapter
        self.reset()

    def reset(self) -> None:
        self.stats = [(m.clone(), v.clone()) for m, v in self.adapter.source]
        self.last: float | None = None
        self.observed = 0
        self.state = self.adapter.source_state

    def observe(self, image: torch.Tensor, stamp: float) -> bool:
        """Observe (1, H, W, 3) uint8 ``image`` stamped ``stamp`` seconds if it is due;
        True when the stream's state changed."""
        if self.last is not None and not 0 <= stamp - self.last <= GAP:
            self.reset()
        if self.last is not None and stamp - self.last < OBSERVE_EVERY:
            return False
        weight = 1.0 - math.exp(-max(OBSERVE_EVERY, stamp - (self.last or stamp))
                                / TIME_CONSTANT)
        for (mean, var), (m, v) in zip(self.stats, self.adapter.frame_statistics(image)):
            mean.lerp_(m, weight)
            var.lerp_(v, weight)
        self.last = stamp
        self.observed += 1
        self.state = self.adapter.fused_state(self.stats)
        return True


class Adapter:
    """Per-stream statistics for ``model`` (unfused, fp32) and the fused parameters that
    the inference network (``fuse_for_inference(model)``'s structure) loads for a stream."""

    def __init__(self, model: ENet, normalise, device: torch.device):
        self.model = ENet(model.fullconv.out_channels).to(device)
        self.model.load_state_dict(model.state_dict())
        self.model.eval().requires_grad_(False)
        self.normalise = normalise  # (1, H, W, 3) uint8 -> (1, 3, H, W) normalised fp32
        self.source = [(m.running_mean.clone(), m.running_var.clone())
                       for m in batch_norms(self.model)]
        self.source_state = self.fused_state(self.source)
        self.streams: dict[str, Stream] = {}

    def stream(self, key: str) -> Stream:
        if key not in self.streams:
            self.streams[key] = Stream(self)
        return self.streams[key]

    def reset(self) -> None:
        for stream in self.streams.values():
            stream.reset()

    @torch.no_grad()
    def frame_statistics(self, image: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Each batch-norm layer's mean and variance over one frame, every layer
        normalising with the frame's own statistics (dropout stays off)."""
        norms = batch_norms(self.model)
        saved = [(m.running_mean.clone(), m.running_var.clone()) for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # running stats = this pass's statistics
            m.train()
        try:
            self.model(self.normalise(image).float())
            return [(m.running_mean.clone(), m.running_var.clone()) for m in norms]
        finally:
            for m, (mean, var) in zip(norms, saved):
                m.eval()
                m.momentum = 0.1
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)

    @torch.no_grad()
    def fused_state(self, stats) -> list[torch.Tensor]:
        """The fused network's state (parameters and buffers, in ``state_dict`` order) with
        batch norm normalising by ``MIX`` of
        ``stats`` against the training statistics."""
        norms = batch_norms(self.model)
        for m, (src_mean, src_var), (mean, var) in zip(norms, self.source, stats):
            m.running_mean.copy_(torch.lerp(src_mean, mean, MIX))
            m.running_var.copy_(torch.lerp(src_var, var, MIX))
        try:
            return [t.clone() for t in fuse_for_inference(self.model).state_dict().values()]
        finally:
            for m, (mean, var) in zip(norms, self.source):
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)

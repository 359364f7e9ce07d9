"""Training augmentation on whole batches, on the training device, in one resampling call.

Images stay uint8 on the device from the start of a run; each step draws a batch and
applies, per image:

- a random scale in ``scale`` with a random crop of the network's size (padding with
  ignore where the scaled image is smaller), and a horizontal flip: one affine
  ``grid_sample`` per batch, bilinear for images, nearest for targets;
- CutMix (Yun et al. 2019), with probability ``cutmix``: a rectangle of the previous
  image of the batch, image and labels, pasted over this one (area uniform in 0..1 of
  the frame, centre anywhere, clipped at the borders): objects in scenes they were not
  seen in;
- photometric jitter: brightness, contrast and saturation factors in [1 - s, 1 + s] and
  a gamma in [1 / (1 + g), 1 + g] (the CamVid test split has dusk frames).

This replaces per-image OpenCV transforms in Python: on two CPU cores the data path cost
about a fifth of a training step (``benchmarks/train_speed.py``), and on a GPU it would
starve the network.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from training.datasets import IGNORE


@dataclass(frozen=True)
class Augment:
    scale: tuple[float, float] = (0.5, 2.0)
    color: float = 0.3  # brightness / contrast / saturation strength
    gamma: float = 0.0  # 0 = no gamma jitter
    cutmix: float = 0.0  # probability of a pasted rectangle per image

    def __call__(self, images: torch.Tensor, targets: torch.Tensor,
                 gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, H, W, 3) uint8 and (N, H, W) uint8 -> (N, 3, H, W) float 0..1, (N, H, W) int64."""
        n, h, w = targets.shape
        dev = images.device

        def uniform(lo: float, hi: float) -> torch.Tensor:
            return torch.rand(n, generator=gen).mul_(hi - lo).add_(lo)

        s = uniform(*self.scale)
        flip = torch.rand(n, generator=gen) < 0.5
        # The crop window, in normalised input coordinates (-1..1), has half-size 1/s; its
        # centre moves as far as the window allows (centred when it is larger than the image).
        half = 1.0 / s
        room = (1.0 - half).abs()
        cx = (torch.rand(n, generator=gen) * 2 - 1) * room
        cy = (torch.rand(n, generator=gen) * 2 - 1) * room
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0] = torch.where(flip, -half, half)
        theta[:, 0, 2] = cx
        theta[:, 1, 1] = half
        theta[:, 1, 2] = cy
        grid = F.affine_grid(theta.to(dev), [n, 1, h, w], align_corners=False)
        x = images.permute(0, 3, 1, 2).float().div_(255)
        x = F.grid_sample(x, grid, mode='bilinear', padding_mode='zeros', align_corners=False)
        # shift ids by one so that padding (0) becomes ignore
        t = (targets.float() + 1).unsqueeze(1)
        t = F.grid_sample(t, grid, mode='nearest', padding_mode='zeros', align_corners=False)
        t = t.squeeze(1).long() - 1
        t[t < 0] = IGNORE
        if self.cutmix:
            on = (torch.rand(n, generator=gen) < self.cutmix).to(dev)
            side = torch.rand(n, generator=gen).sqrt().view(n, 1).to(dev) / 2  # half a side
            cy, cx = (torch.rand(n, 1, generator=gen).to(dev) for _ in range(2))
            rows = ((torch.arange(h, device=dev) + 0.5) / h - cy).abs() < side
            cols = ((torch.arange(w, device=dev) + 0.5) / w - cx).abs() < side
            box = rows[:, :, None] & cols[:, None, :] & on.view(n, 1, 1)
            x = torch.where(box.unsqueeze(1), x.roll(1, 0), x)
            t = torch.where(box, t.roll(1, 0), t)
        if self.color:
            b, c, sat = (uniform(1 - self.color, 1 + self.color).to(dev).view(n, 1, 1, 1)
                         for _ in range(3))
            x = x * b
            m = x.mean(dim=(1, 2, 3), keepdim=True)
            x = (x - m) * c + m
            gray = x.mean(dim=1, keepdim=True)
            x = (x - gray) * sat + gray
        x = x.clamp_(0, 1)
        if self.gamma:
            g = uniform(1 / (1 + self.gamma), 1 + self.gamma).to(dev).view(n, 1, 1, 1)
            x = x.pow(g)
        return x, t

"""Lovász-softmax loss (Berman, Rannen Triki and Blaschko, CVPR 2018): a convex surrogate
of the per-class Jaccard loss, 1 - IoU, for softmax outputs.

For each class present in the batch, the pixels' errors ``|1[y = c] - p_c|`` are sorted in
decreasing order and weighted by the gradient of the Jaccard loss along that order (the
Lovász extension); the loss is the mean over those classes. It is computed over the whole
batch, as the IoU the project reports is accumulated over a whole set of frames, and
ignored pixels (void) take no part. Cross-entropy optimises per-pixel likelihood, so thin
classes (poles, signs, cyclists) count by their pixel share; this loss counts each class's
IoU alike.
"""

from __future__ import annotations

import torch


def descending_order(values: torch.Tensor) -> torch.Tensor:
    """Indices that sort the rows of non-negative float32 ``values`` in decreasing order.

    Non-negative floats order as their bit patterns read as int32 do, and PyTorch sorts a
    1-D integer tensor by radix sort on the CPU, several times faster than its float sort
    (which took most of the loss's time); a 2-D sort does not take that path, hence a
    sort per row.
    """
    keys = values.view(torch.int32).neg()
    return torch.stack([row.sort().indices for row in keys])


def lovasz_softmax(logits: torch.Tensor, targets: torch.Tensor, ignore: int) -> torch.Tensor:
    """(N, C, H, W) logits and (N, H, W) int64 ids -> the scalar loss."""
    num_classes = logits.shape[1]
    probs = logits.float().softmax(1).transpose(0, 1).reshape(num_classes, -1)  # (C, pixels)
    labels = targets.reshape(1, -1)
    fg = (labels == torch.arange(num_classes, device=labels.device).unsqueeze(1)).float()
    # An ignored pixel gets error 0, so it sorts after every pixel that counts; the pixels
    # after it have error 0 too, and add nothing whatever their weight.
    errors = (fg - probs).abs() * (labels != ignore)
    order = descending_order(errors.detach())
    errors, fg = errors.gather(1, order), fg.gather(1, order)
    # Jaccard loss of the first k pixels in this order, for every k; its increments weight
    # the sorted errors
    total = fg.sum(1, keepdim=True)
    jaccard = 1 - (total - fg.cumsum(1)) / (total + (1 - fg).cumsum(1))
    weights = torch.cat([jaccard[:, :1], jaccard.diff(dim=1)], 1)
    present = (total.squeeze(1) > 0).float()
    return ((errors * weights).sum(1) * present).sum() / present.sum().clamp(min=1)

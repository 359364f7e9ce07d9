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


def lovasz_softmax(logits: torch.Tensor, targets: torch.Tensor, ignore: int) -> torch.Tensor:
    """(N, C, H, W) logits and (N, H, W) int64 ids -> the scalar loss."""
    num_classes = logits.shape[1]
    probs = logits.float().softmax(1).permute(0, 2, 3, 1).reshape(-1, num_classes)
    labels = targets.reshape(-1)
    valid = labels != ignore
    probs, labels = probs[valid], labels[valid]
    losses = []
    for c in labels.unique().tolist():
        fg = (labels == c).float()
        errors, order = (fg - probs[:, c]).abs().sort(descending=True)
        fg = fg[order]
        # Jaccard loss of the first k pixels in this order, for every k; its increments
        # weight the sorted errors
        intersection = fg.sum() - fg.cumsum(0)
        union = fg.sum() + (1 - fg).cumsum(0)
        jaccard = 1 - intersection / union
        grad = torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]])
        losses.append(torch.dot(errors, grad))
    if not losses:
        return logits.sum() * 0.0
    return torch.stack(losses).mean()

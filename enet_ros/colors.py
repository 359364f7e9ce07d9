"""The overlay's colours: one per class, chosen to tell classes apart.

A dataset's palette is an annotation convention, not a choice for telling classes apart:
CamVid's gives Road, Car, Fence and Pavement four purples and blues, and Pedestrian a
colour close to Tree's, which a 50% blend over a street makes harder still. The colour
mask keeps the weights' palette (it compares with the dataset's label images); the
overlay, which a person reads, takes ``distinct_palette``: colours picked one by one, each
the farthest in CIELAB from those already picked (Glasbey et al., "Colour displays for
categorical images", 2007), starting away from black (no class) and white. The same
class count always gives the same colours; ``segmentation/class_info`` lists both.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

STEPS = np.arange(0, 256, 17)  # candidate levels per channel: 16^3 colours


def lab(rgb) -> np.ndarray:
    """(N, 3) sRGB colours, 0-255 -> (N, 3) CIELAB (D65)."""
    c = np.asarray(rgb, np.float64).reshape(-1, 3) / 255
    c = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)  # linear light
    xyz = c @ np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722],
                        [0.0193, 0.1192, 0.9505]]).T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]),
                     200 * (f[:, 1] - f[:, 2])], axis=1)


def closest_pair(palette) -> tuple[float, int, int]:
    """The smallest CIELAB distance between two colours of ``palette``, and their indices."""
    p = lab(palette)
    d = np.linalg.norm(p[:, None] - p[None], axis=2)
    d[np.diag_indices(len(p))] = np.inf
    i, j = np.unravel_index(np.argmin(d), d.shape)
    return float(d[i, j]), int(min(i, j)), int(max(i, j))


@lru_cache(maxsize=8)
def distinct_palette(n: int) -> tuple[tuple[int, int, int], ...]:
    """``n`` RGB colours, each the farthest in CIELAB from black, white and those before it."""
    grid = np.stack(np.meshgrid(STEPS, STEPS, STEPS, indexing='ij'), -1).reshape(-1, 3)
    candidates = lab(grid)
    nearest = np.minimum(np.linalg.norm(candidates - lab([[0, 0, 0]]), axis=1),
                         np.linalg.norm(candidates - lab([[255, 255, 255]]), axis=1))
    out = []
    for _ in range(n):
        k = int(np.argmax(nearest))
        out.append(tuple(int(v) for v in grid[k]))
        nearest = np.minimum(nearest, np.linalg.norm(candidates - candidates[k], axis=1))
    return tuple(out)

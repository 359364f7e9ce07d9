"""Paired (image, target) transforms on HxWx3 uint8 RGB and HxW uint8 targets.

Targets are always resized with nearest neighbour and padded with 255 (ignore).
"""

from __future__ import annotations

import cv2
import numpy as np

from training.datasets import IGNORE


class Compose:
    def __init__(self, transforms):
        self.transforms = transforms

    def __call__(self, img, tgt):
        for t in self.transforms:
            img, tgt = t(img, tgt)
        return img, tgt


class Resize:
    """Resize both to (height, width)."""

    def __init__(self, size: tuple[int, int]):
        self.size = size

    def __call__(self, img, tgt):
        h, w = self.size
        if img.shape[:2] == (h, w):
            return img, tgt
        return (cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR),
                cv2.resize(tgt, (w, h), interpolation=cv2.INTER_NEAREST))


class RandomScaleCrop:
    """Scale by a random factor relative to ``base`` (height, width), then crop ``crop``."""

    def __init__(self, base: tuple[int, int], crop: tuple[int, int], scale: tuple[float, float],
                 rng: np.random.Generator):
        self.base, self.crop, self.scale, self.rng = base, crop, scale, rng

    def __call__(self, img, tgt):
        s = self.rng.uniform(*self.scale)
        h, w = max(1, round(self.base[0] * s)), max(1, round(self.base[1] * s))
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
        tgt = cv2.resize(tgt, (w, h), interpolation=cv2.INTER_NEAREST)
        ch, cw = self.crop
        ph, pw = max(ch - h, 0), max(cw - w, 0)
        if ph or pw:
            img = cv2.copyMakeBorder(img, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=(0, 0, 0))
            tgt = cv2.copyMakeBorder(tgt, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=IGNORE)
        y = int(self.rng.integers(0, img.shape[0] - ch + 1))
        x = int(self.rng.integers(0, img.shape[1] - cw + 1))
        return img[y:y + ch, x:x + cw], tgt[y:y + ch, x:x + cw]


class RandomHorizontalFlip:
    def __init__(self, rng: np.random.Generator, p: float = 0.5):
        self.rng, self.p = rng, p

    def __call__(self, img, tgt):
        if self.rng.random() < self.p:
            return img[:, ::-1], tgt[:, ::-1]
        return img, tgt


class ColorJitter:
    """Random brightness, contrast and saturation factors in [1 - s, 1 + s]."""

    def __init__(self, strength: float, rng: np.random.Generator):
        self.s, self.rng = strength, rng

    def __call__(self, img, tgt):
        b, c, sat = self.rng.uniform(1 - self.s, 1 + self.s, size=3)
        x = img.astype(np.float32) * b
        x = (x - x.mean()) * c + x.mean()
        gray = x.mean(axis=2, keepdims=True)
        x = (x - gray) * sat + gray
        return np.clip(x, 0, 255).astype(np.uint8), tgt


def train_transform(size: tuple[int, int], rng: np.random.Generator,
                    scale: tuple[float, float] = (0.5, 2.0)) -> Compose:
    return Compose([RandomScaleCrop(size, size, scale, rng), RandomHorizontalFlip(rng),
                    ColorJitter(0.3, rng)])

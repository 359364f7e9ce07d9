"""Training throughput on this machine: the previous pipeline against today's, same run.

    python -m benchmarks.train_speed [--root ../shared/data/camvid] [--rounds 3] [--doc]

Whole steps on real CamVid frames at 480x360, batch 10: augmentation, normalisation,
forward, backward and Adam. The previous pipeline (kept here as the reference) augmented
each frame with OpenCV and NumPy in Python (random scale and crop, flip, colour jitter in
float32) and trained eager in fp32. Today's ``training.train`` augments the batch on the
device in one resampling call (``training.augment``) and trains under bf16 autocast where
the CPU has bf16 instructions; ``--compile`` is measured as a further option. Variants
run in alternation, ``--rounds`` times, so drift of a shared machine hits all alike; the
table gives each one's median.
"""

from __future__ import annotations

import argparse
import statistics
import time

import cv2
import numpy as np
import torch
from torch import nn

from reporting.tables import header, publish, table
from enet_ros.model import ENet
from training import datasets
from training.augment import Augment
from training.datasets import IGNORE
from training.train import autocast_dtype, class_weights, Normalise, TrainStep

SIZE = (360, 480)
BATCH = 10


def reference_augment(img, tgt, rng):
    """The previous per-frame augmentation: scale 0.75-1.5 + crop, flip, colour 0.3."""
    s = rng.uniform(0.75, 1.5)
    h, w = round(SIZE[0] * s), round(SIZE[1] * s)
    img = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
    tgt = cv2.resize(tgt, (w, h), interpolation=cv2.INTER_NEAREST)
    ph, pw = max(SIZE[0] - h, 0), max(SIZE[1] - w, 0)
    if ph or pw:
        img = cv2.copyMakeBorder(img, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=(0, 0, 0))
        tgt = cv2.copyMakeBorder(tgt, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=IGNORE)
    y = int(rng.integers(0, img.shape[0] - SIZE[0] + 1))
    x = int(rng.integers(0, img.shape[1] - SIZE[1] + 1))
    img, tgt = img[y:y + SIZE[0], x:x + SIZE[1]], tgt[y:y + SIZE[0], x:x + SIZE[1]]
    if rng.random() < 0.5:
        img, tgt = img[:, ::-1], tgt[:, ::-1]
    b, c, sat = rng.uniform(0.7, 1.3, size=3)
    f = img.astype(np.float32) * b
    f = (f - f.mean()) * c + f.mean()
    gray = f.mean(axis=2, keepdims=True)
    f = (f - gray) * sat + gray
    return np.clip(f, 0, 255).astype(np.uint8), tgt


class Reference:
    name = 'previous: OpenCV per frame, eager fp32'

    def __init__(self, frames, weights, mean, std):
        self.frames, self.rng = frames, np.random.default_rng(0)
        self.normalise = Normalise(mean, std)
        self.model = ENet(11).train()
        self.criterion = nn.CrossEntropyLoss(weight=weights, ignore_index=IGNORE)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=5e-4, weight_decay=2e-4)

    def step(self):
        idx = self.rng.choice(len(self.frames.images), BATCH, replace=False)
        items = [reference_augment(self.frames.images[i], self.frames.targets[i], self.rng)
                 for i in idx]
        x = torch.from_numpy(np.stack([np.ascontiguousarray(i) for i, _ in items]))
        y = torch.from_numpy(np.stack([np.ascontiguousarray(t) for _, t in items])).long()
        x = self.normalise(x.permute(0, 3, 1, 2).float().div_(255))
        loss = self.criterion(self.model(x), y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()


class Today:
    def __init__(self, frames, weights, mean, std, amp, compile_):
        dtype = autocast_dtype(amp, torch.device('cpu'))
        self.name = (f'today: batched on-device augmentation, '
                     f'{"bf16 autocast" if dtype else "fp32"}{", compiled" if compile_ else ""}')
        self.x = torch.from_numpy(np.stack(frames.images))
        self.y = torch.from_numpy(np.stack(frames.targets))
        self.normalise = Normalise(mean, std)
        self.gen = torch.Generator().manual_seed(0)
        self.augment = Augment((0.75, 1.5), 0.3)
        model = ENet(11).train()
        opt = torch.optim.Adam(model.parameters(), lr=5e-4, weight_decay=2e-4)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
        self.train_step = TrainStep(model, nn.CrossEntropyLoss(weight=weights,
                                                               ignore_index=IGNORE),
                                    opt, sched, dtype, compile_)

    def step(self):
        idx = torch.randperm(len(self.x), generator=self.gen)[:BATCH]
        x, y = self.augment(self.x[idx], self.y[idx], self.gen)
        self.train_step(self.normalise(x), y)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--root', default='../shared/data/camvid')
    p.add_argument('--frames', type=int, default=40, help='CamVid train frames to draw from')
    p.add_argument('--steps', type=int, default=3, help='timed steps per variant per round')
    p.add_argument('--rounds', type=int, default=3)
    p.add_argument('--doc', action='store_true')
    args = p.parse_args(argv)
    frames = datasets.build('camvid', args.root, ['train'], args.frames)
    weights = class_weights(frames.targets, 11)
    mean, std = [0.4, 0.4, 0.4], [0.3, 0.3, 0.3]
    variants = [Reference(frames, weights, mean, std),
                Today(frames, weights, mean, std, 'off', False),
                Today(frames, weights, mean, std, 'auto', False),
                Today(frames, weights, mean, std, 'auto', True)]
    seen = {v.name: [] for v in variants}
    for v in variants:  # warm-up (and for --compile, the compilation)
        v.step()
        v.step()
    for _ in range(args.rounds):
        for v in variants:
            for _ in range(args.steps):
                t0 = time.perf_counter()
                v.step()
                seen[v.name].append(time.perf_counter() - t0)
    ref = statistics.median(seen[variants[0].name])
    rows = []
    for v in variants:
        med = statistics.median(seen[v.name])
        rows.append([v.name, f'{med:.2f}', f'{BATCH / med:.1f}', f'{ref / med:.2f}x'])
    bf16 = autocast_dtype('auto', torch.device('cpu')) is not None
    md = (header("Training speed: previous pipeline against today's (CPU)") +
          f'- bf16 instructions on this CPU: {"yes" if bf16 else "no"} '
          f'(``--amp auto`` {"uses" if bf16 else "skips"} bf16 autocast)\n\n' +
          table(['pipeline (480x360, batch 10, real CamVid frames)', 'median s/step',
                 'images/s', 'vs previous'], rows))
    publish('train_speed', md, args.doc)


if __name__ == '__main__':
    main()

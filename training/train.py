"""Train ENet on CamVid, Cityscapes or your own frames, with a held-out drive as the only
validation.

    python -m training.train --root ../shared/data/camvid --splits train val \
        --holdout 0006R0 --epochs 300 --output-dir runs/camvid/holdout-0006R0

The whole network trains from scratch (Adam, poly decay, class weights
1 / ln(c + p_class) as in the paper), on batches augmented on the training device
(``training.augment``). With ``--holdout SEQ`` every frame of drive SEQ is left out of
training and the model is measured on it after each epoch: that figure, on a drive the
model has never seen, is the one recipe decisions use. CamVid's val split is one stretch
of drive 0016E5 whose neighbouring frames are in train, so it measures memory of nearby
scenes, not generalisation. Without ``--holdout`` the run trains on every frame of
``--splits`` and selects nothing: the final weights come from a recipe fixed beforehand.

``--init`` starts from another run's final weights, or from a node weights file such as
the shipped ``enet_ros/weights/enet_camvid.pt`` (fine-tuning), instead of from scratch,
and normalises input with the statistics those weights were trained with. With the same
class list every layer is kept; with another, every layer but the classifier (``fullconv``,
the last transposed convolution) is kept and the classifier starts afresh for the new
classes. A second stage on the same data, e.g. ``--lovasz`` (cross-entropy plus the
Lovász-softmax surrogate of the IoU, ``training.lovasz``), runs at a lower learning rate.

``--dataset voc`` reads a labelling tool's export in the Pascal VOC layout
(``training.datasets.voc``); ``--group-by`` says what a drive is there, for ``--holdout``.
``--teacher RUN [RUN ...]`` adds the cross-entropy to those runs' averaged softmax
(distillation from an ensemble, Hinton et al. 2015).

No epoch is selected: the last epoch's weights (the EMA with ``--ema``) are the result.
A checkpoint (``training.run_checkpoint``) is written atomically after every epoch;
``--resume`` restores weights, optimiser, schedule and random generators.
"""

from __future__ import annotations

import argparse
import csv
from datetime import datetime, timezone
from pathlib import Path
import shlex
import sys
import time
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from reporting.tables import machine
from enet_ros.metrics import ConfusionMatrix
from enet_ros.model import ENet
from enet_ros.threads import use_threads_for_this_process
from training import run_checkpoint, datasets
from training.augment import Augment
from training.datasets import IGNORE
from training.lovasz import lovasz_softmax

LOG_FIELDS = ['epoch', 'train_loss', 'heldout_mean_iou', 'heldout_class_avg_accuracy',
              'heldout_global_accuracy', 'lr', 'epoch_seconds', 'images_per_second']


def get_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--dataset', choices=datasets.NAMES, default='camvid',
                   help='camvid (SegNet layout), cityscapes, or voc: a Pascal VOC / CVAT '
                        '"Segmentation mask 1.1" export (labelmap.txt, JPEGImages/, '
                        'SegmentationClass/, ImageSets/Segmentation/<split>.txt)')
    p.add_argument('--root', required=True, help='dataset folder')
    p.add_argument('--splits', nargs='+', default=['train'],
                   help='dataset splits to draw frames from (e.g. train val)')
    p.add_argument('--holdout', metavar='SEQ',
                   help='leave every frame of this sequence (drive) out of training and '
                        'evaluate on it, e.g. 0006R0')
    p.add_argument('--group-by', choices=datasets.GROUPINGS, default='prefix',
                   help="voc: what makes a frame's sequence: its stem's prefix before the "
                        "first '_' (0016E5_07959 -> 0016E5), or its sub-folder "
                        '(drive3/000120 -> drive3)')
    p.add_argument('--epochs', type=int, required=True)
    p.add_argument('--batch-size', type=int, default=10)
    p.add_argument('--lr', type=float, default=5e-4)
    p.add_argument('--weight-decay', type=float, default=2e-4)
    p.add_argument('--class-weight-c', type=float, default=1.02)
    p.add_argument('--scale', type=float, nargs=2, default=(0.5, 2.0),
                   help='random scale range for augmentation')
    p.add_argument('--color', type=float, default=0.3,
                   help='brightness/contrast/saturation jitter strength (0 = none)')
    p.add_argument('--gamma', type=float, default=0.0, help='gamma jitter (0 = none)')
    p.add_argument('--cutmix', type=float, default=0.0, metavar='P',
                   help='with probability P per image, paste a random rectangle of the '
                        "batch's previous image and its labels over it (CutMix)")
    p.add_argument('--ema', type=float, default=0.0,
                   help='keep an exponential moving average of the weights with this decay '
                        'per step (e.g. 0.999) and evaluate and export it')
    p.add_argument('--lovasz', type=float, default=0.0,
                   help='add this weight times the Lovasz-softmax loss (on every 4th pixel '
                        'of every 4th row, offset at random per step) to the cross-entropy')
    p.add_argument('--ohem', type=float, default=0.0, metavar='P',
                   help='cross-entropy over the hard pixels only: those whose probability '
                        'of their own class is at most P (e.g. 0.7), at least 1/16 of all')
    p.add_argument('--init', metavar='RUN_OR_WEIGHTS',
                   help="start from this training run's final weights (its EMA if it kept "
                        'one) or from a node weights file (e.g. enet_ros/weights/'
                        'enet_camvid.pt) instead of from scratch; with another class list '
                        'every layer but the classifier is kept')
    p.add_argument('--classifier-lr-scale', type=float, default=50.0,
                   help='with --init and another class list: the fresh classifier learns at '
                        'this many times --lr (Adam moves a weight by about the learning rate '
                        'a step, and a first dataset gives few steps; benchmarks/finetune.py '
                        'measured it)')
    p.add_argument('--teacher', nargs='+', default=[], metavar='RUN',
                   help="add the cross-entropy to these training runs' averaged softmax on "
                        'each augmented batch (runs that held out the same drive)')
    p.add_argument('--amp', choices=['auto', 'bf16', 'off'], default='auto',
                   help='bf16 autocast with fp32 master weights; auto: on a GPU that has '
                        'bf16 and on CPUs with bf16 instructions (AVX512-BF16 or AMX)')
    p.add_argument('--compile', action='store_true',
                   help='torch.compile the training step (benchmarks/train_speed.py)')
    p.add_argument('--input-size', type=int, nargs=2, metavar=('H', 'W'),
                   help="train and evaluate at this size (default: the dataset's, CamVid "
                        '360 480)')
    p.add_argument('--output-dir', required=True)
    p.add_argument('--resume', action='store_true',
                   help='continue from output-dir/checkpoint.pth if it exists')
    p.add_argument('--limit', type=int, help='use only the first N frames of each split')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--threads', type=int, help='torch threads (default: all usable CPUs, '
                   'or 1 where other processes keep the CPU busy at start)')
    return p.parse_args(argv)


def class_weights(targets, num_classes: int, c: float = 1.02) -> torch.Tensor:
    """w = 1 / ln(c + p), p = pixel share among pixels with ids in [0, num_classes)."""
    counts = np.zeros(num_classes, dtype=np.float64)
    for t in targets:
        t = np.asarray(t)
        counts += np.bincount(t[t < num_classes].ravel(), minlength=num_classes)[:num_classes]
    p = counts / max(counts.sum(), 1.0)
    return torch.tensor(1.0 / np.log(c + p), dtype=torch.float32)


def channel_stats(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Mean and std of RGB on a 0..1 scale over (N, H, W, 3) uint8 images."""
    total = torch.zeros(3, dtype=torch.float64)
    sq = torch.zeros(3, dtype=torch.float64)
    for img in images:
        x = img.reshape(-1, 3).double() / 255.0
        total += x.sum(0).cpu()
        sq += (x * x).sum(0).cpu()
    n = images.shape[0] * images.shape[1] * images.shape[2]
    mean = total / n
    return mean.tolist(), (sq / n - mean ** 2).sqrt().tolist()


def bf16_autocast_helps(device: torch.device) -> bool:
    """bf16 has hardware behind it: a GPU with bf16, or a CPU with AVX512-BF16 or AMX."""
    if device.type == 'cuda':
        return torch.cuda.is_bf16_supported()
    from enet_ros.segmenter import native_bf16
    return native_bf16()


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    if amp == 'bf16' or (amp == 'auto' and bf16_autocast_helps(device)):
        return torch.bfloat16
    return None


def autocast(x: torch.Tensor, amp_dtype: torch.dtype | None):
    """Autocast to ``amp_dtype`` on ``x``'s device; without one, nothing changes."""
    return torch.autocast(x.device.type, dtype=amp_dtype or torch.float32,
                          enabled=amp_dtype is not None)


class Normalise:
    """The network's input from a (N, 3, H, W) batch on a 0..1 scale: (x - mean) / std,
    with a run's channel statistics (the node's ``FrameNetwork`` does the same on uint8)."""

    def __init__(self, mean, std, device=None):
        self.mean = torch.as_tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        self.std = torch.as_tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def stack_frames(frames: list[np.ndarray], size: tuple[int, int], nearest: bool) -> torch.Tensor:
    """Frames resized to ``size`` (height, width) as one uint8 tensor."""
    import cv2
    h, w = size
    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return torch.from_numpy(np.stack([f if f.shape[:2] == (h, w)
                                      else cv2.resize(f, (w, h), interpolation=interp)
                                      for f in frames]))


class Criterion:
    """Class-weighted cross-entropy, plus ``lovasz`` times the Lovász-softmax loss.

    With ``ohem`` the cross-entropy averages over the hard pixels only (online hard example
    mining, as PSPNet's and PaddleSeg's OHEM loss): those whose probability of their own
    class is at most ``ohem``, and never fewer than a sixteenth of the batch's pixels.
    The Lovász term sorts every pixel's error once per class; it runs on a 4x4-subsampled
    grid (random offset per step), where it costs a few percent of a CPU training step."""

    STRIDE = 4
    MIN_KEPT = 16  # OHEM keeps at least 1/MIN_KEPT of the pixels

    def __init__(self, weights: torch.Tensor, lovasz: float, ohem: float = 0.0):
        self.weights, self.lovasz, self.ohem = weights, lovasz, ohem

    def cross_entropy(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if not self.ohem:
            return nn.functional.cross_entropy(logits, targets, weight=self.weights,
                                               ignore_index=IGNORE)
        pixel = nn.functional.cross_entropy(logits, targets, ignore_index=IGNORE, reduction='none')
        valid = targets != IGNORE
        own = torch.where(valid, (-pixel).exp(), 2.0)  # void sorts after every pixel
        kth = own.flatten().kthvalue(max(1, own.numel() // self.MIN_KEPT)).values
        keep = valid & (own <= kth.clamp(min=self.ohem))
        weight = torch.where(keep, self.weights[targets.clamp(max=len(self.weights) - 1)], 0.0)
        return (weight * pixel).sum() / weight.sum().clamp(min=1e-12)  # as the weighted mean

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor,
                 soft: torch.Tensor | None = None) -> torch.Tensor:
        loss = self.cross_entropy(logits, targets)
        if soft is not None:  # a teacher's probabilities, over the labelled pixels
            valid = targets != IGNORE
            pixel = -(soft * logits.log_softmax(1)).sum(1)
            loss = loss + torch.where(valid, pixel, 0.0).sum() / valid.sum().clamp(min=1)
        if self.lovasz:
            oy, ox = torch.randint(self.STRIDE, (2,)).tolist()
            s = self.STRIDE
            loss = loss + self.lovasz * lovasz_softmax(
                logits[:, :, oy::s, ox::s], targets[:, oy::s, ox::s], IGNORE)
        return loss


class TrainStep:
    """One optimisation step on a normalised batch: autocast forward, backward, Adam."""

    def __init__(self, model, criterion, optimizer, scheduler, amp_dtype, compile_: bool):
        self.model, self.criterion = model, criterion
        self.optimizer, self.scheduler = optimizer, scheduler
        self.amp_dtype = amp_dtype
        self.loss_fn = torch.compile(self._loss) if compile_ else self._loss

    def _loss(self, x, y, soft):
        with autocast(x, self.amp_dtype):
            out = self.model(x)
        return self.criterion(out.float(), y, soft)

    def __call__(self, x, y, soft=None) -> torch.Tensor:
        loss = self.loss_fn(x, y, soft)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        return loss.detach()


class Teachers:
    """Other runs' networks (eval mode, no gradient), each fed the batch normalised with
    its own run's statistics; their softmax averaged is the distillation target."""

    def __init__(self, runs: list[str], holdout: str | None, num_classes: int,
                 device: torch.device, amp_dtype, compile_: bool):
        self.nets, self.stats, self.amp_dtype = [], [], amp_dtype
        for run in runs:
            ckpt = held_out_like(run, holdout, '--teacher')
            net = ENet(num_classes).to(device)
            net.load_state_dict(run_checkpoint.weights(ckpt))
            net.eval().requires_grad_(False)
            self.nets.append(torch.compile(net) if compile_ else net)
            self.stats.append(Normalise(ckpt['data']['mean'], ckpt['data']['std'], device))

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) averaged probabilities for (N, 3, H, W) images on a 0..1 scale."""
        total = 0
        for net, normalise in zip(self.nets, self.stats):
            with autocast(images, self.amp_dtype):
                logits = net(normalise(images))
            total = total + logits.float().softmax(1)
        return total / len(self.nets)


CLASSIFIER = ('fullconv.weight', 'fullconv.bias')  # the only layer sized by the classes


class Init(NamedTuple):
    """What ``--init`` starts from: the state dict to load (without the classifier when
    the class list differs), the mean and std those weights were trained with, and a line
    saying what was kept."""

    state: dict
    mean: list
    std: list
    line: str

    @property
    def fresh_classifier(self) -> bool:
        return not set(CLASSIFIER) <= self.state.keys()


def initial_weights(init: str, holdout: str | None, info: datasets.DatasetInfo) -> Init:
    """``Init`` of ``--init`` (a training run or a node weights file) for ``info``'s
    classes."""
    path = Path(init)
    if run_checkpoint.is_run(path):
        parent = held_out_like(init, holdout, '--init')
        state, names = run_checkpoint.weights(parent), datasets.info_of(parent['data']).class_names
        mean, std = parent['data']['mean'], parent['data']['std']
        origin = f'{init} (epoch {parent["epoch"] + 1})'
    else:
        from enet_ros.checkpoint import CheckpointError, load_checkpoint
        try:
            model, meta = load_checkpoint(path)
        except CheckpointError as exc:
            raise SystemExit(f'--init: {exc}') from None
        card = meta.card
        if holdout and card and holdout in card.data.get('sequences', {}):
            raise SystemExit(f'--init {init} was trained on {holdout}: its held-out figure '
                             f'would measure memory; start from a run with --holdout '
                             f'{holdout}')
        state, names = model.state_dict(), meta.class_names
        mean, std = list(meta.mean), list(meta.std)
        origin = f'{init} ({meta.dataset}, {meta.num_classes} classes)'
    if tuple(names) == tuple(info.class_names):
        return Init(state, mean, std, f'starting from {origin}: every layer kept')
    state = {k: v for k, v in state.items() if k not in CLASSIFIER}
    return Init(state, mean, std, (
        f'starting from {origin}: every layer kept but the classifier (fullconv), which '
        f'starts afresh for {len(info.class_names)} classes '
        f'({", ".join(info.class_names)}) in place of {len(names)}'))


def held_out_like(run: str, holdout: str | None, option: str) -> dict:
    """``run``'s checkpoint, if it held out the same drive as this run."""
    ckpt = run_checkpoint.load(run)
    if holdout and ckpt['data']['heldout_sequence'] != holdout:
        # a run that trained on the held-out drive would make its figure a memory test
        raise SystemExit(f'{option} {run} did not hold out {holdout} (it held out '
                         f'{ckpt["data"]["heldout_sequence"] or "nothing"}); use a run with '
                         f'--holdout {holdout}')
    return ckpt


class EMA:
    """Exponential moving average of a model's parameters; buffers copied as they are."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.model = ENet(model.fullconv.out_channels).to(next(model.parameters()).device)
        self.model.load_state_dict(model.state_dict())
        self.model.eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        torch._foreach_lerp_(list(self.model.parameters()), list(model.parameters()),
                             1 - self.decay)
        torch._foreach_copy_(list(self.model.buffers()), list(model.buffers()))


@torch.no_grad()
def heldout_confusion(model, images: torch.Tensor, targets: torch.Tensor,
                      normalise: Normalise, amp_dtype, batch_size: int = 10) -> ConfusionMatrix:
    """Confusion matrix of ``model`` on uint8 (N, H, W, 3) images at the model's size."""
    was_training = model.training
    model.eval()
    cm = ConfusionMatrix(model.fullconv.out_channels)
    for i in range(0, len(images), batch_size):
        x = normalise(images[i:i + batch_size].permute(0, 3, 1, 2).float().div_(255))
        with autocast(x, amp_dtype):
            pred = model(x).argmax(1)
        cm.update(targets[i:i + batch_size].cpu().numpy(), pred.cpu().numpy())
    model.train(was_training)
    return cm


def main(args: argparse.Namespace) -> tuple[nn.Module, dict | None]:
    """Train; return the model to export (the EMA with --ema) and the held-out metrics."""
    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    if args.threads:
        torch.set_num_threads(args.threads)
    elif device.type == 'cpu':  # as every entry point: one thread beside a busy neighbour
        use_threads_for_this_process('training.train')
    torch.backends.cudnn.benchmark = True  # fixed batch shapes: pick the fastest kernels
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    for stale in run_checkpoint.remove_stale_temporaries(out):
        print(f'removed {stale.name}, left by an interrupted save', flush=True)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)

    try:
        frames = datasets.build(args.dataset, args.root, args.splits, args.limit,
                                args.group_by)
    except datasets.DatasetError as exc:  # before any epoch, as training.check_dataset says
        raise SystemExit(f'{args.root} cannot be trained on ({len(exc.problems)} problems; '
                         f'python -m training.check_dataset lists them too):\n{exc}') from None
    info = frames.info
    size = tuple(args.input_size) if args.input_size else info.input_size
    init = initial_weights(args.init, args.holdout, info) if args.init else None
    train_idx, held_idx = datasets.split_by_sequence(frames, args.holdout)
    imgs = stack_frames(frames.images, size, nearest=False)
    tgts = stack_frames(frames.targets, size, nearest=True)
    train_x, train_y = imgs[train_idx].to(device), tgts[train_idx].to(device)
    held_x, held_y = imgs[held_idx].to(device), tgts[held_idx].to(device)
    num_classes = len(info.class_names)
    weights = class_weights(train_y.cpu().numpy(), num_classes, args.class_weight_c)
    # fine-tuned weights keep the input statistics they learnt with
    mean_l, std_l = (init.mean, init.std) if init else channel_stats(train_x)
    normalise = Normalise(mean_l, std_l, device)
    augment = Augment(tuple(args.scale), args.color, args.gamma, args.cutmix)
    amp_dtype = autocast_dtype(args.amp, device)
    channels_last = device.type == 'cuda'

    model = ENet(num_classes).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if init:
        missing, unexpected = model.load_state_dict(init.state, strict=False)
        if unexpected or set(missing) - set(CLASSIFIER):
            raise SystemExit(f'--init {args.init} does not match ENet: missing '
                             f'{sorted(set(missing) - set(CLASSIFIER))}, unexpected '
                             f'{sorted(unexpected)}')
        print(init.line, flush=True)
    teachers = Teachers(args.teacher, args.holdout, num_classes, device, amp_dtype,
                        args.compile) if args.teacher else None
    criterion = Criterion(weights.to(device), args.lovasz, args.ohem)
    groups = [{'params': list(model.parameters())}]
    if init is not None and init.fresh_classifier:
        named = dict(model.named_parameters())
        groups = [{'params': [p for n, p in named.items() if n not in CLASSIFIER]},
                  {'params': [named[n] for n in CLASSIFIER],
                   'lr': args.lr * args.classifier_lr_scale}]
    optimizer = torch.optim.Adam(groups, lr=args.lr, weight_decay=args.weight_decay)
    if not train_idx:
        raise SystemExit(f'no frames left to train on (--holdout {args.holdout} is every frame)')
    # whole batches only, but at least one step: a first dataset may have fewer frames
    steps_per_epoch = max(1, len(train_idx) // args.batch_size)
    total_steps = max(1, args.epochs * steps_per_epoch)
    # Poly decay to zero over the run (torchvision references); the paper gives no schedule.
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (1 - min(s, total_steps - 1) / total_steps) ** 0.9)
    ema = EMA(model, args.ema) if args.ema else None
    step = TrainStep(model, criterion, optimizer, scheduler, amp_dtype, args.compile)

    start_epoch, heldout, devices = 0, None, []
    if args.resume and (out / run_checkpoint.NAME).exists():
        ckpt = run_checkpoint.load(out)
        model.load_state_dict(ckpt['model'])
        if ema is not None:
            ema.model.load_state_dict(ckpt['ema'])
        optimizer.load_state_dict(ckpt['optimizer'])
        scheduler.load_state_dict(ckpt['lr_scheduler'])
        start_epoch, heldout = ckpt['epoch'] + 1, ckpt['heldout']
        devices = run_checkpoint.devices(ckpt)
        torch.set_rng_state(ckpt['rng']['torch'])
        gen.set_state(ckpt['rng']['augment'])
        if device.type == 'cuda' and 'cuda' in ckpt['rng']:
            torch.cuda.set_rng_state(ckpt['rng']['cuda'])
        print(f'resumed from {out / run_checkpoint.NAME} at epoch {start_epoch}', flush=True)

    from torch.utils.tensorboard import SummaryWriter
    writer = SummaryWriter(str(out / 'tensorboard'), purge_step=start_epoch)
    log_path = out / 'log.csv'
    if not log_path.exists() or start_epoch == 0:
        with open(log_path, 'w', newline='') as f:
            csv.writer(f).writerow(LOG_FIELDS)
    here = torch.cuda.get_device_name(device) if device.type == 'cuda' else machine()
    if here not in devices:
        devices.append(here)
    data = {'dataset': info.name, 'root': str(args.root), 'splits': list(args.splits),
            'group_by': args.group_by, 'class_names': list(info.class_names),
            'palette': [list(c) for c in info.palette], 'train_frames': len(train_idx),
            'heldout_sequence': args.holdout, 'heldout_frames': len(held_idx),
            'mean': mean_l, 'std': std_l,
            'class_weights': weights.tolist(), 'input_size': list(size),
            'sequences': datasets.sequence_counts(frames, train_idx),
            'device': run_checkpoint.DEVICE_SEP.join(devices)}
    command = shlex.join([Path(sys.executable).name, '-m', 'training.train', *sys.argv[1:]]) \
        if sys.argv[0].endswith('train.py') else None

    model.train()
    for epoch in range(start_epoch, args.epochs):
        t0 = time.perf_counter()
        order = torch.randperm(len(train_idx), generator=gen)
        total = torch.zeros((), device=device)
        for s in range(steps_per_epoch):
            idx = order[s * args.batch_size:(s + 1) * args.batch_size].to(device)
            x, y = augment(train_x[idx], train_y[idx], gen)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            soft = teachers(x) if teachers else None
            total += step(normalise(x), y, soft)
            if ema is not None:
                ema.update(model)
        loss = float(total) / max(steps_per_epoch, 1)
        train_seconds = time.perf_counter() - t0
        ips = steps_per_epoch * args.batch_size / train_seconds
        if len(held_idx):
            cm = heldout_confusion(ema.model if ema else model, held_x, held_y, normalise,
                                   amp_dtype)
            heldout = {**cm.compute(list(info.class_names)), 'confusion_matrix': cm.mat.tolist(),
                       'epoch': epoch + 1}
        seconds = time.perf_counter() - t0
        rng = {'torch': torch.get_rng_state(), 'augment': gen.get_state()}
        if device.type == 'cuda':
            rng['cuda'] = torch.cuda.get_rng_state()
        run_checkpoint.save(out, {
            'model': model.state_dict(), 'ema': ema.model.state_dict() if ema else None,
            'optimizer': optimizer.state_dict(), 'lr_scheduler': scheduler.state_dict(),
            'epoch': epoch, 'rng': rng, 'args': vars(args), 'command': command,
            'data': data, 'heldout': heldout,
            'saved': datetime.now(timezone.utc).isoformat(timespec='seconds')})
        lr = optimizer.param_groups[0]['lr']
        h = heldout or {}
        row = [epoch + 1, f'{loss:.4f}'] + [
            f'{h[k]:.2f}' if h else '' for k in
            ('mean_iou', 'class_avg_accuracy', 'global_accuracy')] + [
            f'{lr:.3e}', f'{seconds:.1f}', f'{ips:.2f}']
        with open(log_path, 'a', newline='') as f:
            csv.writer(f).writerow(row)
        writer.add_scalar('train/loss', loss, epoch)
        writer.add_scalar('train/lr', lr, epoch)
        if h:
            writer.add_scalar('heldout/mean_iou', h['mean_iou'], epoch)
        writer.flush()
        held_txt = f' held-out {args.holdout} mIoU {h["mean_iou"]:.2f}' if h else ''
        print(f'epoch {epoch + 1}: loss {loss:.4f}{held_txt} ({seconds:.0f} s, '
              f'{ips:.1f} img/s)', flush=True)
    writer.close()
    result = ema.model if ema else model
    return result.to(memory_format=torch.contiguous_format), heldout


if __name__ == '__main__':
    main(get_args())

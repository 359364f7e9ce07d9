"""Train ENet the way the paper did: Adam 5e-4, weight decay 2e-4, batch 10, two stages.

Stage ``encoder`` trains the encoder with a 1x1 classifier on targets subsampled 8x;
stage ``full`` starts from that encoder (``--encoder-checkpoint``) and trains the whole
network. Class weights are 1 / ln(1.02 + p_class), with p_class the pixel share of each
class among non-void training pixels. Void (255) is ignored by the loss and by metrics.

Single process::

    python -m training.train --dataset camvid --root ../shared/data/camvid \
        --stage encoder --epochs 40 --output-dir runs/camvid-encoder

Several processes (gloo on CPU, nccl on GPUs)::

    torchrun --nproc-per-node 2 -m training.train ...

A checkpoint is written atomically after every epoch; ``--resume`` restores model,
optimiser, scheduler, epoch and every random generator, so a killed run continues where
its last epoch ended.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
from pathlib import Path
import random
import time

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from enet_ros.checkpoint import atomic_save
from enet_ros.metrics import ConfusionMatrix
from enet_ros.model import ENet, EncoderClassifier
from training import datasets
from training.datasets import IGNORE
from training.transforms import Resize, train_transform

ENCODER_STRIDE = 8


def get_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--dataset', choices=['camvid', 'cityscapes'], default='camvid')
    p.add_argument('--root', required=True, help='dataset folder')
    p.add_argument('--stage', choices=['encoder', 'full'], required=True)
    p.add_argument('--encoder-checkpoint', help='stage-encoder checkpoint to start stage full')
    p.add_argument('--epochs', type=int, required=True)
    p.add_argument('--batch-size', type=int, default=10, help='per process')
    p.add_argument('--lr', type=float, default=5e-4)
    p.add_argument('--weight-decay', type=float, default=2e-4)
    p.add_argument('--decoder-lr-scale', type=float, default=1.0,
                   help='stage full: learning rate of the layers after the encoder, as a '
                        'multiple of --lr (they start from scratch on a trained encoder)')
    p.add_argument('--class-weight-c', type=float, default=1.02)
    p.add_argument('--scale', type=float, nargs=2, default=(0.5, 2.0),
                   help='random scale range for augmentation')
    p.add_argument('--input-size', type=int, nargs=2, metavar=('H', 'W'),
                   help="train and validate at this size (default: the dataset's, CamVid "
                        '360 480); recorded in the exported checkpoint')
    p.add_argument('--output-dir', required=True)
    p.add_argument('--resume', action='store_true', help='continue from output-dir/checkpoint.pth')
    p.add_argument('--limit', type=int, help='use only the first N images of each split')
    p.add_argument('--max-steps', type=int, help='stop each epoch after N steps (tests)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--threads', type=int, help='torch threads (default: torch decides)')
    p.add_argument('--no-progress', action='store_true')
    return p.parse_args(argv)


def class_weights(targets: list[np.ndarray], num_classes: int, c: float = 1.02) -> torch.Tensor:
    """w = 1 / ln(c + p), p = pixel share among pixels with ids in [0, num_classes)."""
    counts = np.zeros(num_classes, dtype=np.float64)
    for t in targets:
        counts += np.bincount(t[t < num_classes].ravel(), minlength=num_classes)[:num_classes]
    p = counts / max(counts.sum(), 1.0)
    return torch.tensor(1.0 / np.log(c + p), dtype=torch.float32)


def channel_stats(images: list[np.ndarray]) -> tuple[list[float], list[float]]:
    """Mean and std of RGB on a 0..1 scale over all pixels."""
    total = np.zeros(3)
    sq = np.zeros(3)
    n = 0
    for img in images:
        x = img.reshape(-1, 3).astype(np.float64) / 255.0
        total += x.sum(0)
        sq += (x * x).sum(0)
        n += x.shape[0]
    mean = total / n
    return mean.tolist(), np.sqrt(sq / n - mean ** 2).tolist()


def to_batch(items, mean: torch.Tensor, std: torch.Tensor, device: torch.device):
    imgs = np.stack([np.ascontiguousarray(i) for i, _ in items])
    tgts = np.stack([np.ascontiguousarray(t) for _, t in items])
    x = torch.from_numpy(imgs).to(device).permute(0, 3, 1, 2).float().div_(255)
    x = (x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
    return x, torch.from_numpy(tgts).to(device).long()


def subsample_target(target: torch.Tensor) -> torch.Tensor:
    """Nearest 8x subsampling (centre pixel of each 8x8 cell) for the encoder stage."""
    s = ENCODER_STRIDE
    return target[:, s // 2::s, s // 2::s]


def param_groups(model: nn.Module, args: argparse.Namespace) -> list[dict]:
    """One group, or in stage full with --decoder-lr-scale the encoder and the rest apart."""
    if args.stage != 'full' or args.decoder_lr_scale == 1.0:
        return [{'params': list(model.parameters())}]
    encoder = [p for n, p in model.named_parameters() if n.startswith('encoder.')]
    rest = [p for n, p in model.named_parameters() if not n.startswith('encoder.')]
    return [{'params': encoder}, {'params': rest, 'lr': args.lr * args.decoder_lr_scale}]


def rng_state(np_rng: np.random.Generator) -> dict:
    return {'torch': torch.get_rng_state(), 'numpy': np_rng.bit_generator.state,
            'python': random.getstate()}


def set_rng_state(state: dict, np_rng: np.random.Generator) -> None:
    torch.set_rng_state(state['torch'])
    np_rng.bit_generator.state = state['numpy']
    random.setstate(state['python'])


def train_one_epoch(model, criterion, optimizer, scheduler, dataset, order, batch_size,
                    mean, std, device, stage, max_steps=None, progress=True, desc=''):
    model.train()
    steps = len(order) // batch_size
    if max_steps:
        steps = min(steps, max_steps)
    total, seen, start = 0.0, 0, time.perf_counter()
    bar = tqdm(range(steps), desc=desc, disable=not progress, dynamic_ncols=True)
    for step in bar:
        idx = order[step * batch_size:(step + 1) * batch_size]
        x, y = to_batch([dataset[i] for i in idx], mean, std, device)
        if stage == 'encoder':
            y = subsample_target(y)
        loss = criterion(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        total += loss.item()
        seen += len(idx)
        bar.set_postfix(loss=f'{total / (step + 1):.3f}',
                        img_s=f'{seen / (time.perf_counter() - start):.1f}')
    return total / max(steps, 1), seen / (time.perf_counter() - start)


@torch.no_grad()
def evaluate(model, dataset, mean, std, device, stage, batch_size=10) -> ConfusionMatrix:
    """Confusion matrix of ``model`` on ``dataset`` (already resized to the model's size)."""
    model.eval()
    cm = ConfusionMatrix(len(dataset.info.class_names))
    for start in range(0, len(dataset), batch_size):
        x, y = to_batch([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))],
                        mean, std, device)
        if stage == 'encoder':
            y = subsample_target(y)
        pred = model(x).max(1).indices
        cm.update(y.cpu().numpy(), pred.cpu().numpy())
    return cm


def main(args: argparse.Namespace) -> tuple[nn.Module, dict]:
    """Train; return the trained model (stage encoder: EncoderClassifier) and last val metrics."""
    distributed = int(os.environ.get('WORLD_SIZE', '1')) > 1
    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    rank, world = 0, 1
    if distributed:
        if device.type == 'cuda':
            local = int(os.environ.get('LOCAL_RANK', '0'))
            torch.cuda.set_device(local)
            device = torch.device('cuda', local)
        dist.init_process_group('nccl' if device.type == 'cuda' else 'gloo')
        rank, world = dist.get_rank(), dist.get_world_size()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.output_dir)
    ckpt_path = out / 'checkpoint.pth'
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    np_rng = np.random.default_rng([args.seed, rank])

    info = (datasets.camvid_info() if args.dataset == 'camvid' else datasets.cityscapes_info())
    size = tuple(args.input_size) if args.input_size else info.input_size
    train_set = datasets.build(args.dataset, args.root, 'train',
                               train_transform(size, np_rng, tuple(args.scale)), args.limit)
    val_set = datasets.build(args.dataset, args.root, 'val', Resize(size), args.limit)
    num_classes = len(info.class_names)
    weights = class_weights(train_set.targets, num_classes, args.class_weight_c)
    mean_l, std_l = channel_stats(train_set.images)
    mean, std = torch.tensor(mean_l, device=device), torch.tensor(std_l, device=device)

    enet = ENet(num_classes)
    if args.stage == 'encoder':
        model = EncoderClassifier(enet)
    else:
        model = enet
        if args.encoder_checkpoint and not (args.resume and ckpt_path.exists()):
            # our own training checkpoint (numpy RNG state inside), not a downloaded file
            enc = torch.load(args.encoder_checkpoint, map_location='cpu', weights_only=False)
            enet.encoder.load_state_dict(
                {k[len('encoder.'):]: v for k, v in enc['model'].items()
                 if k.startswith('encoder.')})
            if rank == 0:
                print(f'encoder initialised from {args.encoder_checkpoint} '
                      f'(val mIoU {enc["best_miou"]:.1f} on 1/8 labels)', flush=True)
    model.to(device)
    net = nn.parallel.DistributedDataParallel(model) if distributed else model
    criterion = nn.CrossEntropyLoss(weight=weights.to(device), ignore_index=IGNORE)
    optimizer = torch.optim.Adam(param_groups(model, args), lr=args.lr,
                                 weight_decay=args.weight_decay)
    steps_per_epoch = len(train_set) // (args.batch_size * world)
    if args.max_steps:
        steps_per_epoch = min(steps_per_epoch, args.max_steps)
    total_steps = max(1, args.epochs * steps_per_epoch)
    # Poly decay to zero over the run (torchvision references); the paper gives no schedule.
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (1 - min(s, total_steps - 1) / total_steps) ** 0.9)

    start_epoch, best = 0, -math.inf
    if args.resume and ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location='cpu', weights_only=False)
        model.load_state_dict(ckpt['model'])
        optimizer.load_state_dict(ckpt['optimizer'])
        scheduler.load_state_dict(ckpt['lr_scheduler'])
        start_epoch, best = ckpt['epoch'] + 1, ckpt['best_miou']
        set_rng_state(ckpt['rng'][rank] if isinstance(ckpt['rng'], list) else ckpt['rng'],
                      np_rng)
        if rank == 0:
            print(f'resumed from {ckpt_path} at epoch {start_epoch}', flush=True)

    writer = None
    if rank == 0:
        from torch.utils.tensorboard import SummaryWriter
        writer = SummaryWriter(str(out / 'tensorboard'), purge_step=start_epoch)
    log_path = out / 'log.csv'
    fields = ['stage', 'epoch', 'train_loss', 'val_mean_iou', 'val_class_avg_accuracy',
              'val_global_accuracy', 'lr', 'epoch_seconds', 'images_per_second']
    if rank == 0 and not log_path.exists():
        with open(log_path, 'w', newline='') as f:
            csv.writer(f).writerow(fields)

    metrics = {}
    for epoch in range(start_epoch, args.epochs):
        t0 = time.perf_counter()
        order = np_rng.permutation(len(train_set)) if not distributed \
            else _shared_order(len(train_set), args.seed, epoch)[rank::world]
        loss, ips = train_one_epoch(net, criterion, optimizer, scheduler, train_set, order,
                                    args.batch_size, mean, std, device, args.stage,
                                    args.max_steps, progress=rank == 0 and not args.no_progress,
                                    desc=f'{args.stage} {epoch + 1}/{args.epochs}')
        cm = evaluate(model, val_set, mean, std, device, args.stage)
        metrics = cm.compute(list(info.class_names))
        seconds = time.perf_counter() - t0
        rngs = [rng_state(np_rng)]
        if distributed:
            rngs = [None] * world
            dist.all_gather_object(rngs, rng_state(np_rng))
        if rank == 0:
            improved = metrics['mean_iou'] > best
            best = max(best, metrics['mean_iou'])
            state = {'model': model.state_dict(), 'optimizer': optimizer.state_dict(),
                     'lr_scheduler': scheduler.state_dict(), 'epoch': epoch,
                     'args': vars(args), 'rng': rngs, 'best_miou': best,
                     'mean': mean_l, 'std': std_l, 'class_weights': weights.tolist(),
                     'dataset': info.name, 'input_size': list(size), 'val_metrics': metrics,
                     'confusion': cm.mat}
            if improved:
                atomic_save(state, out / 'best.pth')
            atomic_save(state, ckpt_path)
            lr = optimizer.param_groups[0]['lr']  # the base (encoder) rate
            row = [args.stage, epoch + 1, f'{loss:.4f}', f'{metrics["mean_iou"]:.2f}',
                   f'{metrics["class_avg_accuracy"]:.2f}',
                   f'{metrics["global_accuracy"]:.2f}', f'{lr:.3e}', f'{seconds:.1f}',
                   f'{ips:.2f}']
            with open(log_path, 'a', newline='') as f:
                csv.writer(f).writerow(row)
            writer.add_scalar('train/loss', loss, epoch)
            writer.add_scalar('train/lr', lr, epoch)
            writer.add_scalar('val/mean_iou', metrics['mean_iou'], epoch)
            writer.add_scalar('val/class_avg_accuracy', metrics['class_avg_accuracy'], epoch)
            writer.flush()
            print(f'epoch {epoch + 1}: loss {loss:.4f} val mIoU {metrics["mean_iou"]:.2f} '
                  f'({seconds:.0f} s, {ips:.1f} img/s)', flush=True)
    if writer is not None:
        writer.close()
    if distributed:
        dist.destroy_process_group()
    return model, metrics


def _shared_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The same permutation on every process, so ranks take disjoint strided shards."""
    return np.random.default_rng([seed, epoch, 12345]).permutation(n)


if __name__ == '__main__':
    main(get_args())

"""Export a training checkpoint as the node's weights file (fp16, with metadata) and ONNX.

    python -m training.export --checkpoint runs/camvid/full/best.pth \
        --root ../shared/data/camvid --output enet_ros/weights/enet_camvid.pt

The weights file carries class names, palette, input size, normalisation, the
validation metrics and, measured here on the validation split, how often bf16 and fp16
class ids agree with fp32: the node's ``precision: auto`` reads that figure. The ONNX
file (same name, .onnx) is the fused inference network, exported with the dynamo
exporter (max-unpooling needs it), for TensorRT or ONNX Runtime on a vehicle.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from enet_ros.checkpoint import load_checkpoint, ModelMeta, save_checkpoint
from enet_ros.metrics import ConfusionMatrix
from enet_ros.model import ENet, fuse_for_inference
from enet_ros.segmenter import Segmenter
from training import datasets


def get_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--checkpoint', required=True, help='a training checkpoint (stage full)')
    p.add_argument('--root', required=True, help='dataset folder, for the validation figures')
    p.add_argument('--output', required=True, help='weights file to write (.pt)')
    p.add_argument('--limit', type=int, help='validate on the first N images only')
    p.add_argument('--no-onnx', action='store_true')
    return p.parse_args(argv)


def precision_agreement(weights: Path, images, ref_ids) -> dict:
    """Percent of pixels whose class id equals fp32's (``ref_ids``), for bf16 and fp16 on CPU."""
    out = {}
    for precision in ('bf16', 'fp16'):
        seg = Segmenter(weights, 'cpu', precision, 'eager')
        same = sum(int((seg.segment(img)[0] == r).sum()) for img, r in zip(images, ref_ids))
        out[precision] = 100.0 * same / sum(r.size for r in ref_ids)
    return out


def export_onnx(model: ENet, input_size: tuple[int, int], path: Path) -> None:
    net = fuse_for_inference(model).float()
    x = torch.zeros(1, 3, *input_size)
    program = torch.onnx.export(net, (x,), dynamo=True, input_names=['image'],
                                output_names=['logits'], verbose=False)
    program.save(str(path))


def main(args: argparse.Namespace) -> Path:
    ckpt = torch.load(args.checkpoint, map_location='cpu', weights_only=False)
    if ckpt['args']['stage'] != 'full':
        raise SystemExit(f'{args.checkpoint} is a stage-{ckpt["args"]["stage"]} checkpoint; '
                         f'export a stage-full one')
    info = datasets.camvid_info() if ckpt['dataset'] == 'camvid' else datasets.cityscapes_info()
    model = ENet(len(info.class_names))
    model.load_state_dict(ckpt['model'])
    meta = ModelMeta(dataset=info.name, class_names=info.class_names, palette=info.palette,
                     input_size=tuple(ckpt.get('input_size', info.input_size)),
                     mean=tuple(ckpt['mean']), std=tuple(ckpt['std']),
                     metrics={'epoch': ckpt['epoch'] + 1, 'train_args': ckpt['args']})
    out = Path(args.output)
    save_checkpoint(out, model, meta)
    val = datasets.build(info.name, args.root, 'val', limit=args.limit)
    seg = Segmenter(out, 'cpu', 'fp32', 'eager')
    ref_ids = [seg.segment(img)[0] for img in val.images]
    cm = ConfusionMatrix(seg.meta.num_classes)
    for target, ids in zip(val.targets, ref_ids):
        cm.update(target, ids)
    val_metrics = cm.compute(list(seg.class_names))
    agreement = precision_agreement(out, val.images, ref_ids)
    meta = ModelMeta(**{**meta.__dict__, 'metrics': {
        **meta.metrics, 'val': val_metrics, 'precision_agreement': agreement}})
    save_checkpoint(out, model, meta)
    print(f'wrote {out} ({out.stat().st_size / 1e6:.2f} MB): val mIoU '
          f'{val_metrics["mean_iou"]:.1f}, bf16 agreement {agreement["bf16"]:.2f}%, '
          f'fp16 {agreement["fp16"]:.2f}%')
    if not args.no_onnx:
        # from the fp16-rounded weights the node runs, not the fp32 training ones
        half_model, _ = load_checkpoint(out)
        export_onnx(half_model, meta.input_size, out.with_suffix('.onnx'))
        print(f'wrote {out.with_suffix(".onnx")}')
    return out


if __name__ == '__main__':
    main(get_args())

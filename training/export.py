"""Export a training run as the node's weights file (fp16, with a model card) and ONNX.

    python -m training.export --checkpoint runs/camvid/A-base \
        --heldout-runs runs/ablation/A-base-0006R0 runs/ablation/A-base-0001TP \
        --root ../shared/data/camvid --output enet_ros/weights/enet_camvid.pt

The weights file's metadata carries a model card: the data the weights were trained on,
the recipe and command, the date, and the held-out figures of the same recipe (each
``--heldout-runs`` run left one drive out; it is measured here on that drive, from the
original frames, with the node's inference core in fp32). It also records how often
bf16 and fp16 class ids agree with fp32 on CamVid val frames: the node's
``precision: auto`` reads that. The ONNX file (same name, .onnx) is the fused inference
network (dynamo exporter: max-unpooling needs it), for TensorRT or ONNX Runtime.
"""

from __future__ import annotations

import argparse
from pathlib import Path
import tempfile

import torch

from enet_ros.checkpoint import load_checkpoint, ModelCard
from enet_ros.model import ENet, fuse_for_inference
from enet_ros.segmenter import Segmenter
from training import run_checkpoint, datasets
from training.evaluate import heldout_metrics

PROTOCOL = ('each held-out run trains the same recipe on every frame of the training '
            'splits except one whole drive (sequence) and is measured on that drive (class '
            'IoU, ignored pixels excluded, fp32, original frames)')
CARD_METRICS = ('mean_iou', 'class_avg_accuracy', 'global_accuracy', 'per_class_iou',
                'images', 'epochs', 'mean_confidence', 'class_mix')


def get_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--checkpoint', required=True, help='a training run folder or checkpoint')
    p.add_argument('--output', required=True, help='weights file to write (.pt)')
    p.add_argument('--root', help='dataset folder: held-out figures and precision agreement '
                   "(on its val split; on an own dataset's training splits)")
    p.add_argument('--heldout-runs', nargs='*', default=[],
                   help='runs of the same recipe with one drive held out (the model card)')
    p.add_argument('--limit', type=int, default=30,
                   help='val frames for the precision agreement (default 30)')
    p.add_argument('--no-onnx', action='store_true')
    return p.parse_args(argv)


def precision_agreement(weights: Path, images) -> dict:
    """Percent of pixels whose class id equals fp32's, for bf16 and fp16 on CPU."""
    ref = [Segmenter(weights, 'cpu', 'fp32', 'eager').segment(img)[0] for img in images]
    out = {}
    for precision in ('bf16', 'fp16'):
        seg = Segmenter(weights, 'cpu', precision, 'eager')
        same = sum(int((seg.segment(img)[0] == r).sum()) for img, r in zip(images, ref))
        out[precision] = 100.0 * same / sum(r.size for r in ref)
    return out


def training_stage(ckpt: dict) -> dict:
    """How one run trained: recipe, command, epochs, date; a second stage (``--init``)
    also names the run it started from, as ``first_stage``."""
    recipe = {k: v for k, v in ckpt['args'].items()
              if k not in ('root', 'output_dir', 'resume', 'threads')}
    stage = {'recipe': recipe, 'command': ckpt['command'], 'epochs': ckpt['epoch'] + 1,
             'trained': ckpt['saved']}
    init = recipe.get('init')
    if init:
        stage['first_stage'] = training_stage(run_checkpoint.load(init)) \
            if run_checkpoint.is_run(init) else weights_stages(init)
    return stage


def weights_stages(path: str) -> dict:
    """The stages a node weights file (a fine-tuning's ``--init``) records, nested as
    ``training_stage`` nests them; the newest names the file."""
    card = load_checkpoint(path)[1].card
    nested: dict = {}
    for stage in card.stages if card else ():
        nested = {**stage, 'first_stage': nested} if nested else dict(stage)
    return {**nested, 'weights_file': Path(path).name}


def model_card(ckpt: dict, heldout_runs: list[str], root: str | None) -> dict:
    data = ckpt['data']
    heldout = {}
    for run in heldout_runs:
        m = heldout_metrics(run, root)
        heldout[m['sequence']] = {k: m[k] for k in CARD_METRICS}
    stages, stage = [], training_stage(ckpt)
    while stage:
        stages.insert(0, {k: v for k, v in stage.items() if k != 'first_stage'})
        stage = stage.get('first_stage')
    return ModelCard(data={k: data[k] for k in ('dataset', 'splits', 'train_frames',
                                               'sequences')},
                     stages=tuple(stages), heldout=heldout, protocol=PROTOCOL).to_dict()


def export_onnx(model: ENet, input_size: tuple[int, int], path: Path) -> None:
    net = fuse_for_inference(model).float()
    x = torch.zeros(1, 3, *input_size)
    program = torch.onnx.export(net, (x,), dynamo=True, input_names=['image'],
                                output_names=['logits'], verbose=False)
    program.save(str(path))


def main(args: argparse.Namespace) -> Path:
    ckpt = run_checkpoint.load(args.checkpoint)
    if args.heldout_runs and not args.root:
        raise SystemExit('--heldout-runs needs --root (the frames to measure them on)')
    metrics = {'model_card': model_card(ckpt, args.heldout_runs, args.root)}
    out = Path(args.output)
    if args.root:
        own = ckpt['data']['dataset'] == 'voc'  # an own dataset may have no val split
        val = datasets.of_run(ckpt['data'], args.root, None if own else ['val'], args.limit)
        with tempfile.TemporaryDirectory() as tmp:
            draft = run_checkpoint.write_weights(ckpt, Path(tmp) / 'draft.pt', metrics)
            metrics['precision_agreement'] = precision_agreement(draft, val.images)
    run_checkpoint.write_weights(ckpt, out, metrics)
    print(f'wrote {out} ({out.stat().st_size / 1e6:.2f} MB)')
    for seq, m in metrics['model_card']['heldout'].items():
        print(f'  held-out {seq}: class IoU {m["mean_iou"]:.1f}, class-average accuracy '
              f'{m["class_avg_accuracy"]:.1f}')
    if 'precision_agreement' in metrics:
        agreement = metrics['precision_agreement']
        print(f'  agreement with fp32: bf16 {agreement["bf16"]:.2f}%, '
              f'fp16 {agreement["fp16"]:.2f}%')
    if not args.no_onnx:
        # from the fp16-rounded weights the node runs, not the fp32 training ones
        half_model, meta = load_checkpoint(out)
        export_onnx(half_model, meta.input_size, out.with_suffix('.onnx'))
        print(f'wrote {out.with_suffix(".onnx")}')
    return out


if __name__ == '__main__':
    main(get_args())

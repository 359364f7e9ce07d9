"""Is int8 worth offering? Post-training int8 (PyTorch's PT2E flow for x86) against the
node's bf16 and fp32 paths: speed, pixel agreement with fp32 and class IoU on a held-out
drive.

    python -m benchmarks.int8 --root ../shared/data/camvid [--run runs/ablation/A-base-0006R0]
        [--calibration 200] [--doc]

Needs ``torchao`` (``pip install --no-deps torchao==0.18.0``; not a dependency of the node).

The weights are those of a held-out training run (trained without one CamVid drive), so
the accuracy columns are measured on a drive the network never saw. Each precision runs
the node's whole per-frame graph (``segmenter.FrameNetwork``: normalise, network, argmax)
through a ``Segmenter``:

- fp32: eager, the accuracy reference.
- bf16: the node's default on a CPU with native bf16 (AOTInductor package, frozen).
- int8: ``X86InductorQuantizer`` defaults (per-channel int8 weights, per-tensor uint8
  activations), calibrated on ``--calibration`` frames of the run's training drives, then
  ``torch.compile`` with freezing (oneDNN int8 convolutions, VNNI/AMX where the CPU has
  them).

Speed: the graph alone on one frame, median of 30 runs, the precisions alternating over 3
rounds (the machine drifts). The acceptance bar for int8 (issue 17): agreement with fp32
at least 99% and held-out class IoU at most 0.5 below fp32, and faster than bf16.
"""

from __future__ import annotations

import argparse
from pathlib import Path
import statistics
import tempfile

import numpy as np
import torch

from benchmarks.core_speed import median_ms
from reporting.tables import header, publish, table
from enet_ros.metrics import Evaluation
from enet_ros.segmenter import MIN_AGREEMENT, Segmenter
from training import run_checkpoint, datasets

ROUNDS = 3


def quantize_int8(seg: Segmenter, images: list[np.ndarray]):
    """``seg``'s eager fp32 frame graph quantized to int8 on ``images`` and compiled."""
    try:
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
        import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
    except ImportError as exc:
        raise SystemExit(f'{exc}: pip install --no-deps torchao==0.18.0') from exc
    example = seg._to_tensor(images[0], 'rgb')
    with torch.no_grad():
        graph = torch.export.export(seg.net, (example,)).module()
        quantizer = xiq.X86InductorQuantizer().set_global(
            xiq.get_default_x86_inductor_quantization_config())
        prepared = prepare_pt2e(graph, quantizer)
        for image in images:
            prepared(seg._to_tensor(image, 'rgb'))
        converted = convert_pt2e(prepared)
        torch._inductor.config.freezing = True
        compiled = torch.compile(converted)
        compiled(example)
    return compiled


def convolution_share(fn, x: torch.Tensor, frames: int = 10) -> tuple[float, float]:
    """(ms a frame in convolution kernels, ms a frame in all) under torch.profiler."""
    from torch.profiler import profile, ProfilerActivity
    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(frames):
            fn(x)
    events = prof.key_averages()
    conv = sum(e.self_cpu_time_total for e in events if 'conv' in e.key)
    total = sum(e.self_cpu_time_total for e in events)
    return conv / 1000 / frames, total / 1000 / frames


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--root', type=Path, required=True, help='CamVid folder')
    p.add_argument('--run', type=Path, default=Path('runs/ablation/A-base-0006R0'),
                   help='a held-out training run')
    p.add_argument('--calibration', type=int, default=200)
    p.add_argument('--doc', action='store_true', help='render its section in doc/')
    args = p.parse_args()
    ckpt = run_checkpoint.load(args.run)
    data = ckpt['data']
    frames = datasets.of_run(data, args.root)
    train, held = datasets.split_by_sequence(frames, data['heldout_sequence'])
    step = max(1, len(train) // args.calibration)
    calibration = [frames.images[i] for i in train[::step][:args.calibration]]
    with tempfile.TemporaryDirectory() as tmp:
        weights = run_checkpoint.write_weights(ckpt, Path(tmp) / 'w.pt', {})
        segs = {'fp32': Segmenter(weights, 'cpu', 'fp32', 'eager'),
                'bf16': Segmenter(weights, 'cpu', 'bf16', 'compile')}
        segs['int8'] = Segmenter(weights, 'cpu', 'fp32', 'eager')
        segs['int8'].net = quantize_int8(segs['int8'], calibration)
    print('quantized and compiled', flush=True)
    results = {}
    labels = {}
    for name, seg in segs.items():
        ev = Evaluation(seg)
        labels[name] = []
        for i in held:
            result = ev.add(frames.images[i])
            ev.score(frames.targets[i], result.labels)
            labels[name].append(result.labels)
        results[name] = ev.metrics()
        print(f'{name}: class IoU {results[name]["mean_iou"]:.1f}', flush=True)
    x = segs['fp32']._to_tensor(frames.images[held[0]], 'rgb')
    times = {name: [] for name in segs}
    with torch.inference_mode():
        for _ in range(ROUNDS):
            for name, seg in segs.items():
                times[name].append(median_ms(lambda net=seg.net: net(x), 30))
    rows = []
    pixels = sum(lab.size for lab in labels['fp32'])
    ref_iou = results['fp32']['mean_iou']
    for name in segs:
        same = sum(int((a == b).sum()) for a, b in zip(labels[name], labels['fp32']))
        agreement = 100.0 * same / pixels
        ms = statistics.median(times[name])
        drop = ref_iou - results[name]['mean_iou']
        rows.append([name, f'{ms:.1f}', f'{statistics.median(times["fp32"]) / ms:.2f}x',
                     f'{agreement:.2f}%', f'{results[name]["mean_iou"]:.1f}',
                     f'{results[name]["mean_iou"] - ref_iou:+.1f}',
                     f'{results[name]["class_avg_accuracy"]:.1f}'])
        if name == 'int8':
            passed = agreement >= MIN_AGREEMENT and drop <= 0.5
            faster = ms < statistics.median(times['bf16'])
    conv_ms, all_ms = convolution_share(segs['int8'].net, x)
    h, w = segs['fp32'].input_size
    md = header('int8 against bf16 and fp32: speed, agreement, held-out accuracy')
    md += (f'\nWeights of held-out run `{args.run}` (trained without drive '
           f'{data["heldout_sequence"]}); accuracy on its {len(held)} frames of '
           f'{data["heldout_sequence"]}, original PNGs, void excluded. int8 calibrated on '
           f'{len(calibration)} frames of the other drives. ms: the frame graph at {w}x{h} '
           f'(normalise, network, argmax), median of 30 runs, {ROUNDS} alternating rounds.\n\n')
    md += table(['precision', 'graph ms', 'speed vs fp32', 'pixels agreeing with fp32',
                 'class IoU', 'vs fp32', 'class-avg accuracy'], rows)
    md += (f'\nWhere int8 spends its time (torch.profiler, 10 frames): {conv_ms:.1f} of '
           f'{all_ms:.1f} ms a frame in oneDNN convolutions (int8, and the fp32 transposed '
           f'ones), the rest in the generated kernels between them: quantize/dequantize pairs '
           f'around every PReLU, addition, pooling and unpooling, which do not fuse into the '
           f'int8 convolutions as ReLU would.\n')
    md += (f'\nint8 {"passes" if passed else "fails"} the accuracy check (>= {MIN_AGREEMENT:.0f}% '
           f'agreement, <= 0.5 IoU drop) and is {"faster" if faster else "slower"} than bf16 '
           f'on this CPU, so ')
    md += ('it would be worth offering here.\n' if passed and faster else
           'the node does not offer it: `precision: auto` chooses between bf16 and fp32.\n')
    publish('int8', md, args.doc)


if __name__ == '__main__':
    main()

"""Per-layer roofline of the compiled network on this CPU: each kernel's time against the
compute and memory floors of the work it does.

    python -m benchmarks.roofline [--sizes 360x480 360x640] [--frames 20] [--doc]

The frame graph (``FrameNetwork`` of the fused network, pooling through switches, bf16 or
fp32 as ``precision: auto`` picks here, channels-last) is compiled by inductor with the
options the backend uses (freezing) and kernel profiling on, and run ``--frames`` times
under the profiler. Every kernel of a call, in execution order, is a row: oneDNN's
convolutions (named by the layer of the fused network they compute, matched in order
and checked by weight shape) and inductor's fused C++ kernels (named by the layer whose
output they take). Its time is the median over the frames.

The floors are measured here, not taken from a data sheet:

- compute: multiply-accumulates a second of a large matrix product in the network's
  dtype (``torch.mm`` of 2048x2048 matrices, all threads), the best this torch does;
- memory: the time ``Tensor.copy_`` takes to read and write the same number of bytes as
  the kernel (so a kernel whose tensors fit the caches is held to cache speed).

A convolution's bytes are its input, weights and output (and the added tensor of a fused
residual add), once each. An inductor kernel's bytes are estimated as the tensor the
previous kernel wrote plus the one the next reads (exact for an activation; an unpooling
also reads its residual, so its floor is low). The table's last rows sum the kernels
against the whole compiled call timed without the profiler.
"""

from __future__ import annotations

import argparse
import math
import statistics

import torch
from torch import nn
from torch.profiler import profile, ProfilerActivity

from benchmarks.core_speed import median_ms
from reporting.tables import header, publish, table
from enet_ros.checkpoint import DEFAULT_WEIGHTS, load_checkpoint
from enet_ros.model import fuse_for_inference
from enet_ros.segmenter import DTYPES, FrameNetwork, keep_freed_memory, native_bf16

CONV_OPS = ('mkldnn::_convolution_pointwise', 'mkldnn::_convolution_transpose_pointwise')
KERNEL_PREFIX = 'graph_0_cpp_fused'


def seconds(fn, runs: int = 10) -> float:
    return median_ms(fn, runs, warmup=1) / 1000


def compute_ceiling(dtype: torch.dtype) -> float:
    """Multiply-accumulates a second of a 2048^3 matrix product."""
    n = 2048
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    return n ** 3 / seconds(lambda: torch.mm(a, b), 5)


class MemoryFloor:
    """Seconds to read and write ``bytes`` (a ``Tensor.copy_`` of half that many bytes)."""

    def __init__(self):
        self._cache: dict[int, float] = {}

    def __call__(self, nbytes: int) -> float:
        half = max(64, nbytes // 2)
        key = 1 << math.ceil(math.log2(half))  # powers of two: a handful of copies to time
        if key not in self._cache:
            src, dst = torch.empty(key, dtype=torch.uint8), torch.empty(key, dtype=torch.uint8)
            src.fill_(1)
            self._cache[key] = seconds(lambda: dst.copy_(src), 50) / key
        return self._cache[key] * half


def conv_layers(net: nn.Module, x: torch.Tensor) -> list[tuple[str, nn.Module]]:
    """The convolutions of ``net`` (name, module) in the order a call runs them."""
    order: list[tuple[str, nn.Module]] = []
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: order.append((n, m)))
             for n, m in net.named_modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    with torch.inference_mode():
        net(x)
    for h in hooks:
        h.remove()
    return order


def conv_work(event, module: nn.Module, itemsize: int) -> tuple[str, float, float, tuple]:
    """(description, MACs, bytes, output shape) of a convolution event."""
    shapes = [s for s in event.input_shapes if s]
    binary = event.name.endswith('_')  # the residual add fused into the convolution
    x = shapes[1] if binary else shapes[0]
    other = shapes[0] if binary else None
    n, cin, h, w = x
    kh, kw = module.kernel_size
    if isinstance(module, nn.ConvTranspose2d):
        cout = module.out_channels
        ho = (h - 1) * module.stride[0] - 2 * module.padding[0] + kh + module.output_padding[0]
        wo = (w - 1) * module.stride[1] - 2 * module.padding[1] + kw + module.output_padding[1]
        macs = n * cin * h * w * cout * kh * kw
        kind = 'deconv'
    else:
        cout = module.out_channels
        (ph, pw), (dh, dw), (sh, sw) = module.padding, module.dilation, module.stride
        ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
        wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
        macs = n * cout * ho * wo * cin * kh * kw
        kind = 'conv'
    out = (n, cout, ho, wo)
    elements = math.prod(x) + math.prod(out) + module.weight.numel() + \
        (math.prod(other) if other else 0)
    d = module.dilation[0]
    desc = (f'{kind} {kh}x{kw}' + (f' d{d}' if d > 1 else '') +
            (f' s{module.stride[0]}' if module.stride[0] > 1 else '') +
            f' {cin}->{cout}' + (' +add' if binary else ''))
    return desc, macs, elements * itemsize, out


def profile_calls(fn, x: torch.Tensor, frames: int) -> list[list]:
    """Per call, its kernel events in order."""
    with torch.inference_mode():
        for _ in range(3):
            fn(x)
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            for _ in range(frames):
                fn(x)
    calls, current = [], None
    for e in sorted(prof.events(), key=lambda e: e.time_range.start):
        if e.name.startswith('## Call CompiledFxGraph'):
            current = []
            calls.append(current)
        elif current is not None and (e.name in CONV_OPS or e.name.endswith('_') and
                                      e.name[:-1] in CONV_OPS or
                                      e.name.startswith(KERNEL_PREFIX)):
            current.append(e)
    return calls


def roofline(size: tuple[int, int], frames: int, precision: str, ceiling: float,
             memory: MemoryFloor) -> tuple[list[list], list[list], dict]:
    import torch._inductor.config as inductor
    inductor.freezing = True
    inductor.cpp.enable_kernel_profile = True
    torch._dynamo.reset()
    model, meta = load_checkpoint(DEFAULT_WEIGHTS)
    dtype = DTYPES[precision]
    fused = fuse_for_inference(model, switches=True).to(dtype, memory_format=torch.channels_last)
    net = FrameNetwork(fused, meta.mean, meta.std).eval()
    h, w = size
    frame = torch.randint(0, 256, (1, h, w, 3), dtype=torch.uint8)
    layers = conv_layers(fused, net.normalise(frame))
    fn = torch.compile(net)
    calls = profile_calls(fn, frame, frames)
    whole = seconds(lambda: fn(frame), frames)  # after the profiler: no profiling cost
    itemsize = torch.tensor([], dtype=dtype).element_size()
    first = calls[0]
    rows, work = [], []
    convs = iter(layers)
    last_out = math.prod(frame.shape)  # the uint8 frame
    layer_name = 'input'
    for i, e in enumerate(first):
        t = statistics.median(c[i].cpu_time_total for c in calls) * 1e-6
        if e.name.startswith(KERNEL_PREFIX):
            nxt = next((f for f in first[i + 1:] if not f.name.startswith(KERNEL_PREFIX)), None)
            reads = (nxt.input_shapes[1 if nxt.name.endswith('_') else 0]
                     if nxt is not None else None)
            nbytes = last_out + (math.prod(reads) * itemsize if reads else last_out)
            rows.append([i, layer_name, e.name[len('graph_0_'):][:48], '', 0.0, nbytes, t])
            continue
        layer_name, module = next(convs)
        desc, macs, nbytes, out = conv_work(e, module, itemsize)
        weight = module.weight if isinstance(module, nn.Conv2d) else module.weight.transpose(0, 1)
        if tuple(weight.shape) != tuple(e.input_shapes[2 if e.name.endswith('_') else 1]):
            raise RuntimeError(f'kernel {i} ({e.name}) does not match layer {layer_name}')
        last_out = math.prod(out) * itemsize
        rows.append([i, layer_name, desc, f'{out[2]}x{out[3]}', macs, nbytes, t])
    for r in rows:
        macs, nbytes, t = r[4], r[5], r[6]
        cf, mf = macs / ceiling, memory(nbytes)
        work.append([*r[:4], f'{macs / 1e6:.1f}', f'{nbytes / 1e6:.2f}', f'{t * 1e6:.0f}',
                     f'{cf * 1e6:.0f}', f'{mf * 1e6:.0f}', f'{t / max(cf, mf):.1f}x',
                     t - max(cf, mf)])
    total_t = sum(r[6] for r in rows)
    total_macs = sum(r[4] for r in rows)
    floor = sum(max(r[4] / ceiling, memory(r[5])) for r in rows)
    summary = {'kernels ms': total_t * 1e3, 'whole ms': whole * 1e3,
               'GMACs': total_macs / 1e9, 'compute floor ms': total_macs / ceiling * 1e3,
               'sum of floors ms': floor * 1e3}
    top = sorted(work, key=lambda r: -r[-1])[:10]
    return [r[:-1] for r in work], [r[:-1] + [f'{r[-1] * 1e6:.0f}'] for r in top], summary


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--sizes', nargs='+', default=['360x480', '360x640'], metavar='HxW')
    p.add_argument('--frames', type=int, default=20)
    p.add_argument('--doc', action='store_true', help='render its section in doc/')
    args = p.parse_args()
    keep_freed_memory()
    precision = 'bf16' if native_bf16() else 'fp32'
    ceiling = compute_ceiling(DTYPES[precision])
    memory = MemoryFloor()
    columns = ['#', 'layer', 'kernel', 'out HxW', 'MMACs', 'MB', 'us', 'compute floor us',
               'memory floor us', 'x floor']
    md = header('Per-layer roofline of the compiled network') + (
        f'\nCompiled {precision} frame graph, kernel by kernel (median of {args.frames} '
        f'profiled calls). Compute ceiling measured here: {ceiling / 1e9:.0f} G {precision} '
        f'MACs/s (a 2048^3 `torch.mm`, {torch.get_num_threads()} threads); memory floor: a '
        f'`copy_` of the same bytes. Bytes of inductor kernels are estimated (see '
        f'`benchmarks/roofline.py`).\n')
    summary_rows = []
    for s in args.sizes:
        h, w = (int(v) for v in s.split('x'))
        rows, top, summary = roofline((h, w), args.frames, precision, ceiling, memory)
        print(f'{w}x{h}: ' + ', '.join(f'{k} {v:.2f}' for k, v in summary.items()), flush=True)
        summary_rows.append([f'{w}x{h}', *(f'{v:.2f}' for v in summary.values())])
        md += f'\n#### {w}x{h}: the ten kernels furthest from their floor\n\n' + table(
            columns + ['us lost'], top)
        md += f'\n#### {w}x{h}: every kernel\n\n' + table(columns, rows)
    md += '\n#### Sums\n\n' + table(['size', 'kernels ms', 'whole call ms (unprofiled)',
                                     'G MACs', 'compute floor ms', 'sum of floors ms'],
                                    summary_rows)
    publish('roofline', md, args.doc)


if __name__ == '__main__':
    main()

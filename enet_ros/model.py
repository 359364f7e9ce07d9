"""ENet (Paszke et al. 2016, arXiv 1606.02147), as in the paper's Table 1 and Figure 2.

Where the paper is silent the official Torch7 code (e-lab/ENet-training, model-def
encoder.lua and decoder.lua) decides. The points where that matters:

- Bottleneck internal width is output channels / 4 (the official ``internal_scale``).
- The main 3x3, dilated and transposed convolutions keep a bias; only the 1x1/2x2
  projections drop it (the paper: "no bias terms in any of the projections").
- Asymmetric blocks are a 5x1 then a 1x5 convolution (official order); the first has
  no bias, the second has one.
- The encoder uses PReLU; the decoder uses ReLU and no dropout (official decoder.lua;
  the paper's Figure 3 shows the decoder learns near-identity slopes anyway).
- Downsampling main branch: 2x2 max-pooling with indices, then zero channel padding.
  The padding is created in the activations' dtype and device so half precision,
  bfloat16 and ONNX export work (a known failure of fp32 padding in peer ports).
- Upsampling main branch: 1x1 convolution (no bias) + batch norm, then max-unpooling
  with the indices of the matching encoder pooling.
- The initial block's convolution keeps its bias (official code). Its batch norm over
  the 16 concatenated maps is held as two batch norms (13 conv maps, 3 pooled maps):
  batch norm is per channel, so this is the same function with the same parameter
  count, and the conv part can be folded into its convolution.
- The last layer is a bare 2x2 stride-2 transposed convolution (with bias).

``fuse_for_inference`` folds every batch norm into the convolution before it and drops
dropout, as the paper did for its timings. With ``switches=True`` it also pools and
unpools through 2-bit window switches made of elementwise operations
(``max_pool_switches``, ``max_unpool_switches``), the same function as
max_pool2d/max_unpool2d: inductor fuses them into the neighbouring kernels, where it runs
max_unpool2d as a zero fill, a scatter and a layout copy. Compiled this is faster;
eager it is slower (more operations), so only the compiled backend uses it
(``benchmarks/core_ablation.py`` measures both).
"""

from __future__ import annotations

import copy

import torch
from torch import nn
import torch.nn.functional as F

from enet_ros.torch_private import conv_forward

ARCHITECTURE = 'enet-paper-v1'
DOWNSAMPLE_FACTOR = 8
BN_EPS = 1e-3  # the official code's batch-norm epsilon


def check_input_size(height: int, width: int) -> None:
    """Raise ValueError unless height and width are positive multiples of 8."""
    f = DOWNSAMPLE_FACTOR
    if height > 0 and width > 0 and height % f == 0 and width % f == 0:
        return

    def nearest(n: int) -> int:
        return max(f, int(round(n / f)) * f)

    raise ValueError(
        f'ENet needs height and width divisible by {f}, got {height}x{width} (HxW); '
        f'nearest valid size is {nearest(height)}x{nearest(width)}')


def max_pool_switches(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """2x2 stride-2 max-pooling and, per output, which window position held the maximum.

    Switches are uint8 0..3 in row-major window order, the first position on ties as
    max_pool2d picks it.
    """
    a, b = x[:, :, 0::2, 0::2], x[:, :, 0::2, 1::2]
    c, d = x[:, :, 1::2, 0::2], x[:, :, 1::2, 1::2]
    top = torch.maximum(torch.maximum(a, b), torch.maximum(c, d))
    switches = torch.where(a == top, 0, torch.where(b == top, 1, torch.where(c == top, 2, 3)))
    return top, switches.to(torch.uint8)


def max_unpool_switches(x: torch.Tensor, switches: torch.Tensor) -> torch.Tensor:
    """Undo ``max_pool_switches``: each value back at its window position, zeros elsewhere."""
    up = F.interpolate(x, scale_factor=2.0, mode='nearest')
    up_switches = F.interpolate(switches.to(x.dtype), scale_factor=2.0, mode='nearest')
    rows = torch.arange(up.shape[-2], device=x.device) % 2 * 2
    cols = torch.arange(up.shape[-1], device=x.device) % 2
    position = (rows[:, None] + cols[None, :]).to(x.dtype)
    return torch.where(up_switches == position, up, 0.0)


class InitialBlock(nn.Module):
    """3x3 stride-2 convolution (13 maps) concatenated with 2x2 max-pooling (3 maps)."""

    def __init__(self, in_channels: int = 3, out_channels: int = 16):
        super().__init__()
        conv_out = out_channels - in_channels
        self.conv = nn.Conv2d(in_channels, conv_out, 3, stride=2, padding=1)
        self.conv_bn = nn.BatchNorm2d(conv_out, eps=BN_EPS)
        self.pool = nn.MaxPool2d(2, 2)
        self.pool_bn = nn.BatchNorm2d(in_channels, eps=BN_EPS)
        self.act = nn.PReLU(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(torch.cat([self.conv_bn(self.conv(x)), self.pool_bn(self.pool(x))], 1))


def _conv_bn_act(conv: nn.Module, channels: int, relu: bool) -> list[nn.Module]:
    return [conv, nn.BatchNorm2d(channels, eps=BN_EPS),
            nn.ReLU(inplace=True) if relu else nn.PReLU(channels)]


class Bottleneck(nn.Module):
    """Encoder bottleneck: regular, dilated, asymmetric or downsampling (Figure 2b)."""

    def __init__(self, in_channels: int, out_channels: int, *, downsample: bool = False,
                 dilation: int = 1, asymmetric: bool = False, dropout: float = 0.1):
        super().__init__()
        internal = out_channels // 4
        stride = 2 if downsample else 1
        if asymmetric:
            middle = [nn.Conv2d(internal, internal, (5, 1), padding=(2, 0), bias=False),
                      nn.Conv2d(internal, internal, (1, 5), padding=(0, 2))]
        else:
            middle = [nn.Conv2d(internal, internal, 3, padding=dilation, dilation=dilation)]
        self.branch = nn.Sequential(
            *_conv_bn_act(nn.Conv2d(in_channels, internal, stride, stride, bias=False),
                          internal, relu=False),
            *middle[:-1],
            *_conv_bn_act(middle[-1], internal, relu=False),
            nn.Conv2d(internal, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels, eps=BN_EPS),
            nn.Dropout2d(dropout),
        )
        self.downsample = downsample
        self.switches = False  # set by fuse_for_inference(switches=True)
        self.pad_channels = out_channels - in_channels
        self.act = nn.PReLU(out_channels)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        indices = None
        main = x
        if self.downsample and self.switches:
            main, indices = max_pool_switches(x)
        elif self.downsample:
            main, indices = F.max_pool2d(x, 2, 2, return_indices=True)
        if self.pad_channels:
            n, _, h, w = main.shape
            zeros = torch.zeros(n, self.pad_channels, h, w, dtype=main.dtype, device=main.device)
            main = torch.cat([main, zeros], 1)
        return self.act(main + self.branch(x)), indices


class UpsamplingBottleneck(nn.Module):
    """Decoder bottleneck; with ``upsample`` it unpools on the encoder's saved indices."""

    def __init__(self, in_channels: int, out_channels: int, *, upsample: bool = False):
        super().__init__()
        internal = out_channels // 4
        self.upsample = upsample
        self.switches = False  # set by fuse_for_inference(switches=True)
        if upsample:
            self.main = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False),
                                      nn.BatchNorm2d(out_channels, eps=BN_EPS))
            middle = nn.ConvTranspose2d(internal, internal, 3, stride=2, padding=1,
                                        output_padding=1)
        else:
            middle = nn.Conv2d(internal, internal, 3, padding=1)
        self.branch = nn.Sequential(
            *_conv_bn_act(nn.Conv2d(in_channels, internal, 1, bias=False), internal, relu=True),
            *_conv_bn_act(middle, internal, relu=True),
            nn.Conv2d(internal, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels, eps=BN_EPS),
        )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor, indices: torch.Tensor | None = None) -> torch.Tensor:
        main = x
        if self.upsample and self.switches:
            main = max_unpool_switches(self.main(x), indices)
        elif self.upsample:
            main = self.main(x)
            n, c, h, w = main.shape
            main = F.max_unpool2d(main, indices, 2, 2, output_size=(2 * h, 2 * w))
        return self.act(main + self.branch(x))


class Encoder(nn.Module):
    """Initial block and stages 1-3. Returns 128 maps at 1/8 size and the pooling indices."""

    def __init__(self):
        super().__init__()
        self.initial = InitialBlock(3, 16)
        stage1 = [Bottleneck(16, 64, downsample=True, dropout=0.01)]
        stage1 += [Bottleneck(64, 64, dropout=0.01) for _ in range(4)]
        self.stage1 = nn.ModuleList(stage1)

        def stage(first: list[Bottleneck]) -> nn.ModuleList:
            return nn.ModuleList(first + [
                Bottleneck(128, 128),
                Bottleneck(128, 128, dilation=2),
                Bottleneck(128, 128, asymmetric=True),
                Bottleneck(128, 128, dilation=4),
                Bottleneck(128, 128),
                Bottleneck(128, 128, dilation=8),
                Bottleneck(128, 128, asymmetric=True),
                Bottleneck(128, 128, dilation=16),
            ])

        self.stage2 = stage([Bottleneck(64, 128, downsample=True)])
        self.stage3 = stage([])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.initial(x)
        x, indices1 = self.stage1[0](x)
        for block in self.stage1[1:]:
            x, _ = block(x)
        x, indices2 = self.stage2[0](x)
        for block in list(self.stage2[1:]) + list(self.stage3):
            x, _ = block(x)
        return x, indices1, indices2


class ENet(nn.Module):
    """ENet. Input (N, 3, H, W) float, H and W multiples of 8; output (N, C, H, W) logits."""

    def __init__(self, num_classes: int):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f'num_classes must be positive, got {num_classes}')
        self.num_classes = num_classes
        self.encoder = Encoder()
        self.stage4 = nn.ModuleList([UpsamplingBottleneck(128, 64, upsample=True),
                                     UpsamplingBottleneck(64, 64),
                                     UpsamplingBottleneck(64, 64)])
        self.stage5 = nn.ModuleList([UpsamplingBottleneck(64, 16, upsample=True),
                                     UpsamplingBottleneck(16, 16)])
        self.fullconv = nn.ConvTranspose2d(16, num_classes, 2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_tracing() and not torch.compiler.is_compiling():
            check_input_size(x.shape[-2], x.shape[-1])
        x, indices1, indices2 = self.encoder(x)
        x = self.stage4[0](x, indices2)
        x = self.stage4[2](self.stage4[1](x))
        x = self.stage5[0](x, indices1)
        x = self.stage5[1](x)
        return self.fullconv(x)


def _fold_bn(conv: nn.Conv2d | nn.ConvTranspose2d, bn: nn.BatchNorm2d) -> nn.Module:
    """Return a convolution equal to ``bn(conv(x))`` in eval mode."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    shift = bn.bias - bn.running_mean * scale
    fused = copy.deepcopy(conv)
    w = conv.weight.detach()
    if isinstance(conv, nn.ConvTranspose2d):  # weight is (in, out, kh, kw)
        fused.weight = nn.Parameter(w * scale.reshape(1, -1, 1, 1))
    else:
        fused.weight = nn.Parameter(w * scale.reshape(-1, 1, 1, 1))
    bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(scale)
    fused.bias = nn.Parameter((bias * scale + shift).detach())
    return fused


class Adjustments:
    """What a network fused with adjustments reads per call: ``value``, a (channels,)
    tensor of per-channel shifts, one block per folded batch norm, placed as ``layout``
    says: (batch-norm name in the unfused model, offset, channels)."""

    def __init__(self):
        self.value: torch.Tensor | None = None
        self.layout: list[tuple[str, int, int]] = []


class Adjust(nn.Module):
    """A folded convolution (or the initial block's pool batch norm) whose bias is shifted
    per channel by ``d``, read from the network's ``Adjustments``: batch norm with other
    means than the folded ones, without folding again (``enet_ros.adaptation``), so a
    compiled network takes them as an input."""

    def __init__(self, layer: nn.Module, adjustments: Adjustments, bn: str, channels: int):
        super().__init__()
        self.layer, self.adjustments = layer, adjustments
        self.bn, self.channels, self.offset = bn, channels, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layer = self.layer
        shift = self.adjustments.value[self.offset:self.offset + self.channels]
        # the shifted bias is summed in fp32; the convolution adds it to its fp32
        # accumulator and rounds once, as the plain folded network does
        bias = (layer.bias.float() + shift).to(layer.bias.dtype)
        if isinstance(layer, nn.BatchNorm2d):
            return F.batch_norm(x, layer.running_mean, layer.running_var, layer.weight, bias,
                                False, 0.0, layer.eps)
        if isinstance(layer, nn.ConvTranspose2d):
            return F.conv_transpose2d(x, layer.weight, bias, layer.stride, layer.padding,
                                      layer.output_padding, layer.groups, layer.dilation)
        return conv_forward(layer, x, bias)


def _fuse_sequential(seq: nn.Sequential, fold=_fold_bn) -> nn.Sequential:
    layers = list(seq)
    out: list[nn.Module] = []
    i = 0
    while i < len(layers):
        layer = layers[i]
        nxt = layers[i + 1] if i + 1 < len(layers) else None
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)) and isinstance(nxt, nn.BatchNorm2d):
            out.append(fold(layer, nxt))
            i += 2
            continue
        if not isinstance(layer, nn.Dropout2d):
            out.append(layer)
        i += 1
    return nn.Sequential(*out)


@torch.no_grad()
def fuse_for_inference(model: ENet, switches: bool = False,
                       adjustments: Adjustments | None = None) -> ENet:
    """Return an eval-mode copy of ``model`` with batch norm folded and dropout removed;
    with ``switches`` it pools and unpools through ``max_pool_switches``; with
    ``adjustments`` every layer a batch norm was folded into, and the initial block's pool
    batch norm, is wrapped in an ``Adjust`` (the layout filled in)."""
    fused = copy.deepcopy(model).eval()
    names = {id(m): n for n, m in fused.named_modules() if isinstance(m, nn.BatchNorm2d)}

    def adjusted(layer: nn.Module, bn: nn.BatchNorm2d) -> nn.Module:
        if adjustments is None:
            return layer
        return Adjust(layer, adjustments, names[id(bn)], bn.num_features)

    def fold(conv, bn) -> nn.Module:
        return adjusted(_fold_bn(conv, bn), bn)

    initial = fused.encoder.initial
    initial.conv = fold(initial.conv, initial.conv_bn)
    initial.conv_bn = nn.Identity()
    initial.pool_bn = adjusted(initial.pool_bn, initial.pool_bn)
    for module in fused.modules():
        if isinstance(module, (Bottleneck, UpsamplingBottleneck)):
            module.switches = switches
        if isinstance(module, Bottleneck):
            module.branch = _fuse_sequential(module.branch, fold)
        elif isinstance(module, UpsamplingBottleneck):
            module.branch = _fuse_sequential(module.branch, fold)
            if module.upsample:
                module.main = _fuse_sequential(module.main, fold)
    if adjustments is not None:
        offset, adjustments.layout = 0, []
        for a in fused.modules():
            if isinstance(a, Adjust):
                a.offset = offset
                adjustments.layout.append((a.bn, offset, a.channels))
                offset += a.channels
    for p in fused.parameters():
        p.requires_grad_(False)
    return fused

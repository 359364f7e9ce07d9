import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from enet_ros.model import (check_input_size, ENet, fuse_for_inference,
                            max_pool_switches, max_unpool_switches)

from conftest import randomize_batch_norm


def test_parameter_count_matches_official_within_1_percent():
    n = sum(p.numel() for p in ENet(11).parameters())
    assert abs(n - 363_791) / 363_791 < 0.01, n


def test_flops_at_640x360_between_paper_and_official_transcription():
    model = ENet(11).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, 360, 640))
    gflops = counter.get_total_flops() / 1e9
    assert 3.3 <= gflops <= 3.9, gflops


@pytest.mark.parametrize('h,w', [(8, 8), (64, 96), (360, 480), (360, 640), (200, 136)])
def test_output_shape_equals_input_shape(h, w):
    model = ENet(5).eval()
    with torch.no_grad():
        assert model(torch.zeros(2, 3, h, w)).shape == (2, 5, h, w)


def test_bad_size_names_nearest_valid():
    with pytest.raises(ValueError, match='nearest valid size is 360x480'):
        ENet(11)(torch.zeros(1, 3, 361, 478))
    with pytest.raises(ValueError, match='divisible by 8'):
        check_input_size(0, 16)


def test_table1_structure():
    enc = ENet(11).encoder
    assert enc.initial.conv.out_channels == 13
    assert [b.downsample for b in enc.stage2] == [True] + [False] * 8
    assert len(enc.stage3) == 8
    for stage in (enc.stage2[1:], enc.stage3):
        mids = [[m for m in b.branch if isinstance(m, torch.nn.Conv2d)][1:-1] for b in stage]
        kinds = ['asym' if len(m) == 2 else f'd{m[0].dilation[0]}' for m in mids]
        assert kinds == ['d1', 'd2', 'asym', 'd4', 'd1', 'd8', 'asym', 'd16']
    drop = [b.branch[-1].p for b in enc.stage1] + [b.branch[-1].p for b in enc.stage2]
    assert drop == [0.01] * 5 + [0.1] * 9
    # projections carry no bias
    for b in list(enc.stage1) + list(enc.stage2) + list(enc.stage3):
        assert b.branch[0].bias is None and b.branch[-3].bias is None


def test_fused_equals_eval_model():
    torch.manual_seed(0)
    model = randomize_batch_norm(ENet(11)).eval()
    fused = fuse_for_inference(model)
    assert not any(isinstance(m, torch.nn.Dropout2d) for m in fused.modules())
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    assert n_bn == 1  # only the initial block's pooled-maps norm (a per-channel affine)
    x = torch.randn(2, 3, 96, 128)
    with torch.no_grad():
        assert (fused(x) - model(x)).abs().max().item() <= 1e-4


@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
def test_switch_pooling_equals_max_pool_with_indices(dtype):
    # small integers make ties common: max_pool2d takes the first maximum in its window
    x = torch.randint(0, 3, (2, 5, 8, 12)).to(dtype)
    pooled, indices = F.max_pool2d(x, 2, 2, return_indices=True)
    top, switches = max_pool_switches(x)
    assert switches.dtype == torch.uint8 and int(switches.max()) == 3
    assert torch.equal(top, pooled)
    y = torch.randn(2, 5, 4, 6).to(dtype)
    assert torch.equal(max_unpool_switches(y, switches),
                       F.max_unpool2d(y, indices, 2, 2, output_size=(8, 12)))


def test_fused_with_switches_equals_fused():
    torch.manual_seed(0)
    model = randomize_batch_norm(ENet(11)).eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        assert torch.equal(fuse_for_inference(model, switches=True)(x),
                           fuse_for_inference(model)(x))


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_half_precision_forward(dtype):
    model = fuse_for_inference(ENet(11).eval()).to(dtype)
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 96, dtype=dtype))
    assert out.dtype == dtype and out.shape == (1, 11, 64, 96)

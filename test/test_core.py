"""The ROS-free core: checkpoint errors, segmenter, image codec, metrics."""

import os
import resource
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from enet_ros.checkpoint import CheckpointError, load_checkpoint, ModelMeta, save_checkpoint
from enet_ros.colors import distinct_palette
from enet_ros.image_codec import array_to_fields, compressed_to_array, image_to_array, ImageError
from enet_ros.metrics import ConfusionMatrix
from enet_ros.model import ENet
from enet_ros.segmenter import native_bf16, resolve_backend, Segmenter, SegmenterError

from conftest import (CAMVID_NAMES, CAMVID_PALETTE, decompression_bomb, make_weights,
                      run_python)


def test_core_imports_without_rclpy():
    out = run_python(Path(__file__).with_name('imports_without_rclpy.py'))
    assert out.returncode == 0, out.stderr


# -- checkpoint ---------------------------------------------------------------------

def test_checkpoint_round_trip(weights):
    model, meta = load_checkpoint(weights)
    assert meta.class_names == CAMVID_NAMES and meta.input_size == (64, 96)
    assert weights.stat().st_size < 1_000_000


def test_checkpoint_missing(tmp_path):
    with pytest.raises(CheckpointError, match='does not exist'):
        load_checkpoint(tmp_path / 'nope.pt')


def test_checkpoint_truncated(weights, tmp_path):
    bad = tmp_path / 'trunc.pt'
    bad.write_bytes(weights.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match=r'trunc\.pt.*truncated or corrupt'):
        load_checkpoint(bad)


def test_checkpoint_wrong_format_and_architecture(tmp_path):
    foreign = tmp_path / 'foreign.pt'
    torch.save({'state_dict': {}}, foreign)
    with pytest.raises(CheckpointError, match='not an enet_ros checkpoint'):
        load_checkpoint(foreign)
    arch = tmp_path / 'arch.pt'
    make_weights(arch)
    data = torch.load(arch, weights_only=True)
    data['architecture'] = 'enet-v99'
    torch.save(data, arch)
    with pytest.raises(CheckpointError, match='enet-v99'):
        load_checkpoint(arch)


def test_checkpoint_wrong_class_count(tmp_path):
    path = tmp_path / 'classes.pt'
    meta = ModelMeta('camvid', CAMVID_NAMES, CAMVID_PALETTE, (64, 96), (0.5,) * 3, (0.2,) * 3)
    save_checkpoint(path, ENet(12), meta)
    with pytest.raises(CheckpointError, match='11 classes but the weights have 12'):
        load_checkpoint(path)


# -- segmenter ----------------------------------------------------------------------

@pytest.fixture(scope='module')
def seg(weights):
    return Segmenter(weights, 'cpu', 'fp32', 'eager')


def test_segment_shapes_and_orders(seg):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (61, 97, 3), dtype=np.uint8)
    labels, timings = seg.segment(img, 'rgb')
    assert labels.shape == (61, 97) and labels.dtype == np.uint8
    assert labels.max() < len(CAMVID_NAMES)
    assert timings.inference > 0 and timings.total >= timings.inference
    bgr_labels, _ = seg.segment(np.ascontiguousarray(img[:, :, ::-1]), 'bgr')
    np.testing.assert_array_equal(labels, bgr_labels)


def test_frame_network_ids_and_confidence_are_the_logits_argmax_and_softmax(seg):
    frame = seg._to_tensor(np.random.default_rng(2).integers(0, 256, (64, 96, 3), np.uint8),
                           'rgb')
    with torch.inference_mode():
        ids, mean_confidence, logits = seg.net(frame)
    assert ids.dtype == torch.uint8
    assert torch.equal(ids, logits.argmax(1).to(torch.uint8))
    want = logits[:, :, ::4, ::4].softmax(1).amax(1).mean()
    assert abs(float(mean_confidence) - float(want)) < 1e-5


def test_cpu_frames_reuse_freed_memory(weights):
    # glibc's defaults give back each frame's activations and fault them in again next
    # frame (thousands of minor page faults a frame: benchmarks/core_ablation.py); the
    # Segmenter keeps them. A few hundred remain in a long test process (Python's own
    # arenas are mapped apart).
    seg = Segmenter(weights, 'cpu', 'fp32', 'eager', input_size=(360, 640))
    img = np.zeros((360, 640, 3), np.uint8)
    for _ in range(3):
        seg.segment(img)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        seg.segment(img)
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5 < 1000


def test_colorize_and_overlay(seg):
    labels = np.array([[0, 1], [255, 10]], dtype=np.uint8)
    color = seg.colorize(labels)
    assert color[0, 0].tolist() == list(CAMVID_PALETTE[0])
    assert color[1, 0].tolist() == [0, 0, 0]
    assert seg.colorize(labels, 'bgr')[1, 1].tolist() == list(CAMVID_PALETTE[10])[::-1]
    img = np.full((2, 2, 3), 100, np.uint8)
    out = seg.overlay(img, color, 0.5)
    assert out[0, 0].tolist() == [114, 114, 114]
    # the overlay's colours are told apart (the colour mask keeps the dataset's)
    distinct = distinct_palette(seg.meta.num_classes)
    rendered = seg.render(img, 'rgb', labels, 'bgr', 1.0)
    assert rendered['overlay'][0][0, 1].tolist() == list(distinct[1])
    assert rendered['overlay'][0][1, 0].tolist() == [0, 0, 0]
    assert rendered['color_mask'][0][1, 1].tolist() == list(CAMVID_PALETTE[10])[::-1]


def test_overlay_palette_tells_classes_apart():
    """CamVid's palette puts Road and Fence 23.5 apart in CIELAB; the overlay's colours
    are twice as far apart for CamVid's 11 classes, stay apart for other class counts,
    avoid black (no class) and are the same every time."""
    from enet_ros.colors import closest_pair, lab
    camvid, i, j = closest_pair(CAMVID_PALETTE)
    assert (CAMVID_NAMES[i], CAMVID_NAMES[j]) == ('Road', 'Fence') and 23 < camvid < 24
    assert lab([[255, 255, 255]])[0] == pytest.approx([100, 0, 0], abs=0.02)  # D65 white
    assert closest_pair(distinct_palette(11))[0] > 2 * camvid
    for n in (1, 3, 20, 40):
        colors = distinct_palette(n)
        assert len(set(colors)) == n and (0, 0, 0) not in colors
        assert n == 1 or closest_pair(colors)[0] > 25
    assert distinct_palette(11)[:3] == distinct_palette(3)  # each class keeps its colour


def test_segmenter_rejects_bad_input(seg):
    with pytest.raises(ValueError, match=r'\(H, W, 3\) uint8'):
        seg.segment(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match=r'\(H, W, 3\) uint8'):
        seg.segment(np.zeros((10, 10, 3), np.float32))


def test_segmenter_startup_errors(weights):
    with pytest.raises(SegmenterError, match='unknown device'):
        Segmenter(weights, 'tpu')
    if not torch.cuda.is_available():
        with pytest.raises(SegmenterError, match='CUDA is not available'):
            Segmenter(weights, 'cuda')
    with pytest.raises(SegmenterError, match='unknown precision'):
        Segmenter(weights, 'cpu', 'int8')
    with pytest.raises(SegmenterError, match='compile is not supported on cuda'):
        resolve_backend('compile', torch.device('cuda'))
    assert resolve_backend('auto', torch.device('cuda')) == 'eager'
    with pytest.raises(ValueError, match='nearest valid size'):
        Segmenter(weights, 'cpu', 'fp32', 'eager', input_size=(63, 96))


def test_auto_precision_follows_recorded_agreement(tmp_path):
    path = make_weights(tmp_path / 'w.pt')
    seg = Segmenter(path, 'cpu', 'auto', 'eager')
    assert seg.precision == 'fp32'  # nothing recorded
    assert seg.precision_reason in ('auto: the checkpoint records no bf16 agreement with fp32',
                                    'auto: this CPU has no native bf16')
    model, meta = load_checkpoint(path)
    good = ModelMeta(**{**meta.__dict__, 'metrics': {'precision_agreement': {'bf16': 99.5}}})
    save_checkpoint(path, model, good)
    seg = Segmenter(path, 'cpu', 'auto', 'eager')
    assert seg.precision == ('bf16' if native_bf16() else 'fp32'), seg.precision_reason
    bad = ModelMeta(**{**meta.__dict__, 'metrics': {'precision_agreement': {'bf16': 97.0}}})
    save_checkpoint(path, model, bad)
    seg = Segmenter(path, 'cpu', 'auto', 'eager')
    assert seg.precision == 'fp32'  # failed its check: never chosen
    if native_bf16():
        assert seg.precision_reason == ('auto: bf16 agrees with fp32 on 97.00% of validation '
                                        'pixels, under 99%')


def test_emulated_bf16_is_never_chosen(tmp_path, monkeypatch):
    """A CPU whose oneDNN offers bf16 only by emulation (no AVX512-BF16, AMX or Arm BF16
    flag) runs fp32 even where the checkpoint's bf16 agreement passes."""
    path = make_weights(tmp_path / 'w.pt')
    model, meta = load_checkpoint(path)
    good = ModelMeta(**{**meta.__dict__, 'metrics': {'precision_agreement': {'bf16': 99.9}}})
    save_checkpoint(path, model, good)
    cpuinfo = tmp_path / 'cpuinfo'
    cpuinfo.write_text('flags\t\t: fpu avx2 avx512f avx512bw avx512vl avx512_vnni\n')
    real = Path.read_text
    monkeypatch.setattr(Path, 'read_text', lambda self, *a, **k: real(
        cpuinfo if str(self) == '/proc/cpuinfo' else self, *a, **k))
    seg = Segmenter(path, 'cpu', 'auto', 'eager')
    assert (seg.precision, seg.precision_reason) == ('fp32', 'auto: this CPU has no native bf16')


def _compiled(weights, **kw):
    lines = []
    seg = Segmenter(weights, 'cpu', 'fp32', 'compile', info=lines.append, warn=lines.append,
                    **kw)
    return seg, lines


def _beside(fn, x, calls: int = 10) -> int:
    """How often another Python thread ran while ``fn(x)`` was running (``calls`` calls).
    Here, for a 2.8 ms call: about once a call when the call holds Python's global lock
    (torch's own package loader: 0-10 in 10 calls), over 100 when it releases it."""
    stamps, spans, stop = [], [], threading.Event()

    def probe():
        while not stop.is_set():
            time.sleep(0.0002)
            stamps.append(time.perf_counter())
    thread = threading.Thread(target=probe)
    thread.start()
    try:
        for _ in range(calls):
            t = time.perf_counter()
            fn(x)
            spans.append((t, time.perf_counter()))
    finally:
        stop.set()
        thread.join()
    return sum(a < s < b for s in stamps for a, b in spans)


def test_compiled_backend_matches_eager_and_reuses_its_package(weights, tmp_path,
                                                                monkeypatch):
    monkeypatch.setenv('ENET_ROS_CACHE', str(tmp_path / 'cache'))
    img = np.random.default_rng(1).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    eager = Segmenter(weights, 'cpu', 'fp32', 'eager')
    from torch._dynamo.utils import counters
    counters.clear()
    compiled, lines = _compiled(weights)
    assert any(line.startswith('compiling the network') for line in lines), lines
    # frozen: every convolution's weights prepacked for oneDNN (inductor skips freezing,
    # silently, when gradients are on during the compile)
    assert counters['inductor']['mkldnn_conv_weight_pack_matcher_count'] >= 80
    assert any(line.startswith('compiled in') for line in lines), lines
    # the network call lets the node's other threads (receiving, publishing) run
    assert _beside(compiled.net, compiled._to_tensor(img, 'rgb'), calls=10) > 30
    for order in ('rgb', 'bgr'):
        assert (eager.segment(img, order)[0] == compiled.segment(img, order)[0]).mean() > 0.999
    packages = list((tmp_path / 'cache' / 'aoti').glob('*.pt2'))
    assert len(packages) == 1
    built = packages[0].stat().st_mtime_ns
    _, lines = _compiled(weights)  # a second start loads, does not rebuild
    assert packages[0].stat().st_mtime_ns == built and lines == []
    # damaged bytes inside the package: never loaded, one warning, rebuilt
    data = bytearray(packages[0].read_bytes())
    for k in range(len(data) // 3, len(data) // 3 + 64):
        data[k] ^= 0xFF
    packages[0].write_bytes(bytes(data))
    rebuilt, lines = _compiled(weights)
    assert [line for line in lines if 'discarding' in line] == [
        f'discarding cached package {packages[0]}: its bytes do not match the checksum '
        f'written when it was built; recompiling']
    assert (rebuilt.segment(img)[0] == eager.segment(img)[0]).mean() > 0.999


def test_package_is_compiled_with_every_usable_cpu(weights, tmp_path, monkeypatch):
    """The node builds the model on a thread with one intra-op thread; a package compiled
    there runs its kernels on one thread's plan (22 ms a frame against 14.5 here)."""
    from enet_ros.threads import usable_cpus
    monkeypatch.setenv('ENET_ROS_CACHE', str(tmp_path / 'cache'))
    seen = []
    real = torch._inductor.aoti_compile_and_package

    def spy(*args, **kw):
        seen.append(torch.get_num_threads())
        return real(*args, **kw)
    monkeypatch.setattr(torch._inductor, 'aoti_compile_and_package', spy)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _compiled(weights)
        assert torch.get_num_threads() == 1  # the caller's count is left as it was
    finally:
        torch.set_num_threads(before)
    assert seen == [usable_cpus()]
    [package] = (tmp_path / 'cache' / 'aoti').glob('*.pt2')
    assert package.name.endswith(f'-t{usable_cpus()}.pt2')


def test_private_torch_interfaces_fall_back_outside_the_checked_versions(weights,
                                                                         monkeypatch):
    """A torch release outside torch_private.CHECKED loads the compiled package with
    torch's own loader instead of AOTInductor's C interface: same class ids."""
    from enet_ros import aoti_cache, torch_private
    assert torch_private.checked_version('2.13.0+cpu')
    assert not torch_private.checked_version('2.15.0') and \
        not torch_private.checked_version('2.10.1')
    assert not torch_private.checked_version('nightly')
    conv = torch.nn.Conv2d(3, 4, 3, padding=1)
    x, bias = torch.randn(1, 3, 8, 8), torch.randn(4)
    monkeypatch.setattr(torch_private, 'checked_version', lambda *a: False)
    torch.testing.assert_close(torch_private.conv_forward(conv, x, bias),
                               conv._conv_forward(x, conv.weight, bias))
    monkeypatch.setattr(aoti_cache, 'aoti_c_interface', lambda: False)
    seg, _ = _compiled(weights)
    assert not isinstance(seg.net, aoti_cache.Package)
    eager = Segmenter(weights, 'cpu', 'fp32', 'eager')
    img = np.random.default_rng(3).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    assert (seg.segment(img)[0] == eager.segment(img)[0]).mean() > 0.999


def test_cached_package_for_another_size_is_discarded(weights, tmp_path, monkeypatch):
    """A package (and its checksum) built for another input size, copied under the name
    this start expects: it fails the reference-frame check and is rebuilt."""
    monkeypatch.setenv('ENET_ROS_CACHE', str(tmp_path / 'cache'))
    _compiled(weights, input_size=(64, 96))
    aoti = tmp_path / 'cache' / 'aoti'
    other = sorted(aoti.glob('*.pt2'))
    _compiled(weights, input_size=(96, 128))
    target = [p for p in aoti.glob('*.pt2') if p not in other][0]
    for suffix in ('', '.sha256'):
        Path(str(target) + suffix).write_bytes(Path(str(other[0]) + suffix).read_bytes())
    seg, lines = _compiled(weights, input_size=(96, 128))
    assert any(line.startswith(f'discarding cached package {target}') for line in lines), lines
    eager = Segmenter(weights, 'cpu', 'fp32', 'eager', input_size=(96, 128))
    img = np.random.default_rng(2).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    assert (seg.segment(img)[0] == eager.segment(img)[0]).mean() > 0.999


@pytest.mark.parametrize('where', ['file in the way', 'unwritable'])
def test_unusable_cache_folder_compiles_for_this_run(weights, tmp_path, monkeypatch, where):
    if where == 'file in the way':
        (tmp_path / 'file').write_text('x')
        cache = tmp_path / 'file' / 'cache'
    else:
        cache = Path('/proc/enet_ros_cache')  # not writable, even by root
    monkeypatch.setenv('ENET_ROS_CACHE', str(cache))
    monkeypatch.delenv('TORCHINDUCTOR_CACHE_DIR', raising=False)
    seg, lines = _compiled(weights)
    warnings_ = [line for line in lines if 'not writable' in line]
    assert len(warnings_) == 1 and 'set ENET_ROS_CACHE to a writable folder' in warnings_[0]
    img = np.zeros((64, 96, 3), np.uint8)
    assert seg.segment(img)[0].shape == (64, 96)


# -- image codec --------------------------------------------------------------------

def _msg(arr, encoding, pad=0):
    h, w = arr.shape[:2]
    rows = arr.reshape(h, -1)
    rows = np.pad(rows, ((0, 0), (0, pad)))
    return SimpleNamespace(height=h, width=w, encoding=encoding, step=rows.shape[1],
                           data=rows.tobytes(), format='')


@pytest.mark.parametrize('encoding,channels,order', [
    ('rgb8', 3, 'rgb'), ('bgr8', 3, 'bgr'), ('rgba8', 4, 'rgb'), ('bgra8', 4, 'bgr'),
    ('mono8', 1, 'rgb')])
@pytest.mark.parametrize('width,pad', [(97, 0), (97, 5), (1, 3), (64, 0)])
def test_image_round_trip(encoding, channels, order, width, pad):
    rng = np.random.default_rng(width + pad)
    arr = rng.integers(0, 256, (13, width, channels), dtype=np.uint8)
    out, got_order = image_to_array(_msg(arr, encoding, pad))
    assert got_order == order and out.shape == (13, width, 3)
    expected = np.repeat(arr, 3, axis=2) if channels == 1 else arr[:, :, :3]
    np.testing.assert_array_equal(out, expected)
    if channels != 1:  # zero-copy: a view on the message buffer
        assert not out.flags.owndata


@pytest.mark.parametrize('pattern', ['rggb', 'bggr', 'gbrg', 'grbg'])
def test_bayer_names_demosaic_to_the_scene_they_sampled(pattern):
    """A smooth scene sampled through each ROS Bayer pattern (first row, first column
    named first) demosaics back to that scene, not to one with red and blue swapped."""
    small = np.random.default_rng(0).integers(0, 256, (8, 12, 3), dtype=np.uint8)
    rgb = cv2.resize(small, (96, 64), interpolation=cv2.INTER_CUBIC)
    raw = np.zeros((64, 96), np.uint8)
    for k, (dy, dx) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        raw[dy::2, dx::2] = rgb[dy::2, dx::2, 'rgb'.index(pattern[k])]
    out, order = image_to_array(_msg(raw, f'bayer_{pattern}8'))
    assert order == 'rgb' and out.shape == (64, 96, 3)
    assert np.abs(out.astype(int) - rgb).mean() < 3


def test_sixteen_bit_range_follows_input_bits():
    twelve = np.random.default_rng(1).integers(0, 4096, (5, 7), dtype=np.uint16)
    msg = _msg(twelve.astype('<u2').view(np.uint8).reshape(5, 14), 'mono16')
    msg.width, msg.is_bigendian = 7, 0
    out, _ = image_to_array(msg, bits=12)
    np.testing.assert_array_equal(out[..., 0], (twelve >> 4).astype(np.uint8))
    full, _ = image_to_array(msg)  # 16 bits: a 12-bit camera looks dark, not wrong
    np.testing.assert_array_equal(full[..., 0], (twelve >> 8).astype(np.uint8))
    msg.data = twelve.astype('>u2').tobytes()
    msg.is_bigendian = 1
    np.testing.assert_array_equal(image_to_array(msg, bits=12)[0][..., 0], twelve >> 4)
    over = _msg(np.full((2, 4), 255, np.uint8), 'mono16')  # 0xFFFF from a 12-bit claim
    over.width = 2
    assert image_to_array(over, bits=12)[0].max() == 255  # saturates


def test_mask_png_round_trip_and_errors():
    from enet_ros.image_codec import mask_to_png, MASK_PNG_FORMAT, message_to_mask
    ids = np.random.default_rng(2).integers(0, 12, (31, 45), dtype=np.uint8)
    ids[0, :5] = 255
    png = SimpleNamespace(format=MASK_PNG_FORMAT, data=mask_to_png(ids))
    np.testing.assert_array_equal(message_to_mask(png), ids)
    raw, rgb = _msg(ids, 'mono8', pad=3), _msg(np.zeros((2, 2, 3), np.uint8), 'rgb8')
    del raw.format, rgb.format  # Image messages
    np.testing.assert_array_equal(message_to_mask(raw), ids)
    with pytest.raises(ImageError, match='must be a PNG stream'):
        message_to_mask(SimpleNamespace(format='jpeg', data=b'x'))
    with pytest.raises(ImageError, match='must be mono8'):
        message_to_mask(rgb)


def test_image_errors():
    arr = np.zeros((4, 5, 3), np.uint8)
    with pytest.raises(ImageError, match="unsupported encoding '16UC1'.*rgb8"):
        image_to_array(_msg(arr, '16UC1'))
    short = _msg(arr, 'rgb8')
    short.data = short.data[:-1]
    with pytest.raises(ImageError, match='needs 60 bytes of data, got 59'):
        image_to_array(short)
    zero = _msg(arr, 'rgb8')
    zero.width = 0
    with pytest.raises(ImageError, match='zero size'):
        image_to_array(zero)
    with pytest.raises(ImageError, match='max_image_pixels'):
        image_to_array(_msg(arr, 'rgb8'), max_pixels=19)
    bad_step = _msg(arr, 'rgb8')
    bad_step.step = 10
    with pytest.raises(ImageError, match='step 10'):
        image_to_array(bad_step)


def test_compressed():
    arr = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    ok, png = cv2.imencode('.png', arr)
    out, order = compressed_to_array(SimpleNamespace(format='png', data=png.tobytes()))
    assert order == 'bgr'
    np.testing.assert_array_equal(out, arr)
    with pytest.raises(ImageError, match='no readable jpeg or png header'):
        compressed_to_array(SimpleNamespace(format='jpeg', data=b'\xff\xd8garbage'))
    jpg = cv2.imencode('.jpg', arr)[1].tobytes()
    with pytest.raises(ImageError, match='cannot decode'):  # header fine, data cut short
        compressed_to_array(SimpleNamespace(format='jpeg', data=jpg[:len(jpg) // 3]))
    with pytest.raises(ImageError, match='exceeds max_image_pixels'):
        compressed_to_array(SimpleNamespace(format='png', data=png.tobytes()), max_pixels=100)
    with pytest.raises(ImageError, match="unsupported compressed format 'tiff'"):
        compressed_to_array(SimpleNamespace(format='tiff', data=png.tobytes()))


@pytest.mark.parametrize('ext,fmt,claim', [('.png', 'png', '40000x30000'),
                                           ('.jpg', 'jpeg', '40000x30000'),
                                           ('.webp', 'jpeg', '12000x12000')])
def test_decompression_bombs_rejected_from_the_header(ext, fmt, claim):
    msg = SimpleNamespace(format=fmt, data=decompression_bomb(ext))
    t = time.perf_counter()
    with pytest.raises(ImageError, match=f'{claim} \\(from its header\\) exceeds'):
        compressed_to_array(msg, max_pixels=3840 * 2160)
    assert time.perf_counter() - t < 0.1  # nothing was decoded


def test_checkpoint_with_nan_weights_is_refused(weights, tmp_path):
    model, meta = load_checkpoint(weights)
    with torch.no_grad():
        model.fullconv.weight[0, 0, 0, 0] = float('nan')
    save_checkpoint(tmp_path / 'nan.pt', model, meta)
    with pytest.raises(CheckpointError, match='non-finite weights.*fullconv.weight'):
        load_checkpoint(tmp_path / 'nan.pt')


def test_training_checkpoint_as_model_file_says_how_to_export(tmp_path):
    from training import run_checkpoint
    path = run_checkpoint.save(tmp_path, {'model': ENet(11).state_dict(), 'optimizer': {},
                                      'lr_scheduler': {}, 'epoch': 0})
    with pytest.raises(CheckpointError, match='is a training checkpoint.*training.export'):
        load_checkpoint(path)


def test_array_to_fields():
    f = array_to_fields(np.zeros((3, 5), np.uint8), 'mono8')
    assert (f['height'], f['width'], f['step'], len(f['data'])) == (3, 5, 5, 15)


# -- metrics ------------------------------------------------------------------------

def test_metrics_hand_computed():
    cm = ConfusionMatrix(3)
    target = np.array([0, 0, 1, 1, 2, 2, 255, 1])
    pred = np.array([0, 1, 1, 1, 2, 0, 2, 2])
    cm.update(target, pred)
    # rows gt, cols pred
    np.testing.assert_array_equal(cm.mat, [[1, 1, 0], [0, 2, 1], [1, 0, 1]])
    m = cm.compute(['a', 'b', 'c'])
    assert m['per_class_accuracy'] == pytest.approx({'a': 50, 'b': 200 / 3, 'c': 50})
    assert m['per_class_iou'] == pytest.approx({'a': 100 / 3, 'b': 50, 'c': 100 / 3})
    assert m['global_accuracy'] == pytest.approx(100 * 4 / 7)
    assert m['mean_iou'] == pytest.approx((100 / 3 + 50 + 100 / 3) / 3)
    assert m['class_avg_accuracy'] == pytest.approx((50 + 200 / 3 + 50) / 3)


def test_metrics_absent_class_is_left_out():
    cm = ConfusionMatrix(3)
    cm.update(np.array([0, 1]), np.array([0, 1]))
    m = cm.compute(['a', 'b', 'c'])
    assert np.isnan(m['per_class_iou']['c']) and m['mean_iou'] == 100


def test_codec_matches_cv_bridge_where_installed():
    """On a ROS 2 machine with cv_bridge: the same arrays for every encoding."""
    cv_bridge = pytest.importorskip('cv_bridge', reason='cv_bridge is not installable here')
    bridge = cv_bridge.CvBridge()
    rng = np.random.default_rng(3)
    for encoding, channels in (('rgb8', 3), ('bgr8', 3), ('rgba8', 4), ('bgra8', 4)):
        arr = rng.integers(0, 256, (7, 11, channels), dtype=np.uint8)
        msg = bridge.cv2_to_imgmsg(arr, encoding=encoding)
        ours, _ = image_to_array(msg)
        np.testing.assert_array_equal(ours, bridge.imgmsg_to_cv2(msg)[:, :, :3])


# -- threads --------------------------------------------------------------------------

def test_thread_chooser_leaves_a_contended_team_and_returns_when_it_pays():
    from enet_ros.threads import ThreadChooser, usable_cpus
    assert 1 <= usable_cpus() <= os.cpu_count()
    now = [0.0]
    frame_ms = {2: 20.0, 1: 36.0}  # idle: two threads win

    def run_with(chooser, frames):
        seen = []
        for _ in range(frames):
            seen.append(chooser.threads)
            ms = frame_ms[chooser.threads]
            now[0] += ms / 1e3
            chooser.record(ms / 1e3)
        return seen

    def run(frames):
        return run_with(chooser, frames)

    chooser = ThreadChooser(2, window=4, probe_s=1.0, clock=lambda: now[0])
    seen = run(200)
    assert seen[-1] == 2 and 1 in seen  # it tried one thread and came back
    frame_ms[2] = 900.0  # a busy neighbour: the two-thread team waits on a preempted thread
    seen = run(600)  # about 20 s
    assert chooser.threads == 1 and 'measured' in chooser.reason
    # a window and then one frame per retrial, retrials backing off: 1, 2, 4, 8 s apart
    assert seen.count(2) <= 4 + 5, seen.count(2)
    pinned = ThreadChooser(2, fixed=2, window=4, probe_s=0.0)
    assert all(pinned.record(0.9) == 2 for _ in range(20))
    # started at 1 (the CPU was shared at start), after a long load and a wait for the
    # camera: no trial of 2 threads before probe_s of frames
    started = ThreadChooser(2, window=4, probe_s=1.0, clock=lambda: now[0], start=1,
                            reason='CPU shared')
    now[0] += 100.0
    assert started.threads == 1 and started.reason == 'CPU shared'
    assert run_with(started, frames=20) == [1] * 20  # 0.72 s of frames


def test_shared_cpu_start_follows_the_wait_policy(monkeypatch):
    from enet_ros import threads
    monkeypatch.setattr(threads, 'usable_cpus', lambda: 2)
    load = [0.1]
    monkeypatch.setattr(threads, 'others_load', lambda: load[0])
    monkeypatch.delenv('OMP_WAIT_POLICY', raising=False)
    monkeypatch.setenv('GOMP_SPINCOUNT', str(threads.SHORT_SPIN))
    assert threads.starting_threads() == (2, '2 usable CPUs', False)
    load[0] = 1.9
    threads_, reason, shared = threads.starting_threads()  # a short spin: keep the team
    assert (threads_, shared) == (2, True)
    assert reason.startswith('CPU shared: other processes keep 1.9 of 2 cores busy, so 2 ')
    assert reason.endswith('(GOMP_SPINCOUNT=10000)')
    monkeypatch.delenv('GOMP_SPINCOUNT')  # libgomp's long default spin: one thread
    threads_, reason, shared = threads.starting_threads()
    assert (threads_, shared) == (1, True) and 'would spin waiting' in reason
    monkeypatch.setenv('OMP_WAIT_POLICY', 'passive')
    assert threads.starting_threads()[0] == 2
    assert threads.starting_threads(fixed=1) == (1, 'fixed by num_threads', False)
    monkeypatch.setattr(threads, 'usable_cpus', lambda: 1)  # nothing to share: one CPU
    assert threads.starting_threads()[2] is False


# -- camera stats (what diagnostics are made of) -----------------------------------------

def test_camera_stats_count_drops_and_judge_the_window():
    from enet_ros.camera_stats import assess, CameraStats, ERROR, OK, STALE, WARN
    stats = CameraStats(num_classes=3)
    assert assess(stats.take(), 0.0, 0.1, 2.0, None)[:2] == (STALE, 'no frame received yet')
    stats.frame_received(10.0, False, 1, True)
    stats.frame_received(10.1, True, 2, True)  # replaced the first in the mailbox
    stats.frame_received(10.2, False, 5, True)  # 3 and 4 never reached the callback
    stats.frame_received(10.3, False, 2, False)  # a second publisher: gaps mean nothing
    stats.frame_received(10.4, False, 9, False)
    labels = np.zeros((4, 4), np.uint8)
    times = dict.fromkeys(('convert', 'preprocess', 'inference', 'postprocess', 'publish',
                           'message_age'), 0.001)
    stats.frame_processed({**times, 'processing': 0.05}, labels, 0.9)
    window = stats.take()
    level, message, values = assess(window, 10.5, 0.1, 2.0, None)
    values = dict(values)
    assert (level, message) == (OK, 'ok')
    assert values['frames_received'] == '5' and values['frames_processed'] == '1'
    assert values['frames_dropped'] == '3' and values['frames_dropped_before_node'] == '2'
    assert values['input_fps'] == '5.0' and values['processing_ms_max'] == '50.0'
    # the next window starts empty; totals carry on
    stats.frame_received(11.0, False, None, True)
    stats.frame_processed({**times, 'processing': 0.3}, labels, 0.9)
    level, message, values = assess(stats.take(), 11.1, 0.1, 2.0, None)
    assert (level, message) == (WARN, 'latency 300 ms over budget 100 ms')
    assert dict(values)['frames_received'] == '6' and dict(values)['input_fps'] == '1.0'
    assert assess(stats.take(), 11.1, 0.1, 2.0, 'confidence low')[:2] == (WARN,
                                                                         'confidence low')
    stats.frame_received(12.0, False, None, True)
    stats.frame_rejected('bad encoding')
    level, message, _ = assess(stats.take(), 12.5, 0.1, 2.0, None)
    assert (level, message) == (WARN, '1 frames rejected')
    level, message, _ = assess(stats.take(), 13.6, 0.1, 2.0, None)
    assert level == WARN and message.startswith('frames arriving but no mask published for '
                                                '1.6 s (last error: bad encoding)')
    stats.frame_failed('RuntimeError: boom')
    assert assess(stats.take(), 13.7, 0.1, 2.0, None)[:2] == (ERROR, '1 inference failures')
    assert assess(stats.take(), 20.0, 0.1, 2.0, None)[:2] == (STALE, 'no frame for 8.0 s')
    # without sequence numbers (Humble) the frames lost before the node are not guessed
    humble = CameraStats(num_classes=3, sequence_numbers=False)
    humble.frame_received(1.0, False, None, True)
    values = dict(assess(humble.take(), 1.1, 0.1, 2.0, None)[2])
    assert values['frames_dropped_before_node'].startswith('unknown')
    assert values['frames_received'] == '1'

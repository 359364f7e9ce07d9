"""training/: class weights, overfitting, resume after a kill, DDP, export, Cityscapes."""

from __future__ import annotations

import json
import os
from pathlib import Path
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
import torch

from enet_ros.checkpoint import load_checkpoint
from enet_ros.segmenter import Segmenter
from training import datasets, train
from training.report import weak_classes
from training.train import class_weights

from conftest import REPO


def run(module, *args, timeout=600):
    return subprocess.run([sys.executable, '-m', module, *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, 'PYTHONPATH': str(REPO)})


def test_class_weights_hand_computed():
    # 3 classes: pixel counts 6, 3, 1 (255 ignored) -> p = .6, .3, .1
    t = np.array([[0, 0, 0, 0, 0, 0, 1, 1, 1, 2, 255, 255]], dtype=np.uint8)
    w = class_weights([t], 3).numpy()
    expected = [1 / np.log(1.02 + p) for p in (0.6, 0.3, 0.1)]
    np.testing.assert_allclose(w, expected, rtol=1e-6)
    assert w.max() <= 1 / np.log(1.02) + 1e-6  # bounded at ~50 as the paper says


@pytest.fixture(scope='module')
def tiny_camvid(tmp_path_factory, camvid_root):
    """A CamVid-layout tree whose train and val are the same 4 frames (links, no copies)."""
    root = tmp_path_factory.mktemp('tiny_camvid')
    names = sorted(p.name for p in (camvid_root / 'train').glob('*.png'))[:4]
    for split in ('train', 'val'):
        for sub, src in ((split, 'train'), (f'{split}annot', 'trainannot')):
            (root / sub).mkdir()
            for n in names:
                (root / sub / n).symlink_to(camvid_root / src / n)
    return root


def test_overfits_a_handful_of_frames(tiny_camvid, tmp_path):
    args = train.get_args(['--root', str(tiny_camvid), '--stage', 'full', '--epochs', '150',
                           '--batch-size', '4', '--lr', '5e-3', '--scale', '1', '1',
                           '--input-size', '96', '128', '--threads', '2',
                           '--output-dir', str(tmp_path / 'run'), '--no-progress'])
    _, metrics = train.main(args)
    rows = (tmp_path / 'run' / 'log.csv').read_text().splitlines()[1:]
    losses = [float(r.split(',')[2]) for r in rows]
    assert losses[-1] < 0.5 * losses[0], losses
    assert metrics['mean_iou'] > 30, metrics['mean_iou']  # chance is about 9
    assert (tmp_path / 'run' / 'tensorboard').is_dir()


def _state(path):
    return torch.load(path, map_location='cpu', weights_only=False)


def test_resume_after_kill_gives_same_state(tiny_camvid, tmp_path):
    common = ['--root', tiny_camvid, '--stage', 'encoder', '--epochs', 4, '--batch-size', 2,
              '--input-size', 96, 128, '--threads', 1, '--no-progress']
    straight = run('training.train', *common, '--output-dir', tmp_path / 'a')
    assert straight.returncode == 0, straight.stderr
    out = tmp_path / 'b'
    proc = subprocess.Popen([sys.executable, '-m', 'training.train', *map(str, common),
                             '--output-dir', str(out)], cwd=REPO,
                            env={**os.environ, 'PYTHONPATH': str(REPO)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # kill once the second epoch's checkpoint exists
        log = out / 'log.csv'
        if log.exists() and len(log.read_text().splitlines()) >= 3:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _state(out / 'checkpoint.pth')['epoch'] < 3  # it really stopped early
    resumed = run('training.train', *common, '--output-dir', out, '--resume')
    assert resumed.returncode == 0, resumed.stderr
    assert 'resumed from' in resumed.stdout
    a, b = _state(tmp_path / 'a' / 'checkpoint.pth'), _state(out / 'checkpoint.pth')
    assert a['epoch'] == b['epoch'] == 3
    for k, v in a['model'].items():
        assert torch.equal(v, b['model'][k]), k
    assert a['lr_scheduler'] == b['lr_scheduler']
    sa, sb = a['optimizer']['state'], b['optimizer']['state']
    assert all(torch.equal(sa[k]['exp_avg'], sb[k]['exp_avg']) for k in sa)


DDP_SCRIPT = """
import hashlib, sys, torch, torch.distributed as dist
from training import train
args = train.get_args(sys.argv[1:])
model, _ = train.main(args)
h = hashlib.sha256(b''.join(p.detach().numpy().tobytes() for p in model.parameters()))
print('RANKHASH', h.hexdigest(), flush=True)
"""


def test_ddp_two_processes_gloo_agree(tiny_camvid, tmp_path):
    script = tmp_path / 'ddp_run.py'
    script.write_text(DDP_SCRIPT)
    torchrun = Path(sys.executable).parent / 'torchrun'
    res = subprocess.run([str(torchrun), '--nproc-per-node', '2', '--master-port', '29533',
                          str(script), '--root', str(tiny_camvid), '--stage', 'encoder',
                          '--epochs', '2', '--batch-size', '2', '--threads', '1',
                          '--input-size', '96', '128',
                          '--output-dir', str(tmp_path / 'ddp'), '--no-progress'],
                         cwd=REPO, capture_output=True, text=True, timeout=600,
                         env={**os.environ, 'PYTHONPATH': str(REPO)})
    assert res.returncode == 0, res.stdout + res.stderr
    hashes = [line.split()[1] for line in res.stdout.splitlines() if 'RANKHASH' in line]
    assert len(hashes) == 2 and hashes[0] == hashes[1]
    assert _state(tmp_path / 'ddp' / 'checkpoint.pth')['epoch'] == 1


def test_export_load_identical_and_onnx_parity(tiny_camvid, tmp_path, camvid_root):
    args = train.get_args(['--root', str(tiny_camvid), '--stage', 'full', '--epochs', '1',
                           '--batch-size', '4', '--input-size', '96', '128',
                           '--output-dir', str(tmp_path / 'run'), '--no-progress'])
    model, _ = train.main(args)
    out = tmp_path / 'w.pt'
    res = run('training.export', '--checkpoint', tmp_path / 'run' / 'checkpoint.pth',
              '--root', tiny_camvid, '--output', out, '--limit', 2)
    assert res.returncode == 0, res.stderr
    assert out.stat().st_size < 1_000_000
    loaded, meta = load_checkpoint(out)
    assert meta.class_names == datasets.CAMVID_CLASSES
    assert set(meta.metrics['precision_agreement']) == {'bf16', 'fp16'}
    assert 'mean_iou' in meta.metrics['val']
    # identical predictions: exported (fp16-stored) weights vs the trained model rounded
    img = cv2.resize(datasets.read_rgb(next((camvid_root / 'val').glob('*.png'))), (128, 96))
    seg = Segmenter(out, 'cpu', 'fp32', 'eager')
    ids, _ = seg.segment(img)
    ref = model.eval().half().float()
    x = seg._to_tensor(img, 'rgb').contiguous()
    with torch.no_grad():
        ref_ids = ref(x)[0].argmax(0).numpy()
    assert (ids == ref_ids).mean() > 0.999
    # ONNX Runtime runs the exported graph like torch does
    import onnxruntime as ort
    sess = ort.InferenceSession(str(out.with_suffix('.onnx')))
    with torch.no_grad():
        torch_logits = seg.net(x).float().numpy()
    onnx_logits = sess.run(None, {'image': x.numpy()})[0]
    assert np.abs(onnx_logits - torch_logits).max() < 1e-3
    assert (onnx_logits.argmax(1) == torch_logits.argmax(1)).mean() > 0.999


def _synthetic_cityscapes(root: Path) -> None:
    """Official layout, 2 cities x 2 frames, 64x128, labelIds and instanceIds."""
    rng = np.random.default_rng(0)
    for split in ('train', 'val'):
        for city in ('aachen', 'bremen'):
            img_dir = root / 'leftImg8bit' / split / city
            gt_dir = root / 'gtFine' / split / city
            img_dir.mkdir(parents=True)
            gt_dir.mkdir(parents=True)
            for k in range(2):
                stem = f'{city}_{k:06d}_000019'
                cv2.imwrite(str(img_dir / f'{stem}_leftImg8bit.png'),
                            rng.integers(0, 256, (64, 128, 3), dtype=np.uint8))
                label = np.full((64, 128), 7, np.uint8)  # road
                label[:16] = 23  # sky
                label[40:, :30] = 26  # car
                label[40:, 100:] = 24  # person
                label[:, 60:62] = 0  # unlabeled -> ignore
                inst = label.astype(np.int32)
                inst[40:, :30] = 26000 + k
                inst[40:, 100:] = 24000
                cv2.imwrite(str(gt_dir / f'{stem}_gtFine_labelIds.png'), label)
                cv2.imwrite(str(gt_dir / f'{stem}_gtFine_instanceIds.png'),
                            inst.astype(np.uint16))


def test_cityscapes_loader_mapping_and_metrics(tmp_path):
    root = tmp_path / 'cityscapes'
    _synthetic_cityscapes(root)
    data = datasets.cityscapes(root, 'val')
    assert len(data) == 4 and len(data.info.class_names) == 19
    t = data.targets[0]
    names = data.info.class_names
    assert t[30, 40] == names.index('road') == 0
    assert t[0, 0] == names.index('sky') == 10
    assert t[50, 10] == names.index('car') == 13
    assert t[50, 110] == names.index('person') == 11
    assert t[30, 60] == 255
    from conftest import make_weights  # noqa: F401
    from enet_ros.checkpoint import ModelMeta, save_checkpoint
    from enet_ros.model import ENet
    info = datasets.cityscapes_info()
    weights = tmp_path / 'city.pt'
    save_checkpoint(weights, ENet(19), ModelMeta('cityscapes', info.class_names, info.palette,
                                                 (64, 128), (0.3,) * 3, (0.2,) * 3))
    out = tmp_path / 'metrics.json'
    res = run('training.evaluate', '--dataset', 'cityscapes', '--root', root, '--split', 'val',
              '--weights', weights, '--json', out)
    assert res.returncode == 0, res.stdout + res.stderr
    got = json.loads(out.read_text())
    for key in ('mean_iou', 'class_avg_accuracy', 'global_accuracy', 'iiou', 'category_iou',
                'category_iiou'):
        assert isinstance(got[key], float), key
    assert set(got['per_class_iou']) == set(info.class_names)
    assert 'iIoU' in res.stdout


def test_full_stage_starts_from_encoder_even_with_resume(tiny_camvid, tmp_path, capsys):
    """The resumable recipe passes --resume from the start: with no checkpoint yet, the
    full stage must still be initialised from the trained encoder."""
    common = ['--root', str(tiny_camvid), '--epochs', '1', '--batch-size', '2',
              '--max-steps', '1', '--input-size', '96', '128', '--no-progress', '--resume']
    train.main(train.get_args(common + ['--stage', 'encoder', '--output-dir',
                                                       str(tmp_path / 'enc')]))
    enc_state = _state(tmp_path / 'enc' / 'best.pth')['model']
    torch.manual_seed(123)  # a different init than the encoder run had
    args = train.get_args(common + ['--stage', 'full', '--encoder-checkpoint',
                                    str(tmp_path / 'enc' / 'best.pth'),
                                    '--output-dir', str(tmp_path / 'full')])
    args.epochs = 0  # build, initialise and stop before any step
    model, _ = train.main(args)
    assert 'encoder initialised from' in capsys.readouterr().out
    for k, v in model.encoder.state_dict().items():
        assert torch.equal(v, enc_state[f'encoder.{k}']), k


def test_report_names_weak_classes_and_where_their_pixels_go():
    # rows: ground truth, columns: predicted; class 2 is never predicted, its pixels go to 0
    confusion = np.array([[50, 0, 0], [0, 40, 0], [9, 1, 0]])
    text = weak_classes(confusion, ['road', 'car', 'pole'])
    assert 'pole (0 val pixels predicted as pole; its own pixels go to road 90% and car 10%)' \
        in text
    assert 'road (' not in text and 'car (' not in text
    assert weak_classes(np.eye(3, dtype=int) * 10, ['a', 'b', 'c']) == ''
    # a class absent from the ground truth is not called weak
    assert weak_classes(np.diag([10, 10, 0]), ['a', 'b', 'c']) == ''


def test_decoder_lr_scale_splits_encoder_from_the_rest():
    from enet_ros.model import ENet
    model = ENet(11)
    args = train.get_args(['--root', '.', '--stage', 'full', '--epochs', '1', '--lr', '1e-3',
                           '--decoder-lr-scale', '10', '--output-dir', '.'])
    enc, rest = train.param_groups(model, args)
    assert {id(p) for p in enc['params']} == {id(p) for p in model.encoder.parameters()}
    assert len(enc['params']) + len(rest['params']) == len(list(model.parameters()))
    assert 'lr' not in enc and rest['lr'] == pytest.approx(1e-2)
    args.decoder_lr_scale = 1.0
    assert len(train.param_groups(model, args)) == 1

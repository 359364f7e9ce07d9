"""training/: class weights, held-out drives, augmentation, overfitting, resume, export."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
import re
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
import torch

from enet_ros.checkpoint import card_summary, load_checkpoint, ModelCard
from enet_ros.model import ENet
from enet_ros.segmenter import Segmenter
from training import datasets, evaluate, export, run_checkpoint as tc, train
from training.augment import Augment
from training.lovasz import lovasz_softmax
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
    """A CamVid-layout tree: train holds 4 frames of drive 0001TP and 2 of 0006R0, val 2 of
    0016E5 (links, no copies)."""
    root = tmp_path_factory.mktemp('tiny_camvid')
    frames = sorted(p.name for p in (camvid_root / 'train').glob('*.png'))
    picks = {'train': [n for n in frames if n.startswith('0001TP')][:4]
             + [n for n in frames if n.startswith('0006R0')][:2],
             'val': sorted(p.name for p in (camvid_root / 'val').glob('*.png'))[:2]}
    for split, names in picks.items():
        for sub in (split, f'{split}annot'):
            (root / sub).mkdir()
            for n in names:
                (root / sub / n).symlink_to(camvid_root / sub / n)
    return root


def test_overfits_a_handful_of_frames(tiny_camvid, tmp_path):
    args = train.get_args(['--root', str(tiny_camvid), '--epochs', '150', '--limit', '4',
                           '--batch-size', '4', '--lr', '5e-3', '--scale', '1', '1',
                           '--color', '0', '--input-size', '96', '128',
                           '--output-dir', str(tmp_path / 'run')])
    model, heldout = train.main(args)
    assert heldout is None  # nothing held out, nothing measured
    rows = (tmp_path / 'run' / 'log.csv').read_text().splitlines()[1:]
    losses = [float(r.split(',')[1]) for r in rows]
    assert losses[-1] < 0.5 * losses[0], losses
    frames = datasets.build('camvid', tiny_camvid, ['train'], 4)
    x = train.stack_frames(frames.images, (96, 128), nearest=False)
    y = train.stack_frames(frames.targets, (96, 128), nearest=True)
    ckpt = tc.load(tmp_path / 'run')
    normalise = train.Normalise(ckpt['data']['mean'], ckpt['data']['std'])
    cm = train.heldout_confusion(model, x, y, normalise, None)
    assert cm.compute(list(datasets.CAMVID_CLASSES))['mean_iou'] > 30  # chance is about 9
    assert (tmp_path / 'run' / 'tensorboard').is_dir()


def _state(path):
    return torch.load(path, map_location='cpu', weights_only=False)


def test_resume_after_kill_gives_same_state(tiny_camvid, tmp_path):
    common = ['--root', tiny_camvid, '--epochs', 4, '--batch-size', 2, '--holdout', '0006R0',
              '--input-size', 96, 128, '--threads', 1]
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
    stopped = _state(out / 'checkpoint.pth')
    assert stopped['epoch'] < 3  # it really stopped early
    stopped['data']['device'] = 'Another GPU'  # as if its first epochs ran elsewhere
    tc.save(out, stopped)
    stale = out / '.checkpoint.pth.abc123.tmp'  # what a kill during a save leaves
    stale.write_bytes(b'partial')
    resumed = run('training.train', *common, '--output-dir', out, '--resume')
    assert resumed.returncode == 0, resumed.stderr
    assert 'resumed from' in resumed.stdout
    assert not stale.exists() and 'removed .checkpoint.pth.abc123.tmp' in resumed.stdout
    a, b = _state(tmp_path / 'a' / 'checkpoint.pth'), _state(out / 'checkpoint.pth')
    assert a['epoch'] == b['epoch'] == 3
    assert b['data']['device'] == 'Another GPU; ' + a['data']['device']  # both, in order
    for k, v in a['model'].items():
        assert torch.equal(v, b['model'][k]), k
    assert a['lr_scheduler'] == b['lr_scheduler']
    assert a['heldout']['mean_iou'] == b['heldout']['mean_iou']
    sa, sb = a['optimizer']['state'], b['optimizer']['state']
    assert all(torch.equal(sa[k]['exp_avg'], sb[k]['exp_avg']) for k in sa)


def test_export_load_identical_and_onnx_parity(tiny_camvid, tmp_path, camvid_root):
    common = ['--root', str(tiny_camvid), '--epochs', '1', '--batch-size', '4',
              '--input-size', '96', '128']
    model, _ = train.main(train.get_args(common + ['--output-dir', str(tmp_path / 'run')]))
    train.main(train.get_args(common + ['--holdout', '0006R0',
                                        '--output-dir', str(tmp_path / 'held')]))
    out = tmp_path / 'w.pt'
    res = run('training.export', '--checkpoint', tmp_path / 'run', '--root', tiny_camvid,
              '--heldout-runs', tmp_path / 'held', '--output', out, '--limit', 2)
    assert res.returncode == 0, res.stderr
    assert out.stat().st_size < 1_000_000
    loaded, meta = load_checkpoint(out)
    assert meta.class_names == datasets.CAMVID_CLASSES
    assert set(meta.metrics['precision_agreement']) == {'bf16', 'fp16'}
    card = meta.metrics['model_card']
    assert card['data']['train_frames'] == 6 and card['epochs'] == 1
    held = card['heldout']['0006R0']
    assert held['images'] == 2 and 0 <= held['mean_iou'] <= 100
    assert 'held-out 0006R0: class IoU' in res.stdout
    # identical predictions: exported (fp16-stored) weights vs the trained model rounded
    img = cv2.resize(datasets.read_rgb(next((camvid_root / 'val').glob('*.png'))), (128, 96))
    seg = Segmenter(out, 'cpu', 'fp32', 'eager')
    ids, _ = seg.segment(img)
    ref = model.eval().half().float()
    x = seg.net.normalise(seg._to_tensor(img, 'rgb')).contiguous()
    with torch.no_grad():
        ref_ids = ref(x)[0].argmax(0).numpy()
    assert (ids == ref_ids).mean() > 0.999
    # ONNX Runtime runs the exported graph like torch does
    import onnxruntime as ort
    sess = ort.InferenceSession(str(out.with_suffix('.onnx')))
    with torch.no_grad():
        torch_logits = seg.net.net(x).float().numpy()
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
    data = datasets.cityscapes(root, ['val'])
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
    info = datasets.cityscapes_info()
    weights = tmp_path / 'city.pt'
    save_checkpoint(weights, ENet(19), ModelMeta('cityscapes', info.class_names, info.palette,
                                                 (64, 128), (0.3,) * 3, (0.2,) * 3))
    out = tmp_path / 'metrics.json'
    res = run('training.evaluate', '--dataset', 'cityscapes', '--root', root, '--splits', 'val',
              '--weights', weights, '--json', out)
    assert res.returncode == 0, res.stdout + res.stderr
    got = json.loads(out.read_text())
    for key in ('mean_iou', 'class_avg_accuracy', 'global_accuracy', 'iiou', 'category_iou',
                'category_iiou'):
        assert isinstance(got[key], float), key
    assert set(got['per_class_iou']) == set(info.class_names)
    assert 'iIoU' in res.stdout


def test_report_names_weak_classes_and_where_their_pixels_go():
    # rows: ground truth, columns: predicted; on drive B class 2 is never predicted, its
    # pixels go to 0; on drive A it is fine: weak on one drive is weak
    good = np.diag([50, 40, 10])
    confusion = np.array([[50, 0, 0], [0, 40, 0], [9, 1, 0]])
    text = weak_classes({'A': good, 'B': confusion}, ['road', 'car', 'pole'])
    assert ('pole (IoU 0.0 on B: 0 pixels predicted as pole, its own pixels go to road 90% '
            'and car 10%)') in text
    assert 'road (' not in text and 'car (' not in text and ' on A' not in text
    assert weak_classes({'A': np.eye(3, dtype=int) * 10}, ['a', 'b', 'c']) == ''
    # a class absent from the ground truth is not called weak
    assert weak_classes({'A': np.diag([10, 10, 0])}, ['a', 'b', 'c']) == ''


def test_holdout_leaves_out_every_frame_of_the_drive(tiny_camvid):
    frames = datasets.build('camvid', tiny_camvid, ['train', 'val'])
    train_idx, held_idx = datasets.split_by_sequence(frames, '0006R0')
    assert sorted(frames.sequences[i] for i in held_idx) == ['0006R0', '0006R0']
    assert '0006R0' not in {frames.sequences[i] for i in train_idx}
    assert len(train_idx) + len(held_idx) == len(frames) == 8
    with pytest.raises(ValueError, match='sequences here: 0001TP, 0006R0, 0016E5'):
        datasets.split_by_sequence(frames, 'Seq05VD')


def test_augment_identity_flip_and_padding_with_ignore():
    gen = torch.Generator().manual_seed(0)
    img = torch.randint(0, 256, (4, 16, 24, 3), dtype=torch.uint8)
    tgt = torch.randint(0, 11, (4, 16, 24), dtype=torch.uint8)
    x, y = Augment((1.0, 1.0), color=0.0)(img, tgt, gen)
    flipped = torch.equal(y[0], tgt[0].long().flip(-1))
    same = torch.equal(y[0], tgt[0].long())
    assert flipped or same  # scale 1: the frame itself or its mirror, nothing resampled
    ref = img[0].permute(2, 0, 1).float() / 255
    torch.testing.assert_close(x[0], ref.flip(-1) if flipped else ref)
    # scale 0.5: the frame fills half of each side; the rest is ignore in the target
    _, y = Augment((0.5, 0.5), color=0.0)(img, tgt, gen)
    assert (y == datasets.IGNORE).float().mean().item() == pytest.approx(0.75, abs=0.02)
    assert set(y.unique().tolist()) <= set(range(11)) | {datasets.IGNORE}


def test_cutmix_pastes_one_rectangle_of_the_previous_image_with_its_labels():
    """At scale 1 each output is its frame (or mirror) with one rectangle of the batch's
    previous frame (or mirror) over it, and its labels are pasted exactly there."""
    gen = torch.Generator().manual_seed(0)
    img = torch.randint(0, 256, (6, 32, 48, 3), dtype=torch.uint8)
    tgt = torch.randint(0, 11, (6, 32, 48), dtype=torch.uint8)
    x, y = Augment((1.0, 1.0), color=0.0, cutmix=1.0)(img, tgt, gen)
    got = (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1)
    pasted = 0
    for i in range(6):
        j = (i - 1) % 6
        for fi, fj in itertools.product((False, True), repeat=2):
            a, b = (img[k].flip(1) if f else img[k] for k, f in ((i, fi), (j, fj)))
            box = ~(got[i] == a).all(-1)
            if (got[i][box] == b[box]).all():
                break
        else:
            raise AssertionError(f'image {i} is not made of frames {i} and {j}')
        rows, cols = box.any(1).nonzero(), box.any(0).nonzero()
        if len(rows):
            assert box[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()
            assert box.sum() == len(rows) * len(cols)  # one rectangle
            pasted += 1
        ta, tb = (tgt[k].flip(1) if f else tgt[k] for k, f in ((i, fi), (j, fj)))
        assert torch.equal(y[i], torch.where(box, tb, ta).long())
    assert pasted >= 4  # area uniform in 0..1: a box may round to nothing


def test_bf16_autocast_trains_like_fp32(tiny_camvid, tmp_path):
    """The bf16 step follows the fp32 loss curve within noise (same data, same seed)."""
    common = ['--root', str(tiny_camvid), '--epochs', '80', '--limit', '4', '--batch-size', '4',
              '--lr', '5e-3', '--scale', '1', '1', '--color', '0', '--input-size', '96', '128',
              '--threads', '1']  # both runs alike whatever else the machine runs
    curves = {}
    for amp in ('off', 'bf16'):
        train.main(train.get_args(common + ['--amp', amp, '--output-dir', str(tmp_path / amp)]))
        rows = (tmp_path / amp / 'log.csv').read_text().splitlines()[1:]
        curves[amp] = np.array([float(r.split(',')[1]) for r in rows])
    print({k: v[::10].round(3).tolist() for k, v in curves.items()})
    assert curves['bf16'][-10:].mean() < 0.5 * curves['bf16'][0]
    # mean loss over the last 10 epochs agrees within 15%
    a, b = curves['off'][-10:].mean(), curves['bf16'][-10:].mean()
    assert abs(a - b) < 0.15 * a, (a, b)


def test_lovasz_at_hard_predictions_is_one_minus_iou():
    """At one-hot probabilities the Lovász extension equals the Jaccard loss: the loss is
    the mean over the classes in the targets of 1 - IoU, void pixels taking no part."""
    gen = torch.Generator().manual_seed(0)
    y = torch.randint(0, 4, (2, 12, 16), generator=gen)
    pred = torch.where(torch.rand(y.shape, generator=gen) < 0.3,
                       torch.randint(0, 5, y.shape, generator=gen), y)
    y[:, :3] = datasets.IGNORE
    pred[:, :3] = 4  # wrong, but on void: must not count
    logits = torch.nn.functional.one_hot(pred, 5).permute(0, 3, 1, 2).float() * 100
    valid = y != datasets.IGNORE
    ious = [((pred == c) & (y == c)).sum() / (((pred == c) | (y == c)) & valid).sum()
            for c in y[valid].unique()]
    expected = 1 - torch.stack(ious).float().mean()
    got = lovasz_softmax(logits, y, datasets.IGNORE)
    torch.testing.assert_close(got, expected)
    assert 0.1 < got < 0.5  # a real mix of right and wrong pixels
    # the gradient pushes each pixel's probability of its own class up
    soft = logits.detach().div(100).requires_grad_()
    lovasz_softmax(soft, y, datasets.IGNORE).backward()
    own = soft.grad.gather(1, y.clamp(max=4).unsqueeze(1)).squeeze(1)
    assert (own[valid] <= 0).all() and (own[valid] < 0).any()
    assert (soft.grad.permute(0, 2, 3, 1)[~valid] == 0).all()


def test_lovasz_equals_its_definition_with_void_and_absent_classes():
    """At soft probabilities the loss and its gradient equal the definition computed class
    by class over the non-void pixels only (void pixels are not dropped but given error 0,
    so this checks that they change nothing); a class absent from the targets takes no part.
    """
    gen = torch.Generator().manual_seed(1)
    logits = (torch.randn(3, 6, 20, 24, generator=gen) * 3).requires_grad_()
    y = torch.randint(0, 6, (3, 20, 24), generator=gen)
    y[y == 4] = 2  # class 4 absent
    y[torch.rand(y.shape, generator=gen) < 0.2] = datasets.IGNORE
    probs = logits.softmax(1).permute(0, 2, 3, 1).reshape(-1, 6)
    labels = y.reshape(-1)
    probs, labels = probs[labels != datasets.IGNORE], labels[labels != datasets.IGNORE]
    terms = []
    for c in labels.unique().tolist():
        fg = (labels == c).float()
        errors, order = (fg - probs[:, c]).abs().sort(descending=True)
        fg = fg[order]
        jaccard = 1 - (fg.sum() - fg.cumsum(0)) / (fg.sum() + (1 - fg).cumsum(0))
        terms.append(torch.dot(errors, torch.cat([jaccard[:1], jaccard.diff()])))
    expected = torch.stack(terms).mean()
    (want,) = torch.autograd.grad(expected, logits)
    got = lovasz_softmax(logits, y, datasets.IGNORE)
    (grad,) = torch.autograd.grad(got, logits)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(grad, want)
    assert grad.abs().sum() > 0


def test_ohem_averages_the_weighted_cross_entropy_over_the_hard_pixels():
    """--ohem P keeps the pixels whose own-class probability is at most P, at least 1/16
    of them (the least confident first), never void; P = 1 keeps all: the weighted CE."""
    gen = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (2, 16, 16), generator=gen)
    y[:, :2] = datasets.IGNORE
    weights = torch.tensor([0.5, 1.0, 2.0])
    logits = torch.randn(2, 3, 16, 16, generator=gen)
    plain = torch.nn.CrossEntropyLoss(weight=weights, ignore_index=datasets.IGNORE)
    torch.testing.assert_close(train.Criterion(weights, 0.0, 1.0)(logits, y), plain(logits, y))

    def expected(keep):
        return plain(logits, torch.where(keep, y, datasets.IGNORE))

    valid = y != datasets.IGNORE
    own = logits.softmax(1).gather(1, y.clamp(max=2).unsqueeze(1)).squeeze(1)
    hard = valid & (own <= 0.4)
    assert y.numel() // 16 < hard.sum() < valid.sum()  # a threshold that drops pixels
    torch.testing.assert_close(train.Criterion(weights, 0.0, 0.4)(logits, y), expected(hard))
    # confident everywhere but on 5 pixels: the 1/16 least confident valid pixels count
    logits = torch.nn.functional.one_hot(y.clamp(max=2), 3).permute(0, 3, 1, 2) * 5.0
    logits = logits + 0.1 * torch.randn(logits.shape, generator=gen)
    b, i, j = valid.nonzero()[:5].T
    logits[b, :, i, j] = -logits[b, :, i, j]  # their own class now the least likely
    own = logits.softmax(1).gather(1, y.clamp(max=2).unsqueeze(1)).squeeze(1)
    k = y.numel() // 16
    least = own.masked_fill(~valid, 2.0).flatten().argsort()[:k]
    keep = torch.zeros(y.numel(), dtype=torch.bool)
    keep[least] = True
    assert (own[valid] <= 0.7).sum() < k
    torch.testing.assert_close(train.Criterion(weights, 0.0, 0.7)(logits, y),
                               expected(keep.view_as(y)))


def test_distillation_term_is_the_cross_entropy_to_the_soft_targets_over_labelled_pixels():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 4, 5, generator=gen)
    soft = torch.randn(2, 3, 4, 5, generator=gen).softmax(1)
    y = torch.randint(0, 3, (2, 4, 5), generator=gen)
    y[0, :2] = 255  # void: no term there
    weights = torch.tensor([1.0, 2.0, 0.5])
    valid = y != 255
    pixel = -(soft * logits.log_softmax(1)).sum(1)
    expected = train.Criterion(weights, 0.0)(logits, y) + pixel[valid].mean()
    torch.testing.assert_close(train.Criterion(weights, 0.0)(logits, y, soft), expected)


def test_second_stage_starts_from_the_parent_run(tiny_camvid, tmp_path):
    """--init loads the parent's final weights; --lovasz adds a positive term to the loss,
    and so does --teacher (the cross-entropy to the teachers' averaged softmax); at learning
    rate 0 nothing moves, so the runs see the same network and batches."""
    common = ['--root', str(tiny_camvid), '--limit', '4', '--batch-size', '2',
              '--input-size', '96', '128']
    train.main(train.get_args(common + ['--epochs', '2', '--output-dir', str(tmp_path / 'p')]))
    loss = {}
    for name, extra in (('ce', []), ('lovasz', ['--lovasz', '1']),
                        ('teacher', ['--teacher', str(tmp_path / 'p'), str(tmp_path / 'p')])):
        run_dir = tmp_path / name
        model, _ = train.main(train.get_args(
            common + ['--epochs', '1', '--lr', '0', '--init', str(tmp_path / 'p'),
                      '--output-dir', str(run_dir)] + extra))
        parent = tc.weights(tc.load(tmp_path / 'p'))
        for k, v in model.named_parameters():
            assert torch.equal(v.detach(), parent[k]), k
        loss[name] = float((run_dir / 'log.csv').read_text().splitlines()[1].split(',')[1])
    assert loss['lovasz'] > loss['ce'] + 0.05, loss
    assert loss['teacher'] > loss['ce'] + 0.05, loss
    # the teachers' target: each network's softmax on the batch normalised with its own
    # run's statistics, averaged
    parent = tc.load(tmp_path / 'p')
    teachers = train.Teachers([str(tmp_path / 'p')] * 2, None, 11, torch.device('cpu'), None,
                              False)
    images = torch.rand(2, 3, 96, 128, generator=torch.Generator().manual_seed(0))
    net = ENet(11).eval()
    net.load_state_dict(tc.weights(parent))
    mean, std = (torch.tensor(parent['data'][k]).view(1, 3, 1, 1) for k in ('mean', 'std'))
    with torch.no_grad():
        torch.testing.assert_close(teachers(images), net((images - mean) / std).softmax(1))
    # a fold's second stage must start from a run that held out the same drive
    for option in ('--init', '--teacher'):
        with pytest.raises(SystemExit, match=f'{option} .* did not hold out 0006R0'):
            train.main(train.get_args(common + ['--epochs', '1', option, str(tmp_path / 'p'),
                                                '--holdout', '0006R0', '--limit', '8',
                                                '--output-dir', str(tmp_path / 'leak')]))
    # the model card names both stages; diagnostics count the epochs of both
    out = export.main(export.get_args(['--checkpoint', str(tmp_path / 'lovasz'), '--no-onnx',
                                       '--output', str(tmp_path / 'w.pt')]))
    card = load_checkpoint(out)[1].metrics['model_card']
    assert card['recipe']['lovasz'] == 1 and card['epochs'] == 1
    assert card['first_stage']['epochs'] == 2 and 'first_stage' not in card['first_stage']
    summary = card_summary(ModelCard.from_dict(card))
    assert '2 + 1 epochs' in summary, summary
    assert ModelCard.from_dict(card).to_dict() == card  # the record keeps the stored card


def test_ablation_table_reads_each_rung_from_its_runs(tiny_camvid, tmp_path, monkeypatch):
    """Each trained rung gets a row with its held-out figure per drive (the fp32 measure the
    run folder caches), their mean, and 'first + second stage' epochs; an untrained rung
    gets none; a rung whose run on one drive is still in progress gets the other drive's
    figure, no mean, and the unfinished run's epochs; the seed-noise sentence gives the gap
    between each rung and its seed repeat, drive by drive."""
    from reporting import tables as report
    from training import ablation
    tiny = ['--input-size', '48', '64', '--batch-size', '2', '--threads', '1']
    stage = ['--init', 'A-base']
    monkeypatch.setattr(ablation, 'LADDER', {  # the repeat's rate makes a gap to measure
        'A-base': ['--scale', '1.0', '1.0'], 'B-untrained': [],
        'A-seed-1': ['--scale', '1.0', '1.0', '--seed', '1', '--lr', '5e-2'],
        'J-softer-weights': stage, 'J-seed-1': stage + ['--seed', '1', '--lr', '5e-2']})
    published = {}
    monkeypatch.setattr(report, 'publish', lambda name, text, readme: published.update(
        {name: text}))
    runs = tmp_path / 'runs'

    common = ['--root', str(tiny_camvid), '--runs', str(runs)]
    ablation.main(['run', *common, '--epochs', '2', '--configs', 'A-base', 'A-seed-1',
                   '--extra', *tiny])
    unfinished = runs / 'ablation' / f'A-seed-1-{ablation.FOLDS[1]}'
    ckpt = tc.load(unfinished)
    ckpt['args']['epochs'] = 5  # as if stopped at epoch 2 of 5, to be resumed
    tc.save(unfinished, ckpt)
    moved = runs / 'ablation' / f'A-base-{ablation.FOLDS[0]}'
    ckpt = tc.load(moved)
    here = ckpt['data']['device']
    ckpt['data']['device'] = f'Another GPU; {here}'  # as if resumed here after a GPU
    tc.save(moved, ckpt)
    ablation.main(['run', *common, '--epochs', '1', '--configs', 'J-softer-weights',
                   'J-seed-1', '--extra', *tiny])
    ablation.main(['table', *common])
    rows = {line.split(':')[0].strip('| '): line.split(' | ')
            for line in published['training_ablation'].splitlines()
            if line.startswith('| ') and ':' in line}
    assert set(rows) == {'A-base', 'A-seed-1', 'J-softer-weights', 'J-seed-1'}
    one = json.loads((runs / 'ablation' / f'A-seed-1-{ablation.FOLDS[0]}' /
                      'heldout_png_fp32.json').read_text())['mean_iou']
    assert rows.pop('A-seed-1')[1:7] == [
        f'{one:.1f}', '', '', '', '', f'2 ({ablation.FOLDS[0]}); 2 of 5, in progress '
        f'({ablation.FOLDS[1]})'], one
    figures, adapted = {}, {}

    def cached(name: str, which: str) -> list[float]:
        return [json.loads((runs / 'ablation' / f'{name}-{fold}' / which).read_text())[
            'mean_iou'] for fold in ablation.FOLDS]
    for name, row in rows.items():
        measured = cached(name, 'heldout_png_fp32.json')
        assert row[1:3] == [f'{m:.1f}' for m in measured], row
        assert row[3] == f'{sum(measured) / 2:.1f}', row
        adapted[name] = cached(name, 'heldout_png_fp32_adapt.json')
        assert row[5] == ' / '.join(f'{m:.1f}' for m in adapted[name] + [
            sum(adapted[name]) / 2]), row
        assert row[6] == ('2' if name == 'A-base' else '2 + 1'), row
        assert row[8] == (f'Another GPU; {here} |' if name == 'A-base' else f'{here} |'), row
        figures[name] = measured
    # the adapted figures are the runs measured with the node's adapt_statistics
    run_dir = runs / 'ablation' / f'J-softer-weights-{ablation.FOLDS[1]}'
    weights = tc.write_weights(tc.load(run_dir), tmp_path / 'j.pt', {})
    frames = datasets.build('camvid', tiny_camvid, ['train', 'val'])
    frames = datasets.select(frames, datasets.split_by_sequence(frames, ablation.FOLDS[1])[1])
    seg = Segmenter(weights, 'cpu', 'fp32', 'eager', adapt=True)
    assert evaluate.frames_metrics(seg, frames, False)['mean_iou'] == pytest.approx(
        adapted['J-softer-weights'][1])
    j, a = figures['J-softer-weights'], adapted['J-softer-weights']
    assert (f'With `adapt_statistics`, J-softer-weights scores {a[0]:.1f} '
            f'({ablation.FOLDS[0]}), {a[1]:.1f} ({ablation.FOLDS[1]}), mean '
            f'{sum(a) / 2:.1f}, against {j[0]:.1f} ({ablation.FOLDS[0]}), {j[1]:.1f} '
            f'({ablation.FOLDS[1]}) as trained') in published['training_ablation']
    gaps = [abs(a - b) for a, b in zip(figures['J-seed-1'], figures['J-softer-weights'])]
    assert min(gaps) >= 0.05, figures
    assert (f'J-seed-1 repeats J-softer-weights with another seed: their held-out class IoU '
            f'differ by {gaps[0]:.1f} ({ablation.FOLDS[0]}) and {gaps[1]:.1f} '
            f'({ablation.FOLDS[1]}) points') in published['training_ablation']
    gap = abs(one - figures['A-base'][0])
    assert (f'A-seed-1 repeats A-base with another seed: their held-out class IoU differ by '
            f'{gap:.1f} ({ablation.FOLDS[0]}) points;') in published['training_ablation']
    noise = max(gaps + [gap])
    means = {name: sum(f) / 2 for name, f in figures.items()}
    better = [f'{name} (+{means[name] - means["J-softer-weights"]:.1f})' for name in means
              if name != 'J-seed-1' and means[name] - means['J-softer-weights'] > noise]
    assert (f'`training/train_camvid.sh` ships J-softer-weights; another row replaces it only '
            f'when its mean class IoU is higher by more than the largest gap a seed repeat '
            f'measures ({noise:.1f} points)') in published['training_ablation']
    assert (f'Rows that do: {", ".join(better)}.' if better else 'No row does.'
            ) in published['training_ablation'], (means, noise)
    # a cached figure stands for its checkpoint and the code that measured it, no other
    cache = run_dir / 'heldout_png_fp32_adapt.json'
    record = json.loads(cache.read_text())
    cache.write_text(json.dumps({**record, 'mean_iou': -1.0}))
    assert evaluate.heldout_metrics(run_dir, tiny_camvid, adapt=True)['mean_iou'] == -1.0
    cache.write_text(json.dumps({**record, 'mean_iou': -1.0, 'code': 'another version'}))
    assert evaluate.heldout_metrics(run_dir, tiny_camvid, adapt=True)['mean_iou'] == (
        pytest.approx(record['mean_iou']))


def test_train_camvid_script_trains_the_shipped_rung_on_its_first_stage():
    """training/train_camvid.sh's two stages are a rung of the ladder and the rung it
    starts from, so the table's verdict and the script speak of the same recipe."""
    from training import ablation
    script = ablation.SCRIPT.read_text()
    first = re.search(r'^first=(\S+)', script, re.M).group(1)
    assert ablation.shipped() in ablation.LADDER
    assert ablation.parent(ablation.shipped()) == first
    assert '--configs "$first" --final "$first"' in script
    assert '--configs "$recipe" --final "$recipe"' in script

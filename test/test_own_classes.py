"""Your own classes and frames: a labelling tool's export (Pascal VOC layout, as CVAT's
"Segmentation mask 1.1" writes it) checked, fine-tuned from the shipped weights, exported
and served by the node; models of 3 and 20 classes through every runtime output.

The exports are built here, in temporary folders, from CamVid frames merged into four
classes (``benchmarks.camvid_voc``); nothing is committed."""

from __future__ import annotations

import json
import shutil
import time

import cv2
import numpy as np
from PIL import Image
import pytest

from benchmarks.camvid_voc import camvid_stems, evenly, FOUR_CLASSES, write_voc
from conftest import make_weights, own_classes, run_python
from enet_ros.checkpoint import DEFAULT_WEIGHTS, load_checkpoint
from training import datasets

FOUR = list(FOUR_CLASSES)
COLOURS = [list(c) for c, _ in FOUR_CLASSES.values()]


@pytest.fixture(scope='module')
def export(tmp_path_factory, camvid_root):
    """Eight frames of drive 0016E5 and four of 0006R0, colour masks."""
    own = evenly(camvid_stems(camvid_root, '0016E5'), 8)
    held = camvid_stems(camvid_root, '0006R0')[:4]
    return write_voc(camvid_root, tmp_path_factory.mktemp('voc'), {'train': own + held})


def check(root, *args):
    return run_python('-m', 'training.check_dataset', '--dataset', 'voc', '--root', root,
                      *args, timeout=120)


def test_check_dataset_describes_a_good_export(export):
    res = check(export)
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
    assert 'split train: 12 frames' in out
    for i, name in enumerate(FOUR):
        assert f'{i:3d} {name}' in out, out
    assert 'image sizes (WxH): 480x360 (12)' in out
    assert 'groups (--holdout): 0006R0 (4), 0016E5 (8)' in out
    assert '0 problems' in out and 'ready to train' in out


def test_index_and_palette_masks_read_as_the_colour_masks(export, tmp_path):
    """Grey masks of labelmap indices, and palette PNGs whose colours are not the
    labelmap's (Pascal VOC's own), give the same ids; a labelmap entry named void and
    the VOC boundary are ignored, and the class ids close up around the void entry."""
    reference = datasets.voc(export, ['train'])
    shutil.copytree(export, tmp_path / 'grey')
    shutil.copytree(export, tmp_path / 'palette')
    lines = (export / 'labelmap.txt').read_text().splitlines()
    (tmp_path / 'grey' / 'labelmap.txt').write_text(  # void as entry 1: road is entry 2
        '\n'.join(lines[:2] + ['void:1,1,1::'] + lines[2:]) + '\n')
    vga = np.random.default_rng(0).integers(0, 256, (256, 3), np.uint8)  # not the labelmap's
    for path, target in zip(reference.label_paths, reference.targets):
        entries = np.where(target == 255, 255, np.where(target >= 1, target + 1, target))
        entries[:2, :2] = 1  # a corner labelled void
        cv2.imwrite(str(tmp_path / 'grey' / 'SegmentationClass' / path.name),
                    entries.astype(np.uint8))
        im = Image.fromarray(target, 'P')
        im.putpalette(vga.ravel().tolist())
        im.save(tmp_path / 'palette' / 'SegmentationClass' / path.name)
    grey = datasets.voc(tmp_path / 'grey', ['train'])
    assert grey.info.class_names == tuple(FOUR)
    for got, want in zip(grey.targets, reference.targets):
        want = want.copy()
        want[:2, :2] = 255
        np.testing.assert_array_equal(got, want)
    palette = datasets.voc(tmp_path / 'palette', ['train'])
    for got, want in zip(palette.targets, reference.targets):
        np.testing.assert_array_equal(got, want)
    # a palette PNG whose colours are the labelmap's, in another index order: by colour
    shutil.copytree(export, tmp_path / 'reordered')
    order = [2, 0, 3, 1]  # index k holds class order[k]
    table = np.zeros((256, 3), np.uint8)
    table[:4] = np.asarray(COLOURS, np.uint8)[order]
    table[255] = datasets.VOC_BOUNDARY
    for path, target in zip(reference.label_paths, reference.targets):
        index = np.full_like(target, 255)
        for k, cls in enumerate(order):
            index[target == cls] = k
        im = Image.fromarray(index, 'P')
        im.putpalette(table.ravel().tolist())
        im.save(tmp_path / 'reordered' / 'SegmentationClass' / path.name)
    reordered = datasets.voc(tmp_path / 'reordered', ['train'])
    for got, want in zip(reordered.targets, reference.targets):
        np.testing.assert_array_equal(got, want)
    assert (reference.targets[0] == 255).any()  # CamVid's void became the boundary colour


def test_a_broken_export_is_refused_naming_every_file(export, tmp_path):
    """A colour not in the labelmap, a mask of the wrong size and a missing mask:
    check_dataset names the three files and exits 1; training refuses with the same lines
    before any epoch."""
    broken = tmp_path / 'broken'
    shutil.copytree(export, broken)
    masks = sorted((broken / 'SegmentationClass').glob('*.png'))
    odd = cv2.imread(str(masks[0]))
    odd[10:20, 10:20] = (3, 2, 1)  # BGR of (1, 2, 3)
    cv2.imwrite(str(masks[0]), odd)
    cv2.imwrite(str(masks[1]), cv2.resize(cv2.imread(str(masks[1])), (240, 180),
                                          interpolation=cv2.INTER_NEAREST))
    masks[2].unlink()
    res = check(broken)
    assert res.returncode == 1, res.stdout
    problems = [line.strip() for line in res.stdout.splitlines() if line.startswith('  /')]
    assert len(problems) == 3, res.stdout
    assert str(masks[0]) in problems[0] and '(1, 2, 3) not in labelmap.txt' in problems[0]
    assert str(masks[1]) in problems[1] and 'mask is 240x180, its image 480x360' in problems[1]
    assert str(masks[2]) in problems[2] and 'missing mask' in problems[2]
    assert 'split train: 9 frames' in res.stdout
    train = run_python('-m', 'training.train', '--dataset', 'voc', '--root', broken,
                       '--epochs', '1', '--output-dir', tmp_path / 'run', timeout=300)
    assert train.returncode != 0
    assert all(p in train.stderr for p in problems), train.stderr
    assert 'epoch 1' not in train.stdout and not (tmp_path / 'run' / 'checkpoint.pth').exists()


def test_an_empty_split_a_missing_labelmap_and_shared_colours_are_named(export, tmp_path):
    shutil.copytree(export, tmp_path / 'voc')
    (tmp_path / 'voc' / 'ImageSets' / 'Segmentation' / 'val.txt').write_text('\n')
    res = check(tmp_path / 'voc', '--splits', 'train', 'val')
    assert res.returncode == 1
    assert f'{tmp_path / "voc" / "ImageSets" / "Segmentation" / "val.txt"}: empty' in res.stdout
    labelmap = tmp_path / 'voc' / 'labelmap.txt'
    labelmap.write_text(labelmap.read_text().replace('255,160,0', '244,35,232'))
    res = check(tmp_path / 'voc')
    assert res.returncode == 1 and 'classes sidewalk and obstacle share (244, 35, 232)' in \
        res.stdout, res.stdout
    labelmap.unlink()
    res = check(tmp_path / 'voc')
    assert res.returncode == 1 and 'labelmap.txt: missing' in res.stdout, res.stdout


def test_fine_tuning_keeps_every_layer_but_the_classifier(export):
    from training.train import CLASSIFIER, initial_weights
    frames = datasets.voc(export, ['train'])
    state, mean, std, line = initial_weights(str(DEFAULT_WEIGHTS), None, frames.info)
    shipped, meta = load_checkpoint(DEFAULT_WEIGHTS)
    expected = {k: v for k, v in shipped.state_dict().items() if k not in CLASSIFIER}
    assert state.keys() == expected.keys()
    assert all(torch_equal(state[k], expected[k]) for k in state)
    assert (mean, std) == (list(meta.mean), list(meta.std))
    assert 'every layer kept but the classifier (fullconv)' in line and '4 classes' in line
    same = datasets.DatasetInfo('camvid', meta.class_names, meta.palette, (360, 480))
    state, *_, line = initial_weights(str(DEFAULT_WEIGHTS), None, same)
    assert set(CLASSIFIER) <= state.keys() and 'every layer kept' in line
    with pytest.raises(SystemExit, match='was trained on 0006R0'):  # its figure: memory
        initial_weights(str(DEFAULT_WEIGHTS), '0006R0', frames.info)


def torch_equal(a, b) -> bool:
    import torch
    return torch.equal(a, b)


def test_export_to_node_publishes_the_labelmap_classes(export, tmp_path, ros):
    """The acceptance path: train from the shipped weights, export, serve: masks within
    the four ids, class_info with the labelmap's names and colours, the colour mask in
    them, and a model card that says no held-out figure exists."""
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from std_msgs.msg import String
    from enet_ros.tools.client import NodeProcess, SegmentationClient
    run, weights = tmp_path / 'run', tmp_path / 'own.pt'
    res = run_python('-m', 'training.train', '--dataset', 'voc', '--root', export, '--splits',
                     'train', '--epochs', '1', '--limit', '8', '--batch-size', '4',
                     '--input-size', '120', '160', '--init', DEFAULT_WEIGHTS, '--output-dir',
                     run, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert 'every layer kept but the classifier' in res.stdout
    res = run_python('-m', 'training.export', '--checkpoint', run, '--output', weights,
                     '--root', export, '--limit', '2', '--no-onnx', timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    _, meta = load_checkpoint(weights)
    assert meta.class_names == tuple(FOUR) and [list(c) for c in meta.palette] == COLOURS
    assert meta.card.heldout == {} and meta.card.data['dataset'] == 'voc'
    with NodeProcess({'model_path': str(weights), 'backend': 'eager'},
                     ros_args=['-r', '__ns:=/own']) as proc:
        proc.wait_ready()
        assert 'run-time watch off: the model card records no held-out' in proc.log()
        got = []
        c = SegmentationClient(namespace='/own', name='own_client', outputs=('mask',
                                                                             'color_mask'))
        c.node.create_subscription(String, 'segmentation/class_info', got.append, QoSProfile(
            depth=1, reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.TRANSIENT_LOCAL))
        try:
            c.wait_for_node()
            frame = cv2.cvtColor(cv2.imread(str(sorted((export / 'JPEGImages').glob('*'))[0])),
                                 cv2.COLOR_BGR2RGB)
            c.publish(frame)
            assert c.wait('mask', 1, 30) and c.wait('color_mask', 1, 30), proc.log()
            deadline = time.monotonic() + 10
            while not (got and c.received['diagnostics'].count) and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            c.close()
    watch = [v.value for m in c.received['diagnostics'].messages for st in m.status
             for v in st.values if v.key == 'heldout_reference']
    assert 'none in the model card: watch off' in watch
    classes = json.loads(got[0].data)
    assert [(k['id'], k['name'], k['color']) for k in classes['classes']] == \
        [(i, n, col) for i, (n, col) in enumerate(zip(FOUR, COLOURS))]
    mask = c.received['mask'].messages[-1]
    ids = np.frombuffer(mask.data, np.uint8).reshape(mask.height, mask.width)
    assert set(np.unique(ids)) <= {0, 1, 2, 3, 255}
    colour = c.received['color_mask'].messages[-1]
    rgb = np.frombuffer(colour.data, np.uint8).reshape(colour.height, colour.width, 3)
    np.testing.assert_array_equal(rgb, np.asarray(COLOURS, np.uint8)[ids])


@pytest.mark.parametrize('classes', [3, 20])
def test_other_class_counts_through_node_and_tools(classes, tmp_path, camvid_root, ros):
    """Nothing in the runtime assumes CamVid's 11 classes: the node's class map, mask,
    colour mask and confidence, evaluate_bag's metrics and the demo's legend follow the
    weights file."""
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from std_msgs.msg import String
    from enet_ros.tools.client import NodeProcess, SegmentationClient
    weights = make_weights(tmp_path / f'own{classes}.pt', classes=classes)
    names, palette = own_classes(classes)
    with NodeProcess({'model_path': str(weights), 'backend': 'eager'},
                     ros_args=['-r', f'__ns:=/own{classes}']) as proc:
        proc.wait_ready()
        got = []
        c = SegmentationClient(namespace=f'/own{classes}', name=f'own{classes}_client',
                               outputs=('mask', 'color_mask', 'confidence'))
        c.node.create_subscription(String, 'segmentation/class_info', got.append, QoSProfile(
            depth=1, reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.TRANSIENT_LOCAL))
        try:
            c.wait_for_node()
            c.publish(np.random.default_rng(1).integers(0, 256, (64, 96, 3), np.uint8))
            for key in ('mask', 'color_mask', 'confidence'):
                assert c.wait(key, 1, 30), (key, proc.log())
            deadline = time.monotonic() + 10
            while not got and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            c.close()
    assert [k['name'] for k in json.loads(got[0].data)['classes']] == list(names)
    mask = c.received['mask'].messages[-1]
    ids = np.frombuffer(mask.data, np.uint8).reshape(64, 96)
    assert ids.max() < classes
    rgb = np.frombuffer(c.received['color_mask'].messages[-1].data, np.uint8).reshape(64, 96, 3)
    np.testing.assert_array_equal(rgb, np.asarray(palette, np.uint8)[ids])
    conf = np.frombuffer(c.received['confidence'].messages[-1].data, np.uint8)
    assert conf.min() >= 255 // classes  # a softmax maximum is at least 1/C

    bag, labels = tmp_path / 'bag', tmp_path / 'labels'
    labels.mkdir()
    images = sorted((camvid_root / 'val').glob('*.png'))[:2]
    for p in images:  # labels in the model's own ids, 255 where unlabelled
        lab = cv2.imread(str(camvid_root / 'valannot' / p.name), cv2.IMREAD_UNCHANGED)
        cv2.imwrite(str(labels / p.name), np.where(lab == 11, 255, lab % classes)
                    .astype(np.uint8))
    frames = tmp_path / 'frames'
    frames.mkdir()
    for p in images:
        shutil.copy(p, frames / p.name)
    res = run_python('-m', 'enet_ros.tools.make_bag', frames, bag, '--labels', labels,
                     timeout=120)
    assert res.returncode == 0, res.stderr
    out = tmp_path / 'metrics.json'
    res = run_python('-m', 'enet_ros.tools.evaluate_bag', bag, '--weights', weights,
                     '--label-topic', '/camera/labels', '--backend', 'eager', '--json', out,
                     '--no-progress', timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert list(json.loads(out.read_text())['per_class_iou']) == list(names)
    demo = tmp_path / 'demo'
    res = run_python('-m', 'enet_ros.tools.demo', '--weights', weights, '--backend', 'eager',
                     '--precision', 'fp32', '--input', frames, '--output', demo, '--loops', '1',
                     timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    legend = cv2.imread(str(demo / 'legend.png'))
    row = max(12, min(28, legend.shape[0] // classes))
    swatches = [tuple(int(v) for v in legend[k * row + row // 2, 8][::-1])
                for k in range(classes)]
    assert swatches == list(palette)

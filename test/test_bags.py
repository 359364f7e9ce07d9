"""Bag tools on bags written by make_bag from CamVid val frames, both storages."""

from __future__ import annotations

import json
import os
from pathlib import Path
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from typing import NamedTuple

import numpy as np
import pytest

from enet_ros.bag_io import BagReader, BagWriter

from conftest import REPO

N = 4


def run(module, *args, timeout=300):
    return subprocess.run([sys.executable, '-m', module, *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, 'PYTHONPATH': str(REPO)})


@pytest.fixture(scope='module', params=['sqlite3', 'mcap'])
def bag(request, tmp_path_factory, camvid_root):
    out = tmp_path_factory.mktemp(f'bag_{request.param}') / 'camvid'
    res = run('enet_ros.tools.make_bag', camvid_root / 'val', out, '--labels',
              camvid_root / 'valannot', '--limit', N, '--storage', request.param,
              '--rate', 5, '--start', 1000)
    assert res.returncode == 0, res.stderr
    return out


@pytest.fixture(scope='module')
def reference_metrics(weights, camvid_root, tmp_path_factory):
    out = tmp_path_factory.mktemp('ref') / 'ref.json'
    res = run('training.evaluate', '--dataset', 'camvid', '--root', camvid_root, '--splits',
              'val', '--weights', weights, '--limit', N, '--json', out)
    assert res.returncode == 0, res.stderr
    return json.loads(out.read_text())


KEYS = ('mean_iou', 'class_avg_accuracy', 'global_accuracy', 'per_class_iou',
        'per_class_accuracy')


def _same(a, b):
    for k in KEYS:
        assert json.dumps(a[k]) == json.dumps(b[k]), k


def test_bag_contents(bag):
    with BagReader(bag) as r:
        assert r.topics() == {'/camera/image': 'sensor_msgs/msg/Image',
                              '/camera/labels': 'sensor_msgs/msg/Image'}
        frames = list(r.messages('/camera/image'))
    assert len(frames) == N
    assert [f.stamp for f in frames] == [1000 * 10**9 + i * 2 * 10**8 for i in range(N)]
    assert frames[0].msg.encoding == 'rgb8' and frames[0].msg.width == 480


def test_metrics_equal_training_evaluate_with_label_topic(bag, weights, reference_metrics,
                                                          tmp_path):
    out = tmp_path / 'm.json'
    res = run('enet_ros.tools.evaluate_bag', bag, '--weights', weights, '--label-topic',
              '/camera/labels', '--ignore-id', 11, '--backend', 'eager', '--precision', 'fp32',
              '--json', out, '--no-progress')
    assert res.returncode == 0, res.stderr
    got = json.loads(out.read_text())
    _same(got, reference_metrics)
    assert got['frames_evaluated'] == N and got['complete']
    for stage in ('preprocess', 'inference', 'postprocess', 'total'):
        assert set(got['timing'][stage]) == {'mean_ms', 'median_ms', 'p95_ms', 'max_ms'}
    assert 'class average' in res.stdout


def test_metrics_with_label_folder_by_index(bag, weights, reference_metrics, camvid_root,
                                            tmp_path):
    labels = tmp_path / 'labels'
    labels.mkdir()
    for p in sorted((camvid_root / 'valannot').glob('*.png'))[:N]:
        shutil.copy(p, labels / p.name)
    out = tmp_path / 'm.json'
    res = run('enet_ros.tools.evaluate_bag', bag, '--topic', '/camera/image', '--weights',
              weights, '--labels', labels, '--ignore-id', 11, '--backend', 'eager',
              '--precision', 'fp32', '--json', out, '--no-progress')
    assert res.returncode == 0, res.stderr
    _same(json.loads(out.read_text()), reference_metrics)


def test_output_bag_and_report(bag, weights, tmp_path):
    out_bag, report = tmp_path / 'out', tmp_path / 'report'
    res = run('enet_ros.tools.evaluate_bag', bag, '--weights', weights, '--label-topic',
              '/camera/labels', '--ignore-id', 11, '--output-bag', out_bag, '--report',
              report, '--no-progress')
    assert res.returncode == 0, res.stderr
    with BagReader(out_bag) as r:
        topics = r.topics()
        assert set(topics) == {'/camera/image', '/camera/segmentation/mask',
                               '/camera/segmentation/mask/compressed',
                               '/camera/segmentation/color_mask',
                               '/camera/segmentation/overlay'}
        stamps = None
        for topic, enc in (('/camera/image', 'rgb8'), ('/camera/segmentation/mask', 'mono8'),
                           ('/camera/segmentation/color_mask', 'rgb8'),
                           ('/camera/segmentation/overlay', 'rgb8')):
            frames = list(r.messages(topic))
            assert len(frames) == N and {f.msg.encoding for f in frames} == {enc}
            assert {(f.msg.height, f.msg.width) for f in frames} == {(360, 480)}
            got = [f.stamp for f in frames]
            stamps = stamps or got
            assert got == stamps
    for name in ('report.json', 'report.md', 'latency.png', 'per_class_iou.png',
                 'frame_0.png'):
        assert (report / name).is_file(), name
    assert 'per_class_iou.png' in (report / 'report.md').read_text()


def test_recorded_mask_compressed_reads_back_as_labels(bag, weights, reference_metrics,
                                                      tmp_path):
    """A recording of segmentation/mask/compressed (image_transport's PNG) is read back as
    class ids: as the label topic it scores exactly as the mono8 labels do; the node's
    outputs in a recording are not taken for its camera topic."""
    from enet_ros.image_codec import message_to_mask
    path = tmp_path / 'recorded'
    with BagReader(bag) as r, BagWriter(path, 'mcap') as w:
        for f in r.messages('/camera/image'):
            w.write('/camera/image', f.msg, f.timestamp)
        for f in r.messages('/camera/labels'):
            ids = np.frombuffer(bytes(f.msg.data), np.uint8).reshape(f.msg.height, -1)
            w.write('/camera/segmentation/mask/compressed', w.mask_png(ids, f.stamp, 'cam'),
                    f.timestamp)
    out = tmp_path / 'm.json'
    res = run('enet_ros.tools.evaluate_bag', path, '--weights', weights, '--label-topic',
              '/camera/segmentation/mask/compressed', '--ignore-id', 11, '--backend', 'eager',
              '--precision', 'fp32', '--json', out, '--no-progress', '--output-bag',
              tmp_path / 'out')
    assert res.returncode == 0, res.stderr
    _same(json.loads(out.read_text()), reference_metrics)
    with BagReader(tmp_path / 'out') as r:
        masks = [message_to_mask(f.msg) for f in r.messages('/camera/segmentation/mask')]
        pngs = [message_to_mask(f.msg)
                for f in r.messages('/camera/segmentation/mask/compressed')]
    assert len(masks) == N and all(np.array_equal(a, b) for a, b in zip(masks, pngs))
    # replayed into the node, its live masks equal the recorded ones
    replay = tmp_path / 'replay.json'
    res = run('enet_ros.tools.replay_bag', tmp_path / 'out', '--topic', '/camera/image',
              '--start-node', '--weights', weights, '--backend', 'eager', '--precision',
              'fp32', '--lockstep', '--namespace', '/rec_replay', '--compare-topic',
              '/camera/segmentation/mask/compressed', '--json', replay)
    assert res.returncode == 0, res.stdout + res.stderr
    got = json.loads(replay.read_text())['recorded_masks']
    assert got['frames_compared'] == N and got['pixel_agreement'] > 0.99, got


def test_label_topic_missing_is_blamed_before_the_image_topic(bag, weights):
    res = run('enet_ros.tools.evaluate_bag', bag, '--weights', weights, '--label-topic',
              '/wrong', '--no-progress')
    assert res.returncode == 1 and 'Traceback' not in res.stderr, res.stderr
    assert 'label topic /wrong is not in the bag' in res.stderr
    assert '--topic' not in res.stderr


def test_make_bag_from_a_missing_folder_says_so(tmp_path):
    res = run('enet_ros.tools.make_bag', tmp_path / 'nonexistent', tmp_path / 'out')
    assert res.returncode == 1 and 'Traceback' not in res.stderr, res.stderr
    assert res.stderr.count('\n') == 1 and 'nonexistent is not a folder' in res.stderr


def test_missing_topic_lists_topics(bag, weights):
    res = run('enet_ros.tools.evaluate_bag', bag, '--weights', weights, '--topic', '/nope')
    assert res.returncode == 1
    assert '/camera/image (sensor_msgs/msg/Image)' in res.stderr
    assert 'Traceback' not in res.stderr
    res = run('enet_ros.tools.evaluate_bag', bag, '--weights', weights)
    assert res.returncode == 1 and 'several image topics' in res.stderr


def test_label_ids_outside_classes(bag, weights):
    res = run('enet_ros.tools.evaluate_bag', bag, '--weights', weights, '--label-topic',
              '/camera/labels')
    assert res.returncode == 1
    assert '/camera/labels message stamped 1000000000000 has label ids [11]' in res.stderr


def _cut_short(bag, tmp_path, fraction=0.6):
    """A copy of ``bag`` whose data file stops part-way, as a recording that died."""
    broken = tmp_path / 'broken'
    shutil.copytree(bag, broken)
    data = next(p for p in broken.iterdir() if p.suffix in ('.db3', '.mcap'))
    raw = data.read_bytes()
    data.write_bytes(raw[:int(len(raw) * fraction)])
    return broken


def test_truncated_bag_gives_partial_result(bag, weights, tmp_path):
    broken = _cut_short(bag, tmp_path)
    out = tmp_path / 'partial.json'
    res = run('enet_ros.tools.evaluate_bag', broken, '--topic', '/camera/image', '--weights',
              weights, '--json', out, '--no-progress')
    assert 'Traceback' not in res.stderr, res.stderr
    assert res.returncode == 3, res.stderr
    got = json.loads(out.read_text())
    assert not got['complete'] and 0 < got['frames_evaluated'] < N, got
    assert 'partial result' in res.stderr and 'cut short' in got['stopped_because']


def test_truncated_bag_replays_its_readable_part(bag, weights, tmp_path):
    broken = _cut_short(bag, tmp_path)
    out = tmp_path / 'replay.json'
    res = run('enet_ros.tools.replay_bag', broken, '--topic', '/camera/image', '--start-node',
              '--weights', weights, '--backend', 'eager', '--lockstep', '--namespace',
              f'/cut_{Path(bag).parent.name}', '--json', out)
    assert res.returncode == 3, res.stderr
    got = json.loads(out.read_text())
    assert 0 < got['frames_sent'] < N and got['frames_received'] == got['frames_sent']
    assert 'replayed the' in res.stderr and 'cut short' in res.stderr


def test_missing_label_topic_lists_the_bags_topics(bag, weights, tmp_path):
    res = run('enet_ros.tools.evaluate_bag', bag, '--topic', '/camera/image', '--weights',
              weights, '--label-topic', '/camera/nolabels', '--no-progress')
    assert res.returncode == 1 and 'Traceback' not in res.stderr, res.stderr
    assert 'label topic /camera/nolabels is not in the bag; its topics: ' in res.stderr
    assert '/camera/image (sensor_msgs/msg/Image)' in res.stderr


def test_unsupported_frames_are_skipped_and_counted(weights, tmp_path):
    path = tmp_path / 'mixed'
    with BagWriter(path, 'mcap') as w:
        for i in range(3):
            w.write('/cam/image', w.image(np.full((16, 24, 3), 60 * i, np.uint8), 'rgb8',
                                          i * 10**8 + 1, 'cam'), i * 10**8 + 1)
        bad = w.image(np.zeros((16, 48), np.uint8), '16UC1', 5 * 10**8, 'cam')
        w.write('/cam/image', bad, 5 * 10**8)
    out = tmp_path / 'mixed.json'
    res = run('enet_ros.tools.evaluate_bag', path, '--weights', weights, '--json', out,
              '--no-progress')
    assert res.returncode == 0, res.stderr
    got = json.loads(out.read_text())
    assert got['frames_evaluated'] == 3 and got['frames_skipped'] == 1
    assert "unsupported encoding '16UC1'" in next(iter(got['skipped_reasons']))


def test_live_replay_through_node(bag, weights, tmp_path):
    out = tmp_path / 'replay.json'
    res = run('enet_ros.tools.replay_bag', bag, '--topic', '/camera/image', '--start-node',
              '--weights', weights, '--backend', 'eager', '--lockstep', '--namespace',
              f'/replay_{Path(bag).parent.name}', '--json', out)
    assert res.returncode == 0, res.stdout + res.stderr
    got = json.loads(out.read_text())
    assert got['frames_sent'] == N and got['frames_received'] == N
    assert got['latency']['max_ms'] > 0


def test_adapt_follows_the_bag_header_stamps(bag, weights, tmp_path):
    """--adapt: each frame is segmented as the node's adapt_statistics would, from the
    frames' header stamps (the confusion matrix equals the inference core's fed the same
    frames and stamps), and unlike the trained statistics."""
    from enet_ros.image_codec import message_to_array
    from enet_ros.metrics import Evaluation
    from enet_ros.segmenter import Segmenter
    out = tmp_path / 'a.json'
    res = run('enet_ros.tools.evaluate_bag', bag, '--weights', weights, '--label-topic',
              '/camera/labels', '--ignore-id', 11, '--backend', 'eager', '--precision', 'fp32',
              '--adapt', '--json', out, '--no-progress')
    assert res.returncode == 0, res.stderr
    got = json.loads(out.read_text())
    assert 'adapt_statistics' in got['model']
    adapted, trained = (Evaluation(Segmenter(weights, 'cpu', 'fp32', 'eager', adapt=a))
                        for a in (True, False))
    with BagReader(bag) as r:
        labels = [np.frombuffer(bytes(f.msg.data), np.uint8).reshape(f.msg.height, f.msg.width)
                  for f in r.messages('/camera/labels')]  # mono8, 11 (void) counts nowhere
        for frame, gt in zip(r.messages('/camera/image'), labels):
            image, order = message_to_array(frame.msg)
            for ev, stamp in ((adapted, frame.stamp / 1e9), (trained, None)):
                ev.score(gt, ev.add(image, order, '/camera/image', stamp).labels)
    assert got['confusion_matrix'] == adapted.metrics()['confusion_matrix']
    assert got['confusion_matrix'] != trained.metrics()['confusion_matrix']


class LongBag(NamedTuple):
    path: Path
    frames: int


@pytest.fixture(scope='module')
def long_bag(tmp_path_factory, camvid_root):
    """The val frames four times over (404): long enough to stop an evaluation in the
    middle, seconds after it started, on a fast idle machine too."""
    folder = tmp_path_factory.mktemp('long_bag')
    frames = folder / 'frames'
    frames.mkdir()
    for n in range(4):
        for image in sorted((camvid_root / 'val').glob('*.png')):
            (frames / f'{n}_{image.name}').symlink_to(image)
    out = folder / 'camvid'
    res = run('enet_ros.tools.make_bag', frames, out)
    assert res.returncode == 0, res.stderr
    return LongBag(out, len(list(frames.iterdir())))


def _state(pid: int) -> str | None:
    """A process's state letter (R, S, T, Z ...), None once it is reaped."""
    try:
        return Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()[0]
    except OSError:
        return None


def _wait_for(check, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.05)
    pytest.fail(f'{what}: not within {timeout} s')


class Evaluation:
    """evaluate_bag started as a terminal starts a command (a process group of its own in
    the terminal's session), its stderr read as it comes, its evaluation's process found."""

    def __init__(self, bag: LongBag, weights, out, sigint=signal.default_int_handler):
        # Ctrl-C's disposition as the command starts, whatever pytest's own: a terminal's
        # foreground job takes it; a script's background job (``cmd &``) ignores it
        previous = signal.signal(signal.SIGINT, sigint)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, '-m', 'enet_ros.tools.evaluate_bag', str(bag.path), '--weights',
                 str(weights), '--backend', 'eager', '--json', str(out)], cwd=REPO,
                env={**os.environ, 'PYTHONPATH': str(REPO)}, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True, process_group=0)
        finally:
            signal.signal(signal.SIGINT, previous)
        self.stderr = []
        self._reader = threading.Thread(target=lambda: self.stderr.extend(
            iter(lambda: self.proc.stderr.read(1), '')), daemon=True)
        self._reader.start()
        self.work = _wait_for(self._child, 'the evaluation did not start')
        _wait_for(lambda: re.search(rf'\| *([3-9]|\d\d+)/{bag.frames}\b', self.text()),
                  f'no 3 frames evaluated: {self.text()}', timeout=120)

    def _child(self) -> int | None:
        for stat in Path('/proc').glob('[0-9]*/stat'):
            try:
                fields = stat.read_text().rsplit(')', 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.proc.pid:
                return int(stat.parent.name)
        return None

    def text(self) -> str:
        return ''.join(self.stderr)

    def finish(self, timeout: float = 60.0) -> str:
        self._reader.join(timeout)
        if _state(self.work) not in (None, 'Z'):  # outlived its command: a failure
            os.kill(self.work, signal.SIGKILL)
        return self.text()


def test_evaluate_bag_works_as_a_session_of_its_own_under_ctrl_z_and_ctrl_c(
        long_bag, weights, tmp_path):
    """The evaluation runs as a session of its own (a session's CPU share beside jobs from
    the same terminal); the terminal's Ctrl-Z stops it with the command, fg continues both,
    Ctrl-C ends it with a valid partial report."""
    out = tmp_path / 'interrupted.json'
    ev = Evaluation(long_bag, weights, out)
    assert os.getsid(ev.work) == ev.work != os.getsid(ev.proc.pid) == os.getsid(0)
    os.killpg(ev.proc.pid, signal.SIGTSTP)  # what the terminal sends its foreground group
    _wait_for(lambda: _state(ev.work) == 'T' and _state(ev.proc.pid) == 'T',
              'Ctrl-Z did not stop the evaluation and its command', timeout=10)
    os.killpg(ev.proc.pid, signal.SIGCONT)  # fg
    _wait_for(lambda: _state(ev.work) not in ('T', None), 'the evaluation did not continue',
              timeout=10)
    os.killpg(ev.proc.pid, signal.SIGINT)
    assert ev.proc.wait(60) == 3, ev.finish()
    err = ev.finish()
    assert 'Traceback' not in err, err
    got = json.loads(out.read_text())
    assert not got['complete'] and got['stopped_because'] == 'interrupted', got
    assert 3 <= got['frames_evaluated'] < long_bag.frames, got
    assert _state(ev.work) in (None, 'Z')


def test_evaluate_bag_stops_with_a_partial_report_once_its_command_is_killed(
        long_bag, weights, tmp_path):
    """Started ignoring Ctrl-C (a script's ``evaluate_bag ... &``), the command ignores it, and
    its evaluation still stops with a partial report once the command is killed."""
    out = tmp_path / 'orphaned.json'
    ev = Evaluation(long_bag, weights, out, sigint=signal.SIG_IGN)
    os.kill(ev.work, signal.SIGSTOP)  # the evaluation held while the command is watched
    os.killpg(ev.proc.pid, signal.SIGINT)
    time.sleep(1.0)
    assert ev.proc.poll() is None, ev.finish()
    ev.proc.kill()  # no signal to pass on: the evaluation sees its command gone
    ev.proc.wait()
    os.kill(ev.work, signal.SIGCONT)
    err = ev.finish()  # the evaluation's end closes the stderr it shares
    assert 'evaluate_bag: the command that started it has exited: stopping' in err, err
    assert 'Traceback' not in err, err
    got = json.loads(out.read_text())
    assert not got['complete'] and got['stopped_because'] == 'interrupted', got
    assert 3 <= got['frames_evaluated'] < long_bag.frames, got

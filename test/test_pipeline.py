"""The node's frame pipeline without ROS or DDS: newest frame per camera, round-robin over
cameras, at most one frame between the inference and the publishing thread, failures
reported and survived, nothing published after stop."""

from __future__ import annotations

import threading
import time

import pytest

from enet_ros.pipeline import Frame, Pipeline


def frame(name: str) -> Frame:
    return Frame(name, time.monotonic(), None, 'rgb', 0.0, name)


class Recorder:
    """infer/publish/failed callbacks; inference waits for ``gate`` while it is cleared."""

    def __init__(self):
        self.gate = threading.Event()
        self.gate.set()
        self.inferred, self.published, self.failures = [], [], []
        self.infer_started = threading.Event()

    def infer(self, cam, f):
        self.infer_started.set()
        self.gate.wait(5)
        if f.msg == 'bad':
            raise RuntimeError('boom')
        self.inferred.append((cam, f.msg))
        return f.msg.upper()

    def publish(self, cam, f, result):
        self.published.append((cam, result))

    def failed(self, cam, what, exc):
        self.failures.append((cam, what, str(exc)))


def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.005)
    assert predicate()


@pytest.fixture
def running():
    rec = Recorder()
    pipe = Pipeline(['front', 'rear'], rec.infer, rec.publish, rec.failed)
    pipe.start()
    yield pipe, rec
    rec.gate.set()
    pipe.close()


def test_only_the_newest_frame_of_a_camera_reaches_the_network(running):
    pipe, rec = running
    rec.gate.clear()
    with pipe.lock:
        assert not pipe.offer('front', frame('a'))
    wait_for(rec.infer_started.is_set)  # 'a' is in the network
    with pipe.lock:
        assert not pipe.offer('front', frame('b'))
        assert pipe.offer('front', frame('c'))  # replaced 'b': dropped
    rec.gate.set()
    wait_for(lambda: len(rec.published) == 2)
    assert rec.inferred == [('front', 'a'), ('front', 'c')]
    assert rec.published == [('front', 'A'), ('front', 'C')]


def test_cameras_are_served_round_robin(running):
    pipe, rec = running
    rec.gate.clear()
    with pipe.lock:
        pipe.offer('front', frame('f0'))
    wait_for(rec.infer_started.is_set)
    with pipe.lock:  # while f0 runs: both cameras wait, front has been served last
        pipe.offer('front', frame('f1'))
        pipe.offer('rear', frame('r1'))
    rec.gate.set()
    wait_for(lambda: len(rec.published) == 3)
    assert [m for _, m in rec.inferred] == ['f0', 'r1', 'f1']


def test_a_failed_frame_is_reported_and_the_next_one_served(running):
    pipe, rec = running
    with pipe.lock:
        pipe.offer('rear', frame('bad'))
    wait_for(lambda: rec.failures)
    assert rec.failures == [('rear', 'inference failed', 'boom')]
    with pipe.lock:
        pipe.offer('rear', frame('ok'))
    wait_for(lambda: rec.published == [('rear', 'OK')])


def test_a_failing_publisher_is_reported_and_publishing_goes_on():
    rec = Recorder()
    calls = []

    def publish(cam, f, result):
        calls.append(result)
        if result == 'X':
            raise OSError('publisher gone')
    pipe = Pipeline(['front'], rec.infer, publish, rec.failed)
    pipe.start()
    try:
        for name in ('x', 'y'):
            with pipe.lock:
                pipe.offer('front', frame(name))
            wait_for(lambda n=name: n.upper() in calls)
    finally:
        pipe.close()
    assert rec.failures == [('front', 'publishing failed', 'publisher gone')]


def test_stop_discards_waiting_frames_and_publishes_nothing_more(running):
    pipe, rec = running
    rec.gate.clear()
    with pipe.lock:
        pipe.offer('front', frame('a'))
    wait_for(rec.infer_started.is_set)
    with pipe.lock:
        pipe.offer('rear', frame('waiting'))
    stopper = threading.Thread(target=pipe.stop)
    stopper.start()
    time.sleep(0.1)
    rec.gate.set()  # 'a' leaves the network after stop: it is not published
    stopper.join(5)
    assert not pipe.running and rec.published == []
    assert ('rear', 'waiting') not in rec.inferred


def test_a_stopped_pipeline_serves_again_on_the_same_threads(running):
    """Lifecycle cycles reuse the two threads (new ones would pile up malloc arenas);
    close ends them."""
    pipe, rec = running

    def served(name):
        with pipe.lock:
            pipe.offer('front', frame(name))
        wait_for(lambda: ('front', name.upper()) in rec.published)

    def threads():
        return {t.ident for t in threading.enumerate() if t.name.startswith('enet_')}
    served('a')
    before = threads()
    assert len(before) == 2
    for name in ('b', 'c'):
        pipe.stop()
        with pipe.lock:
            pipe.offer('front', frame('stale'))  # offered while stopped: never served
        pipe.start()
        served(name)
        assert threads() == before
    assert ('front', 'STALE') not in rec.published
    pipe.close()
    assert not threads()


def test_a_pipeline_given_other_cameras_serves_them_on_its_threads(running):
    """A node configured again keeps its pipeline: ``use`` swaps the cameras while stopped."""
    pipe, rec = running
    with pipe.lock:
        pipe.offer('front', frame('a'))
    wait_for(lambda: ('front', 'A') in rec.published)
    before = {t.ident for t in threading.enumerate() if t.name.startswith('enet_')}
    pipe.stop()
    pipe.use(['left'])
    pipe.start()
    with pipe.lock:
        pipe.offer('left', frame('b'))
    wait_for(lambda: ('left', 'B') in rec.published)
    assert {t.ident for t in threading.enumerate() if t.name.startswith('enet_')} == before

"""The node's frame pipeline, without ROS: newest frame per camera, one inference thread,
one publishing thread.

A camera's callback converts and resizes its frame as it arrives and offers it: the
frame waits in that camera's one-slot mailbox, replacing (dropping) one that had not yet
reached the network. The inference thread takes the newest frames round-robin over the
cameras and hands each result to the publishing thread through a one-slot outbox, so the
network runs on the next frame while the previous one is published, and at most one
segmented frame waits between them (none is dropped there, none published late).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
import threading
import time
from typing import NamedTuple

import numpy as np


class Frame(NamedTuple):
    """One camera frame on its way through the node, prepared as it arrived."""

    msg: object  # the Image or CompressedImage message
    received: float  # monotonic receipt time
    image: np.ndarray  # its (H, W, 3) uint8 pixels (the overlay blends them)
    order: str  # their channel order, 'rgb' or 'bgr'
    convert: float  # seconds from message to array
    prepared: object  # what the inference core prepared (Segmenter.prepare)


class Pipeline:
    """Mailboxes, the inference thread and the publishing thread of a set of cameras.

    ``infer(camera, frame)`` runs the network (on the inference thread) and returns its
    result; ``publish(camera, frame, result)`` sends it (on the publishing thread);
    ``failed(camera, what, exc)`` hears of an exception in either, after which the
    pipeline goes on with the next frame. ``on_infer_thread()`` runs once on the inference
    thread before its first frame (thread settings are per thread). ``lock`` also guards
    whatever the caller counts per camera.
    """

    def __init__(self, cameras: list[Hashable], infer: Callable, publish: Callable,
                 failed: Callable, on_infer_thread: Callable[[], None] = lambda: None):
        self.cameras = list(cameras)
        self.infer, self.publish, self.failed = infer, publish, failed
        self.on_infer_thread = on_infer_thread
        self.lock = threading.Lock()
        self._arrived = threading.Condition(self.lock)  # a frame reached a mailbox
        self._handed = threading.Condition(self.lock)  # the outbox was filled or emptied
        self._pending: dict = {cam: None for cam in self.cameras}
        self._outbox = None  # (camera, Frame, result): one frame on its way out
        self._next = 0  # the camera the next round-robin pass starts at
        self.running = False
        self._closed = False
        self._busy = 0  # threads inside infer or publish
        self._threads: list[threading.Thread] = []

    def offer(self, camera: Hashable, frame: Frame) -> bool:
        """Park ``frame`` as ``camera``'s newest; True when it replaced one that had not
        reached the network (a dropped frame). Call with ``lock`` held."""
        replaced = self._pending[camera] is not None
        self._pending[camera] = frame
        self._arrived.notify()
        return replaced

    def use(self, cameras: list[Hashable]) -> None:
        """Serve ``cameras`` from the next ``start`` on (call while stopped): a node that is
        configured again keeps its pipeline and its threads."""
        with self.lock:
            self.cameras = list(cameras)
            self._pending = dict.fromkeys(self.cameras)
            self._next = 0

    def start(self) -> None:
        """Serve, from frames offered after this call on; the threads start on the first
        call and are reused after a ``stop``."""
        with self.lock:
            self.running = True
            self._pending = dict.fromkeys(self._pending)
            self._arrived.notify_all()
            self._handed.notify_all()
        if not self._threads:
            self._threads = [
                threading.Thread(target=self._work, name='enet_inference', daemon=True),
                threading.Thread(target=self._send, name='enet_publish', daemon=True)]
            for thread in self._threads:
                thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Pause: frames waiting in the mailboxes or the outbox are discarded, and once the
        frame in the network or being published (if any) is done, nothing more is
        published (a stopped node publishes nothing more). The threads wait for the next
        ``start``: new threads each time would each get malloc arenas and an OpenMP team
        of their own, memory that a lifecycle manager cycling the node would pile up."""
        deadline = time.monotonic() + timeout
        with self.lock:
            self.running = False
            self._pending = dict.fromkeys(self._pending)
            self._outbox = None
            self._arrived.notify_all()
            self._handed.notify_all()
            while self._busy and time.monotonic() < deadline:
                self._handed.wait(max(0.0, deadline - time.monotonic()))

    def close(self, timeout: float = 5.0) -> None:
        """Stop and end both threads (the pipeline is not started again)."""
        self.stop(timeout)
        with self.lock:
            self._closed = True
            self._arrived.notify_all()
            self._handed.notify_all()
        for thread in self._threads:
            thread.join(timeout=timeout)
        self._threads = []

    def _take(self):
        """The next frame, round-robin, marked busy; None once closed."""
        with self.lock:
            while not self._closed:
                n = len(self.cameras)
                for k in range(n if self.running else 0):  # after the last camera served
                    cam = self.cameras[(self._next + k) % n]
                    frame = self._pending[cam]
                    if frame is not None:
                        self._pending[cam] = None
                        self._next = (self._next + k + 1) % n
                        self._busy += 1
                        return cam, frame
                self._arrived.wait(0.5)
        return None

    def _done(self) -> None:
        """A thread is back from its callback (``lock`` held)."""
        self._busy -= 1
        self._handed.notify_all()

    def _work(self) -> None:
        self.on_infer_thread()
        while True:
            item = self._take()
            if item is None:
                return
            cam, frame = item
            try:
                result = (cam, frame, self.infer(cam, frame))
            except Exception as exc:  # inference failure: report, keep serving
                self.failed(cam, 'inference failed', exc)
                result = None
            with self.lock:
                while self._outbox is not None and self.running:
                    self._handed.wait()
                if self.running and result is not None:
                    self._outbox = result  # after a stop, the frame is discarded
                self._done()

    def _send(self) -> None:
        while True:
            with self.lock:
                while self._outbox is None and not self._closed:
                    self._handed.wait(0.5)
                if self._closed:
                    return
                out = self._outbox
                self._busy += 1
            try:
                self.publish(*out)
            except Exception as exc:  # a publisher failed: report, keep serving
                self.failed(out[0], 'publishing failed', exc)
            with self.lock:
                if self._outbox is out:  # not a newer one, should a stop have timed out
                    self._outbox = None
                self._done()

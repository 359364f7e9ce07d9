"""The node's frame pipeline, without ROS: newest frame per camera, one inference thread,
one publishing thread.

A camera's callback converts and resizes its frame as it arrives and ``offer``s it: the
frame waits in that camera's one-slot mailbox, replacing (dropping) one that had not yet
reached the network. The inference thread takes the newest frames round-robin over the
cameras and hands each result to the publishing thread through a one-slot outbox, so the
network runs on the next frame while the previous one is published, and at most one
segmented frame waits between them (none is dropped there, none published late).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
import threading
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
        self._threads: list[threading.Thread] = []

    def offer(self, camera: Hashable, frame: Frame) -> bool:
        """Park ``frame`` as ``camera``'s newest; True when it replaced one that had not
        reached the network (a dropped frame). Call with ``lock`` held."""
        replaced = self._pending[camera] is not None
        self._pending[camera] = frame
        self._arrived.notify()
        return replaced

    def start(self) -> None:
        self.running = True
        self._threads = [threading.Thread(target=self._work, name='enet_inference', daemon=True),
                         threading.Thread(target=self._send, name='enet_publish', daemon=True)]
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop both threads; frames waiting in the mailboxes or the outbox are discarded
        (a stopped node publishes nothing more)."""
        with self.lock:
            self.running = False
            self._pending = dict.fromkeys(self._pending)
            self._outbox = None
            self._arrived.notify_all()
            self._handed.notify_all()
        for thread in self._threads:
            thread.join(timeout=timeout)
        self._threads = []

    def _take(self):
        with self.lock:
            while self.running:
                n = len(self.cameras)
                for k in range(n):  # round-robin, starting after the last camera served
                    cam = self.cameras[(self._next + k) % n]
                    frame = self._pending[cam]
                    if frame is not None:
                        self._pending[cam] = None
                        self._next = (self._next + k + 1) % n
                        return cam, frame
                self._arrived.wait(0.5)
        return None

    def _work(self) -> None:
        self.on_infer_thread()
        while True:
            item = self._take()
            if item is None:
                return
            cam, frame = item
            try:
                result = self.infer(cam, frame)
            except Exception as exc:  # inference failure: report, keep serving
                self.failed(cam, 'inference failed', exc)
                continue
            with self.lock:
                while self._outbox is not None and self.running:
                    self._handed.wait()
                if not self.running:
                    return
                self._outbox = (cam, frame, result)
                self._handed.notify_all()

    def _send(self) -> None:
        while True:
            with self.lock:
                while self._outbox is None and self.running:
                    self._handed.wait(0.5)
                if not self.running:
                    return
                out = self._outbox
            try:
                self.publish(*out)
            except Exception as exc:  # a publisher failed: report, keep serving
                self.failed(out[0], 'publishing failed', exc)
            with self.lock:
                self._outbox = None
                self._handed.notify_all()

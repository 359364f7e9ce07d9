"""One camera's counters and one-second window, and the health judgement made from them.

ROS-free: the node records what happens to each frame here (under its own lock), takes
the window once a second and turns ``assess``'s level, message and values into a
``diagnostic_msgs/DiagnosticStatus``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from enet_ros.watch import Watch

# diagnostic_msgs/DiagnosticStatus levels
OK, WARN, ERROR, STALE = 0, 1, 2, 3

# Per-frame stages timed in diagnostics: message to array; the core's resize, frame graph
# (normalise, network, argmax) and ids back to the image size; colour mask, overlay,
# serialisation and publishing.
STAGES = ('convert', 'preprocess', 'inference', 'postprocess', 'publish')
# Also per window: receipt to publish on the steady clock (the node's own latency), and the
# message age at publish on the node's ROS clock (NaN where meaningless).
WINDOWS = ('processing', 'message_age')
TOTALS = ('frames_received', 'frames_processed', 'frames_dropped',
          'frames_dropped_before_node', 'frames_rejected', 'inference_failures',
          'stamps_back')  # header stamps earlier than the last: a bag replayed again


@dataclass
class Window:
    """What one camera saw in one diagnostics period, and its totals since start."""

    times: dict[str, list[float]]  # seconds per frame, per stage and window
    received: int
    processed: int
    rejected: int
    failed: int
    totals: dict[str, int | None]
    last_frame: float | None
    last_error: str
    waiting_since: float | None
    seen: tuple  # Watch.take(): mean confidence and class counts


class CameraStats:
    """Counters and the current window of one camera."""

    def __init__(self, num_classes: int, sequence_numbers: bool = True):
        # without publication sequence numbers (rclpy before Jazzy passes no message info)
        # frames lost before the node cannot be counted: the total stays None
        self.totals: dict[str, int | None] = dict.fromkeys(TOTALS, 0)
        if not sequence_numbers:
            self.totals['frames_dropped_before_node'] = None
        self.times: dict[str, list[float]] = {k: [] for k in STAGES + WINDOWS}
        self.received = self.processed = self.rejected = self.failed = 0
        self.last_frame: float | None = None  # monotonic time of the last receipt
        self.waiting_since: float | None = None  # oldest frame not yet answered by a mask
        self.last_seq: int | None = None  # publication sequence number of the last frame
        self.last_stamp = 0  # header stamp (ns) of the last frame
        self.last_error = ''
        self.watch = Watch(num_classes)

    def stamp_seen(self, stamp: int) -> None:
        """A frame's header stamp (ns): one earlier than the last counts as a jump back (a
        bag replayed again, a camera's clock reset; the adaptation starts again there)."""
        if stamp and stamp < self.last_stamp:
            self.totals['stamps_back'] += 1
        self.last_stamp = stamp or self.last_stamp

    def frame_received(self, now: float, replaced: bool, seq: int | None,
                       single_publisher: bool) -> None:
        """A frame reached the callback; ``replaced``: it superseded one not yet taken.

        Frames superseded in the depth-1 DDS queue (or lost in transport) never reach the
        callback; the publisher's sequence numbers reveal them. The message info does not
        say which publisher sent a frame, so with several publishers on the topic gaps mean
        nothing and are not counted. A lower number from a single publisher means it
        restarted.
        """
        t = self.totals
        if replaced:
            t['frames_dropped'] += 1
        if not single_publisher:
            self.last_seq = None
        elif seq is not None and self.last_seq is not None and seq > self.last_seq + 1:
            t['frames_dropped'] += seq - self.last_seq - 1
            t['frames_dropped_before_node'] += seq - self.last_seq - 1
        if seq is not None and single_publisher:
            self.last_seq = seq
        t['frames_received'] += 1
        self.received += 1
        self.last_frame = now
        if self.waiting_since is None:
            self.waiting_since = now

    def frame_processed(self, times: dict[str, float], labels: np.ndarray,
                        mean_confidence: float) -> None:
        """A mask went out; ``times`` has a value for every stage and window."""
        self.totals['frames_processed'] += 1
        self.processed += 1
        self.waiting_since = None
        self.watch.add(labels, mean_confidence)
        for key, value in times.items():
            self.times[key].append(value)

    def frame_rejected(self, error: str) -> None:
        self.totals['frames_rejected'] += 1
        self.rejected += 1
        self.last_error = error

    def frame_failed(self, error: str) -> None:
        self.totals['inference_failures'] += 1
        self.failed += 1
        self.last_error = error

    def take(self) -> Window:
        """The window so far, and start a new one."""
        window = Window({k: v[:] for k, v in self.times.items()}, self.received,
                        self.processed, self.rejected, self.failed, dict(self.totals),
                        self.last_frame, self.last_error, self.waiting_since,
                        self.watch.take())
        for v in self.times.values():
            v.clear()
        self.received = self.processed = self.rejected = self.failed = 0
        return window


def assess(w: Window, now: float, budget: float, stale: float,
           doubt: str | None) -> tuple[int, str, list[tuple[str, str]]]:
    """Level, message and values of one camera's window. ``budget`` and ``stale`` are
    seconds; ``doubt`` is the run-time watch's warning, if any (``watch.judge``)."""
    values = [('input_fps', f'{w.received:.1f}'), ('output_fps', f'{w.processed:.1f}')]
    for key in STAGES + WINDOWS:
        v = np.asarray(w.times[key], dtype=np.float64) * 1000
        v = v[np.isfinite(v)]
        values += [(f'{key}_ms_mean', f'{v.mean():.1f}' if v.size else 'nan'),
                   (f'{key}_ms_max', f'{v.max():.1f}' if v.size else 'nan')]
    values += [(k, 'unknown: this rclpy passes no message info (Humble)' if v is None
                else str(v)) for k, v in w.totals.items()]
    values.append(('last_error', w.last_error))
    processing = w.times['processing']
    if w.failed:
        return ERROR, f'{w.failed} inference failures', values
    if w.last_frame is None or now - w.last_frame > stale:
        return STALE, ('no frame received yet' if w.last_frame is None else
                       f'no frame for {now - w.last_frame:.1f} s'), values
    if w.waiting_since is not None and now - w.waiting_since > max(budget, 1.0):
        # frames arrive but no mask leaves: all rejected, or stuck in decode or inference
        waited = now - w.waiting_since
        why = f'last error: {w.last_error}' if w.last_error else 'inference busy or stuck'
        return (ERROR if waited > stale else WARN,
                f'frames arriving but no mask published for {waited:.1f} s ({why})', values)
    if w.rejected:
        return WARN, f'{w.rejected} frames rejected', values
    if doubt:
        return WARN, doubt, values
    if processing and max(processing) > budget:
        return WARN, (f'latency {max(processing) * 1000:.0f} ms over budget '
                      f'{budget * 1000:.0f} ms'), values
    return OK, 'ok', values


def status(w: Window, now: float, budget: float, stale: float,
           watched: tuple[str | None, list[tuple[str, str]]],
           about: list[tuple[str, str]]) -> tuple[int, str, list[tuple[str, str]]]:
    """One camera's diagnostics status: level, message and key/values, from its window
    (``assess``), the run-time watch's verdict on it (``watch.judge``: a doubt or None, and
    its values) and ``about``, what the node says of itself (model, device, threads...)."""
    doubt, seen = watched
    level, message, values = assess(w, now, budget, stale, doubt)
    return level, message, about + values + seen


class ClockWatch:
    """Whether the node's ROS clock moves: system time, or simulated time (/clock) that
    advances or has stopped (its publisher died or paused: message ages mean nothing)."""

    def __init__(self):
        self.last = (-1, 0.0)  # ROS time (ns) and when (monotonic) it last moved

    def state(self, simulated: bool, ros_ns: int, now: float) -> str:
        if not simulated:
            return 'system time'
        if ros_ns != self.last[0]:
            self.last = (ros_ns, now)
            return 'simulated time (/clock), advancing'
        return (f'simulated time (/clock) stopped {now - self.last[1]:.0f} s ago: is /clock '
                f'still published?')


def summarize_ms(seconds) -> dict:
    """Mean, median, 95th percentile and max in milliseconds (None for no samples)."""
    v = np.asarray(list(seconds), dtype=np.float64) * 1000
    if v.size == 0:
        return {'mean_ms': None, 'median_ms': None, 'p95_ms': None, 'max_ms': None}
    return {'mean_ms': float(v.mean()), 'median_ms': float(np.median(v)),
            'p95_ms': float(np.percentile(v, 95)), 'max_ms': float(v.max())}

"""How many threads the network gets: the CPUs this process may use, then measurement.

On a vehicle the CPU is shared. With as many OpenMP threads as cores and one busy process
beside them, a thread is preempted mid-network and every barrier waits for it (one
measured collapse: 20 ms to 914 ms a frame). One thread does not wait on anyone. Which
is faster depends on the neighbours at that moment, so ``ThreadChooser`` measures: it
runs a window of frames with each thread count in turn now and then and keeps the
faster, abandoning a trial at once when a frame takes twice the other's median.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
import statistics
import sys
import time


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask, capped by a cgroup CPU quota."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
    try:
        quota, period = Path('/sys/fs/cgroup/cpu.max').read_text().split()[:2]
        if quota != 'max':
            n = min(n, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, n or 1)


SHARED_CORES = 0.5  # other processes keeping this many cores busy make the CPU shared


def others_load(seconds: float = 0.4) -> float | None:
    """Cores kept busy by other processes over the next ``seconds``: the whole machine's
    busy time (/proc/stat) less this process's own; None where /proc cannot be read."""
    def sample() -> tuple[float, float, float]:
        fields = [int(v) for v in Path('/proc/stat').read_text().split('\n', 1)[0].split()[1:]]
        busy = sum(fields[:8]) - fields[3] - fields[4]  # all but idle and iowait
        own = Path('/proc/self/stat').read_text().rsplit(')', 1)[1].split()
        return busy, int(own[11]) + int(own[12]), time.monotonic()
    try:
        busy0, own0, t0 = sample()
        time.sleep(seconds)
        busy1, own1, t1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    ticks = os.sysconf('SC_CLK_TCK')
    return max(0.0, ((busy1 - busy0) - (own1 - own0)) / ticks / (t1 - t0))


def starting_threads(fixed: int = 0) -> tuple[int, str, bool]:
    """The thread count to start with, why, and whether the CPU is shared.

    Measured once at start: where other processes keep at least ``SHARED_CORES`` busy, one
    thread (a team of all CPUs beside them loses its barriers to preemption: one tool ran
    70x slower so); else all usable CPUs. The node's ``ThreadChooser`` goes on measuring
    from there; a one-off tool keeps the choice. ``fixed`` (num_threads) is kept as is.
    """
    most = usable_cpus()
    if fixed:
        return fixed, 'fixed by num_threads', False
    load = others_load()
    if load is not None and most > 1 and load >= SHARED_CORES:
        return 1, (f'CPU shared: other processes keep {load:.1f} of {most} cores busy, so 1 '
                   f'thread (a team of {most} would wait on preempted threads)'), True
    return most, f'{most} usable CPUs', False


def use_threads_for_this_process(tool: str) -> int:
    """Set torch's threads for a one-off tool from ``starting_threads`` and, when the CPU
    is shared, say so in one line on stderr. Returns the count."""
    import torch
    threads, reason, shared = starting_threads()
    torch.set_num_threads(threads)
    if shared:
        print(f'{tool}: {reason}', file=sys.stderr, flush=True)
    return threads


class ThreadChooser:
    """Feed it each frame's network time; it answers the thread count for the next frame.

    ``fixed`` pins the count (a user who pinned cores knows best). Otherwise it starts at
    ``most`` and, every ``probe_s`` seconds, tries the other count (1 or ``most``) for a
    window of ``window`` frames, keeping whichever had the lower median; after a trial that
    lost, the next waits twice as long (up to 60 s).
    """

    def __init__(self, most: int, fixed: int = 0, window: int = 8, probe_s: float = 5.0,
                 clock=time.monotonic, start: int | None = None, reason: str | None = None):
        self.fixed, self.clock = fixed, clock
        self.options = (fixed,) if fixed else tuple(sorted({1, max(1, most)}))
        self.threads = start if start in self.options else self.options[-1]
        self.window, self.probe_s = window, probe_s
        self.wait_s = probe_s  # doubles (up to 60 s) after each trial that lost
        self.median: dict[int, float] = {}  # threads -> median of its last full window
        self.samples: list[float] = []
        self.trial_from: int | None = None  # the count a running trial will be compared to
        self.last_change: float | None = None  # set by the first frame: the first trial
        # waits probe_s of serving, not of loading and waiting for a camera
        self.reason = reason or ('fixed by num_threads' if fixed else f'{most} usable CPUs')

    def _switch(self, threads: int, reason: str) -> None:
        self.threads, self.reason = threads, reason
        self.samples.clear()
        self.last_change = self.clock()

    def record(self, seconds: float) -> int:
        if len(self.options) == 1:
            return self.threads
        if self.last_change is None:
            self.last_change = self.clock()
        if self.trial_from is not None:
            before = self.median.get(self.trial_from)
            if before is not None and seconds > 2 * before:  # the trial is losing badly
                self._end_trial(keep=self.trial_from, why=f'{seconds * 1e3:.0f} ms a frame')
                return self.threads
        self.samples.append(seconds)
        if len(self.samples) < self.window:
            return self.threads
        self.median[self.threads] = statistics.median(self.samples)
        self.samples.clear()
        if self.trial_from is not None:
            faster = min((self.threads, self.trial_from), key=self.median.__getitem__)
            self._end_trial(keep=faster, why='lower median')
        elif self.clock() - self.last_change > self.wait_s:
            other = [n for n in self.options if n != self.threads][0]
            self.trial_from = self.threads
            self._switch(other, f'trying {other}')
        return self.threads

    def _end_trial(self, keep: int, why: str) -> None:
        ms = ', '.join(f'{n}: {m * 1e3:.0f} ms' for n, m in sorted(self.median.items()))
        lost = keep == self.trial_from
        self.wait_s = min(60.0, max(self.probe_s, self.wait_s * 2)) if lost else self.probe_s
        self.trial_from = None
        self._switch(keep, f'measured ({ms}; {why})')

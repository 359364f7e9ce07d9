"""How the node's process stops on SIGINT and SIGTERM, whatever it is doing."""

from __future__ import annotations

import os
import signal
import sys
import threading

# Set while a signal has nothing to stop but the process: until ``main`` has built the
# node, and while a managed node's configure loads or compiles (``stop_on_signals``).
LOADING = threading.Event()
# Set by the first SIGINT or SIGTERM once the node serves; ``main``'s loop ends on it.
STOPPING = threading.Event()
# Set by a tool that starts a process as a session of its own (tools.session) to its
# process id: that process stops once the tool is gone, as no terminal hang-up or group
# signal reaches a process in another session.
PARENT_VARIABLE = 'ENET_ROS_STOP_WITH_PARENT'


def started_by_a_gone_tool() -> bool:
    """Whether a tool started this process as a session of its own (``PARENT_VARIABLE``)
    and has since exited."""
    parent = os.environ.get(PARENT_VARIABLE, '')
    return parent.isdigit() and os.getppid() != int(parent)


def keep_serving(log) -> bool:
    """False once a signal stopped the node (``STOPPING``) or the tool that started it
    has exited; the latter is said in ``log``."""
    if STOPPING.is_set():
        return False
    if started_by_a_gone_tool():
        log.warning('the tool that started this node has exited: stopping')
        return False
    return True


def leave_at_once() -> None:
    """Exit now, without unwinding: for a stop while the network loads or compiles."""
    import rclpy  # here: the tools import this module before they may import rclpy
    rclpy.try_shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def stop_on_signals() -> None:
    """SIGINT and SIGTERM stop the node, once.

    rclpy's own handlers only shut the context down: a signal during the first compile
    was then ignored until the compile ended, and the inference thread went on publishing
    into the dead context. While ``LOADING`` is set (loading, compiling) the process
    leaves at once: an exception raised inside the compiler can leave its fake-tensor mode
    set and abort the process as it unwinds, and compile workers may still run in threads
    that interpreter exit would wait for. Otherwise the handler only sets ``STOPPING``, and
    ``main``'s loop stops the inference thread before it shuts rclpy down. (It used to
    raise KeyboardInterrupt, which could land inside rclpy's take of a message and come
    out as a RuntimeError traceback.)
    """
    def handler(signum, frame):
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        if LOADING.is_set():
            leave_at_once()
        STOPPING.set()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)

"""A tool's work as a session of its own, with the command the terminal started in charge.

Where the kernel shares the CPU between sessions before threads (autogroup, on in most
distributions' kernels), a process started from a terminal shares that terminal's share
with every busy job started there: beside a 2-thread training job from the same terminal,
evaluate_bag's one network thread got one thread's share (2.63x its idle time,
``benchmarks.shared_tools``). As a session of its own the work gets a session's share, as
a node a tool starts does (``client.NodeProcess``) and a systemd service does.

No Ctrl-C, Ctrl-Z or hang-up of the terminal reaches another session, so the command the
terminal started stays in front: it passes each of those on to the work and returns the
work's exit status, and the work stops once that command is gone
(``shutdown.PARENT_VARIABLE``).
"""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import threading
import time

from enet_ros.dds import PACKAGE_ROOT
from enet_ros.shutdown import PARENT_VARIABLE, started_by_a_gone_tool


def child_env(env: dict | None = None) -> dict:
    """``env`` (default: this process's) for a child started as a session of its own:
    this package importable, and this process named as the one it stops without."""
    env = dict(os.environ if env is None else env)
    env['PYTHONPATH'] = os.pathsep.join(p for p in [str(PACKAGE_ROOT),
                                                    env.get('PYTHONPATH', '')] if p)
    env[PARENT_VARIABLE] = str(os.getpid())
    return env


def stop_once_the_command_is_gone(tool: str) -> None:
    """In work ``run_as_own_session`` started: once the command that started it is gone, say
    so and interrupt this process as Ctrl-C does (the tool's partial result). Nothing
    elsewhere.

    The command chooses which signals reach the work, so Ctrl-C interrupts the work even
    where the work inherited it ignored (a command started in the background by a script,
    whose Ctrl-C the command then ignores itself)."""
    if PARENT_VARIABLE not in os.environ:
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)

    def watch():
        while not started_by_a_gone_tool():
            time.sleep(0.5)
        print(f'{tool}: the command that started it has exited: stopping', file=sys.stderr,
              flush=True)
        os.kill(os.getpid(), signal.SIGINT)
    threading.Thread(target=watch, name='watch-command', daemon=True).start()


def run_as_own_session(module: str, argv: list[str] | None) -> int:
    """The exit status of ``python -m module argv`` run as a session of its own, passing
    this command's Ctrl-C, Ctrl-Z, hang-up and SIGTERM on (those it was not started
    ignoring); ``module.main(argv)`` here where this process leads its session already
    (``setsid``, a service)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if os.getsid(0) == os.getpid():
        return importlib.import_module(module).main(argv)
    work = subprocess.Popen([sys.executable, '-m', module, *argv], env=child_env(),
                            start_new_session=True)

    def pass_on(signum, frame):
        if signum == signal.SIGTSTP:  # stop the work, then this command, as Ctrl-Z would
            work.send_signal(signal.SIGSTOP)  # (a session of its own ignores SIGTSTP)
            signal.signal(signal.SIGTSTP, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTSTP)
            signal.signal(signal.SIGTSTP, pass_on)  # continued (fg, bg)
            work.send_signal(signal.SIGCONT)
        else:
            work.send_signal(signum)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGTSTP):
        if signal.getsignal(sig) != signal.SIG_IGN:  # ignored as it started (nohup, &): kept
            signal.signal(sig, pass_on)
    code = work.wait()
    return code if code >= 0 else 128 - code  # killed by a signal: as a shell reports it

"""Stopping the drivers (``train``, ``evaluate``, the sweeps) and the fairseq processes they start.

- :func:`start` starts a child in its own process group (so that it and everything it starts
  can be signalled at once) and, on Linux, asks the kernel to SIGKILL it if the driver dies
  (``PR_SET_PDEATHSIG``): a driver killed outright (SIGKILL, out of memory) takes its
  fairseq-train with it instead of leaving it training alone.
- :func:`stop_signals`: while active, SIGTERM, SIGHUP and SIGINT raise :class:`Interrupted`
  in the driver, which stops its child with :func:`stop`, records what it must, and exits with
  ``128 + signal`` (143 for SIGTERM, 129 for SIGHUP, 130 for SIGINT), as a shell does. A signal
  the driver was started with ignored stays ignored (``nohup`` ignores SIGHUP; a background job
  of a script ignores SIGINT).
- :func:`stop` sends SIGTERM to the child's process group and SIGKILL after
  :data:`GRACE_S` seconds (at once if a second stop signal arrives meanwhile).

Standard library only: the drivers do not import torch or fairseq.
"""

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from typing import Iterator, List

STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
GRACE_S = 10.0  # how long a child may take to end after SIGTERM before it is killed

_received: List[int] = []  # stop signals received while stop_signals() is active


class Interrupted(BaseException):
    """A stop signal reached the driver. Like KeyboardInterrupt it is no ``Exception``, so
    ``except Exception`` handlers let it through to the driver's ``main``."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_status(self) -> int:
        return 128 + self.signum

    def __str__(self) -> str:
        return f"stopped by {self.name}"


def signal_name(err: BaseException) -> str:
    """What stopped the driver, for its records: the signal's name, SIGINT for a
    KeyboardInterrupt raised outside :func:`stop_signals`, else the exception's type."""
    if isinstance(err, Interrupted):
        return err.name
    return "SIGINT" if isinstance(err, KeyboardInterrupt) else type(err).__name__


def _handler(signum, _frame):
    _received.append(signum)
    if len(_received) == 1:  # later ones only hurry stop() along
        raise Interrupted(signum)


@contextmanager
def stop_signals() -> Iterator[None]:
    """Turn SIGTERM, SIGHUP and SIGINT into :class:`Interrupted` for the duration; signals
    inherited as ignored are left ignored. Outside the main thread (where Python cannot set
    handlers) it changes nothing."""
    saved = {}
    _received.clear()
    main_thread = threading.current_thread() is threading.main_thread()
    for sig in STOP_SIGNALS if main_thread else ():
        current = signal.getsignal(sig)
        if current is not signal.SIG_IGN:
            saved[sig] = current
            signal.signal(sig, _handler)
    try:
        yield
    finally:
        for sig, previous in saved.items():
            signal.signal(sig, previous)
        _received.clear()


def _kill_with_parent(parent: int, libc):
    def preexec():  # runs in the child between fork and exec
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the driver died before prctl took effect
            os._exit(1)
    return preexec


def start(cmd: List[str], **popen_kwargs) -> subprocess.Popen:
    """``subprocess.Popen(cmd, ...)`` in a new process group led by the child, which dies
    with the driver on Linux (see the module docstring)."""
    preexec = None
    if sys.platform.startswith("linux"):
        try:
            preexec = _kill_with_parent(os.getpid(), ctypes.CDLL(None, use_errno=True))
        except OSError:
            preexec = None
    return subprocess.Popen(cmd, process_group=0, preexec_fn=preexec, **popen_kwargs)


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass  # the whole group has already ended


def stop(proc: subprocess.Popen, grace: float = None) -> int:
    """End ``proc`` (started by :func:`start`) and the rest of its process group: SIGTERM,
    then SIGKILL after ``grace`` seconds (default :data:`GRACE_S`) or at a second stop signal.
    Returns the child's exit status (negative: the signal that ended it)."""
    grace = GRACE_S if grace is None else grace
    seen = len(_received)
    if proc.poll() is None:
        _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while proc.poll() is None and time.monotonic() < deadline and len(_received) == seen:
            time.sleep(0.05)
    _signal_group(proc, signal.SIGKILL)  # the child, if still there, and anything it left behind
    return proc.wait()

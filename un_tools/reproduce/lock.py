"""One driver per run folder: an exclusive ``flock`` on ``RUN/driver.lock`` (:data:`LOCK_FILE`).

The training and the evaluation of a run folder take it for as long as they work in the
folder; a second driver that meets it writes nothing and fails with :class:`FolderLocked`,
whose message names the folder and the holder's pid (the file holds it). The kernel drops a
``flock`` when its holder dies, however it dies, so a lock left by a killed driver never
blocks (the file stays, with the dead pid, and is reused). The fairseq processes a driver
starts do not inherit the lock (``subprocess`` closes other descriptors), but they die with
their driver (:mod:`.signals`).

The lock is re-entrant within a process: the sweep holds a folder across its training and
evaluation, which take it again.
"""

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, List, Optional

from .run_files import LOCK_FILE

_held: Dict[Path, List[int]] = {}  # folder -> [descriptor, depth] of the locks this process holds


class FolderLocked(Exception):
    """Another process works in the run folder."""

    def __init__(self, folder: Path, pid: Optional[int]):
        self.folder, self.pid = folder, pid
        who = f"pid {pid}" if pid else "a process whose pid is not written yet"
        stop = f" or stop it (kill {pid})" if pid else ""
        super().__init__(f"{folder} is in use by another driver ({who}): wait for it to end{stop}")


def _read_pid(path: Path) -> Optional[int]:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def holder(folder: Path) -> Optional[int]:
    """The pid of the driver working in ``folder`` now, or None; changes nothing on disk."""
    path = Path(folder) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _read_pid(path) or -1
    finally:
        os.close(fd)  # also drops the shared lock if it was taken
    return None


@contextmanager
def run_lock(folder: Path) -> Iterator[None]:
    """Hold ``folder``'s lock for the block (the folder must exist); :class:`FolderLocked` if
    another process holds it, before anything is written."""
    folder = Path(folder).resolve()
    if folder in _held:
        _held[folder][1] += 1
        try:
            yield
        finally:
            _held[folder][1] -= 1
        return
    path = folder / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise FolderLocked(folder, _read_pid(path)) from None
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        _held[folder] = [fd, 1]
        yield
    finally:
        _held.pop(folder, None)
        os.close(fd)  # releases the lock; the file (and its stale pid) stays for the next driver

"""Atomic file output: a file that exists is complete.

The bottom of the distribution: standard library only, used by the plugin (checkpoints,
export folders) and by the tools, whose data and reproduction scripts must start without
torch or fairseq (importing anything under ``un_fairseq`` imports fairseq).
"""

import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_path(path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write to; when the block ends normally it
    replaces ``path``, and after an error or an interrupt it is removed, so nothing
    half-written is ever left under ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_dir(path) -> Iterator[Path]:
    """Yield a new empty temporary folder beside ``path`` to fill; when the block ends
    normally it replaces ``path`` (an old ``path`` is removed only then), and after an error
    or an interrupt it is removed, so ``path`` is either the old folder or the complete new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    old = path.with_name(f".{path.name}.{os.getpid()}.old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        if path.exists():
            os.replace(path, old)
        try:
            os.replace(tmp, path)
        except BaseException:
            if old.exists():  # put the old folder back
                os.replace(old, path)
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)

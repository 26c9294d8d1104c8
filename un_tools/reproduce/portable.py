"""Paths in committed records, made portable: a record names files relative to the repository
(``work/m30k/bin``, ``../shared/data/...``), to its run folder (``RUN/checkpoints``) or to its
data folder (``DATA``, where that lies outside the checkout), and the interpreter as ``python``, so that it says nothing about the machine that wrote it and reads
the same on any checkout."""

import os
import shlex
from pathlib import Path
from typing import Iterable, Optional

#: How a record names its run folder and its data folder.
RUN, DATA = "RUN", "DATA"


def _under(p: Path, folder: Optional[Path]) -> Optional[Path]:
    """``p`` relative to ``folder`` if it lies there, else None."""
    if folder is None:
        return None
    folder = Path(os.path.normpath(folder))
    return p.relative_to(folder) if p == folder or folder in p.parents else None


def portable_path(path: str, repos: Iterable[Path], run: Optional[Path] = None,
                  data: Optional[Path] = None) -> str:
    """``path`` relative to ``run`` (as ``RUN/...``), else to the first of ``repos`` that holds it,
    else to ``data`` (as ``DATA/...``), else to the first of ``repos`` whose parent folder holds
    it (``../shared/...`` for a sibling of the checkout); other paths unchanged."""
    if not os.path.isabs(path):
        return path
    p = Path(os.path.normpath(path))
    rel = _under(p, run)
    if rel is not None:
        return str(Path(RUN) / rel)
    repos = [Path(os.path.normpath(r)) for r in repos]
    for repo in repos:
        rel = _under(p, repo)
        if rel is not None:
            return str(rel)
    rel = _under(p, data)
    if rel is not None:
        return str(Path(DATA) / rel)
    for repo in repos:
        if repo.parent in p.parents:
            return os.path.relpath(p, repo)
    return path


def portable_command(command: Optional[str], repos: Iterable[Path], run: Optional[Path] = None,
                     data: Optional[Path] = None) -> Optional[str]:
    """A shell command line with every absolute path made portable (``portable_path``) and its
    interpreter (an absolute ``.../bin/python*``) named ``python``."""
    if command is None:
        return None
    repos = list(repos)
    words = shlex.split(command)
    out = []
    for i, word in enumerate(words):
        if i == 0 and os.path.isabs(word) and Path(word).name.startswith("python"):
            out.append("python")
        else:
            out.append(portable_path(word, repos, run, data))
    return shlex.join(out)

"""The files in a run folder (``scripts/train.sh --out``) that more than one tool reads: their
names, and how their JSON is read."""

import json
from pathlib import Path
from typing import Optional


def read_json(path: Path) -> Optional[dict]:
    """A run folder's JSON file (``train.json``, ``eval.json``, ...), or None when it is missing
    or unreadable (a run not started, or killed while its first write was under way)."""
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def eval_file(subset: str = "test", model: str = "") -> str:
    """``eval.json``: the test-set evaluation of the averaged checkpoints, the one the tables and
    run records read. Any other evaluation (another ``subset``, or a given checkpoint whose file
    stem is ``model``) is ``eval-SUBSET-MODEL.json`` (each part only when it applies), so it can
    never replace that one."""
    parts = ([] if subset == "test" else [subset]) + ([model] if model else [])
    return "-".join(["eval", *parts]) + ".json"


LOCK_FILE = "driver.lock"  # the pid of the driver working in the folder; see lock.py

"""Run records: one small JSON per finished run (trained and evaluated, or FAIL), meant to be
committed (``results/multi30k/VARIANT-seedS.json``), so that a sweep survives the end of a
session and the tables and Figure 1 can be rebuilt on a machine that has none of the run folders.

A record holds what a reader of the table needs to trust a number: the BLEU scores and
sacreBLEU signature, the seed, the updates and wall time the run cost, its training and
validation curves, the project commit it ran on and the exact fairseq-train command.
"""

import json
import os
import platform
import re
import time
from pathlib import Path
from typing import List, Optional

from un_atomic import atomic_path
from .config import REPO
from .logs import curves, final_updates
from .portable import portable_command, portable_path
from .run_files import eval_file, read_json

RECORD_VERSION = 1


def record_key(variant: str, seed) -> str:
    """``VARIANT-seedS``: the name of a run's record (without ``.json``) and of its entries in
    other result files (``results/multi30k-heldout.json``)."""
    return f"{variant}-seed{seed}"


def _record_name(key: str, seed) -> str:
    return f"{record_key(key, seed)}.json"


def record_path(records: Path, key: str, seed: int) -> Path:
    return Path(records) / _record_name(key, seed)


def recorded_seeds(records: Optional[Path], key: str) -> List[int]:
    """The seeds of ``key`` that have a record under ``records``, in increasing order."""
    if records is None or not Path(records).is_dir():
        return []
    name = re.compile(re.escape(_record_name(key, "@")).replace("@", r"(\d+)"))
    found = (name.fullmatch(p.name) for p in Path(records).glob(_record_name(key, "*")))
    return sorted(int(m.group(1)) for m in found if m)


def load_record(records: Optional[Path], key: str, seed: int) -> Optional[dict]:
    """The record of ``key`` / ``seed`` under ``records``, or None (no folder, no record)."""
    if records is None:
        return None
    path = record_path(records, key, seed)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}): fix or delete it") from err


def make_record(run: Path, key: str, label: str, flags, seed: int) -> Optional[dict]:
    """The record of the run folder ``run``, or None if it is not finished (trained and
    evaluated, or FAIL)."""
    train = read_json(run / "train.json") or {}
    ev = read_json(run / eval_file()) or {}
    status = train.get("status")
    if status not in ("done", "FAIL") or (status == "done" and ev.get("bleu") is None):
        return None
    log = (run / "train.log").read_text(errors="replace") if (run / "train.log").exists() else ""
    failed = status == "FAIL"
    return dict(
        version=RECORD_VERSION, variant=key, label=label, norm=train.get("norm"), flags=list(flags),
        seed=seed, status=status, reason=train.get("reason"),
        bleu=None if failed else ev.get("bleu"), bleu_line=None if failed else ev.get("bleu_line"),
        sacrebleu=None if failed else ev.get("sacrebleu"),
        sacrebleu_signature=None if failed else ev.get("sacrebleu_signature"),
        sacrebleu_reference=None if failed or not ev.get("sacrebleu_reference")
        else portable_path(ev["sacrebleu_reference"], [REPO], run, train.get("data")),
        checkpoints_averaged=None if failed else ev.get("checkpoints"),
        num_updates=final_updates(log) or train.get("num_updates"),
        train_wall_s=train.get("wall_s"), eval_wall_s=None if failed else ev.get("wall_s"),
        profile=train.get("profile"), dataset=train.get("dataset"), commit=train.get("commit"),
        command=portable_command(train.get("command"), [REPO], run, train.get("data")),
        machine=dict(cpus=os.cpu_count(), processor=platform.processor() or platform.machine(),
                     threads=os.environ.get("OMP_NUM_THREADS")),
        recorded=time.strftime("%Y-%m-%dT%H:%M:%S"),
        curves={name: [[u, v] for u, v in points] for name, points in curves(log).items()},
    )


def write_record(records: Path, record: dict) -> Path:
    path = record_path(records, record["variant"], record["seed"])
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")
    return path

"""Read fairseq's training log: loss and validation records, and whether the run diverged.

fairseq-train logs one record per ``--log-interval`` updates (``train_inner``), one per epoch
(``train``) and one per validation (``valid``). We read the ``json`` log format (what
``scripts/train.sh`` asks for) and the ``simple`` one (``key=value`` / ``| key value``).

A run *diverged* (is marked FAIL) when
- fairseq stopped on a non-finite gradient or loss (``FloatingPointError``, ``gradients are
  Nan/Inf``, ``Minimum loss scale reached``), or
- a logged training loss is not finite, or
- a logged training loss exceeds ``explode_ratio`` times the lowest one logged before it
  (a loss that doubles after having come down has exploded; normal training never does).
"""

import json
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Optional

_LINE = re.compile(r"\|\s*(?:INFO|WARNING)\s*\|\s*(train_inner|train|valid(?:_\w+)?)\s*\|\s*(.*)$")
_KV_EQ = re.compile(r"([A-Za-z_][\w]*)=([^,\s]+)")
_KV_PIPE = re.compile(r"\|\s*([A-Za-z_][\w]*)\s+([^|\s]+)\s*")

FATAL_PATTERNS = (
    ("FloatingPointError", "fairseq stopped: FloatingPointError (non-finite gradients or loss)"),
    ("gradients are Nan/Inf", "fairseq stopped: gradients are Nan/Inf"),
    ("Minimum loss scale reached", "fairseq stopped: minimum loss scale reached (fp16 overflow)"),
)


@dataclass
class Record:
    kind: str  # 'train_inner', 'train' or 'valid'
    stats: Dict[str, str] = field(default_factory=dict)

    def number(self, *keys: str) -> Optional[float]:
        for key in keys:
            if key in self.stats:
                try:
                    return float(self.stats[key])
                except ValueError:
                    return None
        return None

    @property
    def updates(self) -> Optional[int]:
        value = self.number("num_updates", "valid_num_updates", "train_num_updates")
        return None if value is None or not math.isfinite(value) else int(value)

    @property
    def loss(self) -> Optional[float]:
        return self.number("loss", "train_loss", "valid_loss", "train_inner_loss")

    @property
    def bleu(self) -> Optional[float]:
        return self.number("bleu", "valid_bleu")


def parse_line(line: str) -> Optional[Record]:
    """One fairseq log line as a record, or None if it is not a train/valid record."""
    m = _LINE.search(line.rstrip("\n"))
    if not m:
        return None
    kind, rest = m.group(1), m.group(2).strip()
    kind = "valid" if kind.startswith("valid") else kind
    stats: Dict[str, str] = {}
    if rest.startswith("{"):
        try:
            data = json.loads(rest)
        except json.JSONDecodeError:
            return None
        stats = {str(k): str(v) for k, v in data.items()}
    else:
        stats = dict(_KV_EQ.findall(rest)) or dict(_KV_PIPE.findall("| " + rest))
    if not stats:
        return None
    # fairseq's json records prefix keys with the subset ('valid_loss', 'train_loss'); drop it
    # for valid/train so that callers see 'loss', 'bleu', 'num_updates' in every format.
    if kind in ("valid", "train"):
        stats = {(k.split("_", 1)[1] if k.startswith(kind + "_") else k): v for k, v in stats.items()}
    return Record(kind, stats)


def parse_log(lines: Iterable[str]) -> List[Record]:
    return [r for r in (parse_line(line) for line in lines) if r is not None]


def fatal_error(text: str) -> Optional[str]:
    """The reason, if fairseq's output shows it stopped on non-finite values."""
    for pattern, reason in FATAL_PATTERNS:
        if pattern in text:
            return reason
    return None


class DivergenceMonitor:
    """Feed it training records one by one; ``reason`` is set once the loss diverges."""

    def __init__(self, explode_ratio: float = 2.0):
        if not explode_ratio > 1:
            raise ValueError(f"explode_ratio must be > 1, got {explode_ratio}")
        self.explode_ratio = explode_ratio
        self.best: Optional[float] = None
        self.reason: Optional[str] = None

    def add(self, record: Record) -> Optional[str]:
        if self.reason or record.kind != "train_inner":
            return self.reason
        loss = record.loss
        if loss is None:
            return None
        where = f"update {record.updates}" if record.updates is not None else "a logged update"
        if not math.isfinite(loss):
            self.reason = f"non-finite training loss ({loss}) at {where}"
        elif self.best is not None and loss > self.explode_ratio * self.best:
            self.reason = (f"training loss exploded to {loss:g} at {where} "
                           f"(lowest before: {self.best:g}, limit x{self.explode_ratio:g})")
        else:
            self.best = loss if self.best is None else min(self.best, loss)
        return self.reason


    def resume(self, text: str) -> None:
        """Continue from an earlier log ``text`` of the same run: its training curve (each
        update once, the later value of a resumed one) is the history the next losses are
        compared with, as if the run had not been interrupted."""
        for upd, loss in curves(text)["train_loss"]:
            self.add(Record("train_inner", {"loss": repr(loss), "num_updates": str(upd)}))


def divergence(text: str, explode_ratio: float = 2.0) -> Optional[str]:
    """Why the run whose fairseq output is ``text`` diverged, or None if it did not."""
    monitor = DivergenceMonitor(explode_ratio)
    for record in parse_log(text.splitlines()):
        if monitor.add(record):
            return monitor.reason
    return fatal_error(text)


def curves(text: str) -> Dict[str, List[tuple]]:
    """``{'train_loss': [(update, loss)], 'valid_loss': [...], 'valid_bleu': [...]}``.

    A resumed run logs some updates twice (from the last checkpoint on); the later value wins.
    """
    out: Dict[str, Dict[int, float]] = {"train_loss": {}, "valid_loss": {}, "valid_bleu": {}}
    for rec in parse_log(text.splitlines()):
        upd = rec.updates
        if upd is None:
            continue
        if rec.kind == "train_inner" and rec.loss is not None:
            out["train_loss"][upd] = rec.loss
        elif rec.kind == "valid":
            if rec.loss is not None:
                out["valid_loss"][upd] = rec.loss
            if rec.bleu is not None:
                out["valid_bleu"][upd] = rec.bleu
    return {k: sorted(v.items()) for k, v in out.items()}


def final_updates(text: str) -> Optional[int]:
    """The last update count any record of the log reports (the epoch-end ``train`` and the
    final ``valid`` records include the updates after the last ``train_inner`` record)."""
    counts = [r.updates for r in parse_log(text.splitlines()) if r.updates is not None]
    return max(counts) if counts else None


def follow(path: Path, start: int, running: Callable[[], bool], poll_s: float = 0.1) -> Iterator[str]:
    """The lines written to ``path`` from byte ``start`` on, as they are written (``tail -f``),
    until ``running()`` is false and everything written before has been read. A last line
    without its newline comes at the end."""
    with open(path, "rb") as f:
        f.seek(start)
        partial = b""
        while True:
            alive = running()  # asked before reading: nothing written before the end is missed
            chunk = f.read()
            if chunk:
                *lines, partial = (partial + chunk).split(b"\n")
                for line in lines:
                    yield line.decode(errors="replace") + "\n"
            elif not alive:
                if partial:
                    yield partial.decode(errors="replace")
                return
            else:
                time.sleep(poll_s)

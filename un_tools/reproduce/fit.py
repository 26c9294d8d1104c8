"""How well each row fits its training data, epoch by epoch, from the curves that run records
and run folders hold (issue 42's questions: does UN underfit, from when, and does the gap to LN
shrink with training?).

    python -m un_tools.reproduce.cli fit --records results/multi30k [--seeds 1] \\
        [--run NAME=RUN_FOLDER ...] [--epochs 1,2,3,4,5,10,15,20] \\
        [--metric train_loss|valid_loss|valid_bleu] [--against ROW] [--out FILE.md]

A cell is the row's mean over its seeds of one epoch's value of ``--metric``:

- ``train_loss`` (default): the mean of the epoch's logged training losses (fairseq's
  ``train_inner`` records: label-smoothed loss in bits, training mode, dropout on); an epoch's
  updates are those after the previous validation and up to its own (the ``valid_loss``
  curve's points). The last column is the label-smoothed validation loss after the last epoch
  shown.
- ``valid_loss``, ``valid_bleu``: the epoch-end validation of that epoch's checkpoint (not the
  averaged model the records' test BLEU comes from).

``--against ROW`` prints each row's cells minus ``ROW``'s (both means over seeds), e.g. UN's
gap to LN against training length. ``--seeds`` keeps those seeds' records only (runs of one
seed see the same batches in the same order, whatever their norm). ``--run`` adds a run folder
(its ``train.log``) as a row of its own, e.g. a probe trained for fewer epochs; its cells stop
where it stopped.
"""

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from .logs import curves
from .tables import emit

DEFAULT_EPOCHS = (1, 2, 3, 4, 5, 10, 15, 20)
METRICS = ("train_loss", "valid_loss", "valid_bleu")


def epoch_series(curve: Dict[str, List]) -> Dict[str, List[Optional[float]]]:
    """One run's curves (as records hold them) per epoch: ``{metric: [value of epoch 1, ..]}``
    for every metric of :data:`METRICS`. An epoch ends at a ``valid_loss`` point; its
    ``train_loss`` is the mean of the losses logged after the previous epoch's end and up to
    its own; ``valid_bleu`` is the value logged at its end (None where none was)."""
    bounds = [int(u) for u, _ in curve.get("valid_loss", [])]
    train = [(int(u), float(v)) for u, v in curve.get("train_loss", [])]
    bleu = {int(u): float(v) for u, v in curve.get("valid_bleu", [])}
    means, start = [], 0
    for end in bounds:
        values = [v for u, v in train if start < u <= end]
        means.append(sum(values) / len(values) if values else None)
        start = end
    return {"train_loss": means, "valid_loss": [float(v) for _, v in curve.get("valid_loss", [])],
            "valid_bleu": [bleu.get(u) for u in bounds]}


def _mean(values: Sequence[Optional[float]]) -> Optional[float]:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def rows_from_records(records: Path, seeds: Optional[Sequence[int]] = None) -> Dict[str, list]:
    """``{variant: [epoch_series(curves) per seed]}`` of every finished record in ``records``
    (of ``seeds`` only, when given)."""
    rows = defaultdict(list)
    for path in sorted(records.glob("*.json")):
        record = json.loads(path.read_text())
        if seeds is not None and record.get("seed") not in seeds:
            continue
        if record.get("status") == "done" and record.get("curves"):
            rows[record["variant"]].append(epoch_series(record["curves"]))
    return dict(rows)


def _cell(seeds: list, metric: str, epoch: int) -> Optional[float]:
    """The mean over ``seeds`` of ``metric`` at ``epoch`` (1-based); None where no seed has it."""
    return _mean([s[metric][epoch - 1] if len(s[metric]) >= epoch else None for s in seeds])


def table(rows: Dict[str, list], epochs: Sequence[int], metric: str = "train_loss",
          against: Optional[str] = None) -> str:
    """The markdown table: a row per entry of ``rows``, a column per epoch of ``epochs`` (and,
    for ``train_loss``, the validation loss after the last); cells minus ``against``'s."""
    last = epochs[-1]
    columns = [(metric, e) for e in epochs] + ([("valid_loss", last)] if metric == "train_loss" else [])
    head = [f"ep {e}" for e in epochs] + ([f"valid ep {last}"] if metric == "train_loss" else [])
    lines = ["| row | seeds | " + " | ".join(head) + " |", "|---|---|" + "---|" * len(columns)]
    digits = 2 if metric == "valid_bleu" else 3
    for name, seeds in rows.items():
        cells = []
        for m, e in columns:
            value = _cell(seeds, m, e)
            if against is not None and value is not None:
                base = _cell(rows[against], m, e)
                value = None if base is None else value - base
            cells.append("–" if value is None else f"{value:+.{digits}f}" if against else f"{value:.{digits}f}")
        lines.append(f"| {name} | {len(seeds)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m un_tools.reproduce.cli fit", description=__doc__.split("\n\n")[0])
    p.add_argument("--records", type=Path, help="folder of run records (ROW-seedS.json)")
    p.add_argument("--seeds", help="comma-separated seeds: the records of these seeds only (default: all)")
    p.add_argument("--run", action="append", default=[], metavar="NAME=RUN_FOLDER",
                   help="a run folder whose train.log is a row of its own (repeatable)")
    p.add_argument("--epochs", default=",".join(map(str, DEFAULT_EPOCHS)),
                   help=f"comma-separated epochs to show (default: {','.join(map(str, DEFAULT_EPOCHS))})")
    p.add_argument("--metric", choices=METRICS, default="train_loss",
                   help="what a cell shows (default: train_loss; the module's docstring says how each is taken)")
    p.add_argument("--against", metavar="ROW", help="show each row minus this row (a row of the table)")
    p.add_argument("--out", type=Path, help="write the table here (default: print it)")
    args = p.parse_args(argv)
    numbers = {}
    for flag, text in (("--epochs", args.epochs), ("--seeds", args.seeds)):
        try:
            numbers[flag] = None if text is None else [int(e) for e in text.split(",")]
            if numbers[flag] is not None and min(numbers[flag]) < 1:
                raise ValueError
        except ValueError:
            print(f"fit: error: {flag} {text!r}: give comma-separated whole numbers >= 1", file=sys.stderr)
            return 2
    epochs = numbers["--epochs"]
    if args.records is not None and not args.records.is_dir():
        print(f"fit: error: --records {args.records}: not a folder", file=sys.stderr)
        return 2
    rows = rows_from_records(args.records, numbers["--seeds"]) if args.records else {}
    for item in args.run:
        name, sep, folder = item.partition("=")
        log = Path(folder) / "train.log"
        if not sep or not name or not log.is_file():
            print(f"fit: error: --run {item!r}: give NAME=RUN_FOLDER, a folder with a train.log", file=sys.stderr)
            return 2
        rows[name] = [epoch_series(curves(log.read_text(errors="replace")))]
    if not rows:
        print("fit: error: no finished run: give --records with run records or --run", file=sys.stderr)
        return 2
    if args.against is not None and args.against not in rows:
        print(f"fit: error: --against {args.against!r}: not a row here; rows: {', '.join(rows)}", file=sys.stderr)
        return 2
    text = table(rows, epochs, args.metric, args.against)
    emit(text, args.out)
    return 0

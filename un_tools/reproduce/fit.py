"""How well each row fits its training data, epoch by epoch, from the training-loss curves that
run records and run folders hold (issue 42's question: does UN underfit, and from when?).

    python -m un_tools.reproduce.cli fit --records results/multi30k [--seeds 1] \\
        [--run NAME=RUN_FOLDER ...] [--epochs 1,2,3,4,5,10,15,20] [--out FILE.md]

A cell is the mean, over the logged training losses of that epoch (fairseq's ``train_inner``
records: label-smoothed loss in bits, training mode, dropout on), of each seed of the row, then
the mean over the row's seeds; an epoch's updates are those after the previous validation and
up to its own (the ``valid_loss`` curve's points). The last column is the label-smoothed
validation loss after the last epoch shown. ``--seeds`` keeps those seeds' records only
(runs of one seed see the same batches in the same order, whatever their norm). ``--run`` adds a run folder (its ``train.log``) as
a row of its own, e.g. a probe trained for fewer epochs; its cells stop where it stopped.
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


def epoch_losses(curve: Dict[str, List]) -> List[Optional[float]]:
    """Mean training loss of each epoch of one run (``curves`` as records hold them), and the
    epoch-end validation losses: ``(train, valid)``, one entry per epoch."""
    bounds = [int(u) for u, _ in curve.get("valid_loss", [])]
    train = [(int(u), float(v)) for u, v in curve.get("train_loss", [])]
    means, start = [], 0
    for end in bounds:
        values = [v for u, v in train if start < u <= end]
        means.append(sum(values) / len(values) if values else None)
        start = end
    return means, [float(v) for _, v in curve.get("valid_loss", [])]


def _mean(values: Sequence[Optional[float]]) -> Optional[float]:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def rows_from_records(records: Path, seeds: Optional[Sequence[int]] = None) -> Dict[str, list]:
    """``{variant: [(train per epoch, valid per epoch) per seed]}`` of every finished record in
    ``records`` (of ``seeds`` only, when given)."""
    rows = defaultdict(list)
    for path in sorted(records.glob("*.json")):
        record = json.loads(path.read_text())
        if seeds is not None and record.get("seed") not in seeds:
            continue
        if record.get("status") == "done" and record.get("curves"):
            rows[record["variant"]].append(epoch_losses(record["curves"]))
    return dict(rows)


def table(rows: Dict[str, list], epochs: Sequence[int]) -> str:
    last = epochs[-1]
    lines = ["| row | seeds | " + " | ".join(f"ep {e}" for e in epochs) + f" | valid ep {last} |",
             "|---|---|" + "---|" * (len(epochs) + 1)]
    for name, seeds in rows.items():
        cells = []
        for e in list(epochs) + [None]:
            if e is None:
                value = _mean([v[last - 1] if len(v) >= last else None for _, v in seeds])
            else:
                value = _mean([t[e - 1] if len(t) >= e else None for t, _ in seeds])
            cells.append("–" if value is None else f"{value:.3f}")
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
        rows[name] = [epoch_losses(curves(log.read_text(errors="replace")))]
    if not rows:
        print("fit: error: no finished run: give --records with run records or --run", file=sys.stderr)
        return 2
    text = table(rows, epochs)
    emit(text, args.out)
    return 0

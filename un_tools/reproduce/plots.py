"""Figure 1 of the paper: training loss and validation BLEU over updates, one line per normalizer;
and the same for Tables 9 and 10 with the validation loss in place of BLEU (a run that failed
is a curve that stops, not a missing row).

    python -m un_tools.reproduce.cli plots --records results/multi30k --seed 1 \
        --out results/multi30k-figure1.png [--norms layer,un,...] [--runs work/runs/...]
    python -m un_tools.reproduce.cli plots --table 9 --records results/stability --seed 1 \
        --out results/stability-table9.png

Reads each run's curves from its committed record (``--records``) or else from its
``train.log`` (fairseq's ``train_inner`` and ``valid`` records); a run marked FAIL is drawn up
to where it stopped and labelled so. Also writes the curves as CSV next to the
figure (``.csv``), so the numbers behind it can be checked.
"""

import argparse
import csv
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from .logs import curves
from .records import load_record
from .run_files import read_json
from .tables import Variant, parse_list, table1_variants, table9_variants, table10_variants

#: the right-hand panel of each table's figure: (curve, axis label, title)
RIGHT_PANEL = {
    "1": ("valid_bleu", "validation BLEU (greedy)", "validation BLEU"),
    "9": ("valid_loss", "validation loss (label-smoothed CE, base 2)", "validation loss"),
    "10": ("valid_loss", "validation loss (label-smoothed CE, base 2)", "validation loss"),
}


def run_curves(root: Optional[Path], records: Optional[Path], key: str,
               seed: int) -> Optional[Tuple[Dict[str, List[tuple]], str]]:
    """``(curves, status)`` of one run: from its record, else its run folder's log; or None."""
    record = load_record(records, key, seed)
    if record is not None:
        return {k: [tuple(p) for p in v] for k, v in record["curves"].items()}, record["status"]
    run = root / key / f"seed{seed}" if root is not None else None
    if run is None or not (run / "train.log").exists():
        return None
    state = read_json(run / "train.json") or {}
    return curves((run / "train.log").read_text(errors="replace")), state.get("status", "")


def figure1(root: Optional[Path], variants: Sequence[Variant], seed: int, out: Path, title: str = "",
            records: Optional[Path] = None, table: str = "1") -> Path:
    """Training loss (left) and ``table``'s right panel (:data:`RIGHT_PANEL`) of each row's run
    of ``seed``; the curves also as ``out`` with ``.csv``."""
    right, right_label, right_title = RIGHT_PANEL[table]
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_right) = plt.subplots(1, 2, figsize=(12, 4.6))
    rows = []
    drawn = 0
    for v in variants:
        found = run_curves(root, records, v.key, seed)
        if found is None:
            continue
        c, status = found
        label = v.label + (" (FAIL)" if status == "FAIL" else "")
        style = "--" if status == "FAIL" else "-"
        if c["train_loss"]:
            xs, ys = zip(*c["train_loss"])
            ax_loss.plot(xs, ys, style, label=label, linewidth=1.2)
        if c.get(right):
            xs, ys = zip(*c[right])
            ax_right.plot(xs, ys, style, marker="o", markersize=3, label=label, linewidth=1.2)
        drawn += 1
        for kind, points in c.items():
            rows += [(v.key, seed, kind, u, val) for u, val in points]
    if not drawn:
        raise FileNotFoundError(f"no record under {records} and no train.log under "
                                f"{root}/*/seed{seed}: nothing to plot")
    ax_loss.set_xlabel("updates")
    ax_loss.set_ylabel("training loss (label-smoothed CE, base 2)")
    ax_loss.set_title("training loss")
    ax_loss.set_yscale("log")
    ax_right.set_xlabel("updates")
    ax_right.set_ylabel(right_label)
    ax_right.set_title(right_title)
    for ax in (ax_loss, ax_right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    with open(out.with_suffix(".csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["variant", "seed", "curve", "update", "value"])
        w.writerows(rows)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m un_tools.reproduce.cli plots", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", help="root folder holding NORM/seedS run folders")
    p.add_argument("--records", help="folder of run records (VARIANT-seedS.json); a record wins "
                                     "over a run folder")
    p.add_argument("--table", choices=sorted(RIGHT_PANEL), default="1",
                   help="whose rows: Table 1 (right panel: validation BLEU), 9 or 10 (validation loss)")
    p.add_argument("--seed", type=int, default=1, help="which seed's runs to draw (default 1)")
    p.add_argument("--norms", help="comma-separated rows (default: all of the table's)")
    p.add_argument("--title", default="")
    p.add_argument("--out", required=True, help="PNG to write (plus the curves as .csv)")
    args = p.parse_args(argv)
    if not args.runs and not args.records:
        p.error("give --runs, --records or both")
    rows = {"1": table1_variants, "9": table9_variants, "10": table10_variants}[args.table]
    try:
        path = figure1(Path(args.runs) if args.runs else None, rows(parse_list(args.norms)),
                       args.seed, Path(args.out), args.title, Path(args.records) if args.records else None,
                       args.table)
    except (ValueError, FileNotFoundError) as err:
        p.error(str(err))
    print(f"wrote {path} and {path.with_suffix('.csv')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

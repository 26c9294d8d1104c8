"""Figure 1 of the paper: training loss and validation BLEU over updates, one line per normalizer.

    python -m un_fairseq.reproduce.plots --runs work/runs/mini-multi30k --seed 1 \
        --out results/mini-figure1.png [--norms layer,un,...]

Reads each run's ``train.log`` (fairseq's ``train_inner`` and ``valid`` records); a run marked
FAIL is drawn up to where it stopped and labelled so. Also writes the curves as CSV next to the
figure (``.csv``), so the numbers behind it can be checked.
"""

import argparse
import csv
import sys
from pathlib import Path
from typing import Sequence

from .logs import curves
from .tables import Variant, table1_variants, parse_list, _read


def figure1(root: Path, variants: Sequence[Variant], seed: int, out: Path, title: str = "") -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_bleu) = plt.subplots(1, 2, figsize=(12, 4.6))
    rows = []
    drawn = 0
    for v in variants:
        run = root / v.key / f"seed{seed}"
        log = run / "train.log"
        if not log.exists():
            continue
        c = curves(log.read_text(errors="replace"))
        state = _read(run / "train.json") or {}
        label = v.label + (" (FAIL)" if state.get("status") == "FAIL" else "")
        style = "--" if state.get("status") == "FAIL" else "-"
        if c["train_loss"]:
            xs, ys = zip(*c["train_loss"])
            ax_loss.plot(xs, ys, style, label=label, linewidth=1.2)
        if c["valid_bleu"]:
            xs, ys = zip(*c["valid_bleu"])
            ax_bleu.plot(xs, ys, style, marker="o", markersize=3, label=label, linewidth=1.2)
        drawn += 1
        for kind, points in c.items():
            rows += [(v.key, seed, kind, u, val) for u, val in points]
    if not drawn:
        raise FileNotFoundError(f"no train.log under {root}/*/seed{seed}: nothing to plot")
    ax_loss.set_xlabel("updates")
    ax_loss.set_ylabel("training loss (label-smoothed CE, base 2)")
    ax_loss.set_title("training loss")
    ax_loss.set_yscale("log")
    ax_bleu.set_xlabel("updates")
    ax_bleu.set_ylabel("validation BLEU (greedy)")
    ax_bleu.set_title("validation BLEU")
    for ax in (ax_loss, ax_bleu):
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
    p = argparse.ArgumentParser(prog="python -m un_fairseq.reproduce.plots", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", required=True, help="root folder holding NORM/seedS run folders")
    p.add_argument("--seed", type=int, default=1, help="which seed's runs to draw (default 1)")
    p.add_argument("--norms", help="comma-separated norms (default: all eight)")
    p.add_argument("--title", default="")
    p.add_argument("--out", required=True, help="PNG to write (plus the curves as .csv)")
    args = p.parse_args(argv)
    try:
        path = figure1(Path(args.runs), table1_variants(parse_list(args.norms)), args.seed,
                       Path(args.out), args.title)
    except (ValueError, FileNotFoundError) as err:
        p.error(str(err))
    print(f"wrote {path} and {path.with_suffix('.csv')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

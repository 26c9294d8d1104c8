"""Aggregate run folders into the paper's tables (markdown): mean ± std over seeds, FAIL runs,
and the difference to the reference row (LN in Table 1, full UN in Table 9, alpha=0.9 in Table 10).

A run folder is ``ROOT/VARIANT/seedS`` with ``train.json`` (from :mod:`.train`) and
``eval.json`` (from :mod:`.evaluate`).

    python -m un_tools.reproduce.cli tables --table 1 --records results/multi30k \
        --seeds 1,2 --rows layer,un,... --out results/multi30k-table1.md
"""

import argparse
import json
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from un_atomic import atomic_path
from .logs import final_updates
from .records import load_record, recorded_seeds
from .run_files import eval_file, read_json

# The norm names, labels and Table 1's row order are the plugin's registry
# (``un_fairseq/modules/registry.py``). It imports torch and fairseq, so it is read when a
# table is built, not when a driver starts.

#: Rows beyond the paper's, asked for by name and listed after UN: UN's name plus a suffix ->
#: (label after "UN", flags, the Offline column when it is not UN's). UN with the released code's
#: statistics (padding tokens counted); UN with LayerNorm as the two final norms (issue 42: the
#: per-token scale where the stacks end; the layers' norms still fold, the two LayerNorms stay).
#: Table 9's UN ablations are accepted too (same run folders), e.g. ``un-no-bp``: UN whose
#: backward uses the current batch's gradient statistic.
TABLE1_EXTRA = {"-count-padding": (", padding counted (release)", ["--un-count-padding"], None),
                "-final-layer": (", LN as final norms", ["--final-norm-type", "layer"], "all but 2")}

#: Table 9: UN's name plus the suffix -> (FP GM, BP AM, BP alpha), and the label after "UN".
ABLATIONS = {
    "": (True, True, True),
    "-no-fp-gm": (False, True, True),
    "-no-bp-am": (True, False, True),
    "-no-bp-alpha": (True, True, False),
    "-no-bp": (True, False, False),
    "-none": (False, False, False),
}
ABLATION_LABELS = {
    "": "", "-no-fp-gm": " w/o FP GM", "-no-bp-am": " w/o BP AM", "-no-bp-alpha": " w/o BP α",
    "-no-bp": " w/o BP AM, BP α", "-none": " w/o all three",
}


def _registry():
    from un_fairseq.modules import registry

    return registry


def un_name() -> str:
    """UN's ``--norm-type`` name (the subject of Tables 9 and 10)."""
    from un_fairseq.modules import UnifiedNorm

    return _registry().name_of(UnifiedNorm)


def ln_name() -> str:
    """LayerNorm's ``--norm-type`` name (Table 1's reference row)."""
    from un_fairseq.modules import LayerNorm

    return _registry().name_of(LayerNorm)


def table1_order() -> Tuple[str, ...]:
    """Table 1's rows in the paper's order: every registered norm."""
    return _registry().norm_types()


def table1_extra() -> Dict[str, Tuple[str, str, List[str], Optional[str]]]:
    """The extra rows: key -> (label, --norm-type, flags, Offline column or None for the norm's)."""
    un = _registry().spec_of(un_name())
    return {un.name + suffix: (un.label + label, un.name, flags, offline)
            for suffix, (label, flags, offline) in TABLE1_EXTRA.items()}


def ablation_keys() -> Tuple[str, ...]:
    return tuple(un_name() + suffix for suffix in ABLATIONS)


def emit(text: str, out: Optional[Path]) -> None:
    """Print ``text``, or write it to ``out`` (atomically: never half-written) and say so."""
    if out is None:
        sys.stdout.write(text)
        return
    with atomic_path(out) as tmp:
        tmp.write_text(text)
    print(f"wrote {out}")


@dataclass
class Variant:
    """One row: a run-folder name, its label, the --norm-type and extra fairseq flags."""
    key: str
    label: str
    norm: str
    flags: List[str] = field(default_factory=list)
    columns: Dict[str, str] = field(default_factory=dict)  # extra table columns (e.g. check marks)


def table1_variants(norms: Optional[Sequence[str]] = None) -> List[Variant]:
    specs, extra = _registry().norm_specs(), table1_extra()
    norms = list(norms) if norms else list(specs)
    allowed = (*specs, *extra, *ablation_keys())
    bad = [n for n in norms if n not in allowed]
    if bad:
        raise ValueError(f"unknown norm(s) {', '.join(bad)}: choose from {', '.join(dict.fromkeys(allowed))}")
    out = []
    for key in norms:
        offline = None
        if key in specs:
            label, norm, flags = specs[key].label, key, []
        elif key in extra:
            label, norm, flags, offline = extra[key]
        else:
            ablation = table9_variants([key])[0]
            label, norm, flags = ablation.label, ablation.norm, ablation.flags
        if offline is None:
            offline = "✓" if specs[norm].offline else "✗"
        out.append(Variant(key, label, norm, list(flags), {"Offline": offline}))
    return out


def in_table_order(variants: Sequence[Variant]) -> List[Variant]:
    """Table 1's rows in the paper's order whatever order they were trained in."""
    rank = {n: i for i, n in enumerate(dict.fromkeys((*table1_order(), *table1_extra(), *ablation_keys())))}
    return sorted(variants, key=lambda v: rank.get(v.key, len(rank)))


def table9_variants(keys: Optional[Sequence[str]] = None) -> List[Variant]:
    un = _registry().spec_of(un_name())
    by_key = {un.name + suffix: suffix for suffix in ABLATIONS}
    keys = list(keys) if keys else list(by_key)
    bad = [k for k in keys if k not in by_key]
    if bad:
        raise ValueError(f"unknown ablation(s) {', '.join(bad)}: choose from {', '.join(by_key)}")
    out = []
    for key in keys:
        gm, am, alpha = ABLATIONS[by_key[key]]
        flags = ([] if gm else ["--un-no-fp-gm"]) + ([] if am else ["--un-no-bp-sma"]) \
            + ([] if alpha else ["--un-no-bp-ema"])
        mark = lambda on: "✓" if on else "✗"  # noqa: E731
        out.append(Variant(key, un.label + ABLATION_LABELS[by_key[key]], un.name, flags,
                           {"FP GM": mark(gm), "BP AM": mark(am), "BP α": mark(alpha)}))
    return out


def table10_variants(momenta: Optional[Sequence[str]] = None) -> List[Variant]:
    momenta = list(momenta) if momenta else ["0.9", "0.8", "0.7", "0.6"]
    un = _registry().spec_of(un_name())
    out = []
    for m in momenta:
        value = float(m)
        if not 0 < value < 1:
            raise ValueError(f"momentum {m} is not in (0, 1)")
        # UN's default momentum: that row is the plain UN run (shared with Tables 1 and 9)
        default = value == un.default_of("momentum")
        out.append(Variant(un.name if default else f"{un.name}-m{value:g}", f"{un.label}, α = {value:g}",
                           un.name, [] if default else ["--un-momentum", f"{value:g}"], {"α": f"{value:g}"}))
    return out


@dataclass
class RunResult:
    variant: str
    seed: int
    status: str  # 'ok', 'FAIL', 'pending' (not trained / not evaluated yet), 'error'
    bleu: Optional[float] = None
    sacrebleu: Optional[float] = None
    signature: str = ""
    reason: str = ""
    train_wall_s: Optional[float] = None
    num_updates: Optional[int] = None


def read_run(folder: Path, variant: str, seed: int) -> RunResult:
    train = read_json(folder / "train.json") or {}
    ev = read_json(folder / eval_file()) or {}
    status = train.get("status")
    updates = train.get("num_updates")
    if (folder / "train.log").exists():  # the log knows the final count (train.json: the last logged)
        updates = final_updates((folder / "train.log").read_text(errors="replace")) or updates
    common = dict(reason=train.get("reason") or "", train_wall_s=train.get("wall_s"),
                  num_updates=updates)
    if status == "FAIL":
        return RunResult(variant, seed, "FAIL", **common)
    if status == "done" and ev.get("bleu") is not None:
        return RunResult(variant, seed, "ok", float(ev["bleu"]),
                         None if ev.get("sacrebleu") is None else float(ev["sacrebleu"]),
                         ev.get("sacrebleu_signature", ""), **common)
    if status == "error":
        return RunResult(variant, seed, "error", **common)
    return RunResult(variant, seed, "pending", **common)


def from_record(record: dict) -> RunResult:
    """A committed run record (:mod:`.records`) as a table entry."""
    failed = record["status"] == "FAIL"
    return RunResult(record["variant"], int(record["seed"]), "FAIL" if failed else "ok",
                     None if failed else float(record["bleu"]),
                     None if failed or record.get("sacrebleu") is None else float(record["sacrebleu"]),
                     record.get("sacrebleu_signature") or "", record.get("reason") or "",
                     record.get("train_wall_s"), record.get("num_updates"))


def collect(root: Optional[Path], variants: Sequence[Variant], seeds: Sequence[int],
            records: Optional[Path] = None) -> Dict[str, List[RunResult]]:
    """Each (row, seed) from its committed record under ``records`` when there is one, else
    from its run folder ``root/KEY/seedS`` (pending when neither exists). A row's recorded runs
    of seeds beyond ``seeds`` count too (e.g. a third seed given to LN and UN only): the table
    shows every committed record of its rows."""
    def one(v: Variant, seed: int) -> RunResult:
        record = load_record(records, v.key, seed)
        if record is not None:
            return from_record(record)
        if root is None:
            return RunResult(v.key, seed, "pending")
        return read_run(root / v.key / f"seed{seed}", v.key, seed)

    return {v.key: [one(v, s) for s in sorted(set(seeds) | set(recorded_seeds(records, v.key)))]
            for v in variants}


@dataclass
class Cell:
    mean: Optional[float]
    std: Optional[float]
    ok: int
    failed: int
    total: int

    def text(self) -> str:
        if self.ok == 0:
            return "FAIL" if self.failed else "–"
        std = f"{self.std:.2f}" if self.std is not None else "–"
        out = f"{self.mean:.2f} ± {std}"
        notes = []
        if self.failed:
            notes.append(f"{self.failed}/{self.total} FAIL")
        missing = self.total - self.ok - self.failed
        if missing:
            notes.append(f"{missing}/{self.total} pending")
        return out + (f" ({', '.join(notes)})" if notes else "")


def summarize(values: List[Optional[float]], runs: List[RunResult]) -> Cell:
    vals = [v for v, r in zip(values, runs) if r.status == "ok" and v is not None]
    failed = sum(r.status == "FAIL" for r in runs)
    mean = statistics.fmean(vals) if vals else None
    std = statistics.stdev(vals) if len(vals) >= 2 else None  # sample std over seeds
    return Cell(mean, std, len(vals), failed, len(runs))


def delta(cell: Cell, ref: Optional[Cell]) -> str:
    if ref is None or ref.mean is None:
        return "–"
    if cell.mean is None:
        return "FAIL" if cell.failed else "–"
    if cell is ref:
        return "0.00"
    return f"{cell.mean - ref.mean:+.2f}"


def markdown_table(variants: Sequence[Variant], results: Dict[str, List[RunResult]], reference: str,
                   title: str = "", ref_label: str = "") -> str:
    """The table: one row per variant, tokenised BLEU mean ± std, Δ to the reference row,
    sacreBLEU mean ± std, runs ok/FAIL."""
    extra_cols = list(dict.fromkeys(c for v in variants for c in v.columns))
    ref_label = ref_label or next((v.label for v in variants if v.key == reference), reference)
    cells = {v.key: summarize([r.bleu for r in results[v.key]], results[v.key]) for v in variants}
    sb_cells = {v.key: summarize([r.sacrebleu for r in results[v.key]], results[v.key]) for v in variants}
    ref = cells.get(reference)
    header = ["Method", *extra_cols, "BLEU (tok.)", f"Δ vs {ref_label}", "sacreBLEU", "runs"]
    lines = []
    if title:
        lines += [title, ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    for v in variants:
        c = cells[v.key]
        runs = results[v.key]
        status = f"{c.ok} ok" + (f", {c.failed} FAIL" if c.failed else "")
        pending = sum(r.status in ("pending", "error") for r in runs)
        if pending:
            status += f", {pending} pending"
        row = [v.label, *[v.columns.get(col, "") for col in extra_cols], c.text(),
               delta(c, ref), sb_cells[v.key].text(), status]
        lines.append("| " + " | ".join(row) + " |")
    signatures = sorted({r.signature for rs in results.values() for r in rs if r.signature})
    failures = [(r.variant, r.seed, r.reason) for rs in results.values() for r in rs if r.status == "FAIL"]
    lines.append("")
    lines.append("BLEU (tok.): fairseq-generate's BLEU4 on tokenised text (the paper's metric); "
                 "mean ± sample std over seeds (– with one seed); Δ: difference of the means.")
    for sig in signatures:
        lines.append(f"sacreBLEU signature: `{sig}`")
    for variant, seed, reason in failures:
        lines.append(f"FAIL: {variant} seed {seed}: {reason}")
    return "\n".join(lines) + "\n"


def runs_json(results: Dict[str, List[RunResult]]) -> str:
    rows = [r.__dict__ for rs in results.values() for r in rs]
    return json.dumps(rows, indent=1) + "\n"


#: table -> (its rows, the reference row's key and its label in the difference column)
TABLES = {
    "1": (table1_variants, lambda: (ln_name(), _registry().spec_of(ln_name()).label)),
    "9": (table9_variants, lambda: (un_name(), _registry().spec_of(un_name()).label)),
    "10": (table10_variants, lambda: (un_name(), f"α = {_registry().spec_of(un_name()).default_of('momentum'):g}")),
}


def build(table: str, root: Optional[Path], seeds: Sequence[int], rows: Optional[Sequence[str]] = None,
          title: str = "", records: Optional[Path] = None) -> str:
    make, reference_of = TABLES[table]
    reference, ref_label = reference_of()
    variants = make(rows)
    if table == "1":
        variants = in_table_order(variants)
    return markdown_table(variants, collect(root, variants, seeds, records), reference, title, ref_label)


def parse_list(text: Optional[str]) -> Optional[List[str]]:
    if text is None:
        return None
    items = [t.strip() for t in text.replace(" ", ",").split(",") if t.strip()]
    return items or None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m un_tools.reproduce.cli tables", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--table", choices=sorted(TABLES), required=True)
    p.add_argument("--runs", help="root folder holding VARIANT/seedS run folders")
    p.add_argument("--records", help="folder of committed run records (VARIANT-seedS.json); a "
                                     "record wins over a run folder")
    p.add_argument("--seeds", required=True,
                   help="comma-separated seeds every row should have, e.g. 1,2 (a missing one is "
                        "pending); a row's records of other seeds are included too")
    p.add_argument("--rows", help="comma-separated rows (norms for table 1, ablations for 9, momenta for 10)")
    p.add_argument("--title", default="")
    p.add_argument("--out", help="markdown file to write (default: print)")
    args = p.parse_args(argv)
    if not args.runs and not args.records:
        p.error("give --runs, --records or both")
    root = Path(args.runs) if args.runs else None
    records = Path(args.records) if args.records else None
    for flag, folder in (("--runs", root), ("--records", records)):
        if folder is not None and not folder.is_dir():
            p.error(f"{flag} {folder}: folder not found")
    try:
        seeds = [int(s) for s in parse_list(args.seeds) or []]
        text = build(args.table, root, seeds, parse_list(args.rows), args.title, records)
    except ValueError as err:
        p.error(str(err))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
        print(f"wrote {args.out}")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""UN beside the normalisation-free rivals (issue 46): one table of quality, training cost and
deployed speed for LN, UN, DyT, Derf and NoNorm, built from what the runs and benchmarks
committed.

    python -m un_tools.reproduce.cli rivals --records results/multi30k \\
        --heldout results/multi30k-heldout.json --training benchmarks/results/cpu/training.json \\
        --deploy benchmarks/results/deploy/deploy.json [--out results/multi30k-rivals.md]

Columns:

- test2016 BLEU: tokenised BLEU of the run records (mean ± sample std over seeds, as Table 1);
- valid BLEU: the held-out file's ``valid_bleu_lenpen_1.0`` (beam 5, the averaged model, the
  test protocol) over the seeds it holds;
- training step vs LN: ``--training``'s one-training-step benchmark (``vs_ln_pct``);
- ORT fp32 / int8 at batch 1 and 16: sentences/s of ``--deploy``'s ONNX Runtime rows (one
  thread; the folded model where the norm folds) over ``fairseq eager LN``'s at the same batch;
- what the shipped model keeps: nothing (an offline norm folds into the linear layers), an
  elementwise op (DyT's tanh, Derf's erf: their weight and bias fold), or a normalisation.

A missing source leaves its cells ``–``; the sources' commands are listed under the table.
"""

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import List, Optional

from .tables import Variant, collect, emit, summarize

BASELINE = "fairseq eager LN"
BATCHES = (1, 16)
#: the rows, by their attribute of ``un_tools.benchmarks.common.norm_names()``
MODELS = ("LN", "UN", "DyT", "Derf", "NoNorm")


def models() -> List[tuple]:
    """``(norm type, label, training-step row, (ORT fp32 row, ORT int8 row), what the shipped
    model keeps)`` of each row, from the plugin's registry and the benchmarks' row names."""
    from un_fairseq.fold import ELEMENTWISE
    from un_fairseq.modules import registry
    from un_tools.benchmarks.common import norm_names
    from un_tools.benchmarks.deploy import ORT, ort_row
    from un_tools.benchmarks.training import STEP_ROWS

    names = vars(norm_names())
    rows = []
    for model in MODELS:
        spec = registry.spec_of(names[model])
        if spec.offline or model == "NoNorm":
            keeps = "nothing"
        elif spec.name in ELEMENTWISE:
            keeps = "an elementwise op per norm"
        else:
            keeps = "a normalisation per norm"
        deploy = tuple(ort_row(model, p) for p in ("fp32", "int8"))
        assert set(deploy) <= set(ORT), deploy
        rows.append((spec.name, spec.label, STEP_ROWS.get(model, spec.label), deploy, keeps))
    return rows


def _mean_sd(values: List[float]) -> str:
    """As Table 1's cells: mean ± sample std (– with one value)."""
    if not values:
        return "–"
    mean = statistics.fmean(values)
    return f"{mean:.2f} ± {statistics.stdev(values):.2f}" if len(values) > 1 else f"{mean:.2f} ± –"


def valid_bleu(heldout: Optional[dict], name: str) -> List[float]:
    """The held-out valid BLEU (lenpen 1.0) of every seed of ``name`` in ``heldout``."""
    out = []
    for key, entry in sorted(((heldout or {}).get("models") or {}).items()):
        variant, _, seed = key.rpartition("-seed")
        bleu = (entry.get("valid_bleu_lenpen_1.0") or {}).get("bleu")
        if variant == name and seed.isdigit() and bleu is not None:
            out.append(float(bleu))
    return out


def speed_ratio(deploy: Optional[dict], row: str, batch: int) -> Optional[float]:
    """sentences/s of ``row`` over the eager LN baseline's, one thread, at ``batch``."""
    speeds = {(r["variant"], r["batch_size"]): r["sentences_per_s"] for r in (deploy or {}).get("speed", [])
              if r.get("threads") == 1}
    if (row, batch) not in speeds or (BASELINE, batch) not in speeds:
        return None
    return speeds[(row, batch)] / speeds[(BASELINE, batch)]


def table(records: Optional[Path], heldout: Optional[dict], training: Optional[dict],
          deploy: Optional[dict]) -> str:
    steps = {r["variant"]: r["vs_ln_pct"] for r in (training or {}).get("training_step", [])}
    head = ["model", "test2016 BLEU", "runs", "valid BLEU", "training step vs LN"]
    head += [f"ORT {p} b{b} vs eager LN" for p in ("fp32", "int8") for b in BATCHES]
    lines = ["| " + " | ".join(head + ["shipped model keeps"]) + " |", "|" + "---|" * (len(head) + 1)]
    missing = []
    for name, label, step_row, deploy_rows, keeps in models():
        runs = collect(None, [Variant(name, label, name)], [], records)[name] if records else []
        cell = summarize([r.bleu for r in runs], runs)
        test, count = (cell.text(), str(cell.total)) if runs else ("–", "0")
        step = steps.get(step_row)
        cells = [label, test, count, _mean_sd(valid_bleu(heldout, name)),
                 "–" if step is None else f"{step:+.1f}%"]
        ratios = [speed_ratio(deploy, row, batch) for row in deploy_rows for batch in BATCHES]
        cells += ["–" if ratio is None else f"{ratio:.2f}x" for ratio in ratios]
        lines.append("| " + " | ".join(cells + [keeps]) + " |")
        if deploy is not None and all(ratio is None for ratio in ratios):
            missing.append(label)
    text = "\n".join(lines) + "\n"
    if missing:
        text += f"\nNo speed cells for {', '.join(missing)}: `--deploy` has no ONNX Runtime row of it.\n"
    return text


def _load(path: Optional[Path], what: str) -> Optional[dict]:
    if path is None:
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{what} {path}: not a readable JSON file ({err.__class__.__name__})") from None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m un_tools.reproduce.cli rivals", description=__doc__.split("\n\n")[0])
    p.add_argument("--records", type=Path, help="folder of run records (ROW-seedS.json)")
    p.add_argument("--heldout", type=Path, help="held-out JSON (python -m un_tools.reproduce.cli heldout)")
    p.add_argument("--training", type=Path, help="training.json of scripts/benchmark_training.py")
    p.add_argument("--deploy", type=Path, help="deploy.json of scripts/benchmark_deploy.py")
    p.add_argument("--out", type=Path, help="write the table here (default: print it)")
    args = p.parse_args(argv)
    if args.records is not None and not args.records.is_dir():
        print(f"rivals: error: --records {args.records}: not a folder", file=sys.stderr)
        return 2
    try:
        sources = {flag: _load(getattr(args, flag), f"--{flag}") for flag in ("heldout", "training", "deploy")}
    except ValueError as err:
        print(f"rivals: error: {err}", file=sys.stderr)
        return 2
    text = table(args.records, **sources)
    commands = [f"- {flag}: `{' '.join(src['command'])}`" for flag, src in sources.items()
                if src and isinstance(src.get("command"), list)]
    if commands:
        text += "\nBenchmarks:\n" + "\n".join(commands) + "\n"
    emit(text, args.out)
    return 0

"""The loops of ``scripts/reproduce-table{1,9,10}.sh``: train and evaluate every row x seed (one
run at a time), resuming finished runs, then write the table (and, for Table 1, Figure 1).

Runs live in ``RUNS/VARIANT/seedS`` (default ``RUNS = work/runs/PROFILE-DATASET``), shared by
the three tables: Table 9's full UN and Table 10's alpha = 0.9 are Table 1's UN run.

Each run folder is held (:mod:`.lock`) from its training to its record; one that another driver
holds is skipped, so several sweeps can share ``RUNS``. A stop signal stops the run in progress
(marked interrupted) and the sweep, exit status 128 + the signal (:mod:`.signals`).
"""

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import List

from un_atomic import atomic_path
from . import signals
from .config import REPO, ConfigError, available, load_dataset, load_profile
from .evaluate import evaluate_run
from .lock import FolderLocked, holder, run_lock
from .records import load_record, make_record, record_path, write_record
from .run_files import eval_file
from .tables import (ABLATIONS, TABLES, TABLE1_EXTRA, collect, in_table_order, markdown_table, parse_list, runs_json,
                     table1_variants, table9_variants, table10_variants)
from .run_files import read_json
from .train import resolve_data, run_training

FULL_PROFILES = {"iwslt14": "iwslt14", "wmt14": "wmt14_en_fr"}
PAPER = {
    "table1": "Table 1: BLEU of pre-norm Transformers with each normalizer",
    "table9": "Table 9: ablation of UN's components (FP GM: forward geometric mean; BP AM: backward "
              "arithmetic moving average; BP α: backward momentum)",
    "table10": "Table 10: UN's momentum α",
}


def parser(command: str) -> argparse.ArgumentParser:
    number = command[len("table"):]
    doc = {
        "table1": "Table 1: every normalizer (--norm-type; the paper's eight and DyT, Derf) x seeds.",
        "table9": "Table 9: UN ablations (FP GM / BP AM / BP alpha switched off), on IWSLT14 by default.",
        "table10": "Table 10: UN's momentum alpha in 0.9 / 0.8 / 0.7 / 0.6, on IWSLT14 by default.",
    }[command]
    p = argparse.ArgumentParser(
        prog=f"scripts/reproduce-table{number}.sh", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=doc + "\n\nTrains each run with scripts/train.sh's logic (one at a time; finished "
        "runs are resumed, not redone; diverged runs are marked FAIL), evaluates it like "
        "scripts/evaluate.sh, and writes a markdown table (mean ± std over seeds, Δ to the "
        "reference row).",
        epilog="Example: scripts/reproduce-table1.sh --scale mini --dataset multi30k --seeds 1 "
               "--output results/mini-table1.md --figure results/mini-figure1.png")
    p.add_argument("--scale", choices=["smoke", "mini", "full"], default="full",
                   help="profile: smoke (a few updates, tiny model), mini (Multi30k on CPU), full "
                        "(the paper's iwslt14 or wmt14_en_fr profile). Default: full")
    p.add_argument("--dataset", default="iwslt14",
                   help=f"configs/dataset-NAME.toml: {', '.join(available('dataset-'))}. Default: iwslt14")
    p.add_argument("--profile", help="use configs/PROFILE.toml instead of the one --scale picks")
    p.add_argument("--data", help="binarized data folder (default: the dataset's data_dir)")
    p.add_argument("--runs", help="root of the run folders (default: work/runs/PROFILE-DATASET)")
    p.add_argument("--seeds", help="comma-separated seeds (default: the profile's seeds)")
    if command == "table1":
        p.add_argument("--norms", help="comma-separated rows, trained in this order, listed in the "
                                      "paper's order (default: every --norm-type of transformer_un, "
                                      "which python -m un_fairseq.norm_flags lists); extra rows: "
                                      f"UN's name followed by {','.join(TABLE1_EXTRA)} and Table 9's "
                                      f"{','.join(k for k in ABLATIONS if k)}")
    elif command == "table9":
        p.add_argument("--variants", help="comma-separated ablations: UN's name followed by nothing "
                                         f"or one of {','.join(k for k in ABLATIONS if k)} (default: all)")
    else:
        p.add_argument("--momenta", help="comma-separated momenta (default: 0.9,0.8,0.7,0.6)")
    p.add_argument("--figure", help="PNG of the training-loss curves and, beside them, the validation "
                                    + ("BLEU (the paper's Figure 1; default: RUNS/figure1.png)" if command == "table1"
                                       else f"loss (default: RUNS/table{number}.png)") + "; 'none' to skip")
    p.add_argument("--output", help=f"markdown table (default: RUNS/table{number}.md); the runs are "
                                    "also written as JSON next to it (-runs.json)")
    p.add_argument("--records", help="folder of run records (VARIANT-seedS.json, to commit): a run "
                                     "with a record is not trained again, each finished run gets one, "
                                     "and the table and figure are built from them")
    p.add_argument("--retry-failed", action="store_true", help="train FAIL runs again")
    p.add_argument("--dry-run", action="store_true", help="list the runs and their state, train nothing")
    p.add_argument("extra", nargs=argparse.REMAINDER, help="after --: extra fairseq-train flags for every run")
    return p


def main(command: str, argv=None) -> int:
    p = parser(command)
    args = p.parse_args(argv)
    extra = args.extra[1:] if args.extra[:1] == ["--"] else args.extra
    started = time.time()
    try:
        if args.profile:
            profile_name = args.profile
        elif args.scale == "full":
            if args.dataset not in FULL_PROFILES:
                p.error(f"--scale full has no profile for --dataset {args.dataset}: use "
                        f"{' or '.join(FULL_PROFILES)}, or --scale mini/smoke, or --profile")
            profile_name = FULL_PROFILES[args.dataset]
        else:
            profile_name = args.scale
        profile = load_profile(profile_name)
        dataset = load_dataset(args.dataset)
        data = resolve_data(args.data, dataset)
        seeds = [int(s) for s in parse_list(args.seeds)] if args.seeds else profile.seeds
        if command == "table1":
            variants = table1_variants(parse_list(args.norms))
        elif command == "table9":
            variants = table9_variants(parse_list(args.variants))
        else:
            variants = table10_variants(parse_list(args.momenta))
        runs = Path(args.runs) if args.runs else REPO / "work" / "runs" / f"{profile.name}-{dataset.name}"
        output = Path(args.output) if args.output else runs / f"{command}.md"
        records = Path(args.records) if args.records else None
        if not args.dry_run and not data.is_dir():
            raise FileNotFoundError(f"data folder not found: {data} (pass --data DIR/bin)")
    except (ConfigError, ValueError, FileNotFoundError) as err:
        print(f"reproduce-{command}.sh: error: {err}", file=sys.stderr)
        return 2

    total = len(variants) * len(seeds)
    print(f"== {PAPER[command]} ==")
    print(f"profile {profile.name} ({profile.path}), dataset {dataset.name}, data {data}")
    print(f"{len(variants)} rows x {len(seeds)} seeds = {total} runs under {runs}")
    if extra:
        print(f"extra fairseq-train flags: {shlex.join(extra)}")
    errors: List[str] = []
    busy: List[str] = []
    try:
        with signals.stop_signals():
            for i, (v, seed) in enumerate(((v, s) for v in variants for s in seeds), 1):
                if run_one(i, total, v, seed, runs, records, profile, dataset, data, extra, args,
                           errors, busy):
                    # the table is rewritten after every run, so partial progress is always visible
                    write_outputs(command, variants, runs, seeds, output, profile.name, dataset.name,
                                  quiet=True, records=records)
    except signals.Interrupted as stop:
        print(f"reproduce-{command}.sh: {stop}; the run in progress was stopped and marked "
              f"interrupted: run the same command again to resume", flush=True)
        return stop.exit_status
    if args.dry_run:
        return 0
    text = write_outputs(command, variants, runs, seeds, output, profile.name, dataset.name,
                         records=records)
    if (args.figure or "").lower() != "none":
        figure = Path(args.figure) if args.figure else runs / ("figure1.png" if command == "table1" else f"{command}.png")
        try:
            from .plots import figure1
            figure1(runs, variants, seeds[0], figure,
                    ("" if command == "table1" else f"Table {command[len('table'):]}, ")
                    + f"{profile.name} profile, {dataset.name}, seed {seeds[0]}", records,
                    table=command[len("table"):])
            print(f"wrote {figure} (curves: {figure.with_suffix('.csv')})")
        except FileNotFoundError as err:
            print(f"no figure: {err}")
    print()
    print(text)
    print(f"total wall time of this invocation: {time.time() - started:.0f} s")
    if busy:
        print(f"{len(busy)} run(s) skipped, another driver was working on them (run again once it "
              f"is done to complete the table):")
        for b in busy:
            print(f"  {b}")
    if errors:
        print(f"{len(errors)} run(s) stopped with an error (not marked, will be retried on the next call):")
        for e in errors:
            print(f"  {e}")
        return 1
    return 0


def run_one(i, total, v, seed, runs: Path, records, profile, dataset, data, extra, args,
            errors: List[str], busy: List[str]) -> bool:
    """Train, evaluate and record one row x seed (or say why not), holding its folder's lock
    throughout: a run folder another driver holds is skipped (added to ``busy``). False when
    nothing was tried (recorded already, or ``--dry-run``)."""
    folder = runs / v.key / f"seed{seed}"
    head = f"[{i}/{total}] {v.label} ({v.key}) seed {seed}"
    state = json.loads((folder / "train.json").read_text()) if (folder / "train.json").exists() else {}
    record = load_record(records, v.key, seed)
    if record is not None:
        score = f"BLEU {record['bleu']}" if record["status"] == "done" else record["reason"]
        print(f"{head}: recorded ({record['status']}, {score}) in "
              f"{record_path(records, v.key, seed)}, not run again")
        return False
    if args.dry_run:
        evaluated = (folder / eval_file()).exists()
        pid = holder(folder)
        working = f", in progress (driver pid {pid})" if pid else ""
        print(f"{head}: {state.get('status', 'not started')}{', evaluated' if evaluated else ''}"
              f"{working} -> {folder}")
        return False
    print(f"{head} -> {folder}", flush=True)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with run_lock(folder):
            state = read_json(folder / "train.json") or {}  # as it is now that no one else works on it
            force = args.retry_failed and state.get("status") == "FAIL"
            state = run_training(profile, dataset, v.norm, seed, data, folder, [*v.flags, *extra],
                                 force=force)
            if state["status"] == "done":
                evaluate_run(folder, data, dataset, profile.gen_flags, profile.avg_checkpoints)
            elif state["status"] == "error":
                errors.append(f"{v.key} seed {seed}: {state['reason']}")
            record = make_record(folder, v.key, v.label, v.flags, seed) if records else None
            if record is not None:
                print(f"  recorded in {write_record(records, record)}", flush=True)
    except FolderLocked as err:
        busy.append(f"{v.key} seed {seed}: {err}")
        print(f"  skipped: {err}", flush=True)
    except (RuntimeError, ValueError, FileNotFoundError, ConfigError) as err:
        errors.append(f"{v.key} seed {seed}: {err}")
        print(f"  error: {err}", flush=True)
    return True


def write_outputs(command, variants, runs: Path, seeds, output: Path, profile: str, dataset: str,
                  quiet: bool = False, records: Path = None) -> str:
    if command == "table1":
        variants = in_table_order(variants)  # trained in the order given, listed in the paper's
    results = collect(runs, variants, seeds, records)
    reference, ref_label = TABLES[command[len("table"):]][1]()
    title = (f"**{PAPER[command]}** — reproduction, profile `{profile}`, dataset `{dataset}`, "
             f"seeds {', '.join(map(str, seeds))}")
    text = markdown_table(variants, results, reference, title, ref_label)
    # atomic: several sweeps may share RUNS (each run folder has one driver: lock.py)
    with atomic_path(output) as tmp:
        tmp.write_text(text)
    runs_file = output.with_name(output.stem + "-runs.json")
    with atomic_path(runs_file) as tmp:
        tmp.write_text(runs_json(results))
    if not quiet:
        print(f"wrote {output} and {runs_file}")
    return text

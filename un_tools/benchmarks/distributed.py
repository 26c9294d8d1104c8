"""The cost of --sync-norm-stats: time per update of a multi-process fairseq-train run, and
time per norm call, with and without it.

1. Trains ``--nproc`` CPU processes through ``scripts/train-distributed.sh`` (gloo), the model
of a profile in ``configs/`` (default ``mini``: 3+3 layers, dim 128, every norm ``--norm-type``),
``--updates`` updates of ``--max-tokens`` tokens per rank. Each rank runs fairseq-train under
``un_tools.benchmarks.update_timer``, which records when every training forward starts;
the time per update is the median of the differences after the first ``--warmup`` updates
(start-up excluded). The runs alternate (off, on, off, on, ...) ``--repeats`` times, so that
a change in background load hits both alike. UN's warmup is set short (``--un-warmup 5``),
so the timed updates take its full path (geometric mean, moving averages).

2. One norm's forward + backward on ``--layer-shape`` rows per rank (default: the tokens and
width of the update benchmark), ``--nproc`` processes joined by gloo, ``sync_stats`` off and
on interleaved call by call, each call started together on all ranks (barrier); median of
``--layer-repeats``. Less exposed to background load than (1); times the number of norm
calls per update (17 in ``mini``) it estimates the cost per update.

Without ``--data`` a synthetic corpus (random sentences over a 1,000-word vocabulary) is
written and binarized under ``--work`` first. Writes ``distributed.json`` and
``distributed.md`` into ``--out``.

    python scripts/benchmark_distributed.py --out benchmarks/results/cpu-distributed
"""

import argparse
import json
import multiprocessing
import random
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

from un_atomic import atomic_path
from un_tools.benchmarks.common import common_options, machine_info
from un_tools.reproduce.config import load_profile

REPO = Path(__file__).resolve().parents[2]
LAUNCHER = REPO / "scripts" / "train-distributed.sh"


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="scripts/benchmark_distributed.py", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common_options(repeats=3, warmup=5, threads=1, out="benchmarks/results/cpu-distributed",
                                devices=("cpu",), warmup_help="first updates of each run, not timed")])
    p.add_argument("--data", help="binarized translation data (default: a synthetic corpus in --work)")
    p.add_argument("--work", default="work/benchmark-distributed", help="scratch folder")
    p.add_argument("--profile", default="mini", help="configs/PROFILE.toml whose model flags to train")
    p.add_argument("--norm-type", help="the --norm-type trained (default: the plugin's default, UN)")
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--max-tokens", type=int, default=1024, help="tokens per rank and update")
    p.add_argument("--updates", type=int, default=40)
    p.add_argument("--skip", type=int, dest="warmup", help=argparse.SUPPRESS)  # the old name of --warmup
    p.add_argument("--layer-shape", default="32,32,128", help="T,B,C per rank of the per-call benchmark")
    p.add_argument("--layer-repeats", type=int, default=200)
    args = p.parse_args(argv)
    if args.smoke:
        args.updates, args.warmup, args.repeats, args.max_tokens = 4, 1, 1, 256
        args.layer_repeats = 5
    if args.updates <= args.warmup + 1:
        p.error(f"--updates={args.updates} must exceed --warmup + 1 = {args.warmup + 1}")
    from un_fairseq.modules import registry  # torch and fairseq: after the arguments are checked

    args.norm_type = args.norm_type or registry.default_norm_type()
    if args.norm_type not in registry.norm_types():
        p.error(f"--norm-type {args.norm_type!r} is not one of {', '.join(registry.norm_types())}")
    return args


def synthetic_corpus(work: Path, pairs: int = 4000, vocab: int = 1000, seed: int = 0) -> Path:
    """Random sentence pairs (8-30 words), binarized with a joined dictionary; reused if there."""
    dest = work / "data-bin"
    if (dest / "train.src-tgt.src.bin").exists():
        return dest
    rng = random.Random(seed)
    text = work / "text"
    text.mkdir(parents=True, exist_ok=True)
    for split, size in (("train", pairs), ("valid", 100)):
        src = [" ".join(f"w{rng.randrange(vocab)}" for _ in range(rng.randint(8, 30))) for _ in range(size)]
        tgt = [" ".join(reversed(s.split())) for s in src]
        (text / f"{split}.src").write_text("\n".join(src) + "\n")
        (text / f"{split}.tgt").write_text("\n".join(tgt) + "\n")
    subprocess.run([sys.executable, "-m", "fairseq_cli.preprocess", "--source-lang", "src", "--target-lang", "tgt",
                    "--trainpref", text / "train", "--validpref", text / "valid", "--destdir", dest,
                    "--joined-dictionary", "--workers", "1"], check=True, capture_output=True)
    return dest


def one_run(args, data: Path, model_flags: List[str], sync: bool, run_dir: Path) -> List[float]:
    """Seconds per update on rank 0 after --warmup updates, of one launcher run."""
    timer = f"{sys.executable} -m un_tools.benchmarks.update_timer {run_dir / 'times'}"
    cmd = ["bash", str(LAUNCHER), "--nproc", str(args.nproc), "--threads", str(args.threads),
           "--log-dir", str(run_dir), "--command", timer, "--",
           str(data), "--user-dir", "un_fairseq", "--save-dir", str(run_dir), "--no-save",
           *model_flags, "--norm-type", args.norm_type, "--un-warmup", "5", "--mabn-warmup", "5",
           "--pn-warmup", "5", "--optimizer", "adam", "--lr", "5e-4", "--lr-scheduler",
           "inverse_sqrt", "--warmup-updates", "10", "--criterion", "label_smoothed_cross_entropy",
           "--label-smoothing", "0.1", "--dropout", "0.1", "--max-tokens", str(args.max_tokens),
           "--max-update", str(args.updates), "--disable-validation", "--num-workers", "0",
           "--log-interval", "10", "--no-progress-bar", "--seed", "1"]
    if sync:
        cmd.append("--sync-norm-stats")
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"benchmark run failed:\n{proc.stderr[-3000:]}")
    starts = json.loads((run_dir / "times" / "rank-0.json").read_text())["starts"]
    return [b - a for a, b in zip(starts[args.warmup:], starts[args.warmup + 1:])]


def norm_call_costs(args, work: Path) -> Dict[str, Dict[str, float]]:
    """``{norm: {"off": ms, "on": ms}}``: one forward + backward per call, median over calls."""
    from un_fairseq.modules.registry import batch_stat_norm_types
    from un_tools.benchmarks import sync_cost  # torch and the plugin: only for this step

    shape = tuple(int(v) for v in args.layer_shape.split(","))
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    store = work / "gloo-store"
    store.unlink(missing_ok=True)
    procs = [ctx.Process(target=sync_cost.run, args=(rank, args.nproc, str(store.resolve()),
                                                      list(batch_stat_norm_types()), shape,
                                                      args.layer_repeats, args.threads, results))
             for rank in range(args.nproc)]
    for proc in procs:
        proc.start()
    costs = results.get()
    for proc in procs:
        proc.join()
    return costs


def main(argv=None) -> None:
    args = parse_args(argv)
    work = Path(args.work)
    data = Path(args.data) if args.data else synthetic_corpus(work)
    model_flags = load_profile(args.profile).model_flags
    info = machine_info("cpu")
    runs: Dict[str, List[List[float]]] = {"off": [], "on": []}
    for rep in range(args.repeats):
        for name in ("off", "on"):
            times = one_run(args, data, model_flags, name == "on", work / f"run-{rep}-{name}")
            runs[name].append(times)
            print(f"repeat {rep + 1}/{args.repeats}, --sync-norm-stats {name}: "
                  f"median {1000 * statistics.median(times):.1f} ms/update", flush=True)
    summary = {name: 1000 * statistics.median([t for r in times for t in r]) for name, times in runs.items()}
    overhead = 100 * (summary["on"] / summary["off"] - 1)
    print(f"median ms/update: off {summary['off']:.1f}, on {summary['on']:.1f} ({overhead:+.1f}%)")
    work.mkdir(parents=True, exist_ok=True)
    calls = norm_call_costs(args, work)
    for norm, ms in calls.items():
        print(f"{norm}: {ms['off']:.3f} ms per call without sync, {ms['on']:.3f} with", flush=True)

    out = Path(args.out)
    result = dict(args=vars(args), machine=info, ms_per_update=summary, overhead_percent=overhead,
                  runs_seconds=runs, ms_per_norm_call=calls)
    with atomic_path(out / "distributed.json") as tmp:
        tmp.write_text(json.dumps(result, indent=1))
    lines = [
        "# Cost of --sync-norm-stats (cpu)", "",
        f"`{' '.join(['scripts/benchmark_distributed.py', *(argv if argv is not None else sys.argv[1:])])}`", "",
        f"Machine: {info.get('Model name', '?')}, {info.get('CPU(s)', '?')} CPUs, torch {info['torch']}, "
        f"load average at start {info['loadavg_at_start']}.", "",
        f"{args.nproc} processes (gloo, legacy_ddp) x {args.threads} thread(s), profile `{args.profile}`, "
        f"--norm-type {args.norm_type}, {args.max_tokens} tokens per rank and update; time per update "
        f"after {args.warmup} updates, {args.updates - args.warmup - 1} updates per run, "
        f"{args.repeats} runs of each variant, interleaved.", "",
        "| --sync-norm-stats | median ms / update | per-run medians (ms) | vs off |",
        "|---|---:|---|---:|",
    ]
    for name in ("off", "on"):
        per_run = ", ".join(f"{1000 * statistics.median(r):.0f}" for r in runs[name])
        delta = 100 * (summary[name] / summary["off"] - 1)
        lines.append(f"| {name} | {summary[name]:.1f} | {per_run} | {delta:+.1f}% |")
    lines += [
        "", f"One norm call, forward + backward, {args.layer_shape.replace(',', ' x ')} (T x B x C) per "
        f"rank, {args.nproc} processes, median of {args.layer_repeats} calls (variants interleaved):", "",
        "| norm | ms without sync | ms with sync | added ms per call |", "|---|---:|---:|---:|",
    ]
    for norm, ms in calls.items():
        lines.append(f"| {norm} | {ms['off']:.3f} | {ms['on']:.3f} | {ms['on'] - ms['off']:+.3f} |")
    with atomic_path(out / "distributed.md") as tmp:
        tmp.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

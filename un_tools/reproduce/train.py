"""One training run of ``transformer_un``: a profile of ``configs/``, a normalizer, a seed.

    scripts/train.sh --profile mini --norm un --seed 1 --data work/m30k/bin --out work/runs/un/seed1 \
        [--dataset multi30k] [--force] [--print-command] [-- EXTRA FAIRSEQ FLAGS]

Writes into ``--out``: ``checkpoints/`` (fairseq's ``--save-dir``), ``train.log`` (fairseq's
output, appended across resumes), ``command.txt``, ``driver.lock`` and ``train.json`` (status
``running``, ``interrupted``, ``done``, ``FAIL`` or ``error``, the reason, updates, wall time;
while it runs, the updates and wall time so far, rewritten at every log line that has them).

- A finished run (``done`` or ``FAIL`` in ``train.json``) is not trained again unless ``--force``.
- An interrupted run resumes from ``checkpoints/checkpoint_last.pt`` (fairseq's own restore);
  its wall time and divergence check go on from where they were.
- FAIL = the loss diverged (see :mod:`.logs`); the run is stopped as soon as that is seen.
- ``error`` = fairseq failed for another reason (bad flag, missing file): exit status 1 and
  nothing is marked, so fixing the cause and re-running trains it.
- SIGTERM, SIGHUP or SIGINT stop fairseq-train (its whole process group; SIGKILL after a grace
  period), mark the run ``interrupted`` and exit with 128 + the signal (:mod:`.signals`).
- One driver per run folder: a second one exits with status 2 and writes nothing (:mod:`.lock`).
"""

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import List, Optional, Tuple



from un_atomic import atomic_path
from .config import REPO, ConfigError, Profile, Dataset, available, load_dataset, load_profile, flag_value
from . import signals
from .device import device_flags
from .lock import FolderLocked, run_lock
from .logs import DivergenceMonitor, fatal_error, follow, parse_line
from .run_files import eval_file, read_json

FINAL = ("done", "FAIL")
RESUMABLE = ("running", "interrupted", "error")  # statuses whose wall time a resume adds to


FAIRSEQ_MODULES = {
    "fairseq-train": "fairseq_cli.train",
    "fairseq-generate": "fairseq_cli.generate",
    "fairseq-validate": "fairseq_cli.validate",
    "un-average-checkpoints": "un_fairseq.average_checkpoints",
}


def fairseq_command(name: str) -> List[str]:
    """How to start ``name`` (one of ``FAIRSEQ_MODULES``) with this interpreter: ``python -m``
    the module behind the console script. (Safe loading of the numpy arrays that
    ``--eval-bleu`` leaves in checkpoints comes with ``--user-dir un_fairseq``: see
    ``un_fairseq/checkpoint_io.py``.)"""
    return [sys.executable, "-m", FAIRSEQ_MODULES[name]]


def project_commit() -> Optional[str]:
    """The git commit of this checkout (``-dirty`` if tracked files changed), or None outside
    git: every run record names the code it ran on."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("-dirty" if dirty else "")


def write_json(path: Path, data: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


def check_data(data: Path, dataset: Dataset) -> None:
    """Fail with a message naming what is missing in a binarized fairseq folder."""
    if not data.is_dir():
        raise FileNotFoundError(f"data folder not found: {data} (binarize it first, e.g. "
                                f"scripts/prepare-multi30k.sh --out DIR; then pass DIR/bin)")
    if not list(data.glob("dict.*.txt")):
        raise FileNotFoundError(f"{data} holds no dict.*.txt: not a fairseq-preprocess output folder")
    if not list(data.glob("train.*.bin")):
        raise FileNotFoundError(f"{data} holds no train.*.bin: the training split is missing")


def valid_bleu_flags(profile: Profile, dataset: Dataset) -> List[str]:
    """The profile's valid flags with the dataset's BPE removal added to --eval-bleu."""
    flags = list(profile.valid_flags)
    if "--eval-bleu" in flags and "--eval-bleu-remove-bpe" not in flags and dataset.remove_bpe:
        flags += ["--eval-bleu-remove-bpe", dataset.remove_bpe]
    return flags


def build_command(profile: Profile, dataset: Dataset, norm: str, seed: int, data: Path,
                  out: Path, extra: List[str]) -> List[str]:
    # the pair named explicitly, so that the checkpoints store it (un-fuse, un-export and the hub
    # then need only the dictionaries; fairseq infers an unnamed pair from binarized files only)
    cmd = [*fairseq_command("fairseq-train"), str(data), "--source-lang", dataset.src, "--target-lang", dataset.tgt,
           "--user-dir", str(REPO / "un_fairseq"),
           "--save-dir", str(out / "checkpoints"), "--seed", str(seed), "--norm-type", norm,
           *profile.model_flags, *profile.train_flags, *profile.norm_flags,
           *valid_bleu_flags(profile, dataset), *profile.log_flags,
           "--log-format", "json", "--no-progress-bar", *device_flags()]
    return cmd + list(extra)


def _progress(line: str, started: float) -> Optional[str]:
    rec = parse_line(line)
    if rec is None or rec.kind == "train":
        return None
    elapsed = time.time() - started
    if rec.kind == "train_inner":
        return (f"  [{elapsed:6.0f}s] update {rec.updates}: loss {rec.stats.get('loss')} "
                f"lr {rec.stats.get('lr')} gnorm {rec.stats.get('gnorm')}")
    bleu = f" bleu {rec.stats['bleu']}" if "bleu" in rec.stats else ""
    return f"  [{elapsed:6.0f}s] valid at update {rec.updates}: loss {rec.stats.get('loss')}{bleu}"


def repair_last_checkpoint(checkpoints: Path) -> Optional[str]:
    """Make ``checkpoint_last.pt`` readable again if a kill truncated it; returns what was done.

    fairseq writes a save's first file atomically but then copies it to ``checkpoint_last.pt``
    with a plain copy, so a run killed during that copy leaves a truncated file that its resume
    cannot load. torch checkpoints are zip archives: a file that is not a whole one is replaced
    by the newest whole ``checkpoint*.pt`` (an atomic copy), or moved aside if there is none."""
    last = checkpoints / "checkpoint_last.pt"
    if not last.exists() or zipfile.is_zipfile(last):
        return None
    whole = [p for p in checkpoints.glob("checkpoint*.pt") if p != last and zipfile.is_zipfile(p)]
    if not whole:
        os.replace(last, last.with_name(last.name + ".truncated"))
        return f"{last} is truncated and no other checkpoint is whole: training starts over"
    newest = max(whole, key=lambda p: p.stat().st_mtime)
    with atomic_path(last) as tmp:
        shutil.copyfile(newest, tmp)
    return f"{last} was truncated (the run was killed while fairseq copied it): resuming from {newest.name}"


def run_training(profile: Profile, dataset: Dataset, norm: str, seed: int, data: Path, out: Path,
                 extra: List[str] = (), force: bool = False, quiet: bool = False) -> dict:
    """Train (or resume, or skip) one run; returns its ``train.json`` content. Holds the run
    folder's lock (:class:`.lock.FolderLocked` if another driver has it, nothing written)."""
    names = norm_types()
    if norm not in names:
        raise ValueError(f"--norm {norm!r} is not one of {', '.join(names)}")
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    with run_lock(out):
        return _train_locked(profile, dataset, norm, seed, data, out, extra, force, quiet)


def _train_locked(profile: Profile, dataset: Dataset, norm: str, seed: int, data: Path, out: Path,
                  extra: List[str], force: bool, quiet: bool) -> dict:
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    data = Path(data).resolve()  # fairseq runs from the repository root
    state_path = out / "train.json"
    state = read_json(state_path) or {}
    if state.get("status") in FINAL and not force:
        say(f"{out}: already {state['status']} ({state.get('reason') or 'finished'}), not retrained")
        return state
    check_data(data, dataset)
    cmd = build_command(profile, dataset, norm, seed, data, out, list(extra))
    (out / "command.txt").write_text(shlex.join(cmd) + "\n")
    last = out / "checkpoints" / "checkpoint_last.pt"
    if force and state.get("status") in FINAL:
        # a fresh start: resuming a diverged run from its last checkpoint would not be a retry
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
        for name in ("train.log", eval_file(), "avg.pt"):
            if (out / name).exists():
                os.replace(out / name, out / f"{name}.previous")
        say(f"{out}: --force: starting over (previous log kept as train.log.previous)")
        state = {}
    resumable = state.get("status") in RESUMABLE
    prior_wall = float(state.get("wall_s", 0.0)) if resumable else 0.0
    updates = state.get("num_updates") if resumable else None  # the last one logged before
    monitor = DivergenceMonitor(profile.explode_ratio)
    log_path = out / "train.log"
    repaired = repair_last_checkpoint(last.parent)
    if repaired:
        say(repaired)
    if last.exists():
        say(f"{out}: resuming from {last}")
        if log_path.exists():  # the loss history goes on where it was (see logs.DivergenceMonitor.resume)
            monitor.resume(log_path.read_text(errors="replace"))
    state = dict(status="running", profile=profile.name, dataset=dataset.name, norm=norm, seed=seed,
                 data=str(data), command=shlex.join(cmd), commit=project_commit(),
                 wall_s=prior_wall, num_updates=updates, reason=None,
                 max_update=flag_value(cmd, "--max-update"))
    write_json(state_path, state)

    started = time.time()

    def wall_s() -> float:  # this run's training time so far, earlier invocations included
        return round(prior_wall + time.time() - started, 1)

    last_loss = None
    tail: List[str] = []
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONWARNINGS=os.environ.get("PYTHONWARNINGS", "ignore"))
    # fairseq writes train.log itself (no pipe through this driver: a line it logged is on disk
    # even if the driver is killed before reading it); the driver follows the file
    proc = None
    try:
        with open(log_path, "ab") as log:
            log.write(f"### {time.strftime('%Y-%m-%d %H:%M:%S')} {shlex.join(cmd)}\n".encode())
            log.flush()
            offset = log.tell()
            proc = signals.start(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 cwd=REPO, env=env)
        for line in follow(log_path, offset, lambda: proc.poll() is None):
            tail = (tail + [line])[-200:]
            rec = parse_line(line)
            if rec is not None and rec.updates is not None:
                updates = max(updates or 0, rec.updates)
                # kept current, so that a run killed outright (SIGKILL, a machine taken
                # away) still has its wall time when it is resumed
                state.update(wall_s=wall_s(), num_updates=updates)
                write_json(state_path, state)
            if rec is not None and rec.kind == "train_inner":
                last_loss = rec.loss
                if monitor.add(rec):
                    say(f"  diverged: {monitor.reason}; stopping fairseq-train")
                    signals.stop(proc)
                    break
            msg = _progress(line, started)
            if msg:
                say(msg)
        proc.wait()
    except BaseException as err:  # a stop signal (signals.Interrupted), Ctrl-C, or a bug here
        if proc is not None:
            signals.stop(proc)
        how = signals.signal_name(err)
        where = f"at update {updates}" if updates is not None else "before its first logged update"
        state.update(status="interrupted", wall_s=wall_s(), num_updates=updates, last_train_loss=last_loss,
                     reason=f"stopped by {how} {where}; run again to resume")
        write_json(state_path, state)
        say(f"{out}: interrupted ({how}) {where}, {state['wall_s']:.0f} s of training "
            f"so far; fairseq-train stopped; run again to resume")
        raise
    text = "".join(tail)
    reason = monitor.reason or fatal_error(text)
    state.update(wall_s=wall_s(), num_updates=updates,
                 last_train_loss=last_loss, returncode=proc.returncode)
    if reason:
        state.update(status="FAIL", reason=reason)
    elif proc.returncode != 0:
        state.update(status="error",
                     reason=f"fairseq-train exited with status {proc.returncode}; see {log_path}")
        say("".join(tail[-25:]))
    else:
        state.update(status="done", reason=None)
    write_json(state_path, state)
    say(f"{out}: {state['status']}" + (f" ({state['reason']})" if state["reason"] else "")
        + f", {updates} updates, {state['wall_s']:.0f} s of training")
    return state


def norm_types() -> Tuple[str, ...]:
    """The plugin's ``--norm-type`` names (imports torch and fairseq: only once a run is asked for)."""
    from un_fairseq.modules.registry import norm_types as registered

    return registered()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="scripts/train.sh", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", required=True, help=f"configs/PROFILE.toml ({', '.join(available())}) or a path")
    p.add_argument("--norm", required=True, metavar="NORM",
                   help="--norm-type of transformer_un (python -m un_fairseq.norm_flags lists them)")
    p.add_argument("--seed", required=True, type=int, help="fairseq --seed")
    p.add_argument("--data", help="binarized data folder (default: the dataset's data_dir)")
    p.add_argument("--out", required=True, help="run folder (checkpoints, log, train.json)")
    p.add_argument("--dataset", help="configs/dataset-NAME.toml (default: the profile's dataset)")
    p.add_argument("--force", action="store_true", help="train again even if train.json says done/FAIL")
    p.add_argument("--print-command", action="store_true", help="print the fairseq-train command and exit")
    p.add_argument("extra", nargs=argparse.REMAINDER, help="after --: extra fairseq-train flags")
    return p


def resolve_data(data: Optional[str], dataset: Dataset) -> Path:
    if data:
        return Path(data)
    if not dataset.data_dir:
        raise ConfigError(f"--data is required: dataset {dataset.name!r} has no default data_dir")
    return Path(dataset.data_dir)


def main(argv=None) -> int:
    p = parser()
    args = p.parse_args(argv)
    extra = args.extra[1:] if args.extra[:1] == ["--"] else args.extra
    try:
        profile = load_profile(args.profile)
        dataset = load_dataset(args.dataset or profile.dataset or p.error("--dataset is required"))
        if args.norm not in norm_types():
            p.error(f"--norm {args.norm!r} is not one of {', '.join(norm_types())}")
        data = resolve_data(args.data, dataset)
        out = Path(args.out)
        if args.print_command:
            print(shlex.join(build_command(profile, dataset, args.norm, args.seed, data, out, extra)))
            return 0
        with signals.stop_signals():
            state = run_training(profile, dataset, args.norm, args.seed, data, out, extra, args.force)
    except (ConfigError, FileNotFoundError, ValueError, FolderLocked) as err:
        print(f"train.sh: error: {err}", file=sys.stderr)
        return 2
    except signals.Interrupted as stop:
        return stop.exit_status
    return 1 if state["status"] == "error" else 0


if __name__ == "__main__":
    sys.exit(main())

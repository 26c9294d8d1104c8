"""One prepared check of the project on a GPU (``scripts/gpu-check.sh``; docs/gpu.md).

Stages, each reported in the record and the exit code (1 if any failed):

0. ``install``: the wheels of ``scripts/gpu-wheels.sh`` (``--wheels``, default ``.whl/``)
   into a scratch folder with pip ``--no-index --no-deps``; skipped when there are none;
1. ``env``: versions of Python, torch, CUDA, the GPU, fairseq, onnxruntime;
2. ``norm_tests``: the normalizer tests against the float64 reference on ``--device``
   (float32, fp16, bf16: ``tests/test_normalizers.py``, ``tests/test_mixed_precision.py``);
3. ``train``: ``transformer_un`` (iwslt size) ``--fp16`` for ``--updates`` updates with UN and
   with LN, on synthetic data or a prepared folder (``--data``): updates/s, tokens/s, peak
   memory; fails on a non-finite loss;
4. ``inference``: ``fairseq-generate --fp16`` (beam 5, every hypothesis the same length) of
   LN, UN unfused, UN folded (``un-fuse``) and NoNorm (the UN model's weights without norms),
   and ONNX Runtime on the device's provider when it has one: sentences/s and peak memory at
   batch 1 and 64.

Then one JSON record is written under ``--out`` (default ``results/gpu/``) and a table printed.
``--device cpu --quick`` is the reduced mode CI runs: a tiny model, a few updates, a few
sentences, the float32 norm tests only.

    scripts/gpu-check.sh                          # on a GPU machine
    scripts/gpu-check.sh --device cpu --quick --out /tmp/check
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from importlib.util import find_spec
from pathlib import Path

from un_tools.benchmarks.gpu_stages import (
    BATCH_SIZES, BEAM, REPO, SIZES, Runner, StageError, log, stage_env, stage_inference, stage_install,
    stage_norm_tests, stage_train, write_synthetic,
)

# -- the record ------------------------------------------------------------------------------

def _git(*args):
    try:
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def table(record: dict) -> str:
    """The record as Markdown tables: stages, training, inference."""
    lines = ["| stage | status | seconds | note |", "| --- | --- | --- | --- |"]
    for name, st in record["stages"].items():
        note = st.get("error") or st.get("reason") or ""
        if name == "norm_tests" and "passed" in st:
            note = f"{st['passed']} passed, {st['skipped']} skipped ({', '.join(st['dtypes'])})"
        lines.append(f"| {name} | {st['status']} | {st.get('seconds', 0):.0f} | {note[:120]} |")
    train = record["stages"].get("train", {}).get("norms", {})
    if train:
        lines += ["", "| training | updates | updates/s | tokens/s | peak MiB | loss first -> last |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for label, r in train.items():
            if r.get("status") == "passed":
                lines.append(f"| {label} | {r['updates']} | {r['updates_per_s']:.2f} | {r['tokens_per_s']:.0f} | "
                             f"{r['peak_mib']:.0f} | {r['first_loss']:.2f} -> {r['last_loss']:.2f} |")
            else:
                lines.append(f"| {label} | {r.get('status')} | | | | |")
    inf = record["stages"].get("inference", {}).get("variants", {})
    if inf:
        head = " | ".join(f"sent/s, peak MiB @ batch {B}" for B in BATCH_SIZES)
        lines += ["", f"| inference (beam {BEAM}) | {head} |", "| --- |" + " --- |" * len(BATCH_SIZES)]
        for label, v in inf.items():
            cells = []
            for B in BATCH_SIZES:
                r = v.get(str(B), {})
                if "sentences_per_s" in r:
                    peak = "n/a" if r.get("peak_mib") is None else f"{r['peak_mib']:.0f}"
                    cells.append(f"{r['sentences_per_s']:.1f}, {peak}")
                else:
                    cells.append(v.get("status") or r.get("status") or "")
            name = f"{label} ({v['provider']})" if "provider" in v else label
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="gpu-check", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"), help="where to run (default: cuda)")
    p.add_argument("--quick", action="store_true", help="the reduced mode: tiny model, a few updates and sentences")
    p.add_argument("--data", type=Path, metavar="DIR",
                   help="a fairseq-preprocess folder with a joined dictionary and train/valid/test "
                        "(e.g. Multi30k); default: a synthetic corpus made here")
    p.add_argument("--updates", type=int, metavar="N", help="training updates per norm (default: 300; --quick: 8)")
    p.add_argument("--wheels", type=Path, default=REPO / ".whl", metavar="DIR",
                   help="wheels made by scripts/gpu-wheels.sh (default: .whl/; none: skip the install)")
    p.add_argument("--site", type=Path, metavar="DIR",
                   help="folder the wheels are installed into (default: a scratch folder)")
    p.add_argument("--out", type=Path, default=REPO / "results" / "gpu", metavar="DIR",
                   help="folder of the JSON record (default: results/gpu)")
    p.add_argument("--commit", help="the commit checked, where the tree has no .git (default: git's HEAD)")
    p.add_argument("--skip", action="append", default=[], choices=("norm_tests", "train", "inference"),
                   help="leave a stage out (repeatable)")
    p.add_argument("--budget", type=float, metavar="SECONDS",
                   help="stop starting work after this many seconds, so that the record is still "
                        "written (default: 480; --quick: 600)")
    p.add_argument("--work", type=Path, metavar="DIR", help="keep the checkpoints and logs here (default: a scratch folder)")
    args = p.parse_args(argv)
    if args.data is not None and not (args.data / "dict.src.txt").is_file() and not list(args.data.glob("dict.*.txt")):
        p.error(f"--data {args.data}: no fairseq dictionary (dict.*.txt) there; give a fairseq-preprocess folder")
    if args.budget is not None and args.budget <= 0:
        p.error(f"--budget {args.budget}: give a positive number of seconds")
    if args.updates is not None and args.updates < 2:
        p.error(f"--updates {args.updates}: give at least 2")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    size = dict(SIZES["quick" if args.quick else "full"])
    if args.updates:
        size["updates"] = args.updates
        size["warmup"] = min(size["warmup"], args.updates // 2)
    started = time.time()
    work = args.work or Path(tempfile.mkdtemp(prefix="gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    site = args.site or work / "site"
    spec = find_spec("un_fairseq")
    user_dir = str(Path(spec.origin).parent) if spec else str(REPO / "un_fairseq")
    budget = args.budget or (600 if args.quick else 480)
    run = Runner(sys.executable, work, [site, REPO, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))],
                 deadline=started + budget)
    record = {
        "kind": "gpu-check", "mode": "quick" if args.quick else "full", "device": args.device,
        "command": ["scripts/gpu-check.sh", *(argv if argv is not None else sys.argv[1:])],
        "commit": args.commit or _git("rev-parse", "HEAD"),
        "tree_modified": None,
        "started_utc": datetime.datetime.fromtimestamp(started, datetime.timezone.utc).isoformat(timespec="seconds"),
        "sizes": {k: v for k, v in size.items() if not k.endswith("timeout")}, "budget_s": budget,
        "data": str(args.data) if args.data else "synthetic",
        "env": {}, "stages": {},
    }
    status = None if args.commit else _git("status", "--porcelain", "--untracked-files=no")
    record["tree_modified"] = None if status is None else status != ""  # None: no git here
    log(f"{record['mode']} check on {args.device}; work folder {work}")

    blocked = set()  # stages that failed, or were skipped because one they need failed

    def stage(name, fn, *deps):
        if name in args.skip:
            record["stages"][name] = {"status": "skipped", "reason": "--skip"}
            return {}
        missing = [d for d in deps if d in blocked]
        if missing:
            blocked.add(name)
            record["stages"][name] = {"status": "skipped", "reason": f"{', '.join(missing)} failed"}
            return {}
        log(f"{name} ...")
        begin = time.time()
        try:
            result = fn() or {}
            status = result.pop("status", "passed")
            record["stages"][name] = {"status": status, **result}
        except StageError as err:
            record["stages"][name] = {"status": "failed", "error": str(err), "log_tail": err.tail, **err.partial}
            result = err.partial
        except Exception as err:  # a bug of the check itself: reported like a stage failure
            record["stages"][name] = {"status": "failed", "error": f"{type(err).__name__}: {err}"}
            result = {}
        if record["stages"][name]["status"] == "failed":
            blocked.add(name)
        record["stages"][name]["seconds"] = round(time.time() - begin, 1)
        st = record["stages"][name]
        log(f"{name}: {st['status']} ({st['seconds']:.0f} s){': ' + st['error'] if 'error' in st else ''}")
        return result

    stage("install", lambda: stage_install(run, args.wheels, site))

    def versions():
        found = stage_env(run, work)
        if args.device == "cuda" and not found.get("cuda_available"):
            raise StageError(f"torch {found.get('torch')} sees no CUDA device: use --device cpu", partial=found)
        return found

    record["env"] = stage("env", versions, "install")
    record["stages"]["env"] = {k: v for k, v in record["stages"]["env"].items() if k not in record["env"]}
    stage("norm_tests", lambda: stage_norm_tests(run, work, args.device, args.quick, size["tests_timeout"]), "env")
    data = args.data
    if data is None and not {"train", "inference"} <= set(args.skip):
        def make_data():
            write_synthetic(work / "text", size)
            run("preprocess", ["-m", "fairseq_cli.preprocess", "--source-lang", "src", "--target-lang", "tgt",
                               "--trainpref", work / "text/train", "--validpref", work / "text/valid",
                               "--testpref", work / "text/test", "--destdir", work / "data-bin",
                               "--joined-dictionary", "--workers", "1"], timeout=300)
            return {"sentences": {s: size[s] for s in ("train", "valid", "test")}, "vocab": size["vocab"]}
        stage("data", make_data, "env")
        data = work / "data-bin"
    train = stage("train", lambda: stage_train(run, work, data, args.device, size, user_dir, record["env"]), "env", "data")
    stage("inference", lambda: stage_inference(run, work, data, args.device, size, user_dir, train, record["env"]),
          "env", "data")
    record["seconds"] = round(time.time() - started, 1)
    record["ok"] = all(st["status"] != "failed" for st in record["stages"].values())
    stamp = datetime.datetime.fromtimestamp(started, datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = args.out / f"gpu-check-{args.device}{'-quick' if args.quick else ''}-{stamp}.json"
    from un_atomic import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record, indent=1) + "\n")
    print(table(record), flush=True)
    log(f"{'passed' if record['ok'] else 'FAILED'} in {record['seconds']:.0f} s; record: {path}")
    return 0 if record["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

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
import random
import re
import shlex
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from importlib.util import find_spec
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NORM_TEST_FILES = ("tests/test_normalizers.py", "tests/test_mixed_precision.py")
#: --quick: the float32 comparisons of UN, BN and the online norms with the reference.
QUICK_NORM_TESTS = ("test_un_matches_reference and base or test_batchnorm_matches_reference "
                    "or test_online_norms_match_reference")
NORMS = {"LN": "layer", "UN": "un"}  # trained; the other inference variants derive from UN
BATCH_SIZES = (1, 64)
BEAM = 5
#: model sizes and workloads of the full check and of --quick
SIZES = {
    "full": dict(arch="transformer_un_iwslt_de_en", model=[], updates=300, warmup=30, lr_warmup=100,
                 max_tokens=4096, vocab=1000, lengths=(5, 30), train=20000, valid=128, test=640,
                 batch1_shards=5, gen_len=20, timeout=150, tests_timeout=240),
    "quick": dict(arch="transformer_un", updates=8, warmup=2, lr_warmup=4, max_tokens=256, vocab=40,
                  lengths=(3, 8), train=160, valid=16, test=16, batch1_shards=4, gen_len=5, timeout=180,
                  tests_timeout=300,
                  model=["--encoder-layers", "1", "--decoder-layers", "1", "--encoder-embed-dim", "16",
                         "--decoder-embed-dim", "16", "--encoder-ffn-embed-dim", "32",
                         "--decoder-ffn-embed-dim", "32", "--encoder-attention-heads", "2",
                         "--decoder-attention-heads", "2"]),
}


def log(msg: str) -> None:
    print(f"[gpu-check] {msg}", flush=True)


class StageError(Exception):
    """A stage's failure: one line, the tail of the log that shows it, and the numbers the
    stage did measure (``partial``)."""

    def __init__(self, msg, tail="", partial=None):
        super().__init__(msg)
        self.tail, self.partial = tail, partial or {}


class Runner:
    """Runs the child processes with the scratch site first on PYTHONPATH, each under a
    timeout, its output in ``work/logs``."""

    def __init__(self, python, work: Path, pythonpath, deadline: float):
        self.python, self.work, self.deadline = python, work, deadline
        (work / "logs").mkdir(parents=True, exist_ok=True)
        self.env = dict(os.environ, PYTHONPATH=os.pathsep.join(map(str, pythonpath)),
                        PYTHONUNBUFFERED="1", PYTHONNOUSERSITE="1")
        self.count = 0

    def __call__(self, name, args, timeout):
        self.count += 1
        left = self.deadline - time.time()
        if left < 5:
            raise StageError(f"{name}: not started, the time budget (--budget) is spent")
        timeout = min(timeout, left)
        path = self.work / "logs" / f"{self.count:02d}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.log"
        cmd = [str(self.python), *map(str, args)]
        with open(path, "w") as f:
            f.write("$ " + shlex.join(cmd) + "\n")
            f.flush()
            try:
                proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=REPO, env=self.env,
                                      timeout=timeout)
            except subprocess.TimeoutExpired:
                raise StageError(f"{name}: no result within {timeout:.0f} s", _tail(path))
        if proc.returncode != 0:
            raise StageError(f"{name}: exit status {proc.returncode}", _tail(path))
        return path

    def json(self, name, args, out: Path, timeout):
        self(name, args, timeout)
        return json.loads(out.read_text())


def _tail(path: Path, lines: int = 12) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


# -- the synthetic corpus --------------------------------------------------------------------

def write_synthetic(folder: Path, size: dict, seed: int = 1) -> None:
    """``train/valid/test.{src,tgt}``: random sentences of ``w<i>`` tokens, each target the
    source with every token mapped by a fixed permutation (learnable in a few hundred
    updates, so the loss falls and generation is that of a trained model)."""
    rng = random.Random(seed)
    V = size["vocab"]
    perm = list(range(V))
    rng.shuffle(perm)
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "valid", "test"):
        src, tgt = [], []
        for _ in range(size[split]):
            ids = [rng.randrange(V) for _ in range(rng.randint(*size["lengths"]))]
            src.append(" ".join(f"w{i}" for i in ids))
            tgt.append(" ".join(f"w{perm[i]}" for i in ids))
        (folder / f"{split}.src").write_text("\n".join(src) + "\n")
        (folder / f"{split}.tgt").write_text("\n".join(tgt) + "\n")


# -- the stages ------------------------------------------------------------------------------

def stage_install(run: Runner, wheels: Path, site: Path):
    found = sorted(wheels.glob("*.whl")) if wheels.is_dir() else []
    if not found:
        return {"status": "skipped", "reason": f"no wheels in {wheels}: the installed packages are used"}
    run("pip install", ["-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                        "--no-cache-dir", "--upgrade", "--target", site, *found], timeout=300)
    return {"wheels": [w.name for w in found]}


def stage_env(run: Runner, work: Path):
    out = work / "env.json"
    return run.json("versions", ["-m", "un_tools.benchmarks.gpu_fairseq", "env", out], out, timeout=300)


def stage_norm_tests(run: Runner, work: Path, device: str, quick: bool, timeout: int):
    junit = work / "norm-tests.xml"
    args = ["-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=", "--device", device,
            "--junitxml", junit, "-W", "ignore::DeprecationWarning"]
    args += [NORM_TEST_FILES[0], "-k", QUICK_NORM_TESTS] if quick else list(NORM_TEST_FILES)
    failed = None
    try:
        run("norm tests", args, timeout=timeout)
    except StageError as err:
        failed = err
    if not junit.is_file():
        raise failed or StageError("pytest wrote no report")
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    failures = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        kind = next((c.tag for c in case if c.tag in ("failure", "error", "skipped")), "passed")
        counts[{"failure": "failed", "error": "errors"}.get(kind, kind)] += 1
        if kind in ("failure", "error"):
            failures.append(f"{case.get('classname')}::{case.get('name')}")
    result = {**counts, "files": list(NORM_TEST_FILES[:1] if quick else NORM_TEST_FILES),
              "selection": QUICK_NORM_TESTS if quick else None,
              "dtypes": ["float32"] if quick else ["float32", "float16", "bfloat16"]}
    if failures or failed or counts["passed"] == 0:
        raise StageError(f"norm tests: {counts['failed']} failed, {counts['errors']} errors, "
                         f"{counts['passed']} passed" + (f"; first: {failures[0]}" if failures else ""),
                         "\n".join(failures[:10]) or getattr(failed, "tail", ""))
    return result


def _device_flags(device: str):
    """fairseq-train's flags for ``--fp16`` on the device. On the CPU the loss scale starts
    at 1: fairseq 0.12's trainer handles an fp16 overflow with ``torch.tensor(0.0).cuda()``,
    which fails without CUDA, so the CPU run must not overflow."""
    if device == "cpu":
        return ["--cpu", "--fp16", "--fp16-no-flatten-grads", "--fp16-init-scale", "1"]
    return ["--fp16"]


def stage_train(run: Runner, work: Path, data: Path, device: str, size: dict, user_dir: str):
    results, errors = {}, []
    for label, norm in NORMS.items():
        out, save = work / f"train-{norm}.json", work / f"ckpt-{norm}"
        args = ["-m", "un_tools.benchmarks.gpu_fairseq", "train", out, "--warmup", size["warmup"], "--",
                data, "--user-dir", user_dir, "--arch", size["arch"], *size["model"], "--norm-type", norm,
                "--share-all-embeddings", "--optimizer", "adam", "--adam-betas", "(0.9, 0.98)",
                "--lr", "5e-4", "--lr-scheduler", "inverse_sqrt", "--warmup-updates", size["lr_warmup"],
                "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1",
                "--dropout", "0.1", "--max-tokens", size["max_tokens"], "--max-update", size["updates"],
                "--seed", "1", "--save-dir", save, "--no-epoch-checkpoints", "--disable-validation",
                "--num-workers", "0", "--log-format", "simple", "--log-interval", "50",
                *_device_flags(device)]
        log(f"  train {label} ({size['updates']} updates)")
        try:
            rec = run.json(f"train {label}", args, out, timeout=size["timeout"])
        except StageError as err:
            results[label] = {"status": "failed", "error": str(err), "log_tail": err.tail}
            errors.append(str(err))
            continue
        if rec["nonfinite_losses"] or rec["last_loss"] is None:
            rec["status"] = "failed"
            errors.append(f"train {label}: {rec['nonfinite_losses']} non-finite losses, last {rec['last_loss']}")
        else:
            rec["status"] = "passed"
        results[label] = rec
        log(f"    {rec['updates_per_s']:.2f} updates/s, {rec['tokens_per_s']:.0f} tokens/s, "
            f"peak {rec['peak_mib']:.0f} MiB, loss {rec['first_loss']:.2f} -> {rec['last_loss']:.2f}")
    if errors:
        raise StageError("; ".join(errors), partial={"norms": results})
    return {"norms": results}


def _onnx_provider(env: dict, device: str):
    providers = env.get("onnxruntime_providers")
    want = "CUDAExecutionProvider" if device == "cuda" else "CPUExecutionProvider"
    if providers is None:
        return None, "onnxruntime is not importable"
    if want not in providers:
        return None, f"onnxruntime has no {want} (it has {', '.join(providers)})"
    return want, None


def stage_inference(run: Runner, work: Path, data: Path, device: str, size: dict, user_dir: str,
                    train: dict, env: dict):
    ckpt = {label: work / f"ckpt-{norm}" / "checkpoint_last.pt" for label, norm in NORMS.items()
            if train.get("norms", {}).get(label, {}).get("status") == "passed"}
    variants, errors = {}, []
    if "UN" in ckpt:
        try:
            folded, nonorm = work / "ckpt-un-folded.pt", work / "ckpt-nonorm.pt"
            run("un-fuse", ["-m", "un_fairseq.fuse", ckpt["UN"], folded, "--data", data], timeout=300)
            run("nonorm twin", ["-m", "un_tools.benchmarks.gpu_fairseq", "nonorm", ckpt["UN"], nonorm,
                                "--data", data], timeout=300)
            ckpt.update({"UN folded": folded, "NoNorm": nonorm})
        except StageError as err:
            errors.append(str(err))
    L = size["gen_len"]
    for label in ("LN", "UN", "UN folded", "NoNorm"):
        if label not in ckpt:
            variants[label] = {"status": "skipped", "reason": "no checkpoint (see train / un-fuse)"}
            errors.append(f"{label}: no checkpoint")
            continue
        slug = label.replace(" ", "_")
        out = work / f"gen-{slug}.json"
        args = ["-m", "un_tools.benchmarks.gpu_fairseq", "generate", out,
                "--batch-sizes", ",".join(map(str, BATCH_SIZES)), "--batch1-shards", size["batch1_shards"],
                "--", data, "--user-dir", user_dir, "--path", ckpt[label], "--gen-subset", "test",
                "--beam", BEAM, "--required-batch-size-multiple", "1", "--min-len", L, "--max-len-a", "0",
                "--max-len-b", L, "--num-workers", "0", "--results-path", work / f"gen-{slug}", "--fp16"]
        if device == "cpu":
            args += ["--cpu"]
        try:
            variants[label] = run.json(f"generate {label}", args, out, timeout=size["timeout"])
            for B, rec in variants[label].items():
                log(f"  generate {label:9s} batch {B:>2s}: {rec['sentences_per_s']:8.1f} sentences/s, "
                    f"peak {rec['peak_mib']:.0f} MiB")
        except StageError as err:
            variants[label] = {"status": "failed", "error": str(err), "log_tail": err.tail}
            errors.append(str(err))
    provider, why_not = _onnx_provider(env, device)
    label = f"UN folded, ONNX Runtime ({provider or 'none'})"
    if provider is None or "UN" not in ckpt:
        variants["ONNX Runtime"] = {"status": "skipped", "reason": why_not or "no UN checkpoint"}
        log(f"  ONNX Runtime skipped: {variants['ONNX Runtime']['reason']}")
    else:
        onnx = variants["ONNX Runtime"] = {"provider": provider}
        try:
            folder = work / "onnx"
            run("un-export", ["-m", "un_fairseq.export", ckpt["UN"], folder, "--data", data], timeout=300)
            out = work / "onnx.json"
            onnx.update(run.json("ONNX Runtime", [
                "-m", "un_tools.benchmarks.gpu_fairseq", "onnx", out, "--folder", folder, "--provider", provider,
                "--batch-sizes", ",".join(map(str, BATCH_SIZES)), "--beam", BEAM, "--length", L,
                "--sentences", size["test"], "--batch1-sentences", max(1, size["test"] // size["batch1_shards"])],
                out, timeout=size["timeout"]))
            for B in map(str, BATCH_SIZES):
                log(f"  {label} batch {B:>2s}: {onnx[B]['sentences_per_s']:8.1f} sentences/s")
        except StageError as err:
            onnx.update(status="failed", error=str(err), log_tail=err.tail)
            errors.append(str(err))
    result = {"beam": BEAM, "hypothesis_tokens": L, "batch_sizes": list(BATCH_SIZES), "variants": variants}
    if errors:
        raise StageError("; ".join(errors), partial=result)
    return result


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
    train = stage("train", lambda: stage_train(run, work, data, args.device, size, user_dir), "env", "data")
    stage("inference", lambda: stage_inference(run, work, data, args.device, size, user_dir, train, record["env"]),
          "env", "data")
    record["seconds"] = round(time.time() - started, 1)
    record["ok"] = all(st["status"] != "failed" for st in record["stages"].values())
    stamp = datetime.datetime.fromtimestamp(started, datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = args.out / f"gpu-check-{args.device}{'-quick' if args.quick else ''}-{stamp}.json"
    from un_tools.atomic import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record, indent=1) + "\n")
    print(table(record), flush=True)
    log(f"{'passed' if record['ok'] else 'FAILED'} in {record['seconds']:.0f} s; record: {path}")
    return 0 if record["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

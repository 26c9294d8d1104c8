"""The stages of the GPU check (``gpu_check``): each runs child processes through a
:class:`Runner` (scratch site first on ``PYTHONPATH``, a timeout, a log file per child) and
returns its numbers, or raises :class:`StageError` with the numbers it did measure."""

import json
import os
import random
import re
import shlex
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NORM_TEST_FILES = ("tests/test_normalizers.py", "tests/test_mixed_precision.py")
#: --quick: the float32 comparisons of UN, BN and the online norms with the reference.
QUICK_NORM_TESTS = ("test_un_matches_reference and base or test_batchnorm_matches_reference "
                    "or test_online_norms_match_reference")
#: the models trained (their --norm-type names come from the plugin, in the env stage's
#: record); the other inference variants derive from UN
TRAINED = ("LN", "UN")
BATCH_SIZES = (1, 64)
BEAM = 5
#: model sizes and workloads of the full check and of --quick
SIZES = {
    "full": dict(arch="transformer_un_iwslt_de_en", smoke_model=False, updates=300, warmup=30, lr_warmup=100,
                 max_tokens=4096, vocab=1000, lengths=(5, 30), train=20000, valid=128, test=640,
                 batch1_shards=5, gen_len=20, timeout=150, tests_timeout=240),
    "quick": dict(arch="transformer_un", updates=8, warmup=2, lr_warmup=4, max_tokens=256, vocab=40,
                  lengths=(3, 8), train=160, valid=16, test=16, batch1_shards=4, gen_len=5, timeout=180,
                  tests_timeout=300, smoke_model=True),  # the benchmarks' one-layer width-16 model
}


def log(msg: str) -> None:
    """A progress line on standard output."""
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


def trained_norms(env: dict) -> dict:
    """``{label: --norm-type}`` of the trained models, as the installed plugin names them."""
    return {label: env["norm_names"][label] for label in TRAINED}


def stage_train(run: Runner, work: Path, data: Path, device: str, size: dict, user_dir: str, env: dict):
    results, errors = {}, []
    for label, norm in trained_norms(env).items():
        out, save = work / f"train-{norm}.json", work / f"ckpt-{norm}"
        args = ["-m", "un_tools.benchmarks.gpu_fairseq", "train", out, "--warmup", size["warmup"],
                *(["--smoke-model"] if size["smoke_model"] else []), "--",
                data, "--user-dir", user_dir, "--arch", size["arch"], "--norm-type", norm,
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
    ckpt = {label: work / f"ckpt-{norm}" / "checkpoint_last.pt" for label, norm in trained_norms(env).items()
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

"""``scripts/gpu-check.sh`` in its reduced CPU mode (``--device cpu --quick``), as CI runs it:
the record's structure and that every number it measured is positive and finite, the
failure of a stage reported in the record and the exit code, and the test ``--device`` option."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gpu-check.sh"
NORMS = ("LN", "UN")
VARIANTS = ("LN", "UN", "UN folded", "NoNorm")


def run_check(tmp: Path, *extra: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS="1")
    return subprocess.run(["bash", str(SCRIPT), "--device", "cpu", "--quick", "--out", str(tmp / "out"),
                           "--work", str(tmp / "work"), *extra],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def the_record(tmp: Path) -> dict:
    records = list((tmp / "out").glob("gpu-check-cpu-quick-*.json"))
    assert len(records) == 1, records
    return json.loads(records[0].read_text())


def positive(value, what):
    assert isinstance(value, (int, float)) and math.isfinite(value) and value > 0, f"{what} = {value!r}"


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gpu-check")
    proc = run_check(tmp, "--wheels", str(tmp / "no-wheels"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, the_record(tmp)


def test_every_stage_passes_and_progress_is_printed(quick):
    proc, record = quick
    assert record["ok"] is True and record["mode"] == "quick" and record["device"] == "cpu"
    assert list(record["stages"]) == ["install", "env", "norm_tests", "data", "train", "inference"]
    assert record["stages"]["install"]["status"] == "skipped"  # no wheels given
    for name in ("env", "norm_tests", "data", "train", "inference"):
        assert record["stages"][name]["status"] == "passed", (name, record["stages"][name])
        assert f"[gpu-check] {name}: passed" in proc.stdout
    positive(record["seconds"], "seconds")
    assert record["env"]["torch"] and record["env"]["python"] and record["env"]["cuda_available"] is False
    assert "| inference (beam 5) |" in proc.stdout and "| training |" in proc.stdout


def test_norm_tests_ran_and_passed(quick):
    tests = quick[1]["stages"]["norm_tests"]
    assert tests["passed"] > 0 and tests["failed"] == tests["errors"] == 0
    assert tests["dtypes"] == ["float32"]


def test_training_numbers(quick):
    norms = quick[1]["stages"]["train"]["norms"]
    assert set(norms) == set(NORMS)
    for label, r in norms.items():
        # fairseq's --max-update counts the updates not skipped for an fp16 overflow
        assert r["status"] == "passed"
        assert r["updates"] - r["skipped_updates"] == quick[1]["sizes"]["updates"]
        for key in ("updates_per_s", "tokens_per_s", "peak_mib", "first_loss", "last_loss"):
            positive(r[key], f"{label} {key}")
        assert r["nonfinite_losses"] == 0


def test_inference_numbers(quick):
    inf = quick[1]["stages"]["inference"]
    assert inf["beam"] == 5 and inf["batch_sizes"] == [1, 64]
    for label in VARIANTS:
        runs = inf["variants"][label]
        for B in ("1", "64"):
            for key in ("sentences", "tokens", "sentences_per_s", "tokens_per_s", "peak_mib"):
                positive(runs[B][key], f"{label} batch {B} {key}")
            # every hypothesis has the fixed length (plus end of sentence)
            assert runs[B]["tokens"] == runs[B]["sentences"] * (inf["hypothesis_tokens"] + 1)
        assert runs["1"]["sentences"] < runs["64"]["sentences"]  # batch 1 runs on one shard
    onnx = inf["variants"]["ONNX Runtime"]
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        assert onnx["status"] == "skipped" and "onnxruntime" in onnx["reason"]
    else:
        assert onnx["provider"] == "CPUExecutionProvider"
        for B in ("1", "64"):
            positive(onnx[B]["sentences_per_s"], f"ONNX Runtime batch {B}")


def test_a_failed_stage_is_in_the_record_and_the_exit_code(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "broken-1.0-py3-none-any.whl").write_bytes(b"not a zip file")
    proc = run_check(tmp_path, "--wheels", str(wheels), timeout=300)
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    record = the_record(tmp_path)
    assert record["ok"] is False
    assert record["stages"]["install"]["status"] == "failed"
    assert "pip install" in record["stages"]["install"]["error"]
    for later in ("env", "norm_tests", "data", "train", "inference"):
        assert record["stages"][later]["status"] == "skipped", later
    assert "install: failed" in proc.stdout


def test_bad_data_folder_is_a_one_line_error(tmp_path):
    proc = run_check(tmp_path, "--data", str(tmp_path / "nowhere"), timeout=120)
    assert proc.returncode == 2
    assert "nowhere" in proc.stderr and "dict" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_unknown_test_device_is_a_usage_error():
    proc = subprocess.run([sys.executable, "-m", "pytest", "--device", "tpu", "--collect-only", "-q",
                           "-p", "no:cacheprovider", "tests/test_gpu_check.py"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert "--device 'tpu'" in proc.stderr

"""What a user can do to a running reproduction (docs/reproduce.md, "Stopping, resuming, running
several"): stop a driver with a signal (its fairseq process group ends with it, the run is
marked interrupted), meet a second driver on the same run folder (refused, nothing written;
a dead holder's lock does not block), and kill everything outright at a random update and
resume (the same updates and one continuous curve as an uninterrupted run).

The drivers run as subprocesses, in their own session, as a user or a scheduler starts them;
fairseq runs for real on the toy corpus, except where a stand-in must ignore SIGTERM."""

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import pytest

from fairseq_fixtures import REPO
from un_tools.reproduce import config, lock, logs, train

# /proc (to find the processes left) and the kernel's PR_SET_PDEATHSIG are Linux's
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only: /proc, prctl")

ENV = dict(os.environ, PYTHON=sys.executable, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
# toy runs of a few seconds that save mid-epoch (every 3 updates, 1 such checkpoint kept): the
# mechanism docs/reproduce.md describes for bounding lost work; with batches rebuilt every epoch
# (fairseq otherwise groups them by the epoch a process starts in), a resume is bit-identical
UPDATES = 24
SHORT_RUN = ["--max-tokens", "600", "--max-update", str(UPDATES), "--save-interval-updates", "3",
             "--keep-interval-updates", "1", "--update-epoch-batch-itr", "True"]


def train_args(data, out, *extra):
    return ["--profile", "smoke", "--norm", "un", "--seed", "1", "--data", str(data), "--out", str(out),
            *(["--", *extra] if extra else [])]


def _as_from_a_terminal() -> None:
    """The stop signals as a driver started from a terminal has them: their default actions,
    even when the tests themselves run under ``nohup`` or as a background job (whose ignored
    SIGHUP or SIGINT a child would inherit, and the driver rightly keeps)."""
    for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)


def start(cmd, log: Path) -> subprocess.Popen:
    """A driver in its own session (its pid is its process group), output into ``log``."""
    with open(log, "w") as out:
        return subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                preexec_fn=_as_from_a_terminal)


def start_train(data, out, *extra) -> subprocess.Popen:
    out.parent.mkdir(parents=True, exist_ok=True)
    return start(["bash", str(REPO / "scripts" / "train.sh"), *train_args(data, out, *extra)],
                 out.parent / f"{out.name}.driver.txt")


def finish(proc: subprocess.Popen, timeout: float = 120) -> int:
    """The driver's exit status; whatever is left of its group is killed if it overruns."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        raise


def wait_for(condition, timeout: float = 120, what: str = ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def state(out: Path) -> dict:
    try:
        return json.loads((out / "train.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):  # not written yet (written atomically)
        return {}


def processes_naming(marker: str):
    """Pids of the live processes whose command line contains ``marker`` (this one excepted)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # ended meanwhile
            continue
        if marker in cmdline:
            found.append(int(entry.name))
    return found


def no_process_left(marker: str, timeout: float = 5):
    """Ended processes may take a moment to leave /proc: wait a little, then name the survivors."""
    deadline = time.monotonic() + timeout
    while processes_naming(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = processes_naming(marker)
    for pid in left:  # do not leave them running after a failed test
        os.kill(pid, signal.SIGKILL)
    assert not left, f"processes still running: {left}"


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- stop signals


def test_sigterm_ends_fairseq_marks_the_run_interrupted_and_frees_the_folder(toy_data, tmp_path):
    out = tmp_path / "run"
    driver = start_train(toy_data, out, "--max-tokens", "600", "--max-update", "100000")
    try:
        wait_for(lambda: (state(out).get("num_updates") or 0) >= 2, what="fairseq-train's second update")
        assert processes_naming(f"fairseq_cli.train {toy_data}")  # training is under way
        os.kill(driver.pid, signal.SIGTERM)
        assert finish(driver) == 128 + signal.SIGTERM
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    no_process_left(str(out))
    stopped = state(out)
    assert stopped["status"] == "interrupted" and stopped["wall_s"] > 0 and stopped["num_updates"] >= 2
    assert stopped["reason"].startswith(f"stopped by SIGTERM at update {stopped['num_updates']}")
    assert "interrupted (SIGTERM)" in (tmp_path / "run.driver.txt").read_text()
    # a later driver may take the folder at once (the lock died with the first one)
    assert lock.holder(out) is None


STAND_IN = """
import json, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a child that does not stop when asked
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", sys.argv[1]])  # and a grandchild
for update in range(1, 100000):
    print("x | INFO | train_inner | " + json.dumps({"loss": "5.0", "num_updates": str(update)}), flush=True)
    time.sleep(0.05)
"""


@pytest.mark.parametrize("driver_name, sig", [("train", signal.SIGTERM), ("train", signal.SIGHUP),
                                              ("train", signal.SIGINT), ("table1", signal.SIGTERM),
                                              ("evaluate", signal.SIGTERM)])
def test_each_driver_and_stop_signal_kills_a_child_that_ignores_sigterm_and_its_group(tmp_path, driver_name,
                                                                                      sig):
    """The driver asks with SIGTERM, then kills the child's whole process group after the
    grace period (1 s here): the stand-in of fairseq-train / fairseq-generate ignores SIGTERM and
    has started a grandchild."""
    data, out = tmp_path / "bin", tmp_path / "run"
    data.mkdir()
    (data / "dict.src.txt").write_text("a 1\n")
    (data / "train.src-tgt.src.bin").write_text("")
    fake = tmp_path / "stand_in.py"
    fake.write_text(STAND_IN)
    if driver_name == "train":
        call = f"train.main({train_args(data, out)!r})"
    elif driver_name == "table1":
        out = tmp_path / "runs" / "un" / "seed1"
        call = "sweep.main('table1', {!r})".format(
            ["--scale", "smoke", "--dataset", "toy", "--data", str(data), "--runs", str(tmp_path / "runs"),
             "--norms", "un", "--output", str(tmp_path / "t1.md"), "--figure", "none"])
    else:
        (out / "checkpoints").mkdir(parents=True)
        with zipfile.ZipFile(out / "checkpoints" / "checkpoint_last.pt", "w") as stand_in:  # torch's format
            stand_in.writestr("data.pkl", "stand-in")
        call = "evaluate.main({!r})".format(["--run", str(out), "--profile", "smoke", "--dataset", "toy",
                                             "--data", str(data)])
    driver_code = textwrap.dedent(f"""
        import sys
        from un_tools.reproduce import evaluate, signals, sweep, train
        signals.GRACE_S = 1.0
        train.fairseq_command = evaluate.fairseq_command = lambda name: [sys.executable, {str(fake)!r}]
        sys.exit({call})
    """)
    driver = start([sys.executable, "-c", driver_code], tmp_path / "driver.txt")
    try:
        wait_for(lambda: len(processes_naming(str(data))) >= 3, what="the stand-in's grandchild")
        time.sleep(0.3)  # a few lines of the stand-in
        os.kill(driver.pid, sig)
        assert finish(driver, timeout=60) == 128 + sig, (tmp_path / "driver.txt").read_text()
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    no_process_left(str(data))  # the driver, the stand-in and its grandchild
    if driver_name == "evaluate":
        assert not list(out.glob("eval*.json"))
        assert "stopped by SIGTERM" in (tmp_path / "driver.txt").read_text()
    else:
        stopped = state(out)
        assert stopped["status"] == "interrupted"
        assert stopped["reason"].startswith(f"stopped by {signal.Signals(sig).name} ")


def test_a_resumed_run_keeps_its_loss_history_for_the_divergence_check(tmp_path, monkeypatch):
    """After a resume, a loss is compared with the lowest one logged before the interruption,
    as in an uninterrupted run."""
    data, out = tmp_path / "bin", tmp_path / "run"
    data.mkdir()
    (data / "dict.src.txt").write_text("a 1\n")
    (data / "train.src-tgt.src.bin").write_text("")
    (out / "checkpoints").mkdir(parents=True)
    with zipfile.ZipFile(out / "checkpoints" / "checkpoint_last.pt", "w") as stand_in:  # torch's format
        stand_in.writestr("data.pkl", "stand-in")
    line = 'x | INFO | train_inner | {{"loss": "{}", "num_updates": "{}"}}\n'
    (out / "train.log").write_text(line.format(12.0, 1) + line.format(4.0, 2) + line.format(4.5, 3))
    (out / "train.json").write_text(json.dumps({"status": "interrupted", "wall_s": 7.0}))
    fake = tmp_path / "resumed.py"
    fake.write_text(f"print({line.format(4.4, 3)!r}, end='')\nprint({line.format(8.5, 4)!r}, end='')\n")
    monkeypatch.setattr(train, "fairseq_command", lambda name: [sys.executable, str(fake)])
    result = train.run_training(config.load_profile("smoke"), config.load_dataset("toy"), "un", 1, data, out,
                                quiet=True)
    # 8.5 is below twice the lowest loss since the resume (4.4) but above twice the lowest before (4)
    assert result["status"] == "FAIL" and "exploded to 8.5 at update 4 (lowest before: 4," in result["reason"]
    assert result["wall_s"] >= 7.0


# ---------------------------------------------------------------- one driver per run folder


HOLD = "import sys\nfrom un_tools.reproduce.lock import run_lock\nwith run_lock(sys.argv[1]):\n" \
       "    print('held', flush=True)\n    sys.stdin.read()\n"


def test_a_second_driver_on_a_locked_folder_exits_2_and_writes_nothing(toy_data, tmp_path):
    runs = tmp_path / "runs"
    run = runs / "un" / "seed1"
    (run / "checkpoints").mkdir(parents=True)  # an interrupted run, as a driver would resume it
    (run / "checkpoints" / "checkpoint_last.pt").write_text("stand-in")
    (run / "train.log").write_text("### an earlier start\n")
    (run / "train.json").write_text(json.dumps({"status": "interrupted", "wall_s": 3.0, "profile": "smoke",
                                                "dataset": "toy", "data": str(toy_data)}))
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], cwd=REPO, env=ENV, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == "held\n"
        before = snapshot(run)
        message = f"{run.resolve()} is in use by another driver (pid {holder.pid})"
        for name, args in (("train.sh", train_args(toy_data, run)), ("evaluate.sh", ["--run", str(run)])):
            proc = subprocess.run(["bash", str(REPO / "scripts" / name), *args], cwd=REPO, env=ENV,
                                  capture_output=True, text=True, timeout=120)
            assert proc.returncode == 2, (name, proc.stdout, proc.stderr)
            assert proc.stderr.splitlines() == [f"{name}: error: {message}: wait for it to end or stop it "
                                                f"(kill {holder.pid})"]
        # a sweep over the same runs skips the held run and goes on
        proc = subprocess.run(["bash", str(REPO / "scripts" / "reproduce-table1.sh"), "--scale", "smoke",
                               "--dataset", "toy", "--data", str(toy_data), "--runs", str(runs), "--norms", "un",
                               "--output", str(tmp_path / "t1.md"), "--figure", "none"],
                              cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0 and f"skipped: {message}" in proc.stdout, proc.stdout + proc.stderr
        assert snapshot(run) == before
        assert lock.holder(run) == holder.pid
    finally:
        holder.kill()
        holder.wait(timeout=30)
    # the holder died without releasing anything: its pid stays in the file, the lock does not
    assert (run / lock.LOCK_FILE).read_text().split() == [str(holder.pid)]
    assert lock.holder(run) is None
    with lock.run_lock(run):
        assert (run / lock.LOCK_FILE).read_text().split() == [str(os.getpid())]


def test_the_paper_profiles_bound_lost_work_and_the_checkpoints_they_keep():
    """docs/reproduce.md: WMT14 saves inside its long epochs, and every checkpoint series a paper
    profile writes is bounded (epoch checkpoints: as many as evaluation averages)."""
    for name in ("iwslt14", "wmt14_en_fr"):
        profile = config.load_profile(name)
        flags = profile.training_flags()
        assert int(config.flag_value(flags, "--keep-last-epochs", 0)) == profile.avg_checkpoints, name
        if int(config.flag_value(flags, "--save-interval-updates", 0)) > 0:
            assert int(config.flag_value(flags, "--keep-interval-updates", 0)) >= 1, name
    wmt = config.load_profile("wmt14_en_fr").training_flags()
    assert int(config.flag_value(wmt, "--save-interval-updates", 0)) > 0


# ---------------------------------------------------------------- killed outright, then resumed


def test_a_run_killed_at_a_random_update_and_resumed_matches_an_uninterrupted_one(toy_data, tmp_path):
    whole = tmp_path / "whole"
    uninterrupted = start_train(toy_data, whole, *SHORT_RUN)
    assert finish(uninterrupted) == 0, (tmp_path / "whole.driver.txt").read_text()[-3000:]

    out = tmp_path / "killed"
    # after the first save (update 3), and early enough that fairseq cannot finish before the kill
    kill_at = random.randint(5, UPDATES - 8)
    driver = start_train(toy_data, out, *SHORT_RUN)
    try:
        wait_for(lambda: (state(out).get("num_updates") or 0) >= kill_at, what=f"update {kill_at}")
        os.killpg(driver.pid, signal.SIGKILL)  # the driver's whole group, as a scheduler does
        assert finish(driver) == -signal.SIGKILL
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    no_process_left(str(out))  # fairseq-train (its own group) died with its driver
    killed = state(out)
    assert killed["status"] == "running" and kill_at <= killed["num_updates"] < UPDATES, (kill_at, killed)

    resumed = subprocess.run(["bash", str(REPO / "scripts" / "train.sh"), *train_args(toy_data, out, *SHORT_RUN)],
                             cwd=REPO, env=ENV, capture_output=True, text=True, timeout=180)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert f"resuming from {out / 'checkpoints' / 'checkpoint_last.pt'}" in resumed.stdout
    final, reference = state(out), state(whole)
    assert final["status"] == "done" and final["num_updates"] == reference["num_updates"] == UPDATES
    assert final["wall_s"] >= killed["wall_s"]
    log = (out / "train.log").read_text()
    assert log.count("### ") == 2
    got, want = logs.curves(log), logs.curves((whole / "train.log").read_text())
    # every update logged once in the merged curve, none lost, as in the uninterrupted run
    assert [u for u, _ in got["train_loss"]] == [u for u, _ in want["train_loss"]] == list(range(1, UPDATES + 1))
    assert [u for u, _ in got["valid_loss"]] == [u for u, _ in want["valid_loss"]]
    assert logs.final_updates(log) == UPDATES
    # and the same training: every logged loss equal to the uninterrupted run's
    assert got["train_loss"] == want["train_loss"] and got["valid_loss"] == want["valid_loss"]


def test_a_checkpoint_last_truncated_by_a_kill_is_replaced_by_the_newest_whole_one(tmp_path):
    """fairseq copies a save to checkpoint_last.pt with a plain copy: a kill during it leaves a
    truncated file, which the resume replaces by the newest whole checkpoint."""
    ckpts = tmp_path / "checkpoints"
    ckpts.mkdir()
    for i, name in enumerate(["checkpoint1.pt", "checkpoint_2_9.pt"]):
        with zipfile.ZipFile(ckpts / name, "w") as z:
            z.writestr("data.pkl", name)
        os.utime(ckpts / name, (1000 + i, 1000 + i))
    (ckpts / "checkpoint_last.pt").write_bytes(b"PK\x03\x04 cut short")
    said = train.repair_last_checkpoint(ckpts)
    assert "checkpoint_2_9.pt" in said
    assert (ckpts / "checkpoint_last.pt").read_bytes() == (ckpts / "checkpoint_2_9.pt").read_bytes()
    assert train.repair_last_checkpoint(ckpts) is None  # a whole file is left alone
    (ckpts / "checkpoint_last.pt").write_bytes(b"")
    for name in ("checkpoint1.pt", "checkpoint_2_9.pt"):
        (ckpts / name).unlink()
    assert "starts over" in train.repair_last_checkpoint(ckpts)
    assert not (ckpts / "checkpoint_last.pt").exists() and (ckpts / "checkpoint_last.pt.truncated").exists()

"""Two-process fairseq-train through scripts/train-distributed.sh (CPU, gloo) on the toy
corpus: every --norm-type, with and without --sync-norm-stats (one run in fp16), each rank's
buffers dumped at exit; a mid-epoch resume with --update-freq 2; fairseq-generate on the results; the
launcher's --help and its clean stop when a rank fails."""

import os
import re
import subprocess
from pathlib import Path

import pytest
import torch

from fairseq_cli import generate as generate_cli
from fairseq_fixtures import BIN, REPO, TINY_MODEL, TINY_TRAINING, call_cli
from un_fairseq.checkpoint_io import load_checkpoint

LAUNCHER = REPO / "scripts" / "train-distributed.sh"
DUMPER = Path(__file__).with_name("train_and_dump_norm_buffers.py")
NORM_BUFFERS = ("running_var", "running_mean", "running_phi", "psi", "omega", "phi", "grad_ema",
                "num_steps", "num_skips", "num_batches_tracked")

# (encoder, decoder) norm pairs: together every --norm-type, each batch-statistics one with
# and without --sync-norm-stats, in as few process start-ups as that allows
SYNC_PAIRS = [("power", "mabn"), ("power_noscale", "layer")]  # + ("un", "batch") in the resume test
# fairseq's fp16 on CPU: a loss scale that grows without an overflow (whose handler needs CUDA)
FP16 = ("--fp16", "--fp16-no-flatten-grads", "--fp16-init-scale", "1", "--fp16-scale-window", "2")
LOCAL_PAIRS = [("un", "batch"), ("power", "mabn"), ("power_noscale", "rms"), ("none", "layer"), ("dyt", "derf")]


def launch(data, save_dir, *extra, nproc=2, command=None, check=True):
    """Train through the launcher (each rank dumping its buffers to save_dir/dump)."""
    dump = Path(save_dir) / "dump"
    dump.mkdir(parents=True, exist_ok=True)
    command = command or f"{BIN / 'python'} {DUMPER} {dump}"
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    proc = subprocess.run(
        ["bash", str(LAUNCHER), "--nproc", str(nproc), "--command", command, "--",
         str(data), "--user-dir", "un_fairseq", "--save-dir", str(save_dir),
         *TINY_MODEL, *TINY_TRAINING, *map(str, extra)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    if check and proc.returncode != 0:
        logs = "".join(f"\n--- {p.name} ---\n{p.read_text()[-3000:]}" for p in sorted(Path(save_dir).glob("*.log")))
        raise AssertionError(f"launcher failed ({proc.returncode}):\n{proc.stderr[-3000:]}{logs}")
    return proc


def rank_buffers(save_dir, rank):
    state = torch.load(Path(save_dir) / "dump" / f"rank-{rank}.pt")
    return {k: v for k, v in state.items() if k.endswith(NORM_BUFFERS)}


def saved_model(save_dir, name="checkpoint_last.pt"):
    return load_checkpoint(Path(save_dir) / name)["model"]


def pair_args(pair):
    return ("--encoder-norm-type", pair[0], "--decoder-norm-type", pair[1])


def generate_hypotheses(data, checkpoint, capsys):
    capsys.readouterr()
    out = call_cli(generate_cli.cli_main, [data, "--user-dir", "un_fairseq", "--path", checkpoint,
                                           "--beam", "2", "--batch-size", "40", "--cpu",
                                           "--max-len-b", "16", "--num-workers", "0"], capsys)
    assert re.search(r"BLEU4 = \d+\.\d+", out), out[-2000:]
    return len(re.findall(r"^H-\d+\t", out, flags=re.M))


def check_ranks(save_dir, synced):
    """Both ranks trained; the checkpoint holds rank 0's buffers; with sync the ranks' buffers
    are bit-identical, without it the batch-statistics ones drift apart."""
    r0, r1 = rank_buffers(save_dir, 0), rank_buffers(save_dir, 1)
    saved = saved_model(save_dir)
    assert r0.keys() == r1.keys()
    for key in r0:
        assert torch.equal(saved[key], r0[key]), f"checkpoint {key} is not rank 0's"
    differ = [k for k in r0 if not torch.equal(r0[k], r1[k])]
    if synced:
        assert not differ, f"with --sync-norm-stats the ranks' buffers differ: {differ}"
    return differ


@pytest.mark.parametrize("pair,precision", zip(SYNC_PAIRS, [(), FP16]),
                         ids=lambda v: "|".join(v) if v and v[0] != "--fp16" else ("fp16" if v else "fp32"))
def test_two_ranks_with_sync(toy_data, tmp_path, pair, precision):
    launch(toy_data, tmp_path, *pair_args(pair), *precision, "--sync-norm-stats", "--max-update", "2",
           "--no-epoch-checkpoints")
    check_ranks(tmp_path, synced=True)


@pytest.mark.parametrize("pair", LOCAL_PAIRS, ids="|".join)
def test_two_ranks_without_sync(toy_data, tmp_path, pair):
    launch(toy_data, tmp_path, *pair_args(pair), "--max-update", "2", "--no-epoch-checkpoints")
    differ = check_ranks(tmp_path, synced=False)
    stateful = [k for k in rank_buffers(tmp_path, 0) if not k.endswith(("num_steps", "num_batches_tracked"))]
    # each rank normalises by its own shard: the running statistics drift apart
    assert bool(differ) == bool(stateful), (differ, stateful)


def test_two_ranks_resume_mid_epoch_with_update_freq_then_generate(toy_data, tmp_path, capsys):
    """With --sync-norm-stats and --update-freq 2, stopping at a mid-epoch checkpoint and
    resuming ends bit-identical to an uninterrupted run (parameters and every buffer, the
    ranks identical), and UN counted two forward calls per update."""
    # smaller batches: an epoch is 6 updates per rank, so updates 1-4 all take 2 forward calls
    common = (*pair_args(("un", "batch")), "--sync-norm-stats", "--update-freq", "2",
              "--max-tokens", "150", "--save-interval-updates", "2", "--no-epoch-checkpoints")
    launch(toy_data, tmp_path / "straight", *common, "--max-update", "4")
    launch(toy_data, tmp_path / "resumed", *common, "--max-update", "2")
    log = launch(toy_data, tmp_path / "resumed", *common, "--max-update", "4")
    assert "Loaded checkpoint" in (tmp_path / "resumed" / "train-rank-0.log").read_text(), log.stdout
    straight, resumed = saved_model(tmp_path / "straight"), saved_model(tmp_path / "resumed")
    assert straight.keys() == resumed.keys()
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key
    steps = {int(v) for k, v in straight.items() if k.endswith("num_steps")}
    assert steps == {8}, steps  # 4 updates x --update-freq 2 forward calls
    for save_dir in (tmp_path / "straight", tmp_path / "resumed"):
        check_ranks(save_dir, synced=True)
    assert generate_hypotheses(toy_data, tmp_path / "resumed" / "checkpoint_last.pt", capsys) == 40


def test_launcher_help():
    proc = subprocess.run(["bash", str(LAUNCHER), "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    for flag in ("--nproc", "--log-dir", "--port", "--distributed-no-spawn", "gloo", "legacy_ddp",
                 "--sync-norm-stats"):
        assert flag in proc.stdout, flag


@pytest.mark.parametrize("args,message", [
    (["--nproc", "0", "--", "data"], "--nproc='0' is not allowed"),
    (["--", "data", "--distributed-rank", "1"], "'--distributed-rank' is set by the launcher"),
    (["--frobnicate"], "unknown option '--frobnicate'"),
])
def test_launcher_bad_arguments(args, message):
    proc = subprocess.run(["bash", str(LAUNCHER), *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr


def test_launcher_stops_every_rank_when_one_fails(tmp_path):
    """Rank 1 exits with status 3 while rank 0 would wait forever (as in a collective): the
    launcher stops rank 0, exits 3 and names rank 1 and its log."""
    fake = tmp_path / "fake-train.sh"
    fake.write_text(
        "#!/usr/bin/env bash\n"
        'while [[ $# -gt 0 ]]; do [[ $1 == --distributed-rank ]] && rank=$2; shift; done\n'
        f'echo $$ > {tmp_path}/pid-$rank\n'
        'if [[ $rank == 1 ]]; then sleep 1; echo "rank 1 breaks" >&2; exit 3; fi\n'
        "exec sleep 300\n"
    )
    fake.chmod(0o755)
    # rank 0 alone would take 300 s: the timeout fails the test if the launcher waits for it
    proc = subprocess.run(["bash", str(LAUNCHER), "--nproc", "2", "--log-dir", str(tmp_path),
                           "--command", str(fake), "--", "data"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr
    assert "rank 1 failed" in proc.stderr and str(tmp_path / "train-rank-1.log") in proc.stderr
    assert "rank 1 breaks" in proc.stderr  # the log's tail is shown
    assert "stopped the other ranks" in proc.stderr
    pid0 = int((tmp_path / "pid-0").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid0, 0)

"""End to end through fairseq's real command-line tools on a toy corpus made here:
fairseq-preprocess, fairseq-train for every --norm-type, resume, fairseq-generate with BLEU,
fairseq-interactive and checkpoint averaging."""

import re

import pytest
import torch

from fairseq_cli import generate as generate_cli
from fairseq_cli import train as train_cli
from fairseq_fixtures import (
    TINY_MODEL, TINY_TRAINING, call_cli, generate, run, train,
)
from un_fairseq.checkpoint_io import load_checkpoint
from un_fairseq.modules.registry import norm_types

NORM_TYPES = norm_types()


def hypotheses(stdout: str) -> int:
    return len(re.findall(r"^H-\d+\t", stdout, flags=re.M))


def model_state(path):
    return load_checkpoint(path)["model"]


@pytest.mark.parametrize("norm", NORM_TYPES)
def test_train_then_generate_with_bleu(toy_data, tmp_path, capsys, norm):
    """fairseq-train and fairseq-generate, through their console-script entry points."""
    call_cli(train_cli.cli_main, [toy_data, "--user-dir", "un_fairseq", "--save-dir", tmp_path,
                                  *TINY_MODEL, *TINY_TRAINING, "--norm-type", norm,
                                  "--max-update", "3", "--no-epoch-checkpoints"])
    state = model_state(tmp_path / "checkpoint_last.pt")
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
    if norm in ("un", "mabn", "power", "power_noscale"):
        # every norm counted exactly the three training forward calls
        steps = {k: int(v) for k, v in state.items() if k.endswith("num_steps")}
        assert len(steps) == 12 and set(steps.values()) == {3}, steps
    capsys.readouterr()
    out = call_cli(generate_cli.cli_main, [toy_data, "--user-dir", "un_fairseq", "--path",
                                           tmp_path / "checkpoint_last.pt", "--beam", "5",
                                           "--batch-size", "16", "--cpu", "--max-len-b", "16", "--num-workers", "0"], capsys)
    assert hypotheses(out) == 40
    assert re.search(r"BLEU4 = \d+\.\d+", out), out[-2000:]


@pytest.mark.parametrize("norm,update_freq", [("un", 1), ("power", 1), ("un", 2)])
def test_resume_mid_epoch_is_bit_identical(toy_data, tmp_path, norm, update_freq):
    """Stopped at a mid-epoch checkpoint and restarted == never stopped: parameters and every
    normalizer buffer (running statistics, rings, gradient EMAs, step counts), also when an
    update accumulates several batches (UN counts forward calls, not updates)."""
    common = ("--norm-type", norm, "--save-interval-updates", "3", "--no-epoch-checkpoints",
              "--update-freq", str(update_freq))
    train(toy_data, tmp_path / "straight", *common, "--max-update", "6")
    train(toy_data, tmp_path / "resumed", *common, "--max-update", "3")
    first = model_state(tmp_path / "resumed" / "checkpoint_last.pt")
    log = train(toy_data, tmp_path / "resumed", *common, "--max-update", "6")
    assert "Loaded checkpoint" in log.stdout + log.stderr
    straight = model_state(tmp_path / "straight" / "checkpoint_last.pt")
    resumed = model_state(tmp_path / "resumed" / "checkpoint_last.pt")
    assert set(straight) == set(resumed)
    buffers = [k for k in straight if k.endswith(("running_var", "running_phi", "psi", "omega", "phi", "grad_ema", "num_steps"))]
    assert buffers, "the model must hold normalizer buffers"
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key
    # and training did move between the two checkpoints
    assert not all(torch.equal(first[k], straight[k]) for k in buffers)


def test_interactive_translates(toy_data, tmp_path):
    train(toy_data, tmp_path, "--max-update", "2", "--no-epoch-checkpoints")
    proc = run(["fairseq-interactive", toy_data, "--user-dir", "un_fairseq", "--path",
                tmp_path / "checkpoint_last.pt", "--beam", "2", "--cpu", "--source-lang", "src",
                "--target-lang", "tgt", "--max-len-b", "8"], input="a1 a2 a3\na4 a5\n")
    assert hypotheses(proc.stdout) == 2, proc.stdout


def test_average_checkpoints_then_generate(toy_data, tmp_path):
    train(toy_data, tmp_path, "--max-update", "4", "--save-interval-updates", "2", "--no-epoch-checkpoints",
          "--keep-interval-updates", "5")
    run(["un-average-checkpoints", "--inputs", tmp_path, "--num-update-checkpoints", "2",
         "--output", tmp_path / "avg.pt"])
    a = model_state(tmp_path / "checkpoint_1_2.pt")
    b = model_state(tmp_path / "checkpoint_1_4.pt")
    avg = model_state(tmp_path / "avg.pt")
    key = "encoder.layers.0.fc1.weight"
    torch.testing.assert_close(avg[key], (a[key].double() + b[key].double()).div(2).float())
    torch.testing.assert_close(avg["encoder.layer_norm.running_var"],
                               (a["encoder.layer_norm.running_var"] + b["encoder.layer_norm.running_var"]) / 2)
    assert torch.equal(avg["encoder.layer_norm.num_steps"], b["encoder.layer_norm.num_steps"])
    assert hypotheses(generate(toy_data, tmp_path / "avg.pt").stdout) == 40


def test_average_refuses_to_overwrite_an_input(toy_data, tmp_path):
    train(toy_data, tmp_path, "--max-update", "2", "--no-epoch-checkpoints")
    ckpt = tmp_path / "checkpoint_last.pt"
    before = ckpt.read_bytes()
    proc = run(["un-average-checkpoints", "--inputs", ckpt, "--output", ckpt], check=False)
    assert proc.returncode == 2 and "refusing to overwrite" in proc.stderr
    assert ckpt.read_bytes() == before


def test_bad_flag_on_the_real_command_line(toy_data, tmp_path):
    proc = train(toy_data, tmp_path, "--un-window", "0", "--max-update", "1", check=False)
    assert proc.returncode != 0
    assert "--un-window" in proc.stderr and "'0'" in proc.stderr and ">= 1" in proc.stderr
    assert not any(tmp_path.glob("*.pt"))

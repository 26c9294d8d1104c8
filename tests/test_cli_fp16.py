"""``fairseq-train --fp16`` for every --norm-type on CPU, then ``fairseq-generate --fp16`` on
the checkpoint and, for the foldable norms, on its ``un-fuse`` export.

fairseq's fp16 training runs on CPU with ``--cpu --fp16 --fp16-no-flatten-grads``; its
overflow handler calls ``.cuda()``, so these runs change the loss scale without an overflow
(``--fp16-init-scale 1 --fp16-scale-window 2``: 1, 2, 4 over four updates); overflows are
tested below the trainer (``test_mixed_precision.py``)."""

import re

import pytest
import torch

from fairseq_cli import generate as generate_cli
from fairseq_cli import train as train_cli
from fairseq_fixtures import TINY_MODEL, TINY_TRAINING, call_cli
from un_fairseq import fp16_hooks, fuse
from un_fairseq.checkpoint_io import load_checkpoint
from un_fairseq.fold import FOLDABLE_TYPES
from un_fairseq.modules.registry import batch_stat_norm_types, norm_types

NORM_TYPES, BATCH_STAT_NORM_TYPES = norm_types(), batch_stat_norm_types()

FP16 = ["--fp16", "--fp16-no-flatten-grads", "--fp16-init-scale", "1", "--fp16-scale-window", "2"]
STAT_BUFFERS = ("running_var", "running_mean", "running_phi", "grad_ema", "psi", "omega", "phi")


@pytest.fixture(autouse=True)
def no_step_guard_afterwards():
    yield
    fp16_hooks.uninstall()  # this process trained in fp16: leave no hooks to others


def generate_fp16(capsys, data, checkpoint):
    capsys.readouterr()
    out = call_cli(generate_cli.cli_main, [data, "--user-dir", "un_fairseq", "--path", checkpoint,
                                           "--beam", "2", "--batch-size", "20", "--cpu", "--max-len-b", "10",
                                           "--fp16", "--num-workers", "0"], capsys)
    hyps = re.findall(r"^H-\d+\t\S+\t(.*)$", out, flags=re.M)
    assert len(hyps) == 40 and re.search(r"BLEU4 = \d+\.\d+", out), out[-2000:]
    return hyps


@pytest.mark.parametrize("norm", NORM_TYPES)
def test_fp16_train_generate_and_fuse(toy_data, tmp_path, capsys, norm):
    call_cli(train_cli.cli_main, [toy_data, "--user-dir", "un_fairseq", "--save-dir", tmp_path,
                                  *TINY_MODEL, *TINY_TRAINING, "--norm-type", norm, *FP16,
                                  "--max-update", "4", "--no-epoch-checkpoints"])
    assert fp16_hooks.step_rollback.enabled()  # the run connected the norms to its loss scale
    ckpt = tmp_path / "checkpoint_last.pt"
    state = load_checkpoint(ckpt)
    assert state["last_optimizer_state"]["loss_scale"] == 4.0  # the scale moved 1 -> 2 -> 4
    model = state["model"]
    assert all(torch.isfinite(v).all() for v in model.values() if v.is_floating_point())
    stats = {k: v for k, v in model.items() if k.endswith(STAT_BUFFERS)}
    assert all(v.dtype == torch.float32 for v in stats.values()), "statistics must stay float32"
    assert bool(stats) == (norm in BATCH_STAT_NORM_TYPES)
    steps = {int(v) for k, v in model.items() if k.endswith("num_steps")}
    assert steps <= {4}, steps  # every update counted once, none lost or doubled

    generate_fp16(capsys, toy_data, ckpt)
    if norm in FOLDABLE_TYPES:
        fused = tmp_path / "fused.pt"
        assert fuse.main([str(ckpt), str(fused), "--data", str(toy_data)]) == 0
        generate_fp16(capsys, toy_data, fused)

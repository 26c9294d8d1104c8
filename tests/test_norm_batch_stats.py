"""scripts/norm_batch_stats.py: the per-batch statistics diagnostic behind the UN-gap probes
(docs/reproduce.md): its arithmetic against float64 loops written from its definitions, and the
command on a toy checkpoint."""

import math
import runpy

import pytest
import torch

import un_fairseq  # noqa: F401  (registers the models, allows fairseq checkpoint types)
from fairseq_fixtures import REPO
from toy_models import build, save_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

SCRIPT = runpy.run_path(str(REPO / "scripts" / "norm_batch_stats.py"))


def test_quadratic_mean_counts_real_tokens_only():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 3, 4, generator=g)  # T x B x C
    pad = torch.tensor([[False] * 5, [False, False, False, True, True], [False] * 4 + [True]])
    want = [sum(float(x[t, b, c]) ** 2 for b in range(3) for t in range(5) if not pad[b, t]) / 12
            for c in range(4)]
    assert SCRIPT["quadratic_mean"](x, pad).tolist() == pytest.approx(want, rel=1e-12)
    every = [sum(float(x[t, b, c]) ** 2 for b in range(3) for t in range(5)) / 15 for c in range(4)]
    assert SCRIPT["quadratic_mean"](x, None).tolist() == pytest.approx(every, rel=1e-12)


def test_window_log_deviation_is_log_of_own_over_geometric_mean_of_window():
    g = torch.Generator().manual_seed(1)
    s = torch.rand(7, 3, generator=g, dtype=torch.float64) + 0.1
    got = SCRIPT["window_log_deviation"](s.log(), 3)
    assert got.shape == (5, 3)
    for i, t in enumerate(range(2, 7)):
        for c in range(3):
            gm = (s[t - 2, c] * s[t - 1, c] * s[t, c]).item() ** (1 / 3)
            assert got[i, c].item() == pytest.approx(math.log(s[t, c].item() / gm), abs=1e-12)
    assert torch.equal(SCRIPT["window_log_deviation"](s.log(), 1), torch.zeros(7, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="window 8 must be between 1 and the number of batches"):
        SCRIPT["window_log_deviation"](s.log(), 8)


def test_pearson():
    a, b = [1.0, 2.0, 4.0, 3.0], [2.0, 1.0, 5.0, 4.5]
    ma, mb = sum(a) / 4, sum(b) / 4
    cov = sum((x - ma) * (y - mb) for x, y in zip(a, b))
    want = cov / math.sqrt(sum((x - ma) ** 2 for x in a) * sum((y - mb) ** 2 for y in b))
    assert SCRIPT["pearson"](torch.tensor(a), torch.tensor(b)) == pytest.approx(want, rel=1e-12)


def test_command_prints_one_row_per_norm_and_refuses_a_window_beyond_the_batches(toy_data, tmp_path, capsys):
    args, _task, model = build(toy_data, "--norm-type", "un", "--un-window", "3")
    ckpt = save_checkpoint(args, model, tmp_path / "un.pt")
    before = ckpt.read_bytes()
    assert SCRIPT["main"]([str(ckpt), "--data", str(toy_data), "--max-tokens", "200", "--batches", "6"]) == 0
    out = capsys.readouterr().out
    assert "6 consecutive batches of train" in out and "window M = 3" in out  # the checkpoint's window
    rows = [line.split() for line in out.splitlines() if line.startswith(("encoder.", "decoder."))]
    assert len(rows) == 12  # 2+2 layers: 2x2 + 1 encoder norms, 2x3 + 1 decoder norms
    for name, sd, rms, p99, corr in rows:
        assert float(sd) > 0 and 0 < float(rms) <= float(p99) and -1 <= float(corr) <= 1, name
    assert ckpt.read_bytes() == before
    assert "s_t over real tokens" in out

    # padding counted: what the checkpoint's norms do by default, or forced either way
    args, _task, model = build(toy_data, "--norm-type", "un", "--un-window", "3", "--un-count-padding")
    counted = save_checkpoint(args, model, tmp_path / "un-count-padding.pt")
    for flags, want in (([], "every position (padding counted)"), (["--no-count-padding"], "real tokens")):
        assert SCRIPT["main"]([str(counted), "--data", str(toy_data), "--max-tokens", "200",
                               "--batches", "6", *flags]) == 0
        assert f"s_t over {want}" in capsys.readouterr().out
    assert SCRIPT["main"]([str(ckpt), "--data", str(toy_data), "--max-tokens", "200", "--batches", "6",
                           "--count-padding"]) == 0
    counted_rows = [line.split() for line in capsys.readouterr().out.splitlines()
                    if line.startswith(("encoder.", "decoder."))]
    assert [r[0] for r in counted_rows] == [r[0] for r in rows]
    assert [r[1:] for r in counted_rows] != [r[1:] for r in rows]  # toy batches hold padding
    with pytest.raises(SystemExit):
        SCRIPT["main"]([str(ckpt), "--data", str(toy_data), "--batches", "6", "--window", "7"])
    assert "--window 7: must be between 1 and --batches (6)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        SCRIPT["main"]([str(tmp_path / "missing.pt"), "--data", str(toy_data)])
    assert "checkpoint not found: " in capsys.readouterr().err

"""The compiled kernels of the batch-statistics norms (``un_fairseq/modules/compiled.py``):
no recompilation for other sequence lengths, the eager fallback when compilation fails,
and the ``--norm-kernels`` choice. Their maths against the float64 reference runs in
``test_normalizers.py`` (its ``compiled`` path)."""

import logging

import pytest
import torch
from torch._dynamo.utils import counters

from un_fairseq.modules import build_norm, compiled, row_sums

C = 16


@pytest.fixture
def kernels(monkeypatch):
    def use(mode):
        monkeypatch.setattr(row_sums, "kernels", mode)
    yield use
    compiled.reset()


def steps(norm, lengths, seed=0, B=3):
    """One training forward + backward per length (T x B x C, one padded sentence)."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for T in lengths:
        x = torch.randn(T, B, C, generator=gen).requires_grad_()
        mask = torch.zeros(B, T, dtype=torch.bool)
        mask[1, T // 2:] = True
        y = norm(x, mask)
        y.backward(torch.randn(y.shape, generator=gen))
        out += [y.detach(), x.grad]
    return out


@pytest.mark.parametrize("kind", ["un", "mabn", "power_noscale"])
def test_other_lengths_do_not_recompile(kernels, kind):
    kernels("compiled")
    norm = build_norm(kind, C, warmup=2, **({"window": 2} if kind != "power_noscale" else {}))
    steps(norm, [64], B=64)  # T == B, and N a multiple of compiled.BLOCK: nothing to specialise on
    compiled_graphs = counters["stats"]["unique_graphs"]
    steps(norm, [5, 9, 12, 30, 64], B=64)
    steps(norm, [7, 64], B=3)
    assert compiled.unavailable is None, compiled.unavailable
    assert counters["stats"]["unique_graphs"] == compiled_graphs, "a new sequence length recompiled"


def test_compiled_equals_eager_within_float32_rounding(kernels):
    results = {}
    for mode in ("eager", "compiled"):
        kernels(mode)
        torch.manual_seed(0)
        results[mode] = steps(build_norm("un", C, window=2, warmup=3), [6, 8, 5, 9, 7])
    assert compiled.unavailable is None, compiled.unavailable
    for a, b in zip(results["eager"], results["compiled"]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_a_failing_compiler_falls_back_to_the_eager_kernels(kernels, monkeypatch, caplog):
    def no_compiler(fn):
        raise RuntimeError("no C++ compiler found")

    kernels("eager")
    torch.manual_seed(0)
    eager = steps(build_norm("un", C, window=2, warmup=3), [6, 8, 5, 9])
    compiled.reset()
    monkeypatch.setattr(compiled, "_compile", no_compiler)
    kernels("compiled")
    torch.manual_seed(0)
    with caplog.at_level(logging.WARNING, logger=compiled.__name__):
        fallback = steps(build_norm("un", C, window=2, warmup=3), [6, 8, 5, 9])
    assert compiled.unavailable and "no C++ compiler found" in compiled.unavailable
    assert sum("unavailable" in r.getMessage() for r in caplog.records) == 1  # said once
    for a, b in zip(eager, fallback):
        assert torch.equal(a, b)


def test_auto_takes_the_compiled_kernels_only_where_measured_faster(kernels, monkeypatch):
    small, large = torch.zeros(2, C), torch.zeros(64, C)
    kernels("auto")
    monkeypatch.setitem(row_sums.COMPILED_BY_DEFAULT, "cpu", None)
    assert not row_sums._compiled(large)
    monkeypatch.setitem(row_sums.COMPILED_BY_DEFAULT, "cpu", 64 * C)
    assert row_sums._compiled(large) and not row_sums._compiled(small)
    kernels("eager")
    assert not row_sums._compiled(large)
    kernels("compiled")
    assert row_sums._compiled(small)


def test_select_refuses_an_unknown_mode():
    with pytest.raises(ValueError) as e:
        row_sums.select("triton")
    assert "triton" in str(e.value) and "compiled" in str(e.value)


@pytest.mark.parametrize("mode", ["eager", "compiled"])
def test_norm_kernels_flag_reaches_the_kernel_choice(toy_data, kernels, mode):
    from fairseq import options, tasks

    from fairseq_fixtures import TINY_MODEL

    kernels("auto")
    args = options.parse_args_and_arch(
        options.get_training_parser(),
        [str(toy_data), "--user-dir", "un_fairseq", *TINY_MODEL, "--cpu", "--norm-kernels", mode])
    tasks.setup_task(args).build_model(args)
    assert row_sums.kernels == mode

"""Mixed precision below fairseq's trainer: statistic buffers under dtype conversions, the
half-precision backward against the float64 reference (``tests/reference.py``), loss-scale
invariance and the rollback of skipped updates through fairseq's own optimizer wrappers,
and the host step counter's device branch driven on CPU."""

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from fairseq.optim.amp_optimizer import AMPOptimizer
from fairseq.optim.fp16_optimizer import FP16Optimizer, MemoryEfficientFP16Optimizer
from reference import RefMABN, RefPowerNorm, RefUnifiedNorm
from un_fairseq import fp16_hooks
from un_fairseq.modules import base, build_norm, compiled, loss_scale, row_sums, step_rollback

REPO = Path(__file__).resolve().parent.parent
STAT_VALUES = torch.tensor([1.0, 70000.0, 1e-9, 3.14159265])
STATEFUL = ("un", "power", "power_noscale", "mabn", "batch")
FAST = {"un": dict(window=2, warmup=3), "power": dict(warmup=3), "power_noscale": dict(warmup=3),
        "mabn": dict(window=2, warmup=3), "batch": {}}
REFS = {"un": RefUnifiedNorm, "power": lambda C, **kw: RefPowerNorm(C, layer_scale=True, **kw),
        "power_noscale": lambda C, **kw: RefPowerNorm(C, layer_scale=False, **kw), "mabn": RefMABN}


@pytest.fixture(autouse=True)
def no_step_guard():
    """Each test starts as a process that trains in fp32: no hooks, no step guard."""
    fp16_hooks.uninstall()
    yield
    fp16_hooks.uninstall()


@pytest.fixture
def fp16_run():
    """What ``transformer_un`` does when fairseq's trainer starts a ``--fp16`` / ``--amp`` run."""
    fp16_hooks.install()


# ---------------------------------------------------------------- dtype conversions
CONVERSIONS = {
    "half": lambda m: m.half(),
    "bfloat16": lambda m: m.bfloat16(),
    "to_fp16": lambda m: m.to(torch.float16),
    "to_dtype_kw": lambda m: m.to(dtype=torch.bfloat16),
    "to_device_dtype": lambda m: m.to(m.weight.device, torch.float16),
    "double": lambda m: m.double(),
    "model_half": lambda m: torch.nn.Sequential(m).half()[0],
}


@pytest.mark.parametrize("conversion", list(CONVERSIONS))
@pytest.mark.parametrize("kind", STATEFUL)
def test_conversions_keep_float32_statistics_exactly(kind, conversion, device):
    norm = build_norm(kind, 8).to(device)
    with torch.no_grad():
        for name in norm.stat_buffers:
            buf = getattr(norm, name)
            buf.copy_(STAT_VALUES.repeat(buf.numel() // 4).reshape(buf.shape))
    before = {n: b.clone() for n, b in norm.named_buffers()}
    norm = CONVERSIONS[conversion](norm)
    for name, old in before.items():
        new = getattr(norm, name)
        assert new.dtype == old.dtype, f"{kind}.{name} became {new.dtype} under {conversion}"
        assert torch.equal(new, old), f"{kind}.{name} changed under {conversion}: {old} -> {new}"
    assert norm.weight.dtype != torch.float32  # the parameters did convert
    if kind != "power":  # offline norms: eval output of the channel with running var 70000
        norm.eval()
        x = torch.full((2, 3, 8), 100.0, dtype=norm.weight.dtype, device=device)
        y = norm(x)[0, 0].double().cpu()
        var = before["running_var" if "running_var" in before else "running_phi"].double().cpu()
        mean = before.get("running_mean", torch.zeros(8)).double().cpu()
        exp = (100.0 - mean) / torch.sqrt(var + 1e-5)  # weight 1, bias 0 (float64 spec)
        torch.testing.assert_close(y, exp, rtol=1e-2, atol=1e-2)


# ------------------------------------------------- half-precision backward vs float64
LOW_RMS_CHANNELS = torch.tensor([1.0, 1e-3, 0.5, 2.0, 1e-3, 300.0, 1.0, 1e-2])


def _half_batch(gen, S, T=6, B=4, C=8):
    """x with low-variance (rms 1e-3) and outlier (rms 300) channels, an upstream gradient
    that correlates with x, times the loss scale ``S``; fp16 values. ``S = 0`` is defect 2 of
    issue 8 as filed: no loss scale, a gradient of size 8 that follows x closely, so that
    ``c / (sigma2 + eps)`` is about 2e5 on the low-variance channels."""
    x = torch.randn(T, B, C, generator=gen) * LOW_RMS_CHANNELS
    lengths = torch.tensor([T, T - 1, T - 3, 2])
    mask = torch.arange(T)[None, :] >= lengths[:, None]
    noise = torch.randn(T, B, C, generator=gen)
    if S == 0:
        dy = 8.0 * (x / LOW_RMS_CHANNELS + 0.1 * noise)
    else:
        dy = S * 1e-3 * (0.8 * x / LOW_RMS_CHANNELS + 0.2 * noise)
    return x.half(), mask, dy.half()


def _assert_half_close(got, exp, what):
    """Close per channel to the float64 value, relative to the channel's largest value (or
    within a few of fp16's smallest steps, 2^-24), and non-finite only where the true value
    is beyond fp16's range."""
    got, exp = got.double().cpu().reshape(-1, exp.shape[-1]), exp.double().cpu().reshape(-1, exp.shape[-1])
    representable = exp.abs() < 65504 * 0.98
    assert torch.isfinite(got[representable]).all(), f"{what}: overflow where the true value fits fp16"
    scale = exp.abs().amax(0, keepdim=True).clamp_max(65504)
    err = (got - exp).abs().where(representable, torch.zeros_like(got))
    assert (err <= 2e-2 * scale + 4 * 2.0**-24).all(), f"{what}: max error {float((err / scale).max()):.3g} of the channel scale"


@pytest.mark.parametrize("S", [0, 1.0, 2.0**7, 2.0**11, 2.0**15, 2.0**17, 2.0**20],
                         ids=lambda s: f"S{int(s)}" if s else "defect2")
@pytest.mark.parametrize("kind", ["un", "power", "power_noscale", "mabn"])
@pytest.mark.parametrize("kernels", ["eager", "compiled"])
def test_fp16_backward_overflows_only_where_the_true_gradient_does(kind, S, kernels, device, monkeypatch):
    """On the eager kernels and on the compiled ones (``compiled.py``, float32 inside)."""
    if kernels == "compiled" and device.type != "cpu":
        pytest.skip("the compiled kernels are checked on the CPU")
    monkeypatch.setattr(row_sums, "kernels", kernels)
    C = 8
    norm = build_norm(kind, C, **FAST[kind]).half().to(device)
    ref = REFS[kind](C, **FAST[kind])
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        norm.weight.copy_(1.0 + 0.3 * torch.randn(C, generator=gen))
    ref.set_params(norm.weight.float().cpu(), norm.bias.float().cpu())
    for step in range(1, 11):  # past the warmup: the moving averages of gz are in use
        x, mask, dy = _half_batch(gen, S)
        xm = x.to(device).clone().requires_grad_(True)
        norm(xm, padding_mask=mask.to(device)).backward(dy.to(device))
        ref.forward(x.double(), mask)
        dxr = ref.backward(dy.double())[0]
        real = (~mask).t().reshape(-1)
        where = f"{kind} S={S} step {step}"
        _assert_half_close(xm.grad.cpu().reshape(-1, C)[real], dxr.reshape(-1, C)[real], f"{where}: dx")
        for name, exp in ref.buffers().items():
            if exp.is_floating_point():
                _assert_half_close(getattr(norm, name).reshape(-1, C), exp.reshape(-1, C), f"{where}: {name}")
    assert kernels == "eager" or compiled.unavailable is None, f"torch.compile failed: {compiled.unavailable}"


# ----------------------------------------------------- fairseq's optimizer wrappers
def _fairseq_cfg(init_scale=1.0):
    return OmegaConf.create({
        "common": {"fp16_init_scale": init_scale, "fp16_scale_window": 10**6, "fp16_scale_tolerance": 0.0,
                   "threshold_loss_scale": None, "min_loss_scale": 1e-4, "fp16_no_flatten_grads": True,
                   "bf16": False, "tpu": False},
        "optimizer": {"_name": "adam", "lr": [3e-2], "adam_betas": "(0.9, 0.98)", "adam_eps": 1e-8,
                      "weight_decay": 0.0},
        "optimization": {"update_freq": [1], "lr": [3e-2]},
    })


class _GradBlowUp(torch.autograd.Function):
    """Identity forward; the backward multiplies by ``factor`` (an injected fp16 overflow)."""

    @staticmethod
    def forward(ctx, x, factor):
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx, dy):
        return dy * ctx.factor, None


class _NormStack(torch.nn.Module):
    """Linear -> norm -> (overflow injector) -> Linear -> norm -> Linear, on ``T x B x C``."""

    def __init__(self, kind, C=8, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.inp, self.mid, self.out = torch.nn.Linear(4, C), torch.nn.Linear(C, C), torch.nn.Linear(C, 3)
        self.norm1, self.norm2 = build_norm(kind, C, **FAST[kind]), build_norm(kind, C, **FAST[kind])
        self.blow_up = 1.0

    def forward(self, x, mask):
        h = self.norm1(self.inp(x), padding_mask=mask)
        h = _GradBlowUp.apply(h, self.blow_up)
        return self.out(self.norm2(torch.relu(self.mid(h)), padding_mask=mask))


def _batches(n, T=5, B=3):
    gen = torch.Generator().manual_seed(1)
    out = []
    for i in range(n):
        x = torch.randn(T, B, 4, generator=gen) * (1 + i % 3)
        mask = torch.zeros(B, T, dtype=torch.bool)
        mask[1, T - 2:] = True
        out.append((x, mask))
    return out


def _train(kind, scales, wrapper=FP16Optimizer, blow_up_at=()):
    """A float32 run through fairseq's optimizer wrapper, the loss scale set before each
    step (``scales``); the steps in ``blow_up_at`` overflow in the backward. Each step is
    what fairseq's ``Trainer.train_step`` does: ``zero_grad``, forward, ``backward``,
    ``multiply_grads``, ``clip_grad_norm`` (which raises OverflowError on the overflow:
    the update is skipped), ``step``. Returns the model and the number of steps skipped."""
    fp16_hooks.install()  # as transformer_un does for a --fp16 run
    model = _NormStack(kind)
    opt = wrapper.build_optimizer(_fairseq_cfg(), list(model.parameters()))
    skipped = 0
    batches = iter(_batches(len(scales)))
    for i, S in enumerate(scales):
        opt.scaler.loss_scale = S
        opt.zero_grad()  # as fairseq's trainer: at the start of each update
        model.blow_up = 1e30 if i in blow_up_at else 1.0
        x, mask = next(batches) if i not in blow_up_at else (torch.randn(5, 3, 4), torch.zeros(3, 5, dtype=torch.bool))
        loss = model(x, mask).pow(2).mean()
        opt.backward(loss)
        opt.multiply_grads(1.0 / 15)
        try:
            opt.clip_grad_norm(0.0)
        except OverflowError:
            skipped += 1
            continue
        opt.step()
    return model, skipped


def _state(model):
    return {**{n: p.detach().clone() for n, p in model.named_parameters()},
            **{n: b.clone() for n, b in model.named_buffers()}}


def _assert_bit_identical(a, b, what):
    sa, sb = _state(a), _state(b)
    assert sa.keys() == sb.keys()
    differ = [n for n in sa if not torch.equal(sa[n], sb[n])]
    assert not differ, f"{what}: differ in {differ}"


# power-of-two scales as fairseq's dynamic scaler moves them, and beyond
SCALES = [2.0**7, 2.0**8, 2.0**8, 2.0**15, 2.0**14, 2.0**20, 1.0, 2.0**3, 2.0**16, 2.0**16, 2.0**5, 2.0**11]


@pytest.mark.parametrize("wrapper", [FP16Optimizer, MemoryEfficientFP16Optimizer], ids=["fp16", "memory_efficient"])
@pytest.mark.parametrize("kind", ["un", "power", "power_noscale", "mabn"])
def test_loss_scaled_run_is_bit_identical_to_unscaled(kind, wrapper, monkeypatch):
    unscaled, _ = _train(kind, [1.0] * len(SCALES), wrapper)
    scaled, _ = _train(kind, SCALES, wrapper)
    _assert_bit_identical(scaled, unscaled, f"{kind} under changing loss scales")
    # not vacuous: without the published scale the gradient statistics mix scales
    monkeypatch.setattr(loss_scale, "current", lambda: 1.0)
    naive, _ = _train(kind, SCALES, wrapper)
    grad_state = [n for n in _state(naive) if n.endswith(("psi", "phi", "grad_ema"))]
    assert any(not torch.equal(_state(naive)[n], _state(unscaled)[n]) for n in grad_state)


def test_amp_backward_publishes_its_scale_tensor(fp16_run):
    """AMPOptimizer's scale is a device tensor: published without a sync, it keeps UN's
    gradient statistics in unscaled units. (fairseq builds a CUDA GradScaler, disabled on
    CPU; a CPU GradScaler stands in for it here.)"""
    cfg = _fairseq_cfg()
    states = []
    for init_scale in (None, 2.0**13):
        model = _NormStack("un")
        opt = AMPOptimizer.build_optimizer(cfg, list(model.parameters()))
        if init_scale is not None:
            opt._grad_scaler = torch.amp.GradScaler("cpu", init_scale=init_scale)
        for x, mask in _batches(6):
            opt.zero_grad()
            opt.backward(model(x, mask).pow(2).mean())
        states.append({n: b.clone() for n, b in model.named_buffers()})
    for name in states[0]:
        assert torch.equal(states[0][name], states[1][name]), name


@pytest.mark.parametrize("kind", STATEFUL)
def test_skipped_update_leaves_every_norm_as_it_was(kind):
    """An overflow in the backward (after norm2's backward, before norm1's) makes fairseq's
    fp16 wrapper skip the update and halve the scale: the run ends bit-identical to one that
    never saw that step."""
    straight, skipped0 = _train(kind, [2.0**10] * 6 + [2.0**9] * 4)
    with_overflow, skipped = _train(kind, [2.0**10] * 7 + [2.0**9] * 4, blow_up_at=(6,))
    assert (skipped0, skipped) == (0, 1)
    _assert_bit_identical(with_overflow, straight, f"{kind} after a skipped update")
    if kind != "batch":
        assert with_overflow.norm1._host_steps == int(with_overflow.norm1.num_steps) == 10


def _train_amp(kind, n, blow_up_at=(), halve_after=None):
    """As ``_train`` through ``AMPOptimizer``: on an overflow fairseq's trainer still calls
    ``step()``, and the GradScaler leaves the update out and halves its scale (``halve_after``
    halves it after that step without an overflow: the parameters' updates depend on it).
    fairseq builds a CUDA GradScaler, disabled on CPU; a CPU GradScaler stands in for it."""
    fp16_hooks.install()
    model = _NormStack(kind)
    opt = AMPOptimizer.build_optimizer(_fairseq_cfg(), list(model.parameters()))
    opt._grad_scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    batches = iter(_batches(n))
    for i in range(n + len(blow_up_at)):
        opt.zero_grad()
        model.blow_up = 1e38 if i in blow_up_at else 1.0  # inf in the float32 gradients
        x, mask = next(batches) if i not in blow_up_at else (torch.randn(5, 3, 4), torch.zeros(3, 5, dtype=torch.bool))
        opt.backward(model(x, mask).pow(2).mean())
        opt.multiply_grads(1.0 / 15)
        opt.clip_grad_norm(0.0)
        opt.step()
        if i == halve_after:
            opt._grad_scaler.update(new_scale=opt._grad_scaler.get_scale() / 2)
    return model, float(opt._grad_scaler.get_scale())


@pytest.mark.parametrize("kind", STATEFUL)
def test_amp_skipped_update_leaves_every_norm_as_it_was(kind):
    straight, scale0 = _train_amp(kind, 8, halve_after=4)
    with_overflow, scale = _train_amp(kind, 8, blow_up_at=(5,))
    assert scale0 == scale == 2.0**9  # the overflow was seen and skipped
    _assert_bit_identical(with_overflow, straight, f"{kind} after a skipped amp update")


def test_rollback_restores_state_changed_in_the_failed_step(monkeypatch):
    """Not vacuous: without the rollback, the overflowing step's forward stays counted."""
    model, _ = _train("un", [2.0**10] * 4, blow_up_at=(2,))
    assert int(model.norm1.num_steps) == 3
    monkeypatch.setattr(step_rollback, "settle", lambda norm: False)
    model, _ = _train("un", [2.0**10] * 4, blow_up_at=(2,))
    assert int(model.norm1.num_steps) == 4


@pytest.mark.parametrize("kind", ["un", "batch"])
def test_skipped_last_update_is_settled_before_saving_and_validation(kind):
    """The last attempt overflows: the checkpoint and an eval forward see the state of the
    last update taken, not the skipped attempt's statistics."""
    straight, _ = _train(kind, [2.0**10] * 3)
    for use in ("state_dict", "eval"):
        skipped, n = _train(kind, [2.0**10] * 4, blow_up_at=(3,))
        assert n == 1
        if use == "state_dict":
            saved = skipped.state_dict()
            assert all(torch.equal(saved[k], v) for k, v in straight.state_dict().items()), use
        else:
            skipped.eval()
            x, mask = _batches(1)[0]
            straight.eval()
            assert torch.equal(skipped(x, mask), straight(x, mask)), use


def test_import_changes_nothing_of_fairseq():
    """``import un_fairseq`` (every ``--user-dir un_fairseq`` command) wraps no fairseq method;
    only a --fp16/--amp training run does, and only the three backward methods."""
    code = ("from fairseq.optim import amp_optimizer as a, fp16_optimizer as f\n"
            "before = [f._FP16OptimizerMixin.backward, f._MemoryEfficientFP16OptimizerMixin.backward,"
            " a.AMPOptimizer.backward]\n"
            "import un_fairseq\n"
            "after = [f._FP16OptimizerMixin.backward, f._MemoryEfficientFP16OptimizerMixin.backward,"
            " a.AMPOptimizer.backward]\n"
            "assert before == after\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300, cwd=REPO,
                   env={**os.environ, "PYTHONPATH": str(REPO)})


def test_hooks_are_installed_once_and_only_for_loss_scaled_runs():
    fp16_hooks.install_for(argparse.Namespace(fp16=False, amp=False, bf16=True))
    assert not getattr(FP16Optimizer.backward, "_un_fairseq_wrapped", False)
    assert not step_rollback.enabled()
    fp16_hooks.install_for(argparse.Namespace(fp16=True))
    before = FP16Optimizer.backward
    assert getattr(before, "_un_fairseq_wrapped", False) and step_rollback.enabled()
    fp16_hooks.install()
    assert FP16Optimizer.backward is before
    assert getattr(AMPOptimizer.backward, "_un_fairseq_wrapped", False)


def test_unknown_fairseq_version_is_refused():
    with pytest.raises(RuntimeError, match=r"fairseq 0\.13\.0: .*written for fairseq 0\.12"):
        fp16_hooks.check_version("0.13.0")


def test_plain_fp32_training_has_no_guard():
    norm = build_norm("un", 8, **FAST["un"])
    norm(torch.randn(4, 2, 8)).sum().backward()
    assert not step_rollback.enabled() and getattr(norm, "_rollback_pending", None) is None
    assert loss_scale.current() == 1.0


# ------------------------------------------------------------- host step counter
class _FakeEvent:
    """Stands in for an accelerator's event: reading the flag must wait on it first."""

    def __init__(self):
        self.recorded = self.waited = False

    def record(self):
        self.recorded = True

    def synchronize(self):
        assert self.recorded
        self.waited = True


def test_host_flag_waits_for_its_event_before_reading():
    event = _FakeEvent()
    flag = base.HostFlag(torch.tensor(False), event=event)
    assert event.recorded and not event.waited
    assert not bool(flag) and event.waited


def test_host_step_counter_rolls_back_through_the_device_branch(monkeypatch):
    """The branch a GPU runs (copy behind an event, read at the next call), on CPU: after
    non-finite batches the host count equals the device count and each read waited."""
    events, host_flag = [], base.HostFlag

    def device_flag(ok):
        events.append(_FakeEvent())
        return host_flag(ok, event=events[-1])

    monkeypatch.setattr(base, "HostFlag", device_flag)
    norm = build_norm("un", 8, **FAST["un"])
    gen = torch.Generator().manual_seed(3)
    finite = [True, True, False, True, False, False, True, True]
    for ok in finite:
        x = torch.randn(4, 2, 8, generator=gen)
        if not ok:
            x[0, 0, 0] = float("nan")
        norm(x)
    assert norm._next_step() == sum(finite) + 1 == int(norm.num_steps) + 1
    assert len(events) == len(finite) and all(e.waited for e in events)


def test_plain_path_used_for_half_even_when_fused_is_on():
    assert row_sums.use_fused_cpu_kernel
    x = torch.randn(4, 8)
    assert row_sums._fused(x) and not row_sums._fused(x.half())

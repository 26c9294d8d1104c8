"""The normalizers in ``un_fairseq.modules`` against the independent float64 reference
in ``tests/reference.py`` (written from docs/normalizers.md only)."""

import inspect
import math
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from reference import (
    RefLayerNorm, RefMABN, RefMaskedBatchNorm, RefNoNorm, RefPowerNorm, RefRMSNorm,
    RefUnifiedNorm, exact_rms_batch_norm,
)
from un_fairseq.modules import (
    MABN, LayerNorm, MaskedBatchNorm, NoNorm, PowerNorm, RMSNorm, UnifiedNorm, build_norm, norm_class,
    norm_type_of, registry, row_sums,
)
from un_fairseq.modules import compiled

from un_fairseq.modules.spec import Option

NORM_SPECS, NORM_TYPES = registry.norm_specs(), registry.norm_types()
OFFLINE_NORM_TYPES, BATCH_STAT_NORM_TYPES = registry.offline_norm_types(), registry.batch_stat_norm_types()

RTOL, ATOL = 1e-4, 1e-5

MODULES = {
    "un": (UnifiedNorm, RefUnifiedNorm),
    "power": (lambda C, **kw: PowerNorm(C, layer_scale=True, **kw),
              lambda C, **kw: RefPowerNorm(C, layer_scale=True, **kw)),
    "power_noscale": (lambda C, **kw: PowerNorm(C, layer_scale=False, **kw),
                      lambda C, **kw: RefPowerNorm(C, layer_scale=False, **kw)),
    "mabn": (MABN, RefMABN),
    "batch": (MaskedBatchNorm, RefMaskedBatchNorm),
    "layer": (LayerNorm, RefLayerNorm),
    "rms": (RMSNorm, RefRMSNorm),
    "none": (NoNorm, RefNoNorm),
}
# buffers touched only by the backward pass
GRAD_STATE = {"un": ("psi", "phi"), "power": ("grad_ema",), "power_noscale": ("grad_ema",),
              "mabn": ("phi",)}
# small-window / short-warmup options per kind, so a few steps cross every phase
FAST = {"un": dict(window=2, warmup=3), "power": dict(warmup=3), "power_noscale": dict(warmup=3),
        "mabn": dict(window=2, warmup=3), "batch": {}, "layer": {}, "rms": {}, "none": {}}
STATEFUL = ("un", "power", "power_noscale", "mabn", "batch")
DEVICE = torch.device("cpu")  # where the modules run: the `device` fixture (conftest --device)


@pytest.fixture(autouse=True, params=["fused", "plain", "compiled"])
def row_sums_path(request, monkeypatch, device):
    """Every test here runs three times: through the fused CPU float32 kernels, through the
    plain ops that CUDA and half precision run (``row_sums``' other path), forced on CPU, and
    through the kernels compiled by ``torch.compile`` (``compiled.py``; compiled once per
    process, dynamic shapes). On ``--device cuda`` the modules run there through the plain ops
    (the default there) and the reference on the CPU."""
    if request.param != "plain" and device.type != "cpu":
        pytest.skip(f"the {request.param} kernels are checked on the CPU")
    monkeypatch.setattr(row_sums, "use_fused_cpu_kernel", request.param == "fused")
    monkeypatch.setattr(row_sums, "kernels", "compiled" if request.param == "compiled" else "eager")
    monkeypatch.setitem(globals(), "DEVICE", device)
    if request.param == "compiled" and compiled.unavailable is not None:
        pytest.fail(f"torch.compile failed: {compiled.unavailable}")
    yield request.param
    if request.param == "compiled":
        assert compiled.unavailable is None, f"torch.compile failed: {compiled.unavailable}"


# ----------------------------------------------------------------------- helpers
def make(kind, C, seed=0, **kw):
    mod_cls, ref_cls = MODULES[kind]
    mod, ref = mod_cls(C, **kw), ref_cls(C, **kw)
    if kind != "none":
        g = torch.Generator().manual_seed(1000 + seed)
        with torch.no_grad():
            mod.weight.copy_(1.0 + 0.5 * torch.randn(C, generator=g))
            bias = 0.3 * torch.randn(C, generator=g)
            if getattr(mod, "bias", None) is not None:
                mod.bias.copy_(bias)
            else:  # reported by test_parameters; keep checking the rest
                bias = torch.zeros(C)
        ref.set_params(mod.weight, bias)
    return mod.to(DEVICE), ref


def make_batch(gen, T, B, C, *, scale=1.0, pad=True, chan=None):
    """x (T,B,C) float32 with per-channel scales, right-padding mask (B,T), dy."""
    chan = torch.linspace(0.5, 2.0, C) if chan is None else chan
    x = torch.randn(T, B, C, generator=gen) * chan * scale + 0.3 * scale
    dy = torch.randn(T, B, C, generator=gen)
    mask = None
    if pad:
        lengths = torch.randint(1, T + 1, (B,), generator=gen)
        lengths[0] = T  # at least T >= 2 real rows
        mask = torch.arange(T)[None, :] >= lengths[:, None]
        # garbage at padding positions: must not leak into any statistic
        x = torch.where(mask.t()[..., None], 50.0 * torch.randn(T, B, C, generator=gen), x)
    return x, mask, dy


def real_rows(x, mask):
    C = x.shape[-1]
    if mask is None:
        return torch.ones(x.reshape(-1, C).shape[0], dtype=torch.bool)
    return (~mask).t().reshape(-1)


def close(got, exp, what, rtol=RTOL, atol=ATOL):
    torch.testing.assert_close(got.detach().double().cpu(), exp.detach().double().cpu(), rtol=rtol,
                               atol=atol, msg=lambda m: f"{what}: {m}")


def check_buffers(mod, ref, where, rtol=RTOL, atol=ATOL):
    bufs = dict(mod.named_buffers())
    for name, exp in ref.buffers().items():
        assert name in bufs, f"{where}: module lacks buffer {name!r} (has {sorted(bufs)})"
        got = bufs[name]
        assert tuple(got.shape) == tuple(exp.shape), f"{where}: {name} shape {tuple(got.shape)} != {tuple(exp.shape)}"
        if exp.dtype in (torch.int64, torch.long):
            assert got.dtype == torch.int64, f"{where}: {name} dtype {got.dtype}"
            assert int(got) == int(exp), f"{where}: {name} = {int(got)}, expected {int(exp)}"
        else:
            assert got.dtype == torch.float32, f"{where}: {name} dtype {got.dtype}"
            close(got, exp, f"{where}: buffer {name}", rtol, atol)


def sync_state(mod, ref):
    """Load the reference's state into the module through load_state_dict (the supported
    checkpoint path, so a host-side step counter is restored too) and round the reference
    state to float32, so a long run can start at step ~1000 without 1000 module steps."""
    state = mod.state_dict()
    for name, val in ref.buffers().items():
        state[name] = val.to(state[name].dtype).reshape(state[name].shape).clone()
        if val.is_floating_point():
            setattr(ref, name, val.float().double())
    mod.load_state_dict(state)
    check_buffers(mod, ref, "after sync_state", 0, 0)


def run_module(mod, x, mask, dy):
    """forward + autograd backward of the module (on DEVICE); returns y, dx, dweight, dbias
    on the CPU."""
    xm = x.to(DEVICE).clone().requires_grad_(True)
    for p in mod.parameters():
        p.grad = None
    y = mod(xm, padding_mask=None if mask is None else mask.to(DEVICE))
    y.backward(dy.to(DEVICE))
    w = getattr(mod, "weight", None)
    b = getattr(mod, "bias", None)
    return y.cpu(), xm.grad.cpu(), (None if w is None else w.grad.cpu()), (None if b is None else b.grad.cpu())


def check_step(mod, ref, x, mask, dy, where, *, pad_dx=True, rtol=RTOL, atol=ATOL):
    C = x.shape[-1]
    y, dx, dw, db = run_module(mod, x, mask, dy)
    yr = ref.forward(x, mask)
    dxr, dwr, dbr = ref.backward(dy)
    assert y.shape == x.shape and y.dtype == x.dtype, where
    close(y, yr, f"{where}: y", rtol, atol)
    dx, dxr = dx.reshape(-1, C), dxr.reshape(-1, C)
    if not pad_dx:
        sel = real_rows(x, mask)
        dx, dxr = dx[sel], dxr[sel]
    close(dx, dxr, f"{where}: dx", rtol, atol)
    if dwr is not None and db is None:
        close(dw, dwr, f"{where}: dweight", rtol, atol)
    elif dwr is not None:
        close(dw, dwr, f"{where}: dweight", rtol, atol)
        close(db, dbr, f"{where}: dbias", rtol, atol)
    check_buffers(mod, ref, where, rtol, atol)
    return y


def train_compare(kind, kw, *, steps, T=4, B=3, C=8, pad=True, seed=0, scales=None,
                  eval_steps=2, pad_dx=None, rtol=RTOL, atol=ATOL):
    mod, ref = make(kind, C, seed, **kw)
    mod.train()
    ref.train()
    gen = torch.Generator().manual_seed(seed)
    if pad_dx is None:
        # the spec fixes dx at padding rows for UN only (no statistics correction)
        pad_dx = kind in ("un", "batch", "layer", "rms", "none")
    for i in range(steps):
        scale = scales(i + 1) if scales is not None else math.exp(0.6 * float(torch.randn(1, generator=gen)))
        x, mask, dy = make_batch(gen, T, B, C, scale=scale, pad=pad)
        check_step(mod, ref, x, mask, dy, f"{kind}{kw} train step {i + 1}", pad_dx=pad_dx,
                   rtol=rtol, atol=atol)
    mod.eval()
    ref.eval()
    for i in range(eval_steps):
        x, mask, dy = make_batch(gen, T, B, C, pad=pad)
        check_step(mod, ref, x, mask, dy, f"{kind}{kw} eval step {i + 1}", rtol=rtol, atol=atol)
    return mod, ref


# ------------------------------------------------------- reference self-checks
def test_reference_un_window1_is_exact_gradient():
    """M == 1 means skip: sigma2 = s_t, r = 1, c = m = gz -> the exact gradient of
    gamma * x / sqrt(mean_rows x^2 + eps) + beta."""
    gen = torch.Generator().manual_seed(1)
    ref = RefUnifiedNorm(5, window=1, warmup=0)
    ref.set_params(torch.randn(5, generator=gen, dtype=torch.float64), torch.randn(5, generator=gen, dtype=torch.float64))
    for _ in range(6):
        x = torch.randn(7, 5, generator=gen, dtype=torch.float64).requires_grad_(True)
        dy = torch.randn(7, 5, generator=gen, dtype=torch.float64)
        y = exact_rms_batch_norm(x, ref.weight, ref.bias)
        (dx,) = torch.autograd.grad(y, x, dy)
        close(ref.forward(x), y, "y")
        close(ref.backward(dy)[0], dx, "dx", 1e-10, 1e-12)


@pytest.mark.parametrize("cls,kw", [
    (RefUnifiedNorm, dict(window=3, warmup=0, fp_geometric_mean=False, bp_moving_average=False, bp_momentum=False)),
    (RefMABN, dict(window=1, warmup=0)),
])
def test_reference_ablated_is_exact_gradient(cls, kw):
    gen = torch.Generator().manual_seed(2)
    ref = cls(4, **kw)
    for _ in range(8):
        x = torch.randn(3, 2, 4, generator=gen, dtype=torch.float64).requires_grad_(True)
        dy = torch.randn(3, 2, 4, generator=gen, dtype=torch.float64)
        y = exact_rms_batch_norm(x, ref.weight, ref.bias)
        (dx,) = torch.autograd.grad(y, x, dy)
        close(ref.forward(x), y.reshape(-1, 4).reshape(3, 2, 4), "y", 1e-12, 1e-12)
        close(ref.backward(dy)[0].reshape(3, 2, 4), dx, "dx", 1e-10, 1e-12)


def test_reference_bn_and_ln_match_torch():
    gen = torch.Generator().manual_seed(3)
    C = 5
    ref = RefMaskedBatchNorm(C, momentum=0.1)
    w, b = torch.randn(C, generator=gen, dtype=torch.float64), torch.randn(C, generator=gen, dtype=torch.float64)
    ref.set_params(w, b)
    rm, rv = torch.zeros(C, dtype=torch.float64), torch.ones(C, dtype=torch.float64)
    for _ in range(3):
        x, mask, dy = make_batch(gen, 4, 3, C)
        x, dy = x.double(), dy.double()
        sel = real_rows(x, mask)
        rows = x.reshape(-1, C)[sel]
        yt = F.batch_norm(rows, rm, rv, w, b, training=True, momentum=0.1, eps=1e-5)
        y = ref.forward(x, mask).reshape(-1, C)[sel]
        close(y, yt, "bn y", 1e-12, 1e-12)
        close(ref.running_mean, rm, "bn running_mean", 1e-12, 1e-12)
        close(ref.running_var, rv, "bn running_var", 1e-12, 1e-12)
    ln = RefLayerNorm(C)
    ln.set_params(w, b)
    x = torch.randn(3, 2, C, generator=gen, dtype=torch.float64)
    close(ln.forward(x), F.layer_norm(x, (C,), w, b, 1e-5), "ln", 1e-12, 1e-12)


# ------------------------------------------------------------- UN vs reference
UN_CONFIGS = {
    "base": dict(window=4, warmup=6),
    "pair_3_5": dict(window=(3, 5), warmup=6),
    "pair_5_2": dict(window=(5, 2), warmup=6),
    "pair_2_5_w0": dict(window=(2, 5), warmup=0),
    "pair_5_2_w1": dict(window=(5, 2), warmup=1),
    "window1": dict(window=1, warmup=6),
    "pair_1_3": dict(window=(1, 3), warmup=6),
    "pair_3_1": dict(window=(3, 1), warmup=6),
    "warmup0": dict(window=4, warmup=0),
    "filtration": dict(window=4, warmup=6, outlier_filtration=True),
    "filtration_pair": dict(window=(3, 5), warmup=6, outlier_filtration=True),
    "filtration_w_lt_m": dict(window=4, warmup=2, outlier_filtration=True),
    "count_padding": dict(window=4, warmup=6, count_padding=True),
    "no_fp_gm": dict(window=4, warmup=6, fp_geometric_mean=False),
    "no_bp_ma": dict(window=4, warmup=6, bp_moving_average=False),
    "no_bp_momentum": dict(window=4, warmup=6, bp_momentum=False),
    "all_ablations": dict(window=4, warmup=6, fp_geometric_mean=False, bp_moving_average=False,
                          bp_momentum=False),
    "momentum_0.8": dict(window=4, warmup=6, momentum=0.8),
    "momentum_0.7": dict(window=4, warmup=6, momentum=0.7),
    "momentum_0.6": dict(window=4, warmup=6, momentum=0.6),
    "filtration_no_fp_gm": dict(window=3, warmup=4, outlier_filtration=True, fp_geometric_mean=False),
}


@pytest.mark.parametrize("pad", [True, False], ids=["mask", "nomask"])
@pytest.mark.parametrize("name", list(UN_CONFIGS))
def test_un_matches_reference(name, pad):
    train_compare("un", UN_CONFIGS[name], steps=20, pad=pad, seed=list(UN_CONFIGS).index(name))


def _jump_schedule(start, length=5, factor=30.0):
    def scale(t):
        if start <= t < start + length:
            return factor
        return 1.0
    return scale


@pytest.mark.parametrize("kw", [dict(window=4, warmup=6), dict(window=(3, 2), warmup=1003),
                                dict(window=4, warmup=6, outlier_filtration=True)],
                         ids=["W6", "W1003_pair", "W6_filtration"])
def test_un_gradient_compensation_schedule(kw):
    """r stays 1 while t <= max(1000, W), then is sqrt(sigma2+eps)/sqrt(rv+eps) clamped
    to [0.2, 5]; a sustained scale jump after step 1005 drives it into both clamps."""
    mod, ref = make("un", 4, 7, **kw)
    gen = torch.Generator().manual_seed(7)
    sched = _jump_schedule(1008, 6)
    W = kw["warmup"]
    for i in range(1024):
        t = i + 1
        x, mask, dy = make_batch(gen, 3, 2, 4, scale=sched(t))
        if t < 995:  # the early part is covered elsewhere: advance the reference alone
            ref.forward(x, mask)
            ref.backward(dy)
            if t == 994:
                sync_state(mod, ref)
            continue
        check_step(mod, ref, x, mask, dy, f"un{kw} step {t}")
    rs = {e["t"]: e["r"] for e in ref.log}
    assert all(torch.all(rs[t] == 1) for t in rs if t <= max(1000, W)), "reference r schedule"
    active = [rs[e["t"]] for e in ref.log if e["t"] > max(1000, W) and not e["skip"]]
    assert any(torch.any((r - 1).abs() > 1e-3) for r in active), "r never left 1: test is vacuous"
    if not kw.get("outlier_filtration"):
        assert any(torch.any(r == 5.0) for r in active), "upper clamp not exercised"
        assert any(torch.any(r == 0.2) for r in active), "lower clamp not exercised"
    else:
        assert ref.num_skips > 0


@pytest.mark.parametrize("window,momentum", [(4, 0.9), ((3, 5), 0.7), ((5, 3), 0.6)])
def test_un_outlier_filtration_skips(window, momentum):
    """Stationary inputs with equal channel scales, then sudden scale jumps after W: the
    scalar-variance outlier test must fire (skip counter > 0) and match the reference."""
    C = 4
    mod, ref = make("un", C, 3, window=window, warmup=6, momentum=momentum, outlier_filtration=True)
    gen = torch.Generator().manual_seed(11)
    jumps = {9: 20.0, 10: 20.0, 15: 0.05, 21: 25.0}
    for i in range(26):
        t = i + 1
        x, mask, dy = make_batch(gen, 6, 4, C, scale=jumps.get(t, 1.0), chan=torch.ones(C))
        check_step(mod, ref, x, mask, dy, f"un filtration step {t}")
    assert ref.num_skips > 0, "no outlier skip happened: test is vacuous"
    assert int(mod.num_skips) == ref.num_skips
    mod.eval(), ref.eval()
    x, mask, dy = make_batch(gen, 6, 4, C)
    check_step(mod, ref, x, mask, dy, "un filtration eval")


def test_un_count_padding_ignores_mask():
    """count_padding=True is the release behaviour: the mask is ignored entirely."""
    gen = torch.Generator().manual_seed(5)
    a, _ = make("un", 6, 0, window=3, warmup=4, count_padding=True)
    b, _ = make("un", 6, 0, window=3, warmup=4)
    for i in range(10):
        x, mask, dy = make_batch(gen, 4, 3, 6)
        ya, dxa, dwa, dba = run_module(a, x, mask, dy)
        yb, dxb, dwb, dbb = run_module(b, x, None, dy)
        for n, p, q in (("y", ya, yb), ("dx", dxa, dxb), ("dw", dwa, dwb), ("db", dba, dbb)):
            close(p, q, f"step {i + 1} {n}", 1e-6, 1e-6)
        for (n, p), (_, q) in zip(a.named_buffers(), b.named_buffers()):
            close(p.double(), q.double(), f"step {i + 1} buffer {n}", 1e-6, 1e-6)


# ------------------------------------------------------- PN, PN*, MABN, BN, online
PN_CONFIGS = {
    "G4": dict(num_groups=4, warmup=5),
    "G2": dict(num_groups=2, warmup=5),
    "G8": dict(num_groups=8, warmup=5),
    "warmup0": dict(num_groups=4, warmup=0),
    "alphas": dict(num_groups=4, warmup=5, alpha_fwd=0.8, alpha_bkw=0.7),
    "count_padding": dict(num_groups=4, warmup=5, count_padding=True),
}


@pytest.mark.parametrize("pad", [True, False], ids=["mask", "nomask"])
@pytest.mark.parametrize("name", list(PN_CONFIGS))
@pytest.mark.parametrize("kind", ["power", "power_noscale"])
def test_powernorm_matches_reference(kind, name, pad):
    kw = dict(PN_CONFIGS[name])
    train_compare(kind, kw, steps=14, pad=pad, seed=len(name))


MABN_CONFIGS = {
    "base": dict(window=3, warmup=5),
    "window1": dict(window=1, warmup=5),
    "warmup_lt_window": dict(window=4, warmup=2),
    "momentum": dict(window=3, warmup=5, momentum=0.9),
    "count_padding": dict(window=3, warmup=5, count_padding=True),
}


@pytest.mark.parametrize("pad", [True, False], ids=["mask", "nomask"])
@pytest.mark.parametrize("name", list(MABN_CONFIGS))
def test_mabn_matches_reference(name, pad):
    train_compare("mabn", MABN_CONFIGS[name], steps=14, pad=pad, seed=len(name) + 20)


def test_mabn_gradient_compensation_schedule():
    mod, ref = make("mabn", 4, 9, window=3, warmup=6)
    gen = torch.Generator().manual_seed(9)
    sched = _jump_schedule(1006, 8)
    for i in range(1022):
        t = i + 1
        x, mask, dy = make_batch(gen, 3, 2, 4, scale=sched(t))
        if t < 995:
            ref.forward(x, mask)
            ref.backward(dy)
            if t == 994:
                sync_state(mod, ref)
            continue
        check_step(mod, ref, x, mask, dy, f"mabn step {t}", pad_dx=False)
    active = [e["r"] for e in ref.log if e["t"] > 1000]
    assert all(torch.all(e["r"] == 1) for e in ref.log if e["t"] <= 1000)
    assert any(torch.any(r == 5.0) for r in active) and any(torch.any(r == 0.2) for r in active)


@pytest.mark.parametrize("pad", [True, False], ids=["mask", "nomask"])
@pytest.mark.parametrize("kw", [{}, dict(momentum=0.3)], ids=["default", "momentum0.3"])
def test_batchnorm_matches_reference(kw, pad):
    train_compare("batch", kw, steps=6, pad=pad, seed=31)


@pytest.mark.parametrize("pad", [True, False], ids=["mask", "nomask"])
@pytest.mark.parametrize("kind", ["layer", "rms", "none"])
def test_online_norms_match_reference(kind, pad):
    train_compare(kind, {}, steps=3, pad=pad, seed=41)


@pytest.mark.parametrize("kind", [k for k in MODULES if k != "none"])
def test_parameters(kind):
    """API: every module but NoNorm has weight (C,) init 1 and bias (C,) init 0; RMSNorm has
    no bias (the spec's formula is gamma * x / rms)."""
    mod = MODULES[kind][0](8)
    params = dict(mod.named_parameters())
    expected = {"weight"} if kind == "rms" else {"weight", "bias"}
    assert set(params) == expected, f"{kind}: parameters {sorted(params)}"
    assert torch.equal(mod.weight, torch.ones(8))
    if "bias" in expected:
        assert torch.equal(mod.bias, torch.zeros(8))


def test_layernorm_is_torch_layernorm():
    assert issubclass(LayerNorm, torch.nn.LayerNorm)
    assert len(list(NoNorm(4).parameters())) == 0


# ------------------------------------------------------------- padding invariance
@pytest.mark.parametrize("kind", STATEFUL)
def test_padding_invariance(kind):
    """Extra padding positions (longer T, and an all-padding extra sentence) with garbage
    values change no statistic, buffer, output or gradient at real tokens."""
    C, T, B = 8, 4, 3
    kw = dict(FAST[kind])
    a, _ = make(kind, C, 2, **kw)
    b, _ = make(kind, C, 2, **kw)
    gen = torch.Generator().manual_seed(13)
    for i in range(9):
        x, mask, dy = make_batch(gen, T, B, C)
        dy = dy.masked_fill(mask.t()[..., None], 0.0)
        xb = 100.0 * torch.randn(T + 2, B + 1, C, generator=gen)
        xb[:T, :B] = x
        maskb = torch.ones(B + 1, T + 2, dtype=torch.bool)
        maskb[:B, :T] = mask
        dyb = torch.zeros(T + 2, B + 1, C)
        dyb[:T, :B] = dy
        ya, dxa, dwa, dba = run_module(a, x, mask, dy)
        yb, dxb, dwb, dbb = run_module(b, xb, maskb, dyb)
        realm = ~mask.t()
        where = f"{kind} step {i + 1}"
        close(yb[:T, :B][realm], ya[realm], f"{where}: y", 1e-5, 1e-6)
        close(dxb[:T, :B][realm], dxa[realm], f"{where}: dx", 1e-5, 1e-6)
        close(dwb, dwa, f"{where}: dweight", 1e-5, 1e-6)
        close(dbb, dba, f"{where}: dbias", 1e-5, 1e-6)
        for (n, p), (_, q) in zip(a.named_buffers(), b.named_buffers()):
            close(q.double(), p.double(), f"{where}: buffer {n}", 1e-5, 1e-6)


# ----------------------------------------------------------------- leading shapes
@pytest.mark.parametrize("shape", [(10, 8), (2, 3, 2, 8), (5, 2, 8)], ids=["2d", "4d", "3d"])
@pytest.mark.parametrize("kind", list(MODULES))
def test_any_leading_shape_without_mask(kind, shape):
    C = shape[-1]
    mod, ref = make(kind, C, 4, **FAST[kind])
    gen = torch.Generator().manual_seed(17)
    for i in range(7):
        x = torch.randn(*shape, generator=gen) * torch.linspace(0.5, 2, C) * (1 + i % 3)
        dy = torch.randn(*shape, generator=gen)
        check_step(mod, ref, x, None, dy, f"{kind} {shape} step {i + 1}")
    mod.eval(), ref.eval()
    x = torch.randn(*shape, generator=gen)
    check_step(mod, ref, x, None, torch.randn(*shape, generator=gen), f"{kind} {shape} eval")


# --------------------------------------------------------------- non-finite input
def _buffers(mod):
    return {n: b.detach().clone() for n, b in mod.named_buffers()}


def _assert_same_buffers(got, exp, where):
    assert got.keys() == exp.keys()
    for n in exp:
        assert torch.equal(got[n], exp[n]), f"{where}: buffer {n} changed: {exp[n]} -> {got[n]}"


NONFINITE_CASES = [("un", dict(window=2, warmup=3)), ("un", dict(window=(2, 3), warmup=3, outlier_filtration=True)),
                   ("power", dict(warmup=3)), ("power_noscale", dict(warmup=3)),
                   ("mabn", dict(window=2, warmup=3)), ("batch", {})]


@pytest.mark.parametrize("bad", [float("inf"), float("nan"), -float("inf")], ids=["inf", "nan", "-inf"])
@pytest.mark.parametrize("kind,kw", NONFINITE_CASES, ids=[f"{k}{i}" for i, (k, _) in enumerate(NONFINITE_CASES)])
def test_nonfinite_batch_is_a_no_op(kind, kw, bad):
    C = 8
    a, _ = make(kind, C, 5, **kw)
    b, _ = make(kind, C, 5, **kw)
    gen = torch.Generator().manual_seed(19)
    for i in range(12):
        x, mask, dy = make_batch(gen, 4, 3, C, scale=1.0 + i % 3)
        if i in (5, 9):  # a bad batch: only `a` sees it (forward + backward)
            xbad = x.clone()
            xbad[0, 0, 1] = bad  # position (t=0, b=0) is always a real token
            before = _buffers(a)
            y, _, _, _ = run_module(a, xbad, mask, dy)
            assert not torch.isfinite(y).all(), f"{kind}: output of a non-finite batch is finite"
            _assert_same_buffers(_buffers(a), before, f"{kind} after bad batch {i}")
            continue
        ra, rb = run_module(a, x, mask, dy), run_module(b, x, mask, dy)
        for n, p, q in zip(("y", "dx", "dweight", "dbias"), ra, rb):
            close(p, q, f"{kind} step {i} {n}", 1e-6, 1e-7)
        ba, bb = _buffers(a), _buffers(b)
        for n in bb:
            close(ba[n].double(), bb[n].double(), f"{kind} step {i} buffer {n}", 1e-6, 1e-7)


@pytest.mark.parametrize("bad", [float("inf"), float("nan")], ids=["inf", "nan"])
@pytest.mark.parametrize("kind", ["un", "power", "power_noscale", "mabn"])
def test_nonfinite_gradient_leaves_gradient_state(kind, bad):
    C = 8
    mod, _ = make(kind, C, 6, **FAST[kind])
    gen = torch.Generator().manual_seed(23)
    for i in range(8):
        x, mask, dy = make_batch(gen, 4, 3, C)
        if i in (2, 6):
            dy[0, 0, 3] = bad
            xm = x.to(DEVICE).clone().requires_grad_(True)
            y = mod(xm, padding_mask=mask.to(DEVICE))
            before = {n: b.detach().clone() for n, b in mod.named_buffers() if n in GRAD_STATE[kind]}
            assert len(before) == len(GRAD_STATE[kind])
            y.backward(dy.to(DEVICE))
            after = {n: b.detach().clone() for n, b in mod.named_buffers() if n in GRAD_STATE[kind]}
            _assert_same_buffers(after, before, f"{kind} non-finite dy at step {i + 1}")
        else:
            run_module(mod, x, mask, dy)
    for n, b in mod.named_buffers():
        if b.is_floating_point():
            assert torch.isfinite(b).all(), f"{kind}: buffer {n} not finite"


# ------------------------------------------------------------------ low precision
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("kind", list(MODULES))
def test_low_precision_input(kind, dtype):
    """Output dtype follows the input; statistics are the float32 statistics of the same
    values; buffers stay float32."""
    C = 8
    lp, _ = make(kind, C, 8, **FAST[kind])
    fp, _ = make(kind, C, 8, **FAST[kind])
    gen = torch.Generator().manual_seed(29)
    tol = dict(rtol=2e-2, atol=2e-2) if dtype == torch.bfloat16 else dict(rtol=5e-3, atol=5e-3)
    grad_state = GRAD_STATE.get(kind, ())
    for i in range(8):
        x, mask, dy = make_batch(gen, 4, 3, C, scale=1.0 + i % 2)
        x, dy = x.to(dtype), dy.to(dtype)
        y, dx, dw, db = run_module(lp, x, mask, dy)
        y32, dx32, dw32, db32 = run_module(fp, x.float(), mask, dy.float())
        assert y.dtype == dtype and dx.dtype == dtype, f"{kind}: {y.dtype}, {dx.dtype}"
        close(y, y32, f"{kind} step {i + 1} y", **tol)
        sel = real_rows(x, mask)
        close(dx.reshape(-1, C)[sel], dx32.reshape(-1, C)[sel], f"{kind} step {i + 1} dx", **tol)
        for n, p, q in (("dweight", dw, dw32), ("dbias", db, db32)):
            if p is not None:
                assert p.dtype == torch.float32
                atol = 5e-2
                if n == "dweight" and kind in GRAD_STATE:
                    # sum over rows of dy * z from products rounded to the input's precision
                    # (no full-size float32 copy): the error is a few units of roundoff of
                    # sum |dy * z|, which padding rows' large garbage values dominate
                    z = ((y32.float() - fp.bias.cpu()) / fp.weight.cpu()).detach()
                    atol = max(atol, 4 * torch.finfo(dtype).eps * float((dy.float() * z).abs().sum(dim=(0, 1)).max()))
                close(p, q, f"{kind} step {i + 1} {n}", rtol=3e-2, atol=atol)
        for (n, p), (_, q) in zip(lp.named_buffers(), fp.named_buffers()):
            if p.is_floating_point():
                assert p.dtype == torch.float32, f"{kind}: buffer {n} is {p.dtype}"
                t = dict(rtol=3e-2, atol=3e-3) if n in grad_state else dict(rtol=1e-5, atol=1e-6)
                close(p, q, f"{kind} step {i + 1} buffer {n}", **t)
            else:
                assert torch.equal(p, q), n


# ----------------------------------------------------------------- state_dict
@pytest.mark.parametrize("kind", STATEFUL)
def test_state_dict_round_trip(kind):
    kw = {"un": dict(window=3, warmup=6), "power": dict(warmup=6), "power_noscale": dict(warmup=6),
          "mabn": dict(window=3, warmup=6), "batch": {}}[kind]
    C = 8
    a, _ = make(kind, C, 10, **kw)
    gen = torch.Generator().manual_seed(37)
    for i in range(4):
        x, mask, dy = make_batch(gen, 4, 3, C, scale=1.0 + i)
        run_module(a, x, mask, dy)
    b = MODULES[kind][0](C, **kw).to(DEVICE)
    b.load_state_dict(a.state_dict())
    fresh = MODULES[kind][0](C, **kw).to(DEVICE)  # same parameters, no state: must differ
    with torch.no_grad():
        fresh.weight.copy_(a.weight), fresh.bias.copy_(a.bias)
    differs = False
    for i in range(5):  # crosses the warmup (t = 5..9)
        x, mask, dy = make_batch(gen, 4, 3, C, scale=1.0 + 2 * i)
        ra, rb, rf = run_module(a, x, mask, dy), run_module(b, x, mask, dy), run_module(fresh, x, mask, dy)
        for n, p, q in zip(("y", "dx", "dweight", "dbias"), ra, rb):
            assert torch.equal(p, q), f"{kind} step {i} {n}"
        differs |= not torch.allclose(ra[0], rf[0])
        for (n, p), (_, q), (_, f) in zip(a.named_buffers(), b.named_buffers(), fresh.named_buffers()):
            assert torch.equal(p, q), f"{kind} step {i} buffer {n}"
            differs |= kind == "batch" and not torch.equal(p, f)
    assert differs, "a fresh module gives the same outputs: the round trip test is vacuous"


# ----------------------------------------------------------- options and factory
def test_norm_types_in_table_1_order():
    """The paper's Table 1 rows first: the online norms, then the batch-statistics ones, UN
    last of them (rows beyond the paper's, e.g. DyT, follow)."""
    assert NORM_TYPES[:8] == ("layer", "rms", "none", "batch", "mabn", "power", "power_noscale", "un")
    labels = [s.label for s in NORM_SPECS.values()]
    assert labels[:8] == ["LN", "RMSNorm", "NoNorm", "BN", "MABN", "PN", "PN*", "UN"]
    assert registry.default_norm_type() == "un"
    assert registry.name_of(PowerNorm, layer_scale=False) == "power_noscale"


def test_registration_refuses_a_taken_name_or_row():
    with pytest.raises(ValueError, match="registered twice"):
        registry.register_norm("un", label="X", row=99, doc="", offline=False)(NoNorm)
    with pytest.raises(ValueError, match="both claim row 8"):
        registry.register_norm("other", label="X", row=8, doc="", offline=False)(NoNorm)
    assert registry.norm_types() == NORM_TYPES


@pytest.mark.parametrize("name,cls,kw,check", [
    ("un", UnifiedNorm, dict(window=(2, 3), warmup=2, momentum=0.8), None),
    ("layer", LayerNorm, {}, None),
    ("rms", RMSNorm, {}, None),
    ("power", PowerNorm, dict(warmup=2, num_groups=2), dict(layer_scale=True)),
    ("power_noscale", PowerNorm, dict(warmup=2), dict(layer_scale=False)),
    ("batch", MaskedBatchNorm, dict(momentum=0.2), None),
    ("mabn", MABN, dict(window=2, warmup=2), None),
    ("none", NoNorm, {}, None),
])
def test_build_norm(name, cls, kw, check):
    C = 8
    built = build_norm(name, C, **kw).to(DEVICE)
    assert isinstance(built, cls)
    direct = cls(C, **kw, **(check or {})).to(DEVICE)
    gen = torch.Generator().manual_seed(43)
    for i in range(4):
        x, mask, dy = make_batch(gen, 4, 3, C, scale=1.0 + i)
        for p, q, n in zip(run_module(built, x, mask, dy), run_module(direct, x, mask, dy), ("y", "dx", "dw", "db")):
            if q is not None:
                assert torch.equal(p, q), f"build_norm({name!r}) differs from {cls.__name__}: {n}"
    if name == "power":  # the layer-scale makes a difference, so the mapping is checked
        other = PowerNorm(C, **kw, layer_scale=False).to(DEVICE)
        x, mask, dy = make_batch(gen, 4, 3, C)
        assert not torch.allclose(run_module(built, x, mask, dy)[0], run_module(other, x, mask, dy)[0])


def test_build_norm_unknown_name():
    with pytest.raises(ValueError) as e:
        build_norm("grouped_norm", 8)
    msg = str(e.value)
    assert "grouped_norm" in msg
    for n in NORM_TYPES:
        assert n in msg, f"valid name {n!r} missing from: {msg}"


#: Invalid values of each kind of option (``un_fairseq/modules/spec.KINDS``).
BAD_VALUES = {"window": [0, -2, (0, 4), (4, 0)], "warmup": [-1, 2.5], "momentum": [0.0, 1.0, 1.5, -0.1],
              "eps": [0.0, -1e-5], "groups": [0], "real": [float("nan"), float("inf")],
              "positive": [0.0, -0.5, float("nan"), float("inf")]}
# generated from the registry: every option of every norm, each invalid value of its kind
BAD_OPTIONS = [(norm_class(name), opt.name, value) for name, spec in NORM_SPECS.items()
               for opt in spec.options for value in BAD_VALUES.get(opt.kind, [])]
BAD_OPTIONS = list(dict.fromkeys(BAD_OPTIONS))  # PN and PN* share a class


def test_bad_options_cover_every_kind():
    kinds = {opt.kind for spec in NORM_SPECS.values() for opt in spec.options}
    assert kinds - {"flag"} <= set(BAD_VALUES), f"no invalid values for {kinds - set(BAD_VALUES)}"
    for kind, values in BAD_VALUES.items():  # every kind refuses them, used by a norm yet or not
        for value in values:
            with pytest.raises(ValueError, match="not allowed"):
                Option("x", kind, None, "").check(value)


@pytest.mark.parametrize("cls,opt,value", BAD_OPTIONS,
                         ids=[f"{c.__name__}-{o}={v}" for c, o, v in BAD_OPTIONS])
def test_bad_options_raise(cls, opt, value):
    with pytest.raises(ValueError) as e:
        cls(8, **{opt: value})
    msg = str(e.value)
    assert opt in msg, f"option name {opt!r} missing from: {msg}"
    shown = [str(value)] + ([str(v) for v in value] if isinstance(value, tuple) else [])
    assert any(s in msg for s in shown), f"value {value!r} missing from: {msg}"


@pytest.mark.parametrize("name,opt,value", [("un", "window", 0), ("un", "momentum", 1.0),
                                            ("mabn", "warmup", -1), ("power", "eps", 0.0)])
def test_build_norm_bad_options_raise(name, opt, value):
    with pytest.raises(ValueError) as e:
        build_norm(name, 8, **{opt: value})
    assert opt in str(e.value)


@pytest.mark.parametrize("name", NORM_TYPES)
def test_build_norm_refuses_an_option_its_spec_lacks(name):
    with pytest.raises(TypeError) as e:
        build_norm(name, 8, windw=3)
    assert "windw" in str(e.value)


# ------------------------------------------------------- the registry (registry.py)
@pytest.mark.parametrize("name", NORM_TYPES)
def test_constructor_defaults_are_the_registry_defaults(name):
    """Each default is declared once, in the spec; the constructor's signature reads it."""
    params = inspect.signature(norm_class(name).__init__).parameters
    for opt in NORM_SPECS[name].options:
        assert params[opt.name].default == opt.default, f"{name}.{opt.name}"
    built = build_norm(name, 8)
    assert norm_type_of(built) == name
    for opt in NORM_SPECS[name].options:
        assert opt.check(built.constructor_options()[opt.name]) == opt.check(opt.default), opt.name


@pytest.mark.parametrize("name", NORM_TYPES)
def test_constructor_options_build_a_twin(name):
    C = 8
    kw = {**FAST.get(name, {}), **({"num_groups": 2} if name == "power" else {})}
    a = build_norm(name, C, **kw)
    b = build_norm(name, C, **a.constructor_options())
    assert a.constructor_options() == b.constructor_options() and repr(a) == repr(b)
    gen = torch.Generator().manual_seed(5)
    for i in range(5):  # crosses the warmup
        x, mask, dy = make_batch(gen, 4, 3, C, scale=1.0 + i)
        for p, q in zip(run_module(a, x, mask, dy), run_module(b, x, mask, dy)):
            assert (p is None and q is None) or torch.equal(p, q)


def test_registry_lists():
    assert OFFLINE_NORM_TYPES == tuple(n for n in NORM_TYPES if NORM_SPECS[n].offline)
    assert set(BATCH_STAT_NORM_TYPES) == {n for n in NORM_TYPES if "sync_stats" in NORM_SPECS[n].option_names}
    for name in BATCH_STAT_NORM_TYPES:  # a batch-statistics norm is stateful in training
        assert any(b.dtype == torch.float32 for b in build_norm(name, 8).buffers()), name


def test_every_registered_norm_has_its_section_in_the_spec():
    """Adding a normalizer includes its section in docs/normalizers.md, headed with its label."""
    spec = (Path(__file__).resolve().parent.parent / "docs" / "normalizers.md").read_text(encoding="utf-8")
    headings = [line for line in spec.splitlines() if line.startswith("## ")]
    for name, entry in NORM_SPECS.items():
        pattern = re.compile(rf"^## (?:.*[ ,])?{re.escape(entry.label)}[:, (]")
        assert any(pattern.match(h) for h in headings), f"no section for {name} ({entry.label}) in {headings}"

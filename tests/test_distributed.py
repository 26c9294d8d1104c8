"""``sync_stats=True`` across 2 processes (CPU, gloo) against one process on the full batches.

Each rank gets some columns of the same padded batches (unequal shares, so the ranks hold
different numbers of real tokens); the reference is the independent float64 reference of
``tests/reference.py`` run once on the whole batch. Output and input gradient rows, the sum
over ranks of the parameter gradients, and every buffer must match within float32
tolerance, and the buffers must be bit-identical on both ranks, over enough steps to cross
the warmup, the geometric mean and r's schedule. A small model trained with fairseq's
LegacyDistributedDataParallel and its trainer's gradient scaling must take the same updates
as one process on the full batches.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from distributed_worker import TinyModel, model_loss
from test_normalizers import GRAD_STATE, _jump_schedule, close, make, make_batch
from un_fairseq.modules import build_norm
from un_fairseq.modules.registry import batch_stat_norm_types

BATCH_STAT_NORM_TYPES = batch_stat_norm_types()

WORKER = Path(__file__).with_name("distributed_worker.py")
WORLD = 2
T, B, C = 5, 6, 8
SPLIT = [(0, 2), (2, 6)]  # batch columns of rank 0 and rank 1
FAST = {"un": dict(window=2, warmup=3), "power": dict(warmup=3), "power_noscale": dict(warmup=3),
        "mabn": dict(window=2, warmup=3), "batch": {}}
BAD_X_STEP, BAD_DY_STEP = 5, 7  # (1-based) rank 1 sees an inf activation / rank 0 a NaN gradient
SCRATCH_STEPS, SCHEDULE_START, SCHEDULE_STEPS = 9, 995, 20


def run_workers(job, tmp_path, timeout=300):
    """Run ``distributed_worker.py`` as ranks 0..WORLD-1; return each rank's results."""
    torch.save(job, tmp_path / "job.pt")
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    procs = [
        subprocess.Popen([sys.executable, str(WORKER), str(tmp_path / "job.pt"), str(rank), str(WORLD),
                          str(tmp_path / "store"), str(tmp_path / f"rank{rank}.pt")],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for rank in range(WORLD)
    ]
    try:
        outputs = [p.communicate(timeout=timeout)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for rank, (p, out) in enumerate(zip(procs, outputs)):
        assert p.returncode == 0, f"rank {rank} failed ({p.returncode}):\n{out[-4000:]}"
    return [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(WORLD)]


# ------------------------------------------------------------------- the job
def scratch_case(kind, seed):
    """From a fresh module: steps 1..9, with a non-finite batch on one rank and a non-finite
    gradient on the other along the way."""
    mod, ref = make(kind, C, seed, **FAST[kind])
    gen = torch.Generator().manual_seed(seed)
    steps, refs = [], []
    for t in range(1, SCRATCH_STEPS + 1):
        x, mask, dy = make_batch(gen, T, B, C, scale=1.0 + (t % 3))
        if t == BAD_X_STEP:
            x[0, SPLIT[1][0], 1] = float("inf")  # position t=0 is a real token in every column
        if t == BAD_DY_STEP:
            dy[0, SPLIT[0][0], 3] = float("nan")
        steps.append(dict(x=x, mask=mask, dy=dy))
        refs.append(reference_step(ref, x, mask, dy))
    return dict(type="norm", kind=kind, options=FAST[kind], weight=mod.weight.detach(),
                bias=mod.bias.detach(), state=None, steps=steps, split=SPLIT), refs


def schedule_case(kind, seed):
    """Steps 995..1014 from the reference's state at step 994, with a scale jump that drives
    r (from step 1001 on) into both of its clamps."""
    mod, ref = make(kind, C, seed, **FAST[kind])
    gen = torch.Generator().manual_seed(seed)
    for _ in range(SCHEDULE_START - 1):  # the early steps are covered above: the reference alone
        x, mask, dy = make_batch(gen, 3, 2, C)
        ref.forward(x, mask)
        ref.backward(dy)
    state = {}
    for name, value in ref.buffers().items():  # start both from the same float32 state
        state[name] = value.float() if value.is_floating_point() else value.long()
        if value.is_floating_point():
            setattr(ref, name, value.float().double())
    jump = _jump_schedule(1006, 6)
    steps, refs = [], []
    for t in range(SCHEDULE_START, SCHEDULE_START + SCHEDULE_STEPS):
        x, mask, dy = make_batch(gen, T, B, C, scale=jump(t))
        steps.append(dict(x=x, mask=mask, dy=dy))
        refs.append(reference_step(ref, x, mask, dy))
    rs = [e["r"] for e in ref.log if e["t"] > 1000]
    assert any((r == 5.0).any() for r in rs) and any((r == 0.2).any() for r in rs), "clamps not reached"
    return dict(type="norm", kind=kind, options=FAST[kind], weight=mod.weight.detach(),
                bias=mod.bias.detach(), state=state, steps=steps, split=SPLIT), refs


def reference_step(ref, x, mask, dy):
    y = ref.forward(x, mask)
    dx, dweight, dbias = ref.backward(dy)
    return dict(y=y, dx=dx.reshape(x.shape), dweight=dweight, dbias=dbias,
                buffers={k: v.clone() for k, v in ref.buffers().items()})


def model_case(kind, seed, steps=5):
    """A few SGD updates of TinyModel; the expected states come from one process (sync off)
    on the full batches, with fairseq's loss and scaling (summed loss, gradients / sample size)."""
    torch.manual_seed(seed)
    options = dict(FAST[kind], warmup=1) if "warmup" in FAST[kind] else FAST[kind]
    model = TinyModel(kind, options)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(seed)
    batches, expected = [], []
    for _ in range(steps):
        x, mask, _ = make_batch(gen, T, B, 6)
        target = torch.randn(T, B, 3, generator=gen)
        batches.append(dict(x=x, mask=mask, target=target))
        optimizer.zero_grad()
        loss, sample_size = model_loss(model(x, mask), target, mask)
        loss.backward()  # fairseq's trainer: summed loss, then the gradients / sample size
        for p in model.parameters():
            p.grad.div_(sample_size)
        optimizer.step()
        expected.append({k: v.clone() for k, v in model.state_dict().items()})
    return dict(type="model", kind=kind, options=options, init=init, lr=0.1, steps=batches,
                split=SPLIT), expected


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """Build every case, run the two ranks once, and hand back (job, expected, results)."""
    job, expected = {}, {}
    for i, kind in enumerate(BATCH_STAT_NORM_TYPES):
        job[f"{kind}/scratch"], expected[f"{kind}/scratch"] = scratch_case(kind, 40 + i)
        job[f"{kind}/model"], expected[f"{kind}/model"] = model_case(kind, 60 + i)
        if kind in ("un", "mabn"):
            job[f"{kind}/schedule"], expected[f"{kind}/schedule"] = schedule_case(kind, 50 + i)
    return job, expected, run_workers(job, tmp_path_factory.mktemp("ranks"))


def joined(ranks, key):
    """The ranks' rows of a T x B x C quantity put back in batch order."""
    return torch.cat([r[key] for r in ranks], dim=1)


def check_norm_case(name, job, expected, results):
    case = job[name]
    kind = case["kind"]
    for i, (step, ref) in enumerate(zip(case["steps"], expected[name])):
        t = i + 1 if case["state"] is None else SCHEDULE_START + i
        where = f"{name} step {t}"
        ranks = [results[rank][name][i] for rank in range(WORLD)]
        bufs0 = ranks[0]["buffers"]
        for n, b in ranks[1]["buffers"].items():
            assert torch.equal(b, bufs0[n]), f"{where}: buffer {n} differs between the ranks"
        # every buffer as the reference on the whole batch (the non-finite steps included)
        assert set(bufs0) >= set(ref["buffers"]), f"{where}: buffers {sorted(bufs0)}"
        for n, exp in ref["buffers"].items():
            if exp.is_floating_point():
                close(bufs0[n], exp, f"{where}: buffer {n}")
            else:
                assert int(bufs0[n]) == int(exp), f"{where}: {n} = {int(bufs0[n])}, expected {int(exp)}"
        if case["state"] is None and t == BAD_X_STEP:
            before = results[0][name][i - 1]["buffers"]
            for n in before:  # a non-finite batch on rank 1 changed nothing, on either rank
                assert torch.equal(bufs0[n], before[n]), f"{where}: buffer {n} changed"
            assert not torch.isfinite(ranks[1]["y"]).all()
            continue
        close(joined(ranks, "y"), ref["y"], f"{where}: y")
        if case["state"] is None and t == BAD_DY_STEP:
            before = results[0][name][i - 1]["buffers"]
            for n in GRAD_STATE.get(kind, ()):  # a non-finite gradient on rank 0: same for both
                assert torch.equal(bufs0[n], before[n]), f"{where}: gradient state {n} changed"
            continue
        dx, ref_dx = joined(ranks, "dx"), ref["dx"]
        if kind not in ("un", "batch"):  # the spec fixes dx at padding rows for UN only
            real = ~step["mask"].t()
            dx, ref_dx = dx[real], ref_dx[real]
        close(dx, ref_dx, f"{where}: dx")
        # each rank holds its rows' share of dgamma, dbeta: DDP adds them up
        close(sum(r["dweight"] for r in ranks), ref["dweight"], f"{where}: dweight")
        close(sum(r["dbias"] for r in ranks), ref["dbias"], f"{where}: dbias")


@pytest.mark.parametrize("kind", BATCH_STAT_NORM_TYPES)
def test_two_ranks_equal_one_process_on_the_whole_batch(two_ranks, kind):
    job, expected, results = two_ranks
    for name in (f"{kind}/scratch", f"{kind}/schedule"):
        if name in job:
            check_norm_case(name, job, expected, results)


@pytest.mark.parametrize("kind", BATCH_STAT_NORM_TYPES)
def test_two_ranks_take_the_updates_of_one_process(two_ranks, kind):
    """fairseq's legacy_ddp + trainer scaling with sync_stats: the same parameters and
    buffers, update after update, as one process on the concatenated batches."""
    job, expected, results = two_ranks
    name = f"{kind}/model"
    for i, exp in enumerate(expected[name]):
        states = [results[rank][name][i]["state"] for rank in range(WORLD)]
        for key, value in exp.items():
            assert torch.equal(states[0][key], states[1][key]), f"{name} update {i + 1}: {key} differs between the ranks"
            if value.is_floating_point():
                close(states[0][key], value, f"{name} update {i + 1}: {key}", 1e-4, 1e-5)
            else:
                assert torch.equal(states[0][key], value), f"{name} update {i + 1}: {key}"


@pytest.mark.parametrize("kind", BATCH_STAT_NORM_TYPES)
def test_sync_without_a_process_group_is_the_local_computation(kind):
    """One process, torch.distributed not initialised: sync_stats=True is a no-op, bit for bit."""
    local = build_norm(kind, C, **FAST[kind])
    synced = build_norm(kind, C, sync_stats=True, **FAST[kind])
    gen = torch.Generator().manual_seed(7)
    for t in range(6):
        x, mask, dy = make_batch(gen, T, B, C)
        grads = []
        for norm in (local, synced):
            xg = x.clone().requires_grad_(True)
            y = norm(xg, padding_mask=mask)
            y.backward(dy)
            grads.append((y, xg.grad, norm.weight.grad, norm.bias.grad))
        for a, b in zip(*grads):
            assert torch.equal(a, b), f"{kind} step {t + 1}"
    for (n, a), (_, b) in zip(local.named_buffers(), synced.named_buffers()):
        assert torch.equal(a, b), f"{kind}: buffer {n}"

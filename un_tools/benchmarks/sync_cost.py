"""The cost of ``sync_stats`` for one norm call: forward + backward of the same normalizer with
and without it, in several processes joined by gloo, the two variants interleaved call by
call (``scripts/benchmark_distributed.py`` starts :func:`run` in every rank). A worker: it
imports torch and the plugin, which it times."""

import statistics
import time
from typing import Dict, List, Tuple

import torch
import torch.distributed as dist

from un_fairseq.modules import build_norm


def steady_norm(norm: str, channels: int, sync: bool) -> torch.nn.Module:
    """The norm ``norm`` past its warmup (``warmup=0``: the full path is timed), or as built
    when it has no warmup (BN)."""
    try:
        return build_norm(norm, channels, sync_stats=sync, warmup=0)
    except TypeError:
        return build_norm(norm, channels, sync_stats=sync)


def run(rank: int, world_size: int, store: str, norms: List[str], shape: Tuple[int, int, int],
        repeats: int, threads: int, results) -> None:
    """Rank ``rank``: median milliseconds per forward + backward call of each norm, sync off
    and on, put into ``results`` (a multiprocessing queue) by rank 0 as ``{norm: {off, on}}``."""
    torch.set_num_threads(threads)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world_size)
    medians = {norm: _medians(rank, norm, shape, repeats) for norm in norms}
    if rank == 0:
        results.put(medians)
    dist.barrier()
    dist.destroy_process_group()


def _medians(rank: int, norm: str, shape: Tuple[int, int, int], repeats: int) -> Dict[str, float]:
    T, B, C = shape
    norms = {name: steady_norm(norm, C, name == "on") for name in ("off", "on")}
    gen = torch.Generator().manual_seed(rank)
    x = torch.randn(T, B, C, generator=gen).requires_grad_(True)
    dy = torch.randn(T, B, C, generator=gen)
    mask = torch.zeros(B, T, dtype=torch.bool)
    mask[B // 2:, T - T // 4:] = True  # some padding
    times: Dict[str, List[float]] = {"off": [], "on": []}
    for i in range(repeats + 10):  # the first 10 rounds warm up
        for name, norm_module in norms.items():
            dist.barrier()  # both ranks start each call together: skew is not counted twice
            start = time.perf_counter()
            norm_module(x, padding_mask=mask).backward(dy)
            elapsed = time.perf_counter() - start
            if i >= 10:
                times[name].append(elapsed)
            x.grad = None
    return {name: 1000 * statistics.median(t) for name, t in times.items()}

#!/usr/bin/env python
"""How much of a training step the normalizers cost, by torch's profiler.

Whole-step wall-clock on a shared 2-core VM is noisy by several percent, more than the
difference being measured; the CPU time that the profiler attributes to the norm ops
themselves (LayerNorm: ``native_layer_norm`` + its backward; UN: its autograd function,
forward + backward) is a steadier measure of what UN adds to a step.

One step = forward + backward of ``transformer_un_iwslt_de_en`` (random weights, vocab
10000) on ``--batch-size`` sentences of ``--seq-len`` tokens with some padding, UN past its
warmups (geometric mean, gradient compensation, moving averages: its most expensive path).

    python scripts/profile_training_step.py --threads 1
"""

import argparse
import time

import torch
from torch.profiler import ProfilerActivity, profile

from un_tools.benchmarks.common import build_variant_models, model_args, norm_names, toy_task
from un_fairseq.modules import UnifiedNorm

#: the profiler events of each norm's forward and backward
NORM_OPS = {
    norm_names().LN: ("aten::native_layer_norm", "aten::native_layer_norm_backward"),
    norm_names().UN: ("BatchStatFunction", "BatchStatFunctionBackward"),
}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    task = toy_task(10000)
    un = norm_names().UN
    models = build_variant_models(model_args("transformer_un_iwslt_de_en", un), task, list(NORM_OPS))
    for m in models[un].modules():
        if isinstance(m, UnifiedNorm):
            m.set_step(5000)
            m.omega.uniform_(0.5, 2.0)
    torch.manual_seed(0)
    B, T, pad = args.batch_size, args.seq_len, task.source_dictionary.pad()
    src = torch.randint(4, 10000, (B, T))
    src[: B // 8, : T // 6] = pad  # left-padded sources, as fairseq batches them
    prev = torch.randint(4, 10000, (B, T))
    prev[: B // 8, -T // 6:] = pad  # right-padded targets
    lengths = src.ne(pad).sum(1)

    def step(model):
        model.train()
        out, _ = model(src, lengths, prev)
        out.float().logsumexp(-1).mean().backward()
        model.zero_grad(set_to_none=True)

    for model in models.values():
        step(model)
    print(f"transformer_un_iwslt_de_en, {B} x {T} tokens, {args.threads} thread(s), {args.repeats} repeats")
    for name, ops in NORM_OPS.items():
        norm_ms, step_ms = [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                step(models[name])
            step_ms.append((time.perf_counter() - start) * 1e3)
            totals = {e.key: e.cpu_time_total for e in prof.key_averages()}
            norm_ms.append(sum(totals[op] for op in ops) / 1e3)
        print(f"{name:6s} norm ops: {' '.join(f'{t:.1f}' for t in norm_ms)} ms per step"
              f" | step (profiled): min {min(step_ms):.0f} ms")


if __name__ == "__main__":
    main()

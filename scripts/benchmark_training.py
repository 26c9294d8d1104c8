#!/usr/bin/env python
"""Training-time cost of Unified Normalization.

1. One training step (forward, backward, Adam step) of ``transformer_un_iwslt_de_en`` on the
   same batch and from the same initial weights with: LN (LayerNorm), UN (ours), UN1d
   emulation (ours plus the per-call host sync and activation copies of the authors'
   released layer: ``un_fairseq/benchmarks/un1d_emulation.py``, a cost emulation only), and
   no norm. UN runs past its warmup (geometric mean, gradient compensation ``r``, moving
   averages in the backward: its most expensive path).
2. Per layer: forward + backward of one norm on a ``64 x 64 x 512`` (T x B x C) input,
   UN vs ``torch.nn.LayerNorm`` vs the UN1d emulation.

Medians of ``--repeats`` after ``--warmup`` calls, the variants interleaved. Writes
``training.json`` and ``training.md`` into ``--out``.

    python scripts/benchmark_training.py --out benchmarks/results/cpu
"""

import argparse
import copy
import json
import sys
from pathlib import Path

import torch
from torch import nn

from un_fairseq.benchmarks.common import (
    build_variant_models, machine_info, model_args, round_robin, toy_task,
)
from un_fairseq.benchmarks.un1d_emulation import UN1dCostEmulation
from un_fairseq.modules import UnifiedNorm

STEADY = 5000  # a step count past UN's warmup (4000) and the r warmup (1000)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="transformer_un_iwslt_de_en")
    p.add_argument("--vocab", type=int, default=10000)
    p.add_argument("--batch-size", type=int, default=32, help="sentences per training batch")
    p.add_argument("--seq-len", type=int, default=32, help="source and target tokens per sentence")
    p.add_argument("--layer-shape", default="64,64,512", help="T,B,C of the per-layer benchmark")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--layer-repeats", type=int, default=30)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, 1 repeat: a few seconds")
    args = p.parse_args(argv)
    if args.smoke:
        args.arch, args.vocab, args.batch_size, args.seq_len = "transformer_un", 100, 2, 6
        args.layer_shape, args.repeats, args.layer_repeats, args.warmup = "4,4,16", 1, 1, 1
        args.threads = args.threads or 1
    return args


def steady_state(model: nn.Module) -> None:
    """Put every UN past its warmups, so the timed steps take its full path."""
    for m in model.modules():
        if isinstance(m, UnifiedNorm):
            m.num_steps.fill_(STEADY)
            m._host_steps = STEADY
            m.running_var.uniform_(0.5, 2.0)
            m.omega.uniform_(0.5, 2.0)


def with_emulated_un1d(model: nn.Module) -> nn.Module:
    """A copy of a UN model whose every UnifiedNorm is a UN1dCostEmulation (same state)."""
    model = copy.deepcopy(model)
    for m in model.modules():
        if isinstance(m, UnifiedNorm):
            m.__class__ = UN1dCostEmulation
    return model


def training_steps(args):
    extra = []
    if args.smoke:
        extra = ["--encoder-layers", "1", "--decoder-layers", "1", "--encoder-embed-dim", "16",
                 "--decoder-embed-dim", "16", "--encoder-ffn-embed-dim", "32", "--decoder-ffn-embed-dim", "32",
                 "--encoder-attention-heads", "2", "--decoder-attention-heads", "2"]
    task = toy_task(args.vocab)
    margs = model_args(args.arch, "un", extra)
    built = build_variant_models(margs, task, ["un", "layer", "none"])
    with torch.no_grad():
        steady_state(built["un"])
    models = {"LN": built["layer"], "UN": built["un"], "UN1d emulation": with_emulated_un1d(built["un"]),
              "no norm": built["none"]}
    gen = torch.Generator().manual_seed(0)
    d = task.source_dictionary
    src = torch.randint(d.nspecial, len(d), (args.batch_size, args.seq_len), generator=gen)
    tgt = torch.randint(d.nspecial, len(d), (args.batch_size, args.seq_len), generator=gen)
    prev = torch.cat([torch.full((args.batch_size, 1), d.eos()), tgt[:, :-1]], 1)
    batch = {k: v.to(args.device) for k, v in dict(
        src_tokens=src, src_lengths=torch.full((args.batch_size,), args.seq_len), prev_output_tokens=prev).items()}
    tgt = tgt.to(args.device)

    def step_fn(model):
        model.to(args.device).train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-5)

        def step():
            lprobs = model.get_normalized_probs(model(**batch), log_probs=True)
            loss = nn.functional.nll_loss(lprobs.view(-1, lprobs.size(-1)), tgt.view(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return step

    times = round_robin({name: step_fn(m) for name, m in models.items()}, args.device, args.warmup, args.repeats)
    tokens = args.batch_size * args.seq_len * 2
    return [dict(variant=v, median_s=t, tokens_per_s=tokens / t, vs_ln_pct=100 * (t / times["LN"] - 1))
            for v, t in times.items()]


def per_layer(args):
    T, B, C = (int(v) for v in args.layer_shape.split(","))
    torch.manual_seed(0)
    un = UnifiedNorm(C).to(args.device).train()
    with torch.no_grad():
        un.num_steps.fill_(STEADY)
        un._host_steps = STEADY
        un.omega.uniform_(0.5, 2.0)
    emu = copy.deepcopy(un)
    emu.__class__ = UN1dCostEmulation
    norms = {"LayerNorm (torch)": nn.LayerNorm(C).to(args.device), "UN": un, "UN1d emulation": emu}
    x = torch.randn(T, B, C, device=args.device, requires_grad=True)
    dy = torch.randn(T, B, C, device=args.device)

    def fn(norm):
        def call():
            x.grad = None
            norm.zero_grad(set_to_none=True)
            norm(x).backward(dy)
        return call

    times = round_robin({n: fn(m) for n, m in norms.items()}, args.device, max(args.warmup, 3), args.layer_repeats)
    ln = times["LayerNorm (torch)"]
    return [dict(variant=v, shape=[T, B, C], median_ms=t * 1e3, vs_layernorm=t / ln) for v, t in times.items()]


def markdown(steps, layers, info, args):
    lines = [f"# Training-time benchmark ({info['device']})", "", f"`{' '.join(sys.argv)}`", "",
             f"Machine: {info.get('Model name', '?')}, {info.get('CPU(s)', '?')} CPUs, torch {info['torch']}, "
             f"{info['threads']} threads, load average at start {info['loadavg_at_start']}.", "",
             f"## One training step ({args.arch}, random weights, vocab {args.vocab}, {args.batch_size} x "
             f"{args.seq_len} source and target tokens, Adam; median of {args.repeats})", "",
             "| variant | median ms | tokens/s | vs LN |", "|---|---:|---:|---:|"]
    for r in steps:
        lines.append(f"| {r['variant']} | {r['median_s'] * 1e3:.1f} | {r['tokens_per_s']:.0f} | {r['vs_ln_pct']:+.1f}% |")
    lines += ["", f"## One norm, forward + backward, input {' x '.join(map(str, layers[0]['shape']))} "
                  f"(T x B x C); median of {args.layer_repeats}", "",
              "| variant | median ms | vs torch LayerNorm |", "|---|---:|---:|"]
    for r in layers:
        lines.append(f"| {r['variant']} | {r['median_ms']:.2f} | {r['vs_layernorm']:.2f}x |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    info = machine_info(args.device)
    layers = per_layer(args)
    print("per layer: " + ", ".join(f"{r['variant']} {r['median_ms']:.2f} ms" for r in layers), flush=True)
    steps = training_steps(args)
    print("training step: " + ", ".join(f"{r['variant']} {r['median_s'] * 1e3:.1f} ms" for r in steps), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "training.json").write_text(json.dumps(
        dict(command=sys.argv, config=vars(args), machine=info, training_step=steps, per_layer=layers), indent=1))
    (out / "training.md").write_text(markdown(steps, layers, info, args))
    print(f"wrote {out / 'training.json'}, {out / 'training.md'}")


if __name__ == "__main__":
    main()

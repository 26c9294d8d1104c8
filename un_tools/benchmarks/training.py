"""Training-time cost of the normalizers (``scripts/benchmark_training.py``).

1. Per layer: one norm's training forward + backward on ``T x B x C`` inputs (``--layer-shapes``,
   default the 4,096-token ``64 x 64 x 512`` and ``32 x 128 x 1024``), every normalizer of the
   paper's Table 1 side by side with ``torch.nn.LayerNorm``: the batch-statistics norms with
   their eager kernels and with the compiled ones (``--norm-kernels compiled``:
   ``un_fairseq/modules/compiled.py``), plus the UN1d emulation (our UN plus the per-call host
   sync and activation copies of the authors' released layer, a cost emulation only:
   :mod:`.un1d_emulation`). The stateful norms run past their warmups (UN: geometric mean,
   gradient compensation ``r``, moving averages in the backward: its most expensive path). The
   first call of each compiled variant is timed apart: the compile time.
2. One training step (forward, backward, Adam step) of ``--arch`` on the same batch and from
   the same initial weights with LN, UN (eager and compiled), the UN1d emulation, no norm, and
   the elementwise rivals (DyT, Derf).
3. ``--epoch-command``: print the Multi30k one-epoch comparison of UN and LN (commands only;
   run them on quiet cores).

Medians of ``--repeats`` after ``--warmup`` calls, the variants interleaved in a fresh random
order each round. Writes
``training.json`` and ``training.md`` into ``--out``.

    python scripts/benchmark_training.py --threads 2 --out benchmarks/results/cpu
"""

import argparse
import json
import sys
import time
from pathlib import Path

STEADY = 5000  # a step count past every warmup (UN 4000, r 1000, MABN 100, PN 4000)

EPOCH_COMMAND = """\
# Multi30k: one training epoch (129 updates of 4,096 tokens) of LN, UN and UN with the
# compiled kernels, configs/multi30k.toml, interleaved, three rounds, on quiet cores.
# Data (../shared/data/README.md), prepared once:  scripts/prepare-multi30k.sh --out work/m30k
# UN runs with --un-warmup 0 so that the epoch takes its full path (geometric mean and moving
# averages after M = 4 calls; r after 1,000 calls, i.e. not in epoch 1, as in any run).
for round in 1 2 3; do
  for variant in layer un un-compiled; do
    case $variant in
      layer) flags="";;
      un) flags="--un-warmup 0 --norm-kernels eager";;
      un-compiled) flags="--un-warmup 0 --norm-kernels compiled";;
    esac
    OMP_NUM_THREADS={threads} scripts/train.sh --profile multi30k --norm ${{variant%-compiled}} --seed 1 \\
      --data work/m30k/bin --out work/epoch-bench/$variant-$round --force -- \\
      --max-epoch 1 --no-save --disable-validation $flags
  done
done
# Each run's epoch time: the "wall" of fairseq's "end of epoch 1" line in its train.log (also
# the wall time in train.json). Goal: UN within 3% of LN (median of the three rounds).
"""


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="transformer_un_iwslt_de_en")
    p.add_argument("--vocab", type=int, default=10000)
    p.add_argument("--batch-size", type=int, default=32, help="sentences per training batch")
    p.add_argument("--seq-len", type=int, default=32, help="source and target tokens per sentence")
    p.add_argument("--layer-shapes", default="64,64,512;32,128,1024",
                   help="T,B,C of the per-layer benchmark, ';' between shapes")
    p.add_argument("--pad-fraction", type=float, default=0.0,
                   help="per layer: the fraction of the T x B positions that are padding (at the end "
                        "of the sentences, as fairseq's target batches), handed to every norm as its "
                        "mask (default: 0, no mask)")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--layer-repeats", type=int, default=30)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--skip-steps", action="store_true", help="per layer only, no training step")
    p.add_argument("--epoch-command", action="store_true",
                   help="print the Multi30k one-epoch UN-vs-LN commands and exit")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, 1 repeat: a few seconds")
    args = p.parse_args(argv)
    if args.smoke:
        args.arch, args.vocab, args.batch_size, args.seq_len = "transformer_un", 100, 2, 6
        args.layer_shapes, args.repeats, args.layer_repeats, args.warmup = "4,4,16", 1, 1, 1
        args.threads = args.threads or 1
    return args


def steady_state(model) -> None:
    """Put every stateful norm past its warmups, so the timed calls take the full path."""
    import torch

    from un_fairseq.modules.base import StepCountedNorm

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, StepCountedNorm):
                m.set_step(STEADY)
                for name in ("running_var", "omega", "running_phi"):
                    if hasattr(m, name):
                        getattr(m, name).uniform_(0.5, 2.0)


def with_kernels(mode: str, fn):
    """``fn`` run with the norms' kernels set to ``mode`` (variants interleave in one process)."""
    from un_fairseq.modules import row_sums

    def call():
        before = row_sums.kernels
        row_sums.select(mode)
        try:
            return fn()
        finally:
            row_sums.select(before)
    return call


def emulated_un1d(model):
    """A copy of ``model`` whose every UnifiedNorm is a UN1dCostEmulation (same state)."""
    import copy

    from un_fairseq.modules import UnifiedNorm

    from .un1d_emulation import UN1dCostEmulation

    model = copy.deepcopy(model)
    for m in model.modules():
        if isinstance(m, UnifiedNorm):
            m.__class__ = UN1dCostEmulation
    return model


def shuffled_rounds(calls, device, warmup, repeats, seed=0):
    """Median seconds per call of each variant; every round runs each variant once, in a
    fresh random order, so that no variant always follows the same one (the first of a fixed
    round pays for what the last one left behind: page faults, evicted caches)."""
    import random
    import statistics

    from un_tools.benchmarks.common import time_call

    order, rng = list(calls), random.Random(seed)
    for _ in range(warmup):
        for name in order:
            calls[name]()
    times = {name: [] for name in calls}
    for _ in range(repeats):
        rng.shuffle(order)
        for name in order:
            times[name].append(time_call(calls[name], device))
    return {name: statistics.median(t) for name, t in times.items()}


def per_layer(shape, args):
    """Median ms per forward + backward of one norm on ``shape`` = (T, B, C), every variant."""
    import torch
    from torch import nn

    from un_fairseq.modules import BatchStatNorm, build_norm, registry
    from un_tools.benchmarks.common import norm_names

    T, B, C = shape
    torch.manual_seed(0)
    x = torch.randn(T, B, C, device=args.device, requires_grad=True)
    dy = torch.randn(T, B, C, device=args.device)
    mask = None
    if args.pad_fraction > 0:  # sentence b has its last round(2 f T b / B) positions padded
        lengths = T - (2 * args.pad_fraction * T * torch.arange(B) / B).round().long().clamp(0, T - 1)
        mask = (torch.arange(T)[None, :] >= lengths[:, None]).to(args.device)
    heads = 8 if C % 8 == 0 else 1
    norms = {"LayerNorm (torch)": ("eager", nn.LayerNorm(C))}
    specs = registry.norm_specs()

    def build(name):  # an option the model sets (PowerNorm's groups: its attention heads)
        return build_norm(name, C, **{o.name: heads for o in specs[name].options if o.from_model})

    for name, spec in specs.items():
        norms[spec.label] = ("eager", build(name))
    for name, spec in specs.items():  # the norms with compiled kernels
        if issubclass(spec.cls, BatchStatNorm):
            norms[spec.label + " compiled"] = ("compiled", build(name))
    norms["UN1d emulation"] = ("eager", emulated_un1d(norms[specs[norm_names().UN].label][1]))
    for _, norm in norms.values():
        norm.to(args.device).train()
        steady_state(norm)

    def fn(mode, norm):
        def call():
            x.grad = None
            norm.zero_grad(set_to_none=True)
            (norm(x) if isinstance(norm, nn.LayerNorm) else norm(x, mask)).backward(dy)
        return with_kernels(mode, call)

    calls = {label: fn(mode, norm) for label, (mode, norm) in norms.items()}
    compile_s = {}
    for label, (mode, _) in norms.items():  # first call: compiles the compiled variants
        start = time.perf_counter()
        calls[label]()
        if mode == "compiled":
            compile_s[label] = time.perf_counter() - start
    times = shuffled_rounds(calls, args.device, max(args.warmup, 3), args.layer_repeats)
    ln = times["LayerNorm (torch)"]
    return [dict(variant=v, shape=[T, B, C], pad_fraction=args.pad_fraction, median_ms=t * 1e3, vs_layernorm=t / ln,
                 first_call_s=compile_s.get(v)) for v, t in times.items()]


#: the training-step rows of the models named by ``common.norm_names()``'s attributes (the
#: elementwise norms' rows are their registry labels)
STEP_ROWS = {"LN": "LN", "UN": "UN", "NoNorm": "no norm"}


def training_steps(args):
    import torch
    from torch import nn

    from un_tools.benchmarks.common import build_variant_models, model_args, norm_names, toy_task

    extra = []
    if args.smoke:
        extra = ["--encoder-layers", "1", "--decoder-layers", "1", "--encoder-embed-dim", "16",
                 "--decoder-embed-dim", "16", "--encoder-ffn-embed-dim", "32", "--decoder-ffn-embed-dim", "32",
                 "--encoder-attention-heads", "2", "--decoder-attention-heads", "2"]
    from un_fairseq.fold import ELEMENTWISE as elementwise  # DyT, Derf
    from un_fairseq.modules import registry

    task = toy_task(args.vocab)
    n = norm_names()
    specs = registry.norm_specs()
    built = build_variant_models(model_args(args.arch, n.UN, extra), task, [n.UN, n.LN, n.NoNorm, *elementwise])
    steady_state(built[n.UN])
    import copy

    models = {STEP_ROWS["LN"]: ("eager", built[n.LN]), STEP_ROWS["UN"]: ("eager", built[n.UN]),
              "UN compiled": ("compiled", copy.deepcopy(built[n.UN])),
              "UN1d emulation": ("eager", emulated_un1d(built[n.UN])), STEP_ROWS["NoNorm"]: ("eager", built[n.NoNorm]),
              **{specs[name].label: ("eager", built[name]) for name in elementwise}}
    gen = torch.Generator().manual_seed(0)
    d = task.source_dictionary
    src = torch.randint(d.nspecial, len(d), (args.batch_size, args.seq_len), generator=gen)
    tgt = torch.randint(d.nspecial, len(d), (args.batch_size, args.seq_len), generator=gen)
    prev = torch.cat([torch.full((args.batch_size, 1), d.eos()), tgt[:, :-1]], 1)
    batch = {k: v.to(args.device) for k, v in dict(
        src_tokens=src, src_lengths=torch.full((args.batch_size,), args.seq_len), prev_output_tokens=prev).items()}
    tgt = tgt.to(args.device)

    def step_fn(mode, model):
        model.to(args.device).train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-5)

        def step():
            lprobs = model.get_normalized_probs(model(**batch), log_probs=True)
            loss = nn.functional.nll_loss(lprobs.view(-1, lprobs.size(-1)), tgt.view(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return with_kernels(mode, step)

    times = shuffled_rounds({name: step_fn(mode, m) for name, (mode, m) in models.items()}, args.device,
                            args.warmup, args.repeats)
    tokens = args.batch_size * args.seq_len * 2
    return [dict(variant=v, median_s=t, tokens_per_s=tokens / t, vs_ln_pct=100 * (t / times[STEP_ROWS["LN"]] - 1))
            for v, t in times.items()]


def markdown(steps, layers, info, args):
    lines = [f"# Training-time benchmark ({info['device']})", "", f"`{' '.join(sys.argv)}`", "",
             f"Machine: {info.get('Model name', '?')}, {info.get('CPU(s)', '?')} CPUs, torch {info['torch']}, "
             f"{info['threads']} threads, load average at start {info['loadavg_at_start']}.", ""]
    for rows in layers:
        lines += [f"## One norm, forward + backward, input {' x '.join(map(str, rows[0]['shape']))} "
                  f"(T x B x C), padding {100 * args.pad_fraction:.0f}% of positions; median of "
                  f"{args.layer_repeats}", "",
                  "| variant | median ms | vs torch LayerNorm | first call s |", "|---|---:|---:|---:|"]
        for r in rows:
            first = "" if r["first_call_s"] is None else f"{r['first_call_s']:.1f}"
            lines.append(f"| {r['variant']} | {r['median_ms']:.2f} | {r['vs_layernorm']:.2f}x | {first} |")
        lines.append("")
    if steps:
        lines += [f"## One training step ({args.arch}, random weights, vocab {args.vocab}, {args.batch_size} x "
                  f"{args.seq_len} source and target tokens, Adam; median of {args.repeats})", "",
                  "| variant | median ms | tokens/s | vs LN |", "|---|---:|---:|---:|"]
        for r in steps:
            lines.append(f"| {r['variant']} | {r['median_s'] * 1e3:.1f} | {r['tokens_per_s']:.0f} | "
                         f"{r['vs_ln_pct']:+.1f}% |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.epoch_command:
        print(EPOCH_COMMAND.format(threads=args.threads or 2), end="")
        return 0
    import torch

    from un_tools.benchmarks.common import machine_info

    if args.threads:
        torch.set_num_threads(args.threads)
    info = machine_info(args.device)
    shapes = [tuple(int(v) for v in s.split(",")) for s in args.layer_shapes.split(";")]
    layers = []
    for shape in shapes:
        layers.append(per_layer(shape, args))
        print(f"per layer {shape}: " + ", ".join(f"{r['variant']} {r['vs_layernorm']:.2f}x"
                                                  for r in layers[-1]), flush=True)
    steps = [] if args.skip_steps else training_steps(args)
    if steps:
        print("training step: " + ", ".join(f"{r['variant']} {r['median_s'] * 1e3:.1f} ms" for r in steps),
              flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "training.json").write_text(json.dumps(
        dict(command=sys.argv, config=vars(args), machine=info, training_step=steps, per_layer=layers), indent=1))
    (out / "training.md").write_text(markdown(steps, layers, info, args))
    print(f"wrote {out / 'training.json'}, {out / 'training.md'}")
    return 0

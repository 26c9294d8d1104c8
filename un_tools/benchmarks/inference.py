"""Inference speed of one Transformer with four normalisations and the same weights:

- ``LN``: LayerNorm (online: a mean and a variance per token);
- ``UN``: Unified Normalization, unfused (eval mode: the per-channel inference affine,
  paper Algorithm 1);
- ``UN fused``: the same model after ``un_fairseq.fold.fold_model`` (no norm op left);
- ``no norm``: NoNorm everywhere, the physical limit of removing the norms.

Two workloads per batch size: a teacher-forced forward (encoder + decoder over the whole
target) and fairseq's beam search (``SequenceGenerator``, beam 5, every hypothesis forced
to the same length so that all variants decode the same number of steps). Each timing is
the median of ``--repeats`` runs after ``--warmup`` runs, the variants interleaved.
Writes ``inference.json``, ``inference.md`` and ``inference.png`` into ``--out``.

    python scripts/benchmark_inference.py --out benchmarks/results/cpu
    python scripts/benchmark_inference.py --device cuda --fp16 --out benchmarks/results/cuda
"""

import argparse
import json
import logging
import sys
from pathlib import Path

# torch, fairseq and the plugin load when the benchmark runs, not when this module is imported

VARIANTS = ("LN", "UN", "UN fused", "no norm")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="transformer_un_iwslt_de_en", help="a transformer_un architecture")
    p.add_argument("--checkpoint", help="a trained transformer_un checkpoint (offline norms) whose "
                                        "weights every variant shares; default: random weights")
    p.add_argument("--data", help="data folder of --checkpoint (its dictionaries), if moved")
    p.add_argument("--vocab", type=int, default=10000, help="joined vocabulary with random weights")
    p.add_argument("--batch-sizes", default="1,8,32", help="comma-separated sentences per batch")
    p.add_argument("--src-len", type=int, default=24, help="source tokens per sentence")
    p.add_argument("--tgt-len", type=int, default=24, help="target tokens (teacher forcing; beam steps)")
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--fp16", action="store_true", help="half precision (CUDA)")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    p.add_argument("--no-beam", action="store_true", help="time the teacher-forced forward only")
    p.add_argument("--out", default="benchmarks/results", help="output folder")
    p.add_argument("--smoke", action="store_true", help="tiny model and sizes, 1 repeat: a few seconds")
    args = p.parse_args(argv)
    if args.smoke:
        args.arch, args.vocab, args.batch_sizes, args.src_len, args.tgt_len = "transformer_un", 100, "2", 6, 5
        args.repeats, args.warmup, args.threads = 1, 0, args.threads or 1
    return args


def build_models(args):
    """``{variant: model}`` in eval mode on the device, and the task."""
    from un_tools.benchmarks.common import benchmark_models, norm_names

    task, models = benchmark_models(args.checkpoint, args.data, args.arch, args.vocab, args.smoke)
    n = norm_names()
    out = {"LN": models[n.LN], "UN": models[n.UN], "UN fused": models[n.UN + " fused"], "no norm": models[n.NoNorm]}
    for model in out.values():
        model.to(args.device)
        if args.fp16:
            model.half()
    return out, task


def random_batch(task, batch_size, args, gen):
    import torch

    d = task.source_dictionary
    src = torch.randint(d.nspecial, len(d), (batch_size, args.src_len), generator=gen)
    src[:, -1] = d.eos()
    prev = torch.randint(d.nspecial, len(d), (batch_size, args.tgt_len), generator=gen)
    prev[:, 0] = d.eos()
    return {k: v.to(args.device) for k, v in dict(
        src_tokens=src, src_lengths=torch.full((batch_size,), args.src_len),
        prev_output_tokens=prev).items()}


def workloads(models, task, batch, args):
    """``{mode: {variant: fn}}``: the calls that are timed."""
    from fairseq.sequence_generator import SequenceGenerator

    def forward(model):
        return lambda: model(**batch)

    def beam(model):
        gen = SequenceGenerator([model], task.target_dictionary, beam_size=args.beam, max_len_a=0,
                                max_len_b=args.tgt_len, min_len=args.tgt_len)
        sample = {"net_input": {"src_tokens": batch["src_tokens"], "src_lengths": batch["src_lengths"]}}
        return lambda: gen.generate([model], sample)

    modes = {"forward": {v: forward(m) for v, m in models.items()}}
    if not args.no_beam:
        modes["beam"] = {v: beam(m) for v, m in models.items()}
    return modes


def run(args):
    import torch

    from un_tools.benchmarks.common import peak_memory, round_robin

    torch.manual_seed(0)
    models, task = build_models(args)
    gen = torch.Generator().manual_seed(0)
    rows = []
    with torch.inference_mode():
        for bs in [int(b) for b in args.batch_sizes.split(",")]:
            batch = random_batch(task, bs, args, gen)
            for mode, fns in workloads(models, task, batch, args).items():
                times = round_robin(fns, args.device, args.warmup, args.repeats)
                for variant, fn in fns.items():
                    with peak_memory(args.device) as mem:
                        fn()
                    tokens = bs * args.tgt_len
                    rows.append(dict(mode=mode, batch_size=bs, variant=variant, median_s=times[variant],
                                     sentences_per_s=bs / times[variant], tokens_per_s=tokens / times[variant],
                                     **mem))
                print(f"{mode:8s} batch {bs:4d}: " + ", ".join(f"{v} {times[v] * 1e3:.1f} ms" for v in fns),
                      flush=True)
    return rows


def summarize(rows):
    """Per (mode, batch): fused vs no norm (%), and the share of the LN -> no-norm gap that
    fused UN closes (100% = as fast as no norm)."""
    out = []
    keys = sorted({(r["mode"], r["batch_size"]) for r in rows})
    for mode, bs in keys:
        t = {r["variant"]: r["median_s"] for r in rows if r["mode"] == mode and r["batch_size"] == bs}
        gap = t["LN"] - t["no norm"]
        out.append(dict(mode=mode, batch_size=bs,
                        fused_over_no_norm_pct=100 * (t["UN fused"] / t["no norm"] - 1),
                        unfused_over_no_norm_pct=100 * (t["UN"] / t["no norm"] - 1),
                        ln_over_no_norm_pct=100 * (t["LN"] / t["no norm"] - 1),
                        gap_closed_by_fused_pct=100 * (t["LN"] - t["UN fused"]) / gap if gap > 0 else None))
    return out


def markdown(rows, summary, info, args):
    lines = [f"# Inference benchmark ({info['device']}{', fp16' if args.fp16 else ''})", "",
             f"`{' '.join(sys.argv)}`", "",
             f"Machine: {info.get('Model name', '?')}, {info.get('CPU(s)', '?')} CPUs, torch "
             f"{info['torch']}, {info['threads']} threads, load average at start {info['loadavg_at_start']}"
             + (f", GPU {info['gpu']}" if "gpu" in info else "") + ".", "",
             f"Model: {args.checkpoint or args.arch + ' (random weights, vocab ' + str(args.vocab) + ')'}; "
             f"source {args.src_len} tokens, target {args.tgt_len} tokens, beam {args.beam}; median of "
             f"{args.repeats} after {args.warmup} warm-up runs.", "",
             "| mode | batch | variant | median ms | sentences/s | tokens/s | peak MiB | peak rise MiB |",
             "|---|---:|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['mode']} | {r['batch_size']} | {r['variant']} | {r['median_s'] * 1e3:.2f} | "
                     f"{r['sentences_per_s']:.1f} | {r['tokens_per_s']:.0f} | {r['peak_mib']:.0f} | "
                     f"{r['peak_over_start_mib']:.1f} |")
    lines += ["", "| mode | batch | LN vs no norm | UN unfused vs no norm | UN fused vs no norm | LN-to-no-norm gap closed by fusing |",
              "|---|---:|---:|---:|---:|---:|"]
    for s in summary:
        closed = "n/a (LN not slower)" if s["gap_closed_by_fused_pct"] is None else f"{s['gap_closed_by_fused_pct']:.0f}%"
        lines.append(f"| {s['mode']} | {s['batch_size']} | {s['ln_over_no_norm_pct']:+.1f}% | "
                     f"{s['unfused_over_no_norm_pct']:+.1f}% | {s['fused_over_no_norm_pct']:+.1f}% | {closed} |")
    return "\n".join(lines) + "\n"


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = sorted({r["mode"] for r in rows})
    fig, axes = plt.subplots(1, len(modes), figsize=(6 * len(modes), 4), squeeze=False)
    for ax, mode in zip(axes[0], modes):
        sizes = sorted({r["batch_size"] for r in rows if r["mode"] == mode})
        width = 0.8 / len(VARIANTS)
        for i, variant in enumerate(VARIANTS):
            vals = [next(r["tokens_per_s"] for r in rows if r["mode"] == mode and r["batch_size"] == b
                         and r["variant"] == variant) for b in sizes]
            ax.bar([j + i * width for j in range(len(sizes))], vals, width, label=variant)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(sizes))], [str(b) for b in sizes])
        ax.set_xlabel("batch size (sentences)")
        ax.set_ylabel("target tokens / s")
        ax.set_title(f"{mode} ({'teacher-forced' if mode == 'forward' else 'beam search'})")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv=None):
    import torch

    from un_tools.benchmarks.common import machine_info

    args = parse_args(argv)
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    info = machine_info(args.device)
    rows = run(args)
    summary = summarize(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "inference.json").write_text(json.dumps(
        dict(command=sys.argv, config=vars(args), machine=info, results=rows, summary=summary), indent=1))
    (out / "inference.md").write_text(markdown(rows, summary, info, args))
    plot(rows, out / "inference.png")
    print(f"wrote {out / 'inference.json'}, {out / 'inference.md'}, {out / 'inference.png'}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Beam search speed of the exported ONNX graphs in ONNX Runtime against fairseq eager:

- ``ORT UN fused``: ``un-export``'s graphs of a UN model (folded: no normalisation op);
- ``ORT LN``: the graphs of the same model with LayerNorm (exported as it is);
- ``ORT no norm``: the graphs with every norm removed (the limit of removing the norms);
- ``fairseq eager UN`` / ``fairseq eager LN``: fairseq's ``SequenceGenerator`` (what
  ``fairseq-generate`` runs) on the unfolded UN model and on the LN model, in PyTorch.

Every variant shares the weights it has in common (random unless ``--checkpoint``; speed
does not depend on their values) and decodes the same source sentences with beam 5, every
hypothesis forced to ``--tgt-len`` tokens (``min_len = max_len``), so all do the same work.
Times are medians of ``--repeats`` runs, the variants interleaved in each round so that a
change of background load hits all alike. Peak memory is measured in a fresh process per
variant and batch size (load the model, translate one batch): the ONNX Runtime processes
import only numpy and onnxruntime, the fairseq ones torch and fairseq. File size: both
graphs, or the model's state dict as ``torch.save`` writes it.

    python scripts/benchmark_onnx.py --threads 2 --out benchmarks/results/onnx
    python scripts/benchmark_onnx.py --smoke --out /tmp/onnx-smoke
"""

import argparse
import json
import logging
import subprocess
import sys
import tempfile
from pathlib import Path

# torch, fairseq and the plugin are imported where they are needed: the peak-memory process of
# an ONNX Runtime variant must load only numpy and onnxruntime, as a deployment would.

ORT = {"ORT UN fused": "un fused", "ORT LN": "layer", "ORT no norm": "none"}
EAGER = {"fairseq eager UN": "un", "fairseq eager LN": "layer"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="transformer_un_iwslt_de_en", help="a transformer_un architecture")
    p.add_argument("--checkpoint", help="a trained transformer_un checkpoint with offline norms whose weights "
                                        "every variant shares (default: random weights)")
    p.add_argument("--data", help="data folder of --checkpoint (its dictionaries), if moved")
    p.add_argument("--vocab", type=int, default=10000, help="joined vocabulary with random weights (default: 10000)")
    p.add_argument("--batch-sizes", default="1,16", help="comma-separated sentences per batch (default: 1,16)")
    p.add_argument("--src-len", type=int, default=24, help="source tokens per sentence, eos included (default: 24)")
    p.add_argument("--tgt-len", type=int, default=24, help="target tokens of every hypothesis (default: 24)")
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=2, help="torch and ONNX Runtime intra-op threads (default: 2)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory processes")
    p.add_argument("--out", default="benchmarks/results/onnx", help="output folder")
    p.add_argument("--smoke", action="store_true", help="tiny model and sizes, 1 repeat: a few seconds")
    p.add_argument("--child", nargs=3, metavar=("VARIANT", "BATCH", "FOLDER"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.smoke:
        args.arch, args.vocab, args.batch_sizes, args.src_len, args.tgt_len = "transformer_un", 100, "2", 6, 4
        args.repeats, args.warmup, args.threads = 1, 0, 1
    return args


# -- the models --------------------------------------------------------------------------

def build_models(args):
    """``{"un", "un fused", "layer", "none": model}`` sharing weights, in eval mode, and the task."""
    from un_fairseq.benchmarks.common import benchmark_models

    task, models = benchmark_models(args.checkpoint, args.data, args.arch, args.vocab, args.smoke)
    return models, task


def export(model, task, folder: Path) -> int:
    """Write ``model``'s un-export folder; return the bytes of its two graphs."""
    from un_fairseq import fold
    from un_fairseq.export import exporter

    folder.mkdir(parents=True)
    exporter.export_graphs(model, folder)
    counts = exporter.census(folder)
    manifest = exporter.write_manifest(folder, None, model, {"norm_types": fold.norm_kinds(model)},
                                       exporter.write_dictionaries(task, folder), counts, None)
    return sum(g["bytes"] for g in manifest["graphs"].values())


def sentences(task, args, count):
    """``count`` random source lines of ``src_len - 1`` words (+ eos), as text and as a batch."""
    import torch

    d = task.source_dictionary
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(d.nspecial, len(d), (count, args.src_len - 1), generator=gen)
    lines = [" ".join(d[t] for t in row.tolist()) for row in tokens]
    src = torch.cat([tokens, torch.full((count, 1), d.eos())], dim=1)
    return lines, src


def translators(args, folders, bs):
    from un_translate import Translator

    return {v: Translator(folders[v], batch_size=bs, threads=args.threads, beam=args.beam,
                          min_len=args.tgt_len, max_len_b=args.tgt_len) for v in ORT}


def eager_generator(model, task, args):
    from fairseq.sequence_generator import SequenceGenerator

    return SequenceGenerator([model], task.target_dictionary, beam_size=args.beam, max_len_a=0,
                             max_len_b=args.tgt_len, min_len=args.tgt_len)


# -- peak memory, in a fresh process -----------------------------------------------------

def child(args) -> None:
    """Load one variant, translate one batch, print the peak RSS (MiB) as JSON."""
    variant, bs, folder = args.child[0], int(args.child[1]), Path(args.child[2])
    if variant in ORT:
        from un_translate import Translator

        translator = Translator(folder / ORT[variant], batch_size=bs, threads=args.threads, beam=args.beam,
                                min_len=args.tgt_len, max_len_b=args.tgt_len)
        lines = (folder / "lines.txt").read_text().splitlines()[:bs]
        loaded = _peak_mib()
        translator.translate(lines)
    else:
        import torch

        torch.set_num_threads(args.threads)
        models, task = build_models(args)
        model = models[EAGER[variant]]
        del models
        src = sentences(task, args, bs)[1]
        gen = eager_generator(model, task, args)
        loaded = _peak_mib()
        with torch.inference_mode():
            gen.generate([model], {"net_input": {"src_tokens": src, "src_lengths": torch.full((bs,), args.src_len)}})
    print(json.dumps({"peak_rss_mib": _peak_mib(), "peak_after_load_mib": loaded}))


def _peak_mib() -> float:
    """This process's peak RSS (VmHWM: ru_maxrss can carry the parent's peak over fork + exec)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


def measure_memory(args, variant, bs, folder: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", variant, str(bs), str(folder), "--arch", args.arch,
           "--vocab", str(args.vocab), "--src-len", str(args.src_len), "--tgt-len", str(args.tgt_len),
           "--beam", str(args.beam), "--threads", str(args.threads)]
    cmd += ["--smoke"] if args.smoke else []
    cmd += ["--checkpoint", args.checkpoint] if args.checkpoint else []
    cmd += ["--data", args.data] if args.data else []
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"memory process for {variant} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- the run ------------------------------------------------------------------------------

def run(args, tmp: Path):
    import torch

    from un_fairseq.benchmarks.common import round_robin

    torch.set_num_threads(args.threads)
    models, task = build_models(args)
    sizes = {}
    for variant, key in ORT.items():
        print(f"exporting {variant} ...", flush=True)
        sizes[variant] = export(models[key], task, tmp / key)
    for variant, key in EAGER.items():
        torch.save(models[key].state_dict(), tmp / f"{key}.pt")
        sizes[variant] = (tmp / f"{key}.pt").stat().st_size
    folders = {v: tmp / key for v, key in ORT.items()}
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    lines, src = sentences(task, args, max(batch_sizes))
    (tmp / "lines.txt").write_text("\n".join(lines) + "\n")

    rows = []
    for bs in batch_sizes:
        ort = translators(args, folders, bs)
        fns = {v: (lambda t=t: t.translate(lines[:bs])) for v, t in ort.items()}
        sample = {"net_input": {"src_tokens": src[:bs], "src_lengths": torch.full((bs,), args.src_len)}}
        for variant, key in EAGER.items():
            gen = eager_generator(models[key], task, args)
            fns[variant] = (lambda g=gen, m=models[key]: _eager(g, m, sample))
        times = round_robin(fns, "cpu", args.warmup, args.repeats)
        for variant, seconds in times.items():
            row = dict(variant=variant, batch_size=bs, median_s=seconds, sentences_per_s=bs / seconds,
                       latency_ms=seconds * 1e3, model_bytes=sizes[variant])
            if not args.no_memory:
                row.update(measure_memory(args, variant, bs, tmp))
            rows.append(row)
        print(f"batch {bs:3d}: " + ", ".join(f"{v} {t * 1e3:.0f} ms" for v, t in times.items()), flush=True)
    return rows


def _eager(gen, model, sample):
    import torch

    with torch.inference_mode():
        return gen.generate([model], sample)


def markdown(rows, info, args) -> str:
    model = args.checkpoint or f"{args.arch} (random weights, vocab {args.vocab})"
    lines = [
        "# ONNX Runtime vs fairseq eager: beam search (cpu)", "",
        f"`{' '.join(sys.argv)}`", "",
        f"Machine: {info.get('Model name', '?')}, {info.get('CPU(s)', '?')} CPUs, torch {info['torch']}, "
        f"onnxruntime {info['onnxruntime']}, {args.threads} threads, load average at start "
        f"{info['loadavg_at_start']} (the machine was shared with a training run).", "",
        f"Model: {model}; source {args.src_len} tokens, every hypothesis {args.tgt_len} tokens, beam "
        f"{args.beam}; median of {args.repeats} after {args.warmup} warm-up runs, variants interleaved.", "",
        "| batch | variant | latency ms | sentences/s | vs ORT no norm | peak RSS MiB | model MiB |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        base = next(x["median_s"] for x in rows if x["batch_size"] == r["batch_size"] and x["variant"] == "ORT no norm")
        peak = f"{r['peak_rss_mib']:.0f}" if "peak_rss_mib" in r else "n/a"
        lines.append(f"| {r['batch_size']} | {r['variant']} | {r['latency_ms']:.1f} | {r['sentences_per_s']:.2f} | "
                     f"{100 * (r['median_s'] / base - 1):+.1f}% | {peak} | {r['model_bytes'] / 2**20:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    args = parse_args(argv)
    if args.child:
        return child(args)
    logging.getLogger("fairseq").setLevel(logging.WARNING)
    import onnxruntime

    from un_fairseq.benchmarks.common import machine_info

    info = machine_info("cpu")
    info["onnxruntime"] = onnxruntime.__version__
    info["threads"] = args.threads
    with tempfile.TemporaryDirectory(prefix="benchmark-onnx-") as tmp:
        rows = run(args, Path(tmp))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(rows, info, args)
    (out / "onnx.json").write_text(json.dumps(dict(command=sys.argv, config=vars(args), machine=info,
                                                   results=rows), indent=1))
    (out / "onnx.md").write_text(text)
    print(text)
    print(f"wrote {out / 'onnx.json'}, {out / 'onnx.md'}")


if __name__ == "__main__":
    main()

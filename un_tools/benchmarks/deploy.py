"""Deployment benchmark: one table of what a translation model costs to serve on CPU.

Rows (runtime, precision, model):

- ``fairseq eager``: fairseq's ``SequenceGenerator`` (what ``fairseq-generate`` runs) in
  PyTorch, on LN and on folded UN (``un_fairseq.fold``);
- ``ORT fp32`` / ``ORT int8``: ``un-export``'s graphs in ONNX Runtime through
  ``un_translate.Translator``, for LN, folded UN, folded DyT and Derf (their weight and bias
  folded, ``tanh`` / ``erf`` kept) and (random-weight mode) NoNorm; int8 is
  ``un-export --int8`` (``scaled``: a folded norm's scale kept as a per-channel multiply;
  ``UN int8 folded``: the folded weights quantised, shown for comparison);
- ``CT2 fp32`` / ``CT2 int8``: CTranslate2 (optional: ``pip install ctranslate2``) on the
  LN model through its fairseq converter. CTranslate2 ties each residual add to a norm, so
  it cannot run a model without norms: it is the LN anchor only.

Columns: sentences/s at each batch size and thread count (median of ``--repeats`` rounds,
the variants interleaved in each round), the per-sentence latency at batch 1, process CPU
time over wall time, peak RSS of a fresh process that loads the variant and translates one
batch, model files, and, on ``--models`` (converged checkpoints with their test set), the
tokenised BLEU and the share of hypotheses identical to ``fairseq-generate``'s. Every row
uses the same beam, length penalty, length limits and batches (sentences sorted by length).

    python scripts/benchmark_deploy.py --models MODELS --out benchmarks/results/deploy
    python scripts/benchmark_deploy.py --smoke --out /tmp/deploy-smoke

``MODELS`` holds ``layer-seed1.pt``, ``un-seed1.pt``, ``data/`` (``dict.de.txt``,
``dict.en.txt``, ``test.de``, ``test.ref.en``) and ``expected/{layer,un}.hyp``; optionally
``dyt-seed1.pt`` and ``derf-seed1.pt`` (with ``expected/{dyt,derf}.hyp``: without them their
identity column stays empty), which add the DyT and Derf rows. Without
``--models`` the models are random (``--arch``, ``--vocab``) and every hypothesis is forced
to ``--tgt-len`` tokens, so that all rows do the same work (speed only).

Imports neither torch nor fairseq until it runs; the peak-memory process of an ONNX
Runtime or CTranslate2 row imports neither.
"""

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

EAGER = ("fairseq eager LN", "fairseq eager UN folded")
ORT = ("ORT fp32 LN", "ORT fp32 UN folded", "ORT fp32 NoNorm", "ORT fp32 DyT folded", "ORT fp32 Derf folded",
       "ORT int8 LN", "ORT int8 UN scaled", "ORT int8 UN folded", "ORT int8 NoNorm", "ORT int8 DyT folded",
       "ORT int8 Derf folded")
CT2 = ("CT2 fp32 LN", "CT2 int8 LN")
#: the models besides LN and UN: NoNorm exists with random weights only; DyT and Derf with random
#: weights, or on ``--models`` when it holds their checkpoints (``dyt-seed1.pt``, ``derf-seed1.pt``)
OTHER_MODELS = ("NoNorm", "DyT", "Derf")


def ort_row(model: str, precision: str) -> str:
    """The ONNX Runtime row of ``model`` (an attribute of ``common.norm_names()``) at
    ``precision`` (fp32, int8): the folded model where its norm folds."""
    return f"ORT {precision} {model}" + ("" if model in ("LN", "NoNorm") else " folded")


#: the model each row runs (an attribute of ``common.norm_names()``: its norm type, read from
#: the plugin when the models are built)
MODEL_OF = {name: ("UN" if " UN" in name else next((m for m in OTHER_MODELS if f" {m}" in name), "LN"))
            for name in EAGER + ORT + CT2}
SMOKE_LINES = 6


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="benchmark_deploy", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", metavar="DIR", help="converged LN and UN checkpoints with their test set (above)")
    p.add_argument("--arch", default="transformer_un_iwslt_de_en",
                   help="architecture of the random-weight models (without --models)")
    p.add_argument("--vocab", type=int, default=10000, help="random-weight models' joined vocabulary")
    p.add_argument("--src-len", type=int, default=24, help="random-weight mode: source tokens per line")
    p.add_argument("--tgt-len", type=int, default=24, help="random-weight mode: tokens of every hypothesis")
    p.add_argument("--batch-sizes", default="1,16,64", help="comma-separated (default: 1,16,64)")
    p.add_argument("--threads", default="1,2", help="comma-separated intra-op thread counts (default: 1,2)")
    p.add_argument("--speed-lines", type=int, default=256,
                   help="lines translated per timing at batch >= 16 (batch 1: a quarter; default: 256)")
    p.add_argument("--quality-lines", type=int, default=None,
                   help="lines of the test set for BLEU and identity (default: all)")
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--lenpen", type=float, default=1.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--spinning", default="auto", choices=("auto", "on", "off"),
                   help="ONNX Runtime's idle-thread spinning (un-translate --spinning)")
    p.add_argument("--variants", default=None, help="comma-separated row names to keep (default: all)")
    p.add_argument("--no-ct2", action="store_true", help="leave out CTranslate2 even if installed")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory processes")
    p.add_argument("--profile", metavar="VARIANT",
                   help="also write an ONNX Runtime profile by op of this ORT row (batch 16, first thread count)")
    p.add_argument("--out", default="benchmarks/results/deploy", help="output folder")
    p.add_argument("--smoke", action="store_true", help="tiny random model, 1 repeat: seconds (tests)")
    p.add_argument("--child", nargs=2, metavar=("VARIANT", "WORKDIR"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.smoke:
        args.models, args.arch, args.vocab, args.src_len, args.tgt_len = None, "transformer_un", 100, 6, 4
        args.batch_sizes, args.threads, args.speed_lines = "1,2", "1", SMOKE_LINES
        args.repeats, args.warmup = 1, 0
    return args


# -- the work folder: exported graphs, converted models, lines ----------------------------------

def _search(args) -> Dict:
    """Beam search settings shared by every row."""
    if args.models:
        return {"beam": args.beam, "len_penalty": args.lenpen, "max_len_b": 200, "min_len": 1,
                "remove_bpe": "sentencepiece"}
    return {"beam": args.beam, "len_penalty": args.lenpen, "max_len_b": args.tgt_len, "min_len": args.tgt_len,
            "remove_bpe": None}


def prepare(args, work: Path, wanted: List[str]) -> Dict:
    """Build every model, export and convert into ``work``; return the plan (JSON)."""
    import copy

    import torch

    from un_fairseq import fold
    from un_fairseq.checkpoint_io import load_checkpoint, save_atomically
    from un_tools.benchmarks.common import SMOKE_MODEL, benchmark_models, model_args, norm_names

    names = vars(norm_names())
    ln = names["LN"]
    if args.models:
        root = Path(args.models)
        data = work / "data"
        _preprocess(root / "data", data)
        states = {norm: load_checkpoint(root / f"{norm}-seed1.pt") for norm in (ln, names["UN"], names["DyT"], names["Derf"])
                  if norm in (ln, names["UN"]) or (root / f"{norm}-seed1.pt").is_file()}
        tasks_models = {norm: fold.build_from_state(state, str(data)) for norm, state in states.items()}
        task = tasks_models[ln][0]
        models = {norm: tm[1] for norm, tm in tasks_models.items()}
        stored_args = {norm: _stored_args(state) for norm, state in states.items()}
        ct2_args = {ln: copy.deepcopy(stored_args[ln])}
        lines = (root / "data" / "test.de").read_text(encoding="utf-8").splitlines()
    else:
        task, models = benchmark_models(None, None, args.arch, args.vocab, args.smoke,
                                        extra=[names["DyT"], names["Derf"]])
        del models[names["UN"] + " fused"]
        stored_args = {norm: model_args(args.arch, norm, SMOKE_MODEL if args.smoke else []) for norm in models}
        for stored in stored_args.values():  # the data folder below holds the dictionaries only
            stored.source_lang, stored.target_lang = "src", "tgt"
        ct2_args = {ln: copy.deepcopy(stored_args[ln])}
        data = work / "data"
        data.mkdir()
        for lang in ("src", "tgt"):
            task.source_dictionary.save(str(data / f"dict.{lang}.txt"))
        gen = torch.Generator().manual_seed(0)
        d = task.source_dictionary
        count = max(args.speed_lines, SMOKE_LINES)
        tokens = torch.randint(d.nspecial, len(d), (count, args.src_len - 1), generator=gen)
        lines = [" ".join(d[t] for t in row.tolist()) for row in tokens]
    (work / "lines.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")

    plan = {"variants": {}, "random_weights": not args.models}
    for name in wanted:
        norm = names[MODEL_OF[name]]
        if norm not in models:
            continue
        folder = work / name.replace(" ", "_")
        if name in EAGER:
            # a checkpoint that fairseq rebuilds from its args (loaded with the safe loader):
            # the LN model as it is, UN folded with the cfg that describes the folded model
            model = models[norm] if norm == ln else fold.fold_model(copy.deepcopy(models[norm]))
            base = {"args": copy.deepcopy(stored_args[norm]), "model": models[norm].state_dict()}
            save_atomically(base if model is models[norm] else fold.folded_state(base, model),
                            folder.with_suffix(".pt"))
            plan["variants"][name] = {"runtime": "eager", "norm": norm, "path": folder.with_suffix(".pt").name,
                                      "bytes": _state_bytes(model, work)}
        elif name in ORT:
            int8 = "int8" in name
            keep_scale = name.endswith("scaled")
            model = models[norm]
            if fold.is_foldable(model):
                model = fold.fold_model(copy.deepcopy(model), keep_scale=keep_scale)
            print(f"exporting {name} ...", flush=True)
            plan["variants"][name] = {"runtime": "ort", "norm": norm, "path": folder.name,
                                      "bytes": _export(model, task, folder, int8)}
        elif name in CT2 and norm in ct2_args:
            print(f"converting {name} ...", flush=True)
            plan["variants"][name] = {"runtime": "ct2", "norm": norm, "path": folder.name,
                                      "bytes": _convert_ct2(ct2_args[norm], models[norm], data, folder,
                                                            "int8" if "int8" in name else "float32")}
    return plan


def _preprocess(text: Path, out: Path) -> None:
    """fairseq-preprocess of the test set (the task needs its language pair and dictionaries)."""
    exe = Path(sys.executable).with_name("fairseq-preprocess")
    cmd = [str(exe), "--source-lang", "de", "--target-lang", "en", "--testpref", str(text / "test"),
           "--srcdict", str(text / "dict.de.txt"), "--tgtdict", str(text / "dict.en.txt"),
           "--destdir", str(out), "--workers", "1"]
    subprocess.run(cmd, check=True, capture_output=True, timeout=600)


def _stored_args(state: Dict):
    """The model arguments a checkpoint's state was trained with (its ``args``, or its cfg's model)."""
    return state["args"] if state.get("args") is not None else state["cfg"]["model"]


def _state_bytes(model, work: Path) -> int:
    import torch

    path = work / "state.tmp"
    torch.save(model.state_dict(), path)
    size = path.stat().st_size
    path.unlink()
    return size


def _export(model, task, folder: Path, int8: bool) -> int:
    """``model``'s un-export folder (int8: quantised); the bytes of its two graphs."""
    from un_fairseq import fold
    from un_fairseq.export import exporter

    folder.mkdir()
    exporter.export_graphs(model, folder)
    report = {"norm_types": fold.norm_kinds(model)}
    if int8:
        report["int8"] = exporter.quantize(folder)
    manifest = exporter.write_manifest(folder, None, model, report, exporter.write_dictionaries(task, folder),
                                       exporter.census(folder), None)
    return sum(g["bytes"] for g in manifest["graphs"].values())


def _convert_ct2(stored_args, model, data: Path, folder: Path, quantization: str) -> int:
    """CTranslate2's fairseq converter on the LN model: its weights are stock fairseq
    Transformer weights, so the checkpoint is handed over as arch ``transformer``."""
    import torch
    from ctranslate2.converters import FairseqConverter

    args = stored_args
    args.arch, args._name = "transformer", "transformer"
    langs = sorted(p.name.split(".")[1] for p in data.glob("dict.*.txt"))
    src, tgt = ("de", "en") if langs == ["de", "en"] else ("src", "tgt")
    args.source_lang, args.target_lang = src, tgt
    ckpt = folder.with_suffix(".ct2-input.pt")
    torch.save({"args": args, "cfg": None, "model": model.state_dict()}, ckpt)
    FairseqConverter(str(ckpt), str(data), source_lang=src, target_lang=tgt).convert(
        str(folder), quantization=quantization, force=True)
    ckpt.unlink()
    return (folder / "model.bin").stat().st_size


# -- the rows: load one variant, translate lines ------------------------------------------------

def load_variant(name: str, work: Path, plan: Dict, search: Dict, threads: int, batch: int,
                 spinning: str) -> Callable[[List[str]], List[str]]:
    """A function lines -> best hypotheses (post-processed) for row ``name``."""
    info = plan["variants"][name]
    path = work / info["path"]
    if info["runtime"] == "ort":
        from un_translate import Translator

        translator = Translator(path, batch_size=batch, threads=threads, spinning=spinning, beam=search["beam"],
                                len_penalty=search["len_penalty"], max_len_b=search["max_len_b"],
                                min_len=search["min_len"], remove_bpe=search["remove_bpe"])
        return lambda lines: [translator.detokenize(h[0]) for h in translator.translate(lines)]
    if info["runtime"] == "ct2":
        import ctranslate2

        translator = ctranslate2.Translator(str(path), device="cpu", intra_threads=threads, inter_threads=1)

        def ct2(lines):
            out = translator.translate_batch([line.split() for line in lines], beam_size=search["beam"],
                                             length_penalty=search["len_penalty"], max_batch_size=batch,
                                             batch_type="examples", max_decoding_length=search["max_len_b"] + 1,
                                             min_decoding_length=search["min_len"])
            return [_post(" ".join(r.hypotheses[0]), search["remove_bpe"]) for r in out]
        return ct2
    return _eager(path, search, threads, batch)


def _post(text: str, remove_bpe: Optional[str]) -> str:
    from un_translate.vocabulary import post_process

    return post_process(text, remove_bpe)


def _eager(path: Path, search: Dict, threads: int, batch: int):
    import torch
    from fairseq.data import data_utils
    from fairseq.sequence_generator import SequenceGenerator

    from un_fairseq import fold
    from un_fairseq.checkpoint_io import load_checkpoint

    task, model = fold.build_from_state(load_checkpoint(path), str(path.parent / "data"))
    src_dict, tgt_dict = task.source_dictionary, task.target_dictionary
    gen = SequenceGenerator([model], tgt_dict, beam_size=search["beam"], len_penalty=search["len_penalty"],
                            max_len_a=0, max_len_b=search["max_len_b"], min_len=search["min_len"])

    def eager(lines):
        torch.set_num_threads(threads)
        encoded = [src_dict.encode_line(line, add_if_not_exist=False).long() for line in lines]
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
        out = [""] * len(lines)
        for start in range(0, len(order), batch):
            ids = order[start:start + batch]
            src = data_utils.collate_tokens([encoded[i] for i in ids], src_dict.pad(), left_pad=True)
            sample = {"net_input": {"src_tokens": src,
                                    "src_lengths": torch.tensor([len(encoded[i]) for i in ids])}}
            with torch.inference_mode():
                hyps = gen.generate([model], sample)
            for i, h in zip(ids, hyps):
                out[i] = tgt_dict.string(h[0]["tokens"].int(), search["remove_bpe"] or None)
        return out
    return eager


# -- measuring ----------------------------------------------------------------------------------

def timed(fn: Callable[[], object]) -> Dict[str, float]:
    """Wall and process CPU seconds (all threads) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}


def speed(args, work: Path, plan: Dict, search: Dict, lines: List[str]) -> List[Dict]:
    """Median wall and CPU time per (threads, batch, row), rows interleaved in each round."""
    rows = []
    for threads in [int(t) for t in args.threads.split(",")]:
        for batch in [int(b) for b in args.batch_sizes.split(",")]:
            count = max(batch, args.speed_lines // 4 if batch == 1 else args.speed_lines)
            subset = lines[:count]
            fns = {name: load_variant(name, work, plan, search, threads, batch, args.spinning)
                   for name in plan["variants"]}
            times: Dict[str, List[Dict[str, float]]] = {name: [] for name in fns}
            for round_ in range(args.warmup + args.repeats):
                for name, fn in fns.items():
                    t = timed(lambda: fn(subset))
                    if round_ >= args.warmup:
                        times[name].append(t)
            for name, ts in times.items():
                wall = statistics.median(t["wall_s"] for t in ts)
                cpu = statistics.median(t["cpu_s"] for t in ts)
                rows.append({"variant": name, "threads": threads, "batch_size": batch, "lines": len(subset),
                             "wall_s": wall, "cpu_s": cpu, "sentences_per_s": len(subset) / wall,
                             "latency_ms": 1e3 * wall / len(subset) * batch})
            print(f"{threads} thread(s), batch {batch:3d}: " + ", ".join(
                f"{r['variant']} {r['sentences_per_s']:.1f}/s" for r in rows[-len(times):]), flush=True)
    return rows


def quality(args, work: Path, plan: Dict, search: Dict, lines: List[str]) -> Dict[str, Dict]:
    """Tokenised BLEU and the share identical to fairseq-generate's hypotheses, per row."""
    import sacrebleu

    root = Path(args.models)
    count = args.quality_lines or len(lines)
    refs = (root / "data" / "test.ref.en").read_text(encoding="utf-8").splitlines()[:count]
    threads = max(int(t) for t in args.threads.split(","))
    out = {}
    for name in plan["variants"]:
        kind = plan["variants"][name]["norm"]
        expected_file = root / "expected" / f"{kind}.hyp"
        hyps = load_variant(name, work, plan, search, threads, 64, args.spinning)(lines[:count])
        out[name] = {"bleu": sacrebleu.corpus_bleu(hyps, [refs], tokenize="none", force=True).score,
                     "identical_to_fairseq_generate": None, "lines": count, "expected": None}
        if expected_file.is_file():  # fairseq-generate's hypotheses of this model, when given
            expected = expected_file.read_text(encoding="utf-8").splitlines()[:count]
            same = sum(h == e for h, e in zip(hyps, expected))
            out[name].update(identical_to_fairseq_generate=same / count, expected=f"expected/{kind}.hyp")
        print(f"{name}: BLEU {out[name]['bleu']:.2f}, identical to fairseq-generate: "
              f"{'not given' if out[name]['expected'] is None else f'{same}/{count}'}", flush=True)
    return out


def peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM), MiB."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


def child(args) -> None:
    """Load one row, translate one batch of 64 lines, print the peak RSS (MiB) as JSON."""
    name, work = args.child[0], Path(args.child[1])
    plan = json.loads((work / "plan.json").read_text())
    lines = (work / "lines.txt").read_text(encoding="utf-8").splitlines()[:64]
    fn = load_variant(name, work, plan, plan["search"], 1, 64, "off")
    loaded = peak_rss_mib()
    fn(lines)
    print(json.dumps({"peak_rss_mib": peak_rss_mib(), "after_load_mib": loaded}))


def memory(args, work: Path, plan: Dict) -> Dict[str, Dict]:
    out = {}
    for name in plan["variants"]:
        cmd = [sys.executable, "-m", "un_tools.benchmarks.deploy", "--child", name, str(work)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800,
                              cwd=Path(__file__).resolve().parents[2])
        if proc.returncode != 0:
            raise RuntimeError(f"memory process for {name} failed:\n{proc.stderr[-3000:]}")
        out[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def profile(args, work: Path, plan: Dict, search: Dict, lines: List[str]) -> List[Dict]:
    """ONNX Runtime's profile of one ORT row at batch 16: total time by op type."""
    from un_translate import Translator
    from un_translate.manifest import DECODER_STEP, ENCODER
    from un_translate.onnx_model import import_onnxruntime, session, session_options

    ort = import_onnxruntime()
    threads = int(args.threads.split(",")[0])
    translator = Translator(work / plan["variants"][args.profile]["path"], batch_size=16, threads=threads,
                            spinning=args.spinning, beam=search["beam"], len_penalty=search["len_penalty"],
                            max_len_b=search["max_len_b"], min_len=search["min_len"])
    options = session_options(ort, threads, args.spinning)
    options.enable_profiling = True
    options.profile_file_prefix = str(work / "profile")
    model = translator.model
    model.encoder = session(ort, model.folder / ENCODER, options)
    model.decoder = session(ort, model.folder / DECODER_STEP, options)
    start = time.perf_counter()
    translator.translate(lines[:args.speed_lines])
    wall = time.perf_counter() - start
    by_op: Dict[str, float] = {}
    for sess in (model.encoder, model.decoder):
        for event in json.loads(Path(sess.end_profiling()).read_text()):
            if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
                op = event["args"]["op_name"]
                by_op[op] = by_op.get(op, 0.0) + event["dur"] / 1e6
    total = sum(by_op.values())
    rows = [{"op": op, "seconds": s, "share_of_ops": s / total} for op, s in sorted(by_op.items(), key=lambda x: -x[1])]
    rows.append({"op": "(outside ONNX Runtime ops: host beam search, copies)", "seconds": wall - total,
                 "share_of_wall": (wall - total) / wall})
    return rows


# -- the report ---------------------------------------------------------------------------------

def table(result: Dict) -> str:
    batches = sorted({r["batch_size"] for r in result["speed"]})
    threads = sorted({r["threads"] for r in result["speed"]})
    get = {(r["variant"], r["threads"], r["batch_size"]): r for r in result["speed"]}
    mid = 16 if 16 in batches else batches[-1]
    head = (["variant", "threads"] + [f"sent/s b{b}" for b in batches]
            + ["latency ms b1" if 1 in batches else "latency ms", f"CPU/wall b{mid}", f"vs eager LN b{mid}",
               "peak RSS MiB", "model MiB", "BLEU", "= fairseq-generate"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for t in threads:
        for name, info in result["plan"]["variants"].items():
            cells = [name, str(t)]
            cells += [f"{get[(name, t, b)]['sentences_per_s']:.1f}" for b in batches]
            first = get[(name, t, batches[0])]
            cells.append(f"{first['latency_ms']:.0f}")
            m = get[(name, t, mid)]
            cells.append(f"{m['cpu_s'] / m['wall_s']:.2f}")
            base = get.get(("fairseq eager LN", t, mid))
            cells.append(f"{base['wall_s'] / m['wall_s']:.2f}x" if base else "n/a")
            mem = result.get("memory", {}).get(name)
            cells.append(f"{mem['peak_rss_mib']:.0f}" if mem else "n/a")
            cells.append(f"{info['bytes'] / 2**20:.1f}")
            q = result.get("quality", {}).get(name)
            same = (q or {}).get("identical_to_fairseq_generate")
            cells += [f"{q['bleu']:.2f}" if q else "n/a", "n/a" if same is None else f"{100 * same:.1f}%"]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def markdown(result: Dict) -> str:
    cfg, info = result["config"], result["machine"]
    model = cfg["models"] and "converged checkpoints of --models, test set" or \
        f"{cfg['arch']} (random weights, vocab {cfg['vocab']}, every hypothesis {cfg['tgt_len']} tokens)"
    text = ["# Deployment benchmark (CPU)", "", f"`{' '.join(result['command'])}`", "",
            f"Machine: {info.get('Model name', '?')}, {info.get('CPU(s)', '?')} CPUs, load average at start "
            f"{info['loadavg_at_start']}; torch {info['torch']}, onnxruntime {info['onnxruntime']}, "
            f"ctranslate2 {info.get('ctranslate2', 'not installed')}.", "",
            f"Model: {model}. Beam {cfg['beam']}, length penalty {cfg['lenpen']}; median of {cfg['repeats']} "
            f"rounds after {cfg['warmup']} warm-up, rows interleaved; sentences/s over "
            f"{cfg['speed_lines']} lines (batch 1: a quarter); latency: one batch-1 sentence; "
            f"CPU/wall: process CPU time over wall time; peak RSS: a fresh process, one batch of 64, 1 thread.", "",
            table(result)]
    if result.get("profile"):
        text += ["", f"ONNX Runtime profile of {cfg['profile']} (batch 16):", "", "| op | seconds | share |",
                 "|---|---:|---:|"]
        for r in result["profile"]:
            share = r.get("share_of_ops", r.get("share_of_wall"))
            text.append(f"| {r['op']} | {r['seconds']:.3f} | {100 * share:.1f}% |")
    return "\n".join(text) + "\n"


def _relative(path: Optional[str]) -> Optional[str]:
    """``path`` relative to the working directory, so that records hold no machine paths."""
    return None if path is None else os.path.relpath(path)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        child(args)
        return 0
    logging.getLogger("fairseq").setLevel(logging.WARNING)
    import onnxruntime

    from un_tools.benchmarks.common import machine_info

    wanted = list(EAGER + ORT)
    try:
        import ctranslate2
        have_ct2 = not args.no_ct2
    except ImportError:
        have_ct2 = False
    if have_ct2:
        wanted += list(CT2)
    if args.variants:
        keep = [v.strip() for v in args.variants.split(",")]
        unknown = sorted(set(keep) - set(EAGER + ORT + CT2))
        if unknown:
            print(f"benchmark_deploy: error: unknown --variants {', '.join(unknown)}; rows: "
                  f"{', '.join(EAGER + ORT + CT2)}", file=sys.stderr)
            return 2
        wanted = [v for v in wanted if v in keep]
    if not args.models:  # folded UN int8 without its scale is shown on trained weights only
        wanted = [v for v in wanted if v != "ORT int8 UN folded"]
    info = machine_info("cpu")
    info["onnxruntime"] = onnxruntime.__version__
    if have_ct2:
        info["ctranslate2"] = ctranslate2.__version__
    search = _search(args)
    with tempfile.TemporaryDirectory(prefix="benchmark-deploy-") as tmp:
        work = Path(tmp)
        plan = prepare(args, work, wanted)
        plan["search"] = search
        (work / "plan.json").write_text(json.dumps(plan))
        lines = (work / "lines.txt").read_text(encoding="utf-8").splitlines()
        config = dict(vars(args), models=_relative(args.models), out=_relative(args.out))
        command = [Path(sys.argv[0]).name] + [_relative(a) if a in (args.models, args.out) else a for a in sys.argv[1:]]
        result = {"command": command, "config": config, "machine": info, "plan": plan}
        if args.models:
            result["quality"] = quality(args, work, plan, search, lines)
        result["speed"] = speed(args, work, plan, search, lines)
        if not args.no_memory:
            result["memory"] = memory(args, work, plan)
        if args.profile:
            result["profile"] = profile(args, work, plan, search, lines)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(result)
    (out / "deploy.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / "deploy.md").write_text(text)
    print(text)
    print(f"wrote {out / 'deploy.json'}, {out / 'deploy.md'}")
    return 0


if __name__ == "__main__":
    if os.environ.get("OMP_NUM_THREADS") is None:
        os.environ["OMP_NUM_THREADS"] = "1"  # torch's pool is sized per call (torch.set_num_threads)
    sys.exit(main())

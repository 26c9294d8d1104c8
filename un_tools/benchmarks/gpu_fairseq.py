"""The child processes of ``gpu_check``: fairseq's train and generate CLIs run in-process with
their timing and peak memory recorded, a NoNorm twin of a checkpoint, ONNX Runtime's beam
search timed on one provider, and the versions of what runs. Each writes one JSON file.

    python -m un_tools.benchmarks.gpu_fairseq env OUT.json
    python -m un_tools.benchmarks.gpu_fairseq train OUT.json --warmup 20 -- DATA --arch ...
    python -m un_tools.benchmarks.gpu_fairseq generate OUT.json --batch-sizes 1,64 -- DATA --path CKPT ...
    python -m un_tools.benchmarks.gpu_fairseq nonorm UN.pt OUT.pt --data DATA
    python -m un_tools.benchmarks.gpu_fairseq onnx OUT.json --folder EXPORTED --provider P ...

torch and fairseq are imported inside the commands that need them.
"""

import argparse
import json
import logging
import math
import platform
import re
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Optional, Tuple
from unittest import mock

#: fairseq-generate's closing line (fairseq_cli/generate.py).
TRANSLATED = re.compile(r"Translated ([\d,]+) sentences \(([\d,]+) tokens\) in [\d.]+s "
                        r"\(([\d.]+) sentences/s, ([\d.]+) tokens/s\)")


def _write(path, record) -> None:
    from un_atomic import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record, indent=1) + "\n")


def _version(dist):
    import importlib.metadata as md

    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def env(out) -> None:
    """Python, torch (CUDA build, GPU name, capability), fairseq and onnxruntime; imports
    fairseq and the plugin, so that a missing dependency shows here first."""
    import torch

    import fairseq
    import un_fairseq  # noqa: F401  (registers the architectures: fails here if a dependency is missing)

    rec = {"python": platform.python_version(), "platform": platform.platform(),
           "torch": torch.__version__, "torch_cuda": torch.version.cuda,
           "cuda_available": torch.cuda.is_available(), "cpu_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        rec.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                   gpu_capability=f"{props.major}.{props.minor}", gpu_count=torch.cuda.device_count())
    rec["fairseq"] = fairseq.__version__
    from un_tools.benchmarks.common import norm_names

    rec["norm_names"] = vars(norm_names())  # the --norm-type names of the compared models
    for dist in ("ve-fairseq", "numpy", "hydra-core", "omegaconf", "sacrebleu", "onnxruntime",
                 "onnxruntime-gpu", "triton"):
        rec[dist] = _version(dist)
    try:
        import onnxruntime

        rec["onnxruntime_providers"] = onnxruntime.get_available_providers()
    except ImportError:
        rec["onnxruntime_providers"] = None
    _write(out, rec)


def _device_of(argv) -> str:
    return "cpu" if "--cpu" in argv else "cuda"


@contextmanager
def timed_updates(device: str) -> Iterator[List[Tuple[float, int, Optional[float]]]]:
    """While the block runs, fairseq's ``Trainer.train_step`` records each update (seconds
    since the start, device synchronised; tokens; loss, None where the update was skipped)
    in the yielded list; the method is restored afterwards."""
    import torch
    from fairseq import trainer as fs_trainer

    steps: List[Tuple[float, int, Optional[float]]] = []
    original = fs_trainer.Trainer.train_step
    start = time.perf_counter()

    def timed(self, samples, *args, **kwargs):
        result = original(self, samples, *args, **kwargs)
        if device == "cuda":
            torch.cuda.synchronize()
        tokens = sum(int(s.get("ntokens", 0)) for s in samples if s)
        loss = None if result is None else result.get("loss")
        steps.append((time.perf_counter() - start, tokens, None if loss is None else float(loss)))
        return result

    with mock.patch.object(fs_trainer.Trainer, "train_step", timed):
        yield steps


def train(out, argv, warmup: int) -> None:
    """fairseq-train ``argv`` with every update timed (device synchronised): updates/s and
    tokens/s over the updates after the first ``warmup``, the loss of every update, peak memory."""
    from fairseq_cli import train as fs_train

    from un_tools.benchmarks.common import peak_memory

    device = _device_of(argv)
    sys.argv = ["fairseq-train", *argv]
    with timed_updates(device) as steps, peak_memory(device) as mem:
        fs_train.cli_main()
    losses = [s[2] for s in steps]
    k = min(warmup, len(steps) // 2)
    timed_steps = steps[k:]
    seconds = steps[-1][0] - steps[k - 1][0] if k else steps[-1][0]
    tokens = sum(s[1] for s in timed_steps)
    _write(out, {
        "updates": len(steps), "timed_updates": len(timed_steps), "timed_seconds": seconds,
        "updates_per_s": len(timed_steps) / seconds, "tokens_per_s": tokens / seconds,
        "first_update_s": steps[0][0], "peak_mib": mem["peak_mib"],
        "skipped_updates": sum(loss is None for loss in losses),
        "nonfinite_losses": sum(loss is not None and not math.isfinite(loss) for loss in losses),
        "first_loss": next((x for x in losses if x is not None), None),
        "last_loss": next((x for x in reversed(losses) if x is not None), None),
    })


def generate(out, argv, batch_sizes, batch1_shards) -> None:
    """fairseq-generate ``argv`` once per batch size (in this process, one after the other;
    batch 1 on the first of ``batch1_shards`` shards of the subset): its own sentences/s and
    tokens/s (generation time only), and the peak memory of each run."""
    from fairseq_cli import generate as fs_generate

    from un_tools.benchmarks.common import peak_memory

    lines = []

    class Keep(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())

    logging.getLogger("fairseq_cli.generate").addHandler(Keep())
    results = {}
    for B in batch_sizes:
        extra = ["--batch-size", str(B)]
        if B == 1 and batch1_shards > 1:
            # fairseq-generate shards its subset by the distributed world size and rank
            extra += ["--distributed-world-size", str(batch1_shards), "--distributed-rank", "0"]
        sys.argv = ["fairseq-generate", *argv, *extra]
        del lines[:]
        with peak_memory(_device_of(argv)) as mem:
            fs_generate.cli_main()
        found = [m for m in map(TRANSLATED.search, lines) if m]
        if not found:
            raise RuntimeError(f"fairseq-generate (batch {B}) printed no 'Translated N sentences' line")
        m = found[-1]
        results[str(B)] = {"sentences": int(m.group(1).replace(",", "")), "tokens": int(m.group(2).replace(",", "")),
                           "sentences_per_s": float(m.group(3)), "tokens_per_s": float(m.group(4)),
                           "peak_mib": mem["peak_mib"]}
    _write(out, results)


def nonorm(src, dst, data) -> None:
    """A checkpoint of the model of ``src`` with every norm replaced by NoNorm (the other
    weights kept): the no-normalisation limit of the inference benchmark."""
    from un_fairseq.checkpoint_io import load_checkpoint, save_atomically
    from un_fairseq.fold import build_from_state, folded_state, is_norm
    from un_fairseq.modules import NoNorm

    state = load_checkpoint(src)
    _, model = build_from_state(state, data)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if is_norm(child):
                setattr(parent, name, NoNorm(getattr(child, "num_features", 0)))
    # every norm NoNorm, the tied output projection kept, no optimizer state
    new = folded_state(state, model, output_projection=False)
    save_atomically(new, dst)


def onnx(out, folder, provider, batch_sizes, beam, length, sentences, batch1_sentences, seed) -> None:
    """ONNX Runtime beam search (``un_translate``) on ``provider`` at each batch size:
    sentences/s over ``sentences`` random lines of the exported source dictionary
    (``batch1_sentences`` at batch 1), every hypothesis ``length`` tokens long."""
    import random

    import onnxruntime as ort

    from un_translate.translator import Translator

    if provider not in ort.get_available_providers():
        raise RuntimeError(f"ONNX Runtime has no {provider} (it has {ort.get_available_providers()})")
    translator = Translator(folder, beam=beam, min_len=length, max_len_a=0, max_len_b=length,
                            providers=[provider])
    sessions = (translator.model.encoder, translator.model.decoder)
    used = {s.get_providers()[0] for s in sessions}
    if used != {provider}:
        raise RuntimeError(f"ONNX Runtime fell back to {sorted(used)} instead of {provider}")
    symbols = [line.split()[0] for line in (Path(folder) / "dict.src.txt").read_text().splitlines()
               if line.strip() and not line.startswith("madeupword")] or ["a"]
    rng = random.Random(seed)
    lines = [" ".join(rng.choice(symbols) for _ in range(rng.randint(8, 16))) for _ in range(sentences)]
    results = {}
    for B in batch_sizes:
        translator.batch_size = B
        n = batch1_sentences if B == 1 else sentences
        translator.translate(lines[:B])  # warm-up: session initialisation, first kernels
        begin = time.perf_counter()
        translator.translate(lines[:n])
        seconds = time.perf_counter() - begin
        # ONNX Runtime allocates outside torch: no peak memory is read
        results[str(B)] = {"sentences": n, "sentences_per_s": n / seconds, "peak_mib": None}
    _write(out, results)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("env").add_argument("out")
    t = sub.add_parser("train")
    t.add_argument("out")
    t.add_argument("--warmup", type=int, default=20, help="updates left out of the rates")
    t.add_argument("--smoke-model", action="store_true",
                   help="add the benchmarks' one-layer, width-16 model flags (SMOKE_MODEL)")
    g = sub.add_parser("generate")
    g.add_argument("out")
    g.add_argument("--batch-sizes", default="1,64", help="comma-separated (default: 1,64)")
    g.add_argument("--batch1-shards", type=int, default=1, help="batch 1 runs on the first of N shards")
    n = sub.add_parser("nonorm")
    n.add_argument("src"), n.add_argument("dst"), n.add_argument("--data", required=True)
    o = sub.add_parser("onnx")
    o.add_argument("out")
    o.add_argument("--folder", required=True)
    o.add_argument("--provider", required=True)
    o.add_argument("--batch-sizes", default="1,64", help="comma-separated (default: 1,64)")
    for name, default in (("--beam", 5), ("--length", 20), ("--sentences", 64), ("--batch1-sentences", 16),
                          ("--seed", 1)):
        o.add_argument(name, type=int, default=default)
    argv = sys.argv[1:] if argv is None else list(argv)
    cut = argv.index("--") if "--" in argv else len(argv)  # after it: fairseq's arguments
    a, fairseq = p.parse_args(argv[:cut]), argv[cut + 1:]
    if a.cmd == "env":
        env(a.out)
    elif a.cmd == "train":
        if a.smoke_model:
            from un_tools.benchmarks.common import SMOKE_MODEL

            fairseq = [*fairseq, *SMOKE_MODEL]
        train(a.out, fairseq, a.warmup)
    elif a.cmd == "generate":
        generate(a.out, fairseq, [int(b) for b in a.batch_sizes.split(",")], a.batch1_shards)
    elif a.cmd == "nonorm":
        nonorm(a.src, a.dst, a.data)
    else:
        onnx(a.out, a.folder, a.provider, [int(b) for b in a.batch_sizes.split(",")], a.beam, a.length,
             a.sentences, a.batch1_sentences, a.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())

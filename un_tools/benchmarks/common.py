"""What every benchmark shares: the one argument-parser parent, the one peak-memory reader,
interleaved timing, the machine description, and the same model built with several normalizers
from one set of weights.

Importing this module loads neither torch nor fairseq (each function imports what it uses), so a
benchmark's ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import re
import resource
import statistics
import subprocess
import time
from contextlib import contextmanager
from types import SimpleNamespace
from typing import TYPE_CHECKING, Callable, Dict, Iterator, List, Optional, Sequence

if TYPE_CHECKING:
    from torch import nn


# -- the options every benchmark shares ------------------------------------------------------

def _count(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= {minimum}")
        return value
    return parse


def _device(allowed: Sequence[str]):
    def parse(text: str) -> str:
        if text.split(":")[0] not in allowed or (":" in text and not text.split(":", 1)[1].isdigit()):
            raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(allowed)} (cuda:N for a GPU index)")
        return text
    return parse


def common_options(*, repeats: int = 7, warmup: int = 2, threads: Optional[int] = None,
                   out: str = "benchmarks/results", devices: Sequence[str] = ("cpu", "cuda"),
                   warmup_help: str = "untimed rounds of every variant before the timed ones") -> argparse.ArgumentParser:
    """The options every benchmark takes, as an argparse parent
    (``argparse.ArgumentParser(parents=[common_options(...)])``); each benchmark gives its own
    defaults. Call :func:`apply_threads` on the parsed arguments."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("options every benchmark takes")
    g.add_argument("--threads", type=_count(1), default=threads, metavar="N",
                   help="torch intra-op and OpenMP threads per process (default: "
                        + ("torch's" if threads is None else str(threads)) + ")")
    g.add_argument("--repeats", type=_count(1), default=repeats, metavar="N",
                   help=f"timed repetitions of each variant, interleaved (default: {repeats})")
    g.add_argument("--warmup", type=_count(0), default=warmup, metavar="N", help=f"{warmup_help} (default: {warmup})")
    g.add_argument("--out", default=out, metavar="DIR", help=f"folder for the JSON and markdown results (default: {out})")
    g.add_argument("--smoke", action="store_true", help="tiny sizes and 1 repeat, for the tests: the numbers mean nothing")
    g.add_argument("--device", default=devices[0], type=_device(devices), metavar="DEVICE",
                   help=f"{' or '.join(devices)} (default: {devices[0]})")
    return p


def apply_threads(args: argparse.Namespace) -> None:
    """Set this process's (and its children's) threads to ``args.threads`` when given."""
    if args.threads is not None:
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(args.threads)
        import torch

        torch.set_num_threads(args.threads)


# -- the machine, timing, memory -------------------------------------------------------------

def machine_info(device: str) -> Dict:
    """CPU model, core count, torch version, threads, and the GPU when on CUDA."""
    import torch

    info = {"platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "threads": torch.get_num_threads(), "device": device}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for key in ("Model name", "CPU(s)", "Thread(s) per core", "L3 cache"):
            m = re.search(rf"^{re.escape(key)}:\s*(.+)$", lscpu, re.M)
            if m:
                info[key] = m.group(1).strip()
    except OSError:
        pass
    with open("/proc/loadavg") as f:
        info["loadavg_at_start"] = f.read().split()[:3]
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name()
    return info


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def time_call(fn: Callable[[], object], device: str) -> float:
    """Seconds of one call of ``fn``, device work included."""
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def round_robin(fns: Dict[str, Callable[[], object]], device: str, warmup: int, repeats: int) -> Dict[str, float]:
    """Median seconds per call of each ``fn``, the calls interleaved (one of each per round)
    so that a change of background load hits every variant alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: Dict[str, List[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(time_call(fn, device))
    return {name: statistics.median(t) for name, t in times.items()}


def _status_mib(field: str) -> Optional[float]:
    try:
        with open("/proc/self/status") as f:
            return int(re.search(rf"{field}:\s*(\d+)", f.read()).group(1)) / 1024
    except (OSError, AttributeError):
        return None


def peak_rss_mib() -> float:
    """This process's peak resident memory (MiB): ``VmHWM`` of ``/proc/self/status`` (which
    :func:`peak_memory` can reset; ``ru_maxrss`` can carry a parent's peak over fork + exec),
    else ``ru_maxrss``. The one peak-memory reader of the benchmarks."""
    return _status_mib("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _current_rss_mib() -> float:
    return _status_mib("VmRSS") or 0.0


@contextmanager
def peak_memory(device: str) -> Iterator[Dict[str, Optional[float]]]:
    """Peak memory (MiB) of the block: CUDA max allocated, or the process's peak RSS on CPU
    (reset through ``/proc/self/clear_refs`` where Linux allows it, else the lifetime peak);
    ``peak_over_start_mib`` is the rise over what was in use when the block began."""
    out: Dict[str, Optional[float]] = {}
    cuda = device.startswith("cuda")
    if cuda:
        import torch

        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated() / 2**20
        torch.cuda.reset_peak_memory_stats()
    else:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass
        base = _current_rss_mib()
    yield out
    if cuda:
        torch.cuda.synchronize()
        out["peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    else:
        out["peak_mib"] = peak_rss_mib()
    out["peak_over_start_mib"] = out["peak_mib"] - base


# -- models ---------------------------------------------------------------------------------

def toy_task(vocab: int):
    """A translation task over a joined dictionary of ``vocab`` dummy symbols (no data)."""
    from fairseq.data import Dictionary
    from fairseq.tasks.translation import TranslationConfig, TranslationTask

    d = Dictionary()
    for i in range(vocab - len(d)):
        d.add_symbol(f"w{i}")
    return TranslationTask(TranslationConfig(), d, d)


def norm_names() -> SimpleNamespace:
    """The ``--norm-type`` names of the models the benchmarks compare (attributes ``UN``,
    ``LN``, ``NoNorm``, ``DyT``, ``Derf``), from the plugin's registry."""
    from un_fairseq.modules import LayerNorm, NoNorm, UnifiedNorm, registry
    from un_fairseq.modules.dyt import DyT, Derf

    return SimpleNamespace(UN=registry.name_of(UnifiedNorm), LN=registry.name_of(LayerNorm),
                           NoNorm=registry.name_of(NoNorm), DyT=registry.name_of(DyT), Derf=registry.name_of(Derf))


def model_args(arch: str, norm: str, extra: List[str] = ()):
    """Parsed fairseq arguments of ``arch`` with every norm ``norm``."""
    from fairseq import options

    import un_fairseq  # noqa: F401

    parser = options.get_training_parser()
    return options.parse_args_and_arch(
        parser, ["unused-data", "--user-dir", "un_fairseq", "--arch", arch, "--norm-type", norm,
                 "--share-all-embeddings", "--dropout", "0", "--attention-dropout", "0", *extra])


def build_variant_models(args, task, norms: List[str], seed: int = 1,
                         reference: Optional[nn.Module] = None) -> Dict[str, nn.Module]:
    """The model of ``args`` (fairseq arguments of a ``transformer_un`` arch) once per norm
    in ``norms``, all sharing every parameter they have in common: taken from ``reference``
    when given (e.g. a trained checkpoint's model), else from the first model, random with
    ``seed``, whose offline norms then get scales and statistics away from their initial
    values (so that the inference affine is not the identity). Models are in eval mode."""
    import torch

    from un_fairseq.models.transformer_un import TransformerUNModel

    models: Dict[str, nn.Module] = {}
    for norm in norms:
        torch.manual_seed(seed)
        variant = copy.deepcopy(args)
        variant.norm_type, variant.encoder_norm_type, variant.decoder_norm_type = norm, None, None
        models[norm] = TransformerUNModel.build_model(variant, task).eval()
    if reference is None:
        reference = models[norms[0]]
        with torch.no_grad():
            for name, buf in reference.named_buffers():
                if name.endswith(("running_var", "running_phi")):
                    buf.uniform_(0.5, 2.0)
            for m in reference.modules():
                if hasattr(m, "inference_scale"):
                    m.weight.uniform_(0.5, 1.5), m.bias.uniform_(-0.1, 0.1)
    ref_state = reference.state_dict()
    for model in models.values():
        own = model.state_dict()
        model.load_state_dict({k: v for k, v in ref_state.items() if k in own and own[k].shape == v.shape},
                              strict=False)
    return models


#: A one-layer, dimension-16 model for the benchmarks' ``--smoke`` mode (tests).
SMOKE_MODEL = ["--encoder-layers", "1", "--decoder-layers", "1", "--encoder-embed-dim", "16",
               "--decoder-embed-dim", "16", "--encoder-ffn-embed-dim", "32", "--decoder-ffn-embed-dim", "32",
               "--encoder-attention-heads", "2", "--decoder-attention-heads", "2"]


def benchmark_models(checkpoint: Optional[str], data: Optional[str], arch: str, vocab: int,
                     smoke: bool = False, extra: Sequence[str] = ()):
    """``(task, {UN, LN, none, *extra, UN + " fused": model})`` (keys: the names of
    :func:`norm_names`) sharing their weights, in eval mode: a trained UN ``checkpoint`` (on
    the dictionaries of ``data``) with LN and no-norm twins carrying its weights, or else a
    random ``arch`` over ``vocab`` symbols (:data:`SMOKE_MODEL` when ``smoke``), with a twin
    for each norm type of ``extra`` too; the fused one is the UN model after ``fold_model``."""
    from un_fairseq.checkpoint_io import load_checkpoint
    from un_fairseq.fold import build_from_state, fold_model

    n = norm_names()
    if checkpoint:
        task, trained = build_from_state(load_checkpoint(checkpoint), data)
        models = build_variant_models(copy.deepcopy(trained.args), task, [n.LN, n.NoNorm], reference=trained)
        models[n.UN] = trained
    else:
        task = toy_task(vocab)
        models = build_variant_models(model_args(arch, n.UN, SMOKE_MODEL if smoke else []), task,
                                      [n.UN, n.LN, n.NoNorm, *extra])
    models[n.UN + " fused"] = fold_model(copy.deepcopy(models[n.UN]))
    return task, {k: m.eval() for k, m in models.items()}

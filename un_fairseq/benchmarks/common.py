"""What both benchmarks share: the machine description, timing, peak memory, and the same
model built with several normalizers from one set of weights."""

import copy
import platform
import re
import resource
import statistics
import subprocess
import time
from contextlib import contextmanager
from typing import Callable, Dict, Iterator, List, Optional

import torch
from torch import nn


def machine_info(device: str) -> Dict:
    """CPU model, core count, torch version, threads, and the GPU when on CUDA."""
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


def _rss_hwm_mib() -> Optional[float]:
    return _status_mib("VmHWM")


def _current_rss_mib() -> float:
    return _status_mib("VmRSS") or 0.0


@contextmanager
def peak_memory(device: str) -> Iterator[Dict[str, Optional[float]]]:
    """Peak memory (MiB) of the block: CUDA max allocated, or the process's peak RSS on CPU
    (reset through ``/proc/self/clear_refs`` where Linux allows it, else the lifetime peak);
    ``peak_over_start_mib`` is the rise over what was in use when the block began."""
    out: Dict[str, Optional[float]] = {}
    if device.startswith("cuda"):
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
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        out["peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    else:
        out["peak_mib"] = _rss_hwm_mib() or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["peak_over_start_mib"] = out["peak_mib"] - base


def toy_task(vocab: int):
    """A translation task over a joined dictionary of ``vocab`` dummy symbols (no data)."""
    from fairseq.data import Dictionary
    from fairseq.tasks.translation import TranslationConfig, TranslationTask

    d = Dictionary()
    for i in range(vocab - len(d)):
        d.add_symbol(f"w{i}")
    return TranslationTask(TranslationConfig(), d, d)


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
    from ..models.transformer_un import TransformerUNModel

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
                     smoke: bool = False):
    """``(task, {"un", "layer", "none", "un fused": model})`` sharing their weights, in eval
    mode: a trained UN ``checkpoint`` (on the dictionaries of ``data``) with LN and no-norm
    twins carrying its weights, or else a random ``arch`` over ``vocab`` symbols
    (:data:`SMOKE_MODEL` when ``smoke``); ``un fused`` is the UN model after ``fuse_model``."""
    from ..checkpoint_io import load_checkpoint
    from ..fuse import build_from_state, fuse_model

    if checkpoint:
        task, trained = build_from_state(load_checkpoint(checkpoint), data)
        models = build_variant_models(copy.deepcopy(trained.args), task, ["layer", "none"], reference=trained)
        models["un"] = trained
    else:
        task = toy_task(vocab)
        models = build_variant_models(model_args(arch, "un", SMOKE_MODEL if smoke else []), task,
                                      ["un", "layer", "none"])
    models["un fused"] = fuse_model(copy.deepcopy(models["un"]))
    return task, {k: m.eval() for k, m in models.items()}

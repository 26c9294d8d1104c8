"""How sharp a model's predictions are, beside how well they fit (issue 42): teacher-forced on a
binarized subset, per target token, the entropy of the output distribution, the nll of the
reference token, and the RMS of the decoder's final norm output (the output projection's input).

    python -m un_tools.reproduce.cli calibration CHECKPOINT [CHECKPOINT ...] --data BIN \\
        [--subset valid] [--sentences 400] [--temperatures 0.8,0.9,1.0] [--out FILE.json]

Per checkpoint: ``tokens``; ``nll`` and ``entropy``, means in nats; ``final_rms`` mean and
``final_rms_cv`` (its coefficient of variation over tokens: near 0 when the final norm scales
each token to one size, as LayerNorm does); ``input_rms_cv``, the same for the final norm's input;
``by_temperature``: the mean nll and entropy with the logits divided by each ``--temperatures``
value (fairseq-generate's ``--temperature``; 1.0 is the model as it is).
The model runs in eval mode (inference statistics, no dropout), in float32 on the CPU, on the
first ``--sentences`` sentences of ``--subset`` in batches of 50.
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List, Sequence

from .tables import emit

BATCH = 50


def measure(checkpoint: Path, data: str, subset: str, sentences: int,
            temperatures: Sequence[float] = (1.0,)) -> Dict[str, object]:
    import torch

    import un_fairseq  # noqa: F401  (registers the models, allows fairseq checkpoint types)
    from un_fairseq.checkpoint_io import load_checkpoint
    from un_fairseq.fold import build_from_state

    task, model = build_from_state(load_checkpoint(checkpoint), data)
    task.load_dataset(subset)
    dataset = task.dataset(subset)
    final = model.decoder.layer_norm
    seen: Dict[str, torch.Tensor] = {}
    hooks = [final.register_forward_pre_hook(lambda m, args: seen.__setitem__("in", args[0])),
             final.register_forward_hook(lambda m, args, out: seen.__setitem__("out", out))]
    pad = task.target_dictionary.pad()
    parts: Dict[str, List[torch.Tensor]] = {"nll": [], "entropy": [], "out": [], "in": []}
    by_t = {t: {"nll": [], "entropy": []} for t in temperatures}
    try:
        with torch.no_grad():
            for start in range(0, min(sentences, len(dataset)), BATCH):
                batch = dataset.collater([dataset[i] for i in range(start, min(start + BATCH, sentences, len(dataset)))])
                logits = model(**batch["net_input"])[0]  # B x T x V
                real = batch["target"].ne(pad)
                for t, out in [(None, parts)] + list(by_t.items()):
                    lprobs = torch.log_softmax(logits.float() / (t or 1.0), dim=-1)
                    out["nll"].append(-lprobs.gather(-1, batch["target"].unsqueeze(-1)).squeeze(-1)[real])
                    out["entropy"].append(-(lprobs.exp() * lprobs).sum(-1)[real])
                for key in ("out", "in"):  # the decoder is time-major (T x B x C) inside
                    rms = seen[key].float().pow(2).mean(-1).sqrt()
                    parts[key].append((rms.t() if rms.shape != real.shape else rms)[real])
    finally:
        for h in hooks:
            h.remove()
    values = {k: torch.cat(v).double() for k, v in parts.items()}
    return {"tokens": int(values["nll"].numel()), "nll": values["nll"].mean().item(),
            "entropy": values["entropy"].mean().item(), "final_rms": values["out"].mean().item(),
            "final_rms_cv": (values["out"].std() / values["out"].mean()).item(),
            "input_rms_cv": (values["in"].std() / values["in"].mean()).item(),
            "by_temperature": {str(t): {k: torch.cat(v).double().mean().item() for k, v in out.items()}
                               for t, out in by_t.items()}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m un_tools.reproduce.cli calibration", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoints", nargs="+", type=Path, help="transformer_un checkpoints")
    p.add_argument("--data", required=True, help="fairseq-preprocess folder with the checkpoints' dictionaries and SUBSET")
    p.add_argument("--subset", default="valid", help="binarized split to score (default: valid)")
    p.add_argument("--sentences", type=int, default=400, help="its first N sentences (default: 400)")
    p.add_argument("--temperatures", default="1.0",
                   help="comma-separated softmax temperatures for by_temperature (default: 1.0)")
    p.add_argument("--out", type=Path, help="write the results as JSON here (default: print them)")
    args = p.parse_args(argv)
    if args.sentences < 1:
        print(f"calibration: error: --sentences {args.sentences}: give a whole number >= 1", file=sys.stderr)
        return 2
    try:
        temperatures = [float(t) for t in args.temperatures.split(",")]
        if min(temperatures) <= 0:
            raise ValueError
    except ValueError:
        print(f"calibration: error: --temperatures {args.temperatures!r}: give comma-separated numbers > 0",
              file=sys.stderr)
        return 2
    missing = [str(c) for c in args.checkpoints if not c.is_file()]
    if missing:
        print(f"calibration: error: no such checkpoint: {', '.join(missing)}", file=sys.stderr)
        return 2
    results = {}
    for checkpoint in args.checkpoints:
        try:
            results[checkpoint.name] = measure(checkpoint, args.data, args.subset, args.sentences, temperatures)
        except (ValueError, FileNotFoundError) as err:
            print(f"calibration: error: {checkpoint}: {str(err).splitlines()[0]}", file=sys.stderr)
            return 2
        print(f"{checkpoint.name}: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                                                 for k, v in results[checkpoint.name].items()
                                                 if k != "by_temperature"), file=sys.stderr)
    emit(json.dumps({"command": ["python", "-m", "un_tools.reproduce.cli", "calibration", *(argv or sys.argv[2:])],
                     "subset": args.subset, "sentences": args.sentences, "models": results}, indent=1) + "\n", args.out)
    return 0

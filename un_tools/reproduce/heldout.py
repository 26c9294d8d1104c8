"""Held-out checks of a finished run's averaged model (``RUN/avg.pt``, written by
scripts/evaluate.sh), merged into one JSON file beside the run records (the converged sweep's is
``results/multi30k-heldout.json``): what the table's single test set cannot show, i.e. whether a
BLEU difference holds on another set, whether length decides it, and how well the model fits.

    python -m un_tools.reproduce.cli heldout --run RUNS/un/seed3 \\
        --out results/multi30k-heldout.json [--lenpens 0.6,1.0,1.4,1.8,2.2] [--key un-seed3]

Into ``models[KEY]`` of ``--out`` (KEY: the run's record name, ``VARIANT-seedS``, from the run
folder ``RUNS/VARIANT/seedS``), for the tuning subset V (``--valid-subset``, default valid) and
the test subset T (``--test-subset``, default test):

- ``V_nll``, ``V_label_smoothed_loss``, ``T_nll``, ``T_label_smoothed_loss``: fairseq-validate
  over every sentence with the profile's training criterion (``--criterion``,
  ``--label-smoothing``), in bits per target token as fairseq logs them;
- ``V_bleu_lenpen_LP`` for each LP of ``--lenpens`` (default 1.0, the paper's protocol), and
  ``T_bleu_lenpen_1.0`` and ``T_bleu_lenpen_BEST`` at the grid's best LP on V (its name in
  ``best_lenpen_on_V`` when the grid has more than one): ``{bleu, precisions, bp, ratio}`` of
  fairseq-generate's BLEU4 with the profile's gen flags (beam 5) and ``--lenpen LP``, every
  sentence of the subset checked translated as in scripts/evaluate.sh.

fairseq's outputs stay in ``RUN/heldout/`` (``generate-SUBSET-lenpenLP.txt``,
``validate-SUBSET.log``: their ``H-`` lines feed a paired bootstrap). Keys already in the entry
and not measured again are kept. Nothing is written to ``--out`` unless every measurement
succeeded; it is replaced atomically, in its own layout (``indent=1``).
"""

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from un_atomic import atomic_path
from .config import REPO, ConfigError, Dataset, Profile, flag_value, load_dataset, load_profile
from .evaluate import generate_command, run_cmd, translate_subset
from .records import record_key
from .device import device_flags
from .run_files import read_json
from .train import fairseq_command, resolve_data

_BLEU_DETAIL = re.compile(r"BLEU4 = ([\d.]+), ([\d.]+/[\d.]+/[\d.]+/[\d.]+) \(BP=([\d.]+), ratio=([\d.]+)")


def bleu_detail(line: str) -> Dict[str, object]:
    """``{bleu, precisions, bp, ratio}`` of a fairseq-generate BLEU4 line."""
    m = _BLEU_DETAIL.search(line)
    if not m:
        raise ValueError(f"not a fairseq BLEU4 line: {line!r}")
    return dict(bleu=float(m.group(1)), precisions=m.group(2), bp=float(m.group(3)), ratio=float(m.group(4)))


def validate_losses(log: str, subset: str) -> Dict[str, float]:
    """``{nll, label_smoothed_loss}`` of the subset from fairseq-validate's ``--log-format json``
    output (its ``SUBSET_loss`` and ``SUBSET_nll_loss``, bits per target token; plain
    cross-entropy logs no ``nll_loss``: its loss is the nll)."""
    for line in reversed(log.splitlines()):
        start = line.find("{")
        if start < 0:
            continue
        try:
            stats = json.loads(line[start:])
        except json.JSONDecodeError:
            continue
        if f"{subset}_loss" in stats:
            loss = float(stats[f"{subset}_loss"])
            return dict(nll=round(float(stats.get(f"{subset}_nll_loss", loss)), 3),
                        label_smoothed_loss=round(loss, 3))
    raise RuntimeError(f"fairseq-validate printed no losses for '{subset}'")


def lenpen_name(lenpen: float) -> str:
    return f"{lenpen:.1f}" if round(lenpen, 1) == lenpen else f"{lenpen:g}"


def criterion_flags(profile: Profile) -> List[str]:
    """The profile's training criterion, for fairseq-validate."""
    flags = profile.training_flags()
    out = ["--criterion", flag_value(flags, "--criterion", "cross_entropy")]
    smoothing = flag_value(flags, "--label-smoothing")
    return out + (["--label-smoothing", smoothing] if smoothing is not None else [])


def measure(run: Path, data: Path, dataset: Dataset, profile: Profile, lenpens: Sequence[float],
            valid: str = "valid", test: str = "test", say=print) -> dict:
    """The held-out entry of RUN's averaged model (see the module docstring)."""
    model = run / "avg.pt"
    if not model.is_file():
        raise FileNotFoundError(f"{model} not found: run scripts/evaluate.sh --run {run} first")
    if not lenpens:
        raise ValueError("--lenpens is empty")
    out = run / "heldout"
    out.mkdir(exist_ok=True)
    entry: dict = {}

    def bleu(subset: str, lenpen: float) -> float:
        name = lenpen_name(lenpen)
        cmd = generate_command(data, model, subset, [*profile.gen_flags, "--lenpen", name], dataset)
        say(f"{run}: {subset}, lenpen {name}")
        _, line, _, _ = translate_subset(cmd, data, subset, dataset, out / f"generate-{subset}-lenpen{name}.txt")
        entry[f"{subset}_bleu_lenpen_{name}"] = detail = bleu_detail(line)
        return detail["bleu"]

    for subset in (valid, test):
        cmd = [*fairseq_command("fairseq-validate"), str(data), "--task", "translation",
               "--user-dir", str(REPO / "un_fairseq"), "--path", str(model), "--valid-subset", subset,
               "--batch-size", "128", "--required-batch-size-multiple", "1", *criterion_flags(profile),
               "--log-format", "json", *device_flags()]
        say(f"{run}: nll of {subset}")
        run_cmd(cmd, out / f"validate-{subset}.log")
        losses = validate_losses((out / f"validate-{subset}.log").read_text(), subset)  # fairseq logs to stderr
        entry[f"{subset}_nll"], entry[f"{subset}_label_smoothed_loss"] = losses["nll"], losses["label_smoothed_loss"]
    scores = {lp: bleu(valid, lp) for lp in lenpens}
    best = max(scores, key=lambda lp: (scores[lp], -abs(lp - 1.0)))  # ties: the one nearest 1.0
    for lp in sorted({1.0, best}):
        bleu(test, lp)
    if len(lenpens) > 1:
        entry[f"best_lenpen_on_{valid}"] = float(lenpen_name(best))
    return entry


def merge(path: Path, key: str, entry: dict) -> None:
    """Put ``entry`` into ``models[key]`` of the JSON file ``path`` (created if absent), keeping
    the entry's other keys and the file's layout; the file is replaced atomically."""
    doc = json.loads(path.read_text()) if path.exists() else {}
    if not isinstance(doc, dict) or not isinstance(doc.setdefault("models", {}), dict):
        raise ValueError(f"{path}: not a held-out file (no 'models' object)")
    doc["models"].setdefault(key, {}).update(entry)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")


def parse_lenpens(text: str) -> List[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--lenpens must be comma-separated numbers, got {text!r}") from None
    return sorted(set(values))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m un_tools.reproduce.cli heldout", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, type=Path, help="run folder, evaluated (holds avg.pt)")
    p.add_argument("--out", required=True, type=Path, help="held-out JSON file to add the entry to")
    p.add_argument("--key", help="entry name (default: VARIANT-seedS from the run folder RUNS/VARIANT/seedS)")
    p.add_argument("--lenpens", default="1.0", help="length penalties scored on the tuning subset (default: 1.0)")
    p.add_argument("--valid-subset", default="valid", help="tuning subset (default: valid)")
    p.add_argument("--test-subset", default="test", help="test subset (default: test)")
    p.add_argument("--data", help="binarized data folder (default: the run's, from RUN/train.json)")
    return p


def default_key(run: Path) -> Optional[str]:
    m = re.fullmatch(r"seed(\d+)", run.resolve().name)
    return record_key(run.resolve().parent.name, int(m.group(1))) if m else None


def main(argv=None) -> int:
    p = parser()
    args = p.parse_args(argv)
    info = read_json(args.run / "train.json") or {}
    key = args.key or default_key(args.run) or p.error(f"--key is required ({args.run} is not RUNS/VARIANT/seedS)")
    try:
        if not info.get("profile"):
            raise ValueError(f"{args.run / 'train.json'} names no profile: not a finished run of scripts/train.sh")
        profile = load_profile(info["profile"])
        dataset = load_dataset(info.get("dataset") or profile.dataset)
        data = resolve_data(args.data or info.get("data"), dataset).resolve()
        entry = measure(args.run.resolve(), data, dataset, profile, parse_lenpens(args.lenpens),
                        args.valid_subset, args.test_subset)
        merge(args.out, key, entry)
    except (ConfigError, FileNotFoundError, ValueError, RuntimeError) as err:
        print(f"heldout: error: {err}", file=sys.stderr)
        return 1 if isinstance(err, RuntimeError) else 2  # 1: a fairseq step failed; 2: bad input
    print(f"{args.out}: models[{key!r}] = {json.dumps(entry)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

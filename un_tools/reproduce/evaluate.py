"""Evaluate one training run as the paper does: average the last epoch checkpoints, beam search,
tokenised BLEU (fairseq-generate's BLEU4 on the tokenised text, multi-bleu style), plus
detokenised sacreBLEU with its signature.

    scripts/evaluate.sh --run work/runs/un/seed1 --data work/m30k/bin --dataset multi30k \
        [--profile mini] [--num-checkpoints N] [--subset test] [--sacrebleu-ref FILE] [--force]
        [--checkpoint FILE]

Steps, each printed:
1. ``un-average-checkpoints`` over the N newest ``checkpointE.pt`` of ``RUN/checkpoints``
   (N = the profile's avg_checkpoints, 10 for the paper's profiles; fewer when fewer exist;
   ``checkpoint_last.pt`` alone when there is no epoch checkpoint) -> ``RUN/avg.pt``;
2. ``fairseq-generate`` with the profile's gen flags (beam 5) and the dataset's ``--remove-bpe``
   (``sentencepiece`` or subword-nmt's ``@@ ``) -> ``RUN/generate-SUBSET.txt``; its ``BLEU4``
   is the tokenised BLEU the paper reports. Every sentence of the subset is translated:
   ``--required-batch-size-multiple 1`` is passed, because fairseq's default of 8 drops the
   last batch when its size is not a multiple of 8 (fairseq issue #5036; newstest2014's
   3,003 sentences would lose their 59 longest, IWSLT14's 6,750 their 94 longest), and the
   number of hypotheses is checked against the size of the binarized subset;
3. sacreBLEU: hypotheses detokenised with sacremoses (Moses detokenizer, target language)
   against the dataset's raw reference (``sacrebleu_ref``, text, .gz or .sgm), or, if it has none,
   against fairseq's detokenised ``T-`` lines; lowercased if the dataset is (``lowercase = true``).

Writes ``RUN/eval.json`` for the test set, ``RUN/eval-SUBSET.json`` for another subset (only
``eval.json`` feeds the tables and run records). An evaluation newer than the checkpoints is not
redone unless ``--force``.

``--checkpoint FILE`` skips step 1 and translates FILE as it is (e.g. the fused ``avg_fused.pt``
that ``un-fuse`` wrote), with the same generation flags and checks; its outputs are named after
the file: ``RUN/generate-SUBSET-avg_fused.txt`` and ``RUN/eval-avg_fused.json`` (for the test set).

The run folder's lock is held throughout (:mod:`.lock`: a folder another driver works in is
refused, exit status 2); SIGTERM, SIGHUP or SIGINT stop the fairseq process in progress and exit
with 128 + the signal, no eval file written (:mod:`.signals`).
"""

import argparse
import gzip
import html
import re
import shlex
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from . import signals
from .config import REPO, ConfigError, Dataset, load_dataset, load_profile
from .lock import FolderLocked, run_lock
from .device import device_flags
from .run_files import eval_file, read_json
from .train import check_data, fairseq_command, resolve_data, write_json

_BLEU = re.compile(r"Generate (\S+) with beam=(\d+): BLEU4 = ([\d.]+)")
_EPOCH_CKPT = re.compile(r"checkpoint(\d+)\.pt$")


def checkpoint_dir(run: Path) -> Path:
    sub = run / "checkpoints"
    return sub if sub.is_dir() else run


def epoch_checkpoints(folder: Path) -> List[Path]:
    """``checkpointE.pt`` files, oldest epoch first."""
    found = sorted((int(m.group(1)), p) for p in folder.iterdir() if (m := _EPOCH_CKPT.match(p.name)))
    return [p for _, p in found]


def parse_generate(text: str) -> Tuple[Optional[float], str, List[str], List[str]]:
    """(BLEU4, the BLEU line, hypotheses, references) of fairseq-generate's output, in id order."""
    hyps: Dict[int, str] = {}
    refs: Dict[int, str] = {}
    for line in text.splitlines():
        if line.startswith("H-"):
            head, _score, *rest = line.split("\t", 2) + [""]
            hyps[int(head[2:])] = rest[0] if rest else ""
        elif line.startswith("T-"):
            head, *rest = line.split("\t", 1) + [""]
            refs[int(head[2:])] = rest[0]
    m = _BLEU.search(text)
    bleu = float(m.group(3)) if m else None
    line = text[m.start():].splitlines()[0] if m else ""
    ids = sorted(hyps)
    return bleu, line, [hyps[i] for i in ids], [refs.get(i, "") for i in ids]


def read_reference(path: Path) -> List[str]:
    """Plain text, gzip'd text or WMT .sgm (the ``<seg>`` contents) as a list of lines."""
    if not path.is_file():
        raise FileNotFoundError(f"sacreBLEU reference not found: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        text = f.read()
    if path.suffix == ".sgm" or path.name.endswith(".sgm.gz"):
        return [html.unescape(s.strip()) for s in re.findall(r"<seg[^>]*>(.*?)</seg>", text)]
    return text.rstrip("\n").split("\n")


def sacrebleu_score(hyps: List[str], refs: List[str], lang: str, lowercase: bool,
                    raw_reference: bool) -> Tuple[float, str]:
    """Detokenised sacreBLEU of tokenised hypotheses (and references unless ``raw_reference``)."""
    import sacrebleu
    from sacremoses import MosesDetokenizer

    detok = MosesDetokenizer(lang=lang)
    detok_hyps = [detok.detokenize(h.split()) for h in hyps]
    if not raw_reference:
        refs = [detok.detokenize(r.split()) for r in refs]
    metric = sacrebleu.metrics.BLEU(lowercase=lowercase)
    score = metric.corpus_score(detok_hyps, [refs])
    return round(score.score, 2), str(metric.get_signature())


def run_cmd(cmd: List[str], log: Path) -> str:
    """Run ``cmd`` (in its own process group, stopped with it if this driver is interrupted:
    :mod:`.signals`), keep its output in ``log``, return its stdout."""
    proc = signals.start(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                         text=True, cwd=REPO)
    try:
        stdout, stderr = proc.communicate()
    except BaseException:
        signals.stop(proc)
        raise
    proc.stdout, proc.stderr = stdout, stderr
    log.write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-20:])
        raise RuntimeError(f"{cmd[2] if len(cmd) > 2 else cmd[0]} failed with status {proc.returncode} (see {log}):\n{tail}")
    return proc.stdout


def subset_size(data: Path, subset: str, src: str, tgt: str) -> int:
    """The number of sentences in a binarized subset, read from the header of its source-side
    ``.idx`` (fairseq's ``mmap`` format, the default of fairseq-preprocess: a 9-byte magic, a
    uint64 version, a uint8 dtype code, then the uint64 count; or the legacy ``TNTIDX``
    format: an 8-byte magic, uint64 version, code, element size, then the uint64 count)."""
    path = Path(data) / f"{subset}.{src}-{tgt}.{src}.idx"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: {data} has no binarized '{subset}' subset for {src}-{tgt}")
    with open(path, "rb") as f:
        head = f.read(40)
    if head.startswith(b"MMIDIDX\x00\x00") and len(head) >= 26:
        return struct.unpack("<Q", head[18:26])[0]
    if head.startswith(b"TNTIDX\x00\x00") and len(head) >= 40:
        return struct.unpack("<Q", head[32:40])[0]
    raise ValueError(f"{path}: not a fairseq index file (unknown header {head[:9]!r})")


def generate_command(data: Path, model: Path, subset: str, gen_flags: List[str], dataset: Dataset) -> List[str]:
    """fairseq-generate over every sentence of ``subset`` (see the module docstring, step 2)."""
    cmd = [*fairseq_command("fairseq-generate"), str(data), "--user-dir", str(REPO / "un_fairseq"),
           "--path", str(model), "--gen-subset", subset, *gen_flags,
           "--required-batch-size-multiple", "1"]  # translate every sentence: see the docstring
    if dataset.remove_bpe:
        cmd += ["--remove-bpe", dataset.remove_bpe]
    return cmd + device_flags()


def translate_subset(cmd: List[str], data: Path, subset: str, dataset: Dataset,
                     output: Path) -> Tuple[float, str, List[str], List[str]]:
    """Run a :func:`generate_command` (its output kept in ``output``); (BLEU4, the BLEU line,
    hypotheses, references), after checking that every sentence of ``subset`` was translated."""
    out = run_cmd(cmd, output)
    bleu, bleu_line, hyps, refs = parse_generate(out)
    if bleu is None:
        raise RuntimeError(f"no BLEU4 line in {output}")
    expected = subset_size(data, subset, dataset.src, dataset.tgt)
    if len(hyps) != expected:
        raise RuntimeError(f"fairseq-generate translated {len(hyps)} of the {expected} sentences of "
                           f"'{subset}' (see {output}): its BLEU would not cover "
                           f"the whole subset")
    return bleu, bleu_line, hyps, refs


def evaluate_run(run: Path, data: Path, dataset: Dataset, gen_flags: List[str], num_checkpoints: int,
                 subset: str = "test", sacrebleu_ref: Optional[str] = None, force: bool = False,
                 quiet: bool = False, checkpoint: Optional[Path] = None) -> dict:
    """Average and translate RUN's checkpoints (or translate ``checkpoint`` as it is); returns and
    writes the eval record. See the module docstring for the steps and file names."""
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    if num_checkpoints < 1:
        raise ValueError(f"--num-checkpoints must be >= 1, got {num_checkpoints}")
    if not run.is_dir():
        raise FileNotFoundError(f"run folder not found: {run}")
    run, data = run.resolve(), Path(data).resolve()  # fairseq runs from the repository root
    with run_lock(run):  # one driver per run folder (lock.py)
        return _evaluate_locked(run, data, dataset, gen_flags, num_checkpoints, subset, sacrebleu_ref,
                                force, say, checkpoint)


def _evaluate_locked(run: Path, data: Path, dataset: Dataset, gen_flags: List[str], num_checkpoints: int,
                     subset: str, sacrebleu_ref: Optional[str], force: bool, say,
                     checkpoint: Optional[Path]) -> dict:
    check_data(data, dataset)
    if checkpoint is not None:
        checkpoint = Path(checkpoint).resolve()
        if not checkpoint.is_file():
            raise FileNotFoundError(f"--checkpoint {checkpoint}: no such file")
        epochs, last, stem = [], checkpoint, checkpoint.stem
        newest = checkpoint.stat().st_mtime
    else:
        ckdir = checkpoint_dir(run)
        epochs = epoch_checkpoints(ckdir)
        last, stem = ckdir / "checkpoint_last.pt", ""
        if not epochs and not last.exists():
            raise FileNotFoundError(f"{ckdir} holds no checkpointE.pt and no checkpoint_last.pt: train first")
        newest = max(p.stat().st_mtime for p in epochs + ([last] if last.exists() else []))
    eval_path = run / eval_file(subset, stem)
    generate_path = run / f"generate-{subset}{'-' + stem if stem else ''}.txt"
    done = read_json(eval_path)
    if done and not force and done.get("subset") == subset and eval_path.stat().st_mtime >= newest:
        say(f"{run}: already evaluated (BLEU {done.get('bleu')}), not redone")
        return done
    started = time.time()
    avg = run / "avg.pt"
    if checkpoint is not None:
        used, model = [checkpoint], checkpoint
        say(f"{run}: translating {checkpoint} as it is (no averaging)")
    elif epochs:
        n = min(num_checkpoints, len(epochs))
        used = epochs[-n:]
        note = "" if n == num_checkpoints else f" (only {len(epochs)} epoch checkpoints exist)"
        say(f"{run}: averaging the last {n} epoch checkpoints{note}: {', '.join(p.name for p in used)}")
        if last.exists() and last.stat().st_mtime > epochs[-1].stat().st_mtime + 1:
            say(f"  note: training went on after {epochs[-1].name} (it stopped inside an epoch); as in "
                f"fairseq's recipes, only epoch checkpoints are averaged")
        run_cmd([*fairseq_command("un-average-checkpoints"), "--inputs", str(ckdir),
                 "--num-epoch-checkpoints", str(n), "--output", str(avg)], run / "average.log")
        model = avg
    else:
        used = [last]
        say(f"{run}: no epoch checkpoint (training stopped inside epoch 1); using {last.name}")
        model = last
    cmd = generate_command(data, model, subset, gen_flags, dataset)
    say(f"{run}: {shlex.join(cmd)}")
    bleu, bleu_line, hyps, refs = translate_subset(cmd, data, subset, dataset, generate_path)
    ref_file = sacrebleu_ref if sacrebleu_ref is not None else (dataset.sacrebleu_ref if subset == "test" else "")
    if ref_file and sacrebleu_ref is None and not Path(ref_file).exists():
        # the dataset's default reference lives in ../shared/data, absent on some machines
        say(f"{run}: the dataset's sacreBLEU reference {ref_file} is missing: scoring against "
            f"fairseq's detokenised T- lines instead")
        ref_file = ""
    if ref_file:
        raw_refs = read_reference(Path(ref_file))
        if len(raw_refs) != len(hyps):
            raise ValueError(f"sacreBLEU reference {ref_file} has {len(raw_refs)} lines, "
                             f"fairseq-generate produced {len(hyps)} hypotheses")
        sb, sig = sacrebleu_score(hyps, raw_refs, dataset.tgt, dataset.lowercase, raw_reference=True)
    else:
        sb, sig = sacrebleu_score(hyps, refs, dataset.tgt, dataset.lowercase, raw_reference=False)
    result = dict(
        bleu=bleu, bleu_line=bleu_line, sacrebleu=sb, sacrebleu_signature=sig,
        sacrebleu_reference=ref_file or "detokenised fairseq T- lines", subset=subset,
        num_checkpoints=len(used), checkpoints=[p.name for p in used], sentences=len(hyps),
        dataset=dataset.name, wall_s=round(time.time() - started, 1),
    )
    write_json(eval_path, result)
    say(f"{run}: tokenised BLEU4 {bleu:.2f} | sacreBLEU {sb:.2f} ({sig}) | {len(hyps)} sentences, "
        f"{result['wall_s']:.0f} s")
    return result


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scripts/evaluate.sh", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="run folder of scripts/train.sh (holds checkpoints/)")
    p.add_argument("--data", help="binarized data folder (default: the dataset's data_dir)")
    p.add_argument("--dataset", help="configs/dataset-NAME.toml (default: from RUN/train.json or the profile)")
    p.add_argument("--profile", help="configs/PROFILE.toml for its gen flags and avg_checkpoints "
                                     "(default: from RUN/train.json)")
    p.add_argument("--num-checkpoints", type=int, metavar="N",
                   help="average the N newest epoch checkpoints (default: the profile's avg_checkpoints)")
    p.add_argument("--subset", default="test", help="fairseq --gen-subset (default: test)")
    p.add_argument("--sacrebleu-ref", metavar="FILE",
                   help="raw reference for sacreBLEU (default: the dataset's sacrebleu_ref; '' = detokenised T- lines)")
    p.add_argument("--force", action="store_true", help="evaluate again even if eval.json is up to date")
    p.add_argument("--checkpoint", metavar="FILE", type=Path,
                   help="translate FILE as it is instead of averaging RUN's checkpoints (e.g. a fused "
                        "model); writes RUN/generate-SUBSET-STEM.txt and RUN/eval-STEM.json")
    return p


def main(argv=None) -> int:
    p = parser()
    args = p.parse_args(argv)
    run = Path(args.run)
    info = read_json(run / "train.json") or {}
    try:
        profile_name = args.profile or info.get("profile")
        if not profile_name:
            p.error(f"--profile is required ({run / 'train.json'} does not name one)")
        profile = load_profile(profile_name)
        dataset = load_dataset(args.dataset or info.get("dataset") or profile.dataset
                               or p.error("--dataset is required"))
        data = resolve_data(args.data or info.get("data"), dataset)
        with signals.stop_signals():
            evaluate_run(run, data, dataset, profile.gen_flags,
                         args.num_checkpoints or profile.avg_checkpoints, args.subset,
                         args.sacrebleu_ref, args.force, checkpoint=args.checkpoint)
    except (ConfigError, FileNotFoundError, ValueError, FolderLocked) as err:
        print(f"evaluate.sh: error: {err}", file=sys.stderr)
        return 2
    except signals.Interrupted as stop:
        print(f"evaluate.sh: {stop}: the evaluation of {run} was not finished (no eval file written); "
              f"run again to redo it", file=sys.stderr)
        return stop.exit_status
    except RuntimeError as err:
        print(f"evaluate.sh: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""un-export: a ``transformer_un`` checkpoint -> ONNX graphs that ONNX Runtime (or any ONNX
toolchain) runs without fairseq.

Offline norms (UN, PN*, BN, MABN) are folded first (``un_fairseq.fold.load_folded``, as
``un-fuse`` folds, checked against the unfolded model), so their graphs contain no
normalisation op; DyT and Derf fold their weight and bias the same way and keep one Tanh or
Erf each; online norms (LayerNorm,
RMSNorm, PowerNorm) are exported as they are. OUTDIR receives:

  encoder.onnx       src_tokens, src_lengths -> encoder_out, encoder_padding_mask, and every
                     decoder layer's cross-attention keys and values (cross_k, cross_v)
  decoder_step.onnx  tokens, step, token_bias, encoder_padding_mask, cross_k, cross_v,
                     cache_indirection, past_k, past_v -> the best candidates per row and
                     present_k, present_v (the self-attention buffers, written in place)
  dict.src.txt, dict.tgt.txt   fairseq's dictionaries
  sentencepiece.model          with --spm: the model that turns text into the dictionaries' pieces
  manifest.json      shapes, opset, norm types, op census, the language pair, the checkpoint's sha256

Batch size, beam, source length and buffer length are dynamic. Both graphs pass onnx.checker, and
ONNX Runtime is compared with the checkpoint's own (unfolded) model before OUTDIR appears;
OUTDIR is written atomically (nothing is left after a failure).

    un-export checkpoint.pt export/ --data DIR --spm spm8000.model   # DIR: dict.de.txt, dict.en.txt
    un-translate export/ --input test.de --beam 5 > test.hyp.en        # text in, text out

The language pair comes from the checkpoint, else --source-lang/--target-lang, else the file
names in --data (see un_fairseq.task_setup).
"""

import argparse
import importlib
import sys
from pathlib import Path
from typing import Optional

from un_atomic import atomic_dir
from un_translate import manifest as layout
from un_translate.manifest import DEFAULT_MAX_BEAM, INSTALL_EXTRA

from .. import fold, task_setup
from ..checkpoint_io import load_checkpoint

#: ``--int8`` schemes: every weight matmul as an integer product (:mod:`.int8`: 7-bit weights
#: per output channel, uint8 activations per row, scaled at run time); ``folded`` (the
#: default) quantises the folded weights, ``scaled`` first keeps a folded norm's scale as a
#: per-channel multiply before the matmuls (``fold.fold_model(keep_scale=True)``); measured on
#: test2016 in docs/export.md
INT8_SCHEMES = ("folded", "scaled")

#: what ``un-export`` imports from the ``export`` extra (onnxscript: torch's dynamo exporter)
EXTRA_MODULES = ("onnx", "onnxscript", "onnxruntime")


def missing_extra() -> Optional[str]:
    """The first module of the ``export`` extra that cannot be imported (None: all can)."""
    for name in EXTRA_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            return name
    return None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="un-export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="a transformer_un checkpoint (fairseq-train's)")
    p.add_argument("outdir", metavar="OUTDIR", help="the folder to write (must not exist, or see --overwrite)")
    task_setup.add_arguments(p)
    p.add_argument("--spm", metavar="MODEL",
                   help="the sentencepiece model the dictionaries were made with: stored in OUTDIR, so that "
                        "un-translate reads and writes text (without it: sentencepiece pieces)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier un-export folder (one with its manifest and nothing else), only "
                        "once the new one is complete; any other OUTDIR is refused and left as it is")
    p.add_argument("--opset", type=int, default=None,
                   help="ONNX opset (default: the exporter's, 20 with torch 2.13; >= 18)")
    p.add_argument("--max-beam", type=int, default=DEFAULT_MAX_BEAM, metavar="N",
                   help="the largest beam the graphs serve: each decoder step returns 2 x N candidates "
                        "per hypothesis (default: %(default)s)")
    p.add_argument("--int8", nargs="?", const="folded", default=None, choices=INT8_SCHEMES, metavar="SCHEME",
                   help="quantise the weight matmuls to int8 (7-bit weights per output channel, activations "
                        "per row: the same translations at any batch size): 'folded' (a bare --int8) quantises the "
                        "folded weights, 'scaled' keeps a folded norm's per-channel scale as a multiply before the matmuls; see docs/export.md. "
                        "The fp32 graphs are verified first")
    fold.add_verification_args(p)  # as un-fuse; --verify also compares ONNX Runtime with the checkpoint
    return p


def replace_refusal(outdir: Path, overwrite: bool) -> Optional[str]:
    """Why ``outdir`` must not be replaced (None: it may): it exists without --overwrite, or
    it is not an earlier export (a folder with its manifest, holding only what un-export writes)."""
    if not outdir.exists() and not outdir.is_symlink():
        return None
    if not overwrite:
        return f"{outdir} exists; give --overwrite to replace an earlier un-export folder"
    if outdir.is_symlink() or not outdir.is_dir() or not (outdir / layout.MANIFEST).is_file():
        return (f"{outdir} is not an earlier un-export folder (no {layout.MANIFEST}): --overwrite replaces "
                f"only those; nothing deleted")
    foreign = sorted(p.name for p in outdir.iterdir() if not layout.is_export_file(p.name))
    if foreign:
        return (f"{outdir} holds files un-export did not write ({', '.join(foreign[:3])}"
                f"{', ...' if len(foreign) > 3 else ''}): refusing to delete them; nothing deleted")
    return None


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    checkpoint, outdir = Path(args.checkpoint), Path(args.outdir)
    refusal = replace_refusal(outdir, args.overwrite)
    if refusal:
        print(f"un-export: error: {refusal}", file=sys.stderr)
        return 2
    if args.max_beam < 1:
        print(f"un-export: error: --max-beam {args.max_beam}: give a whole number >= 1", file=sys.stderr)
        return 2
    if args.opset is not None and args.opset < 18:
        print(f"un-export: error: --opset {args.opset}: the dynamo exporter writes opset 18 or later",
              file=sys.stderr)
        return 2
    missing = missing_extra()
    if missing:
        print(f"un-export: error: un-export needs {missing}, which is not installed: {INSTALL_EXTRA}",
              file=sys.stderr)
        return 2
    from . import exporter, sentencepiece_model  # onnx and the exporter load here, after the arguments are checked

    try:
        if args.spm is not None and not Path(args.spm).is_file():
            raise FileNotFoundError(f"--spm {args.spm}: no such file")
        state, setup = task_setup.prepare(load_checkpoint(checkpoint), args.data, args.source_lang,
                                          args.target_lang, args.gen_subset)
        print(setup.pair_line())
        task, model, reference, report = exporter.prepare(state, None, keep_scale=args.int8 == "scaled",
                                                          **fold.verification(args, setup.split))
        with atomic_dir(outdir) as tmp:
            spm = sentencepiece_model.store(Path(args.spm), tmp, task) if args.spm else None
            exporter.export_graphs(model, tmp, args.opset, args.max_beam)
            dictionaries = exporter.write_dictionaries(task, tmp)
            counts = exporter.census(tmp)
            # the manifest first: the ONNX Runtime check reads the folder as un-translate does
            exporter.write_manifest(tmp, checkpoint, model, report, dictionaries, counts, None, args.max_beam, spm)
            worst = exporter.check_with_onnxruntime(tmp, task, reference, args.tolerance) if args.verify else None
            if args.int8:
                report["int8"] = {"scheme": args.int8, **exporter.quantize(tmp)}
                counts = exporter.census(tmp)
                report["int8"]["largest_log_prob_difference"] = exporter.check_with_onnxruntime(
                    tmp, task, reference, float("inf"))
            manifest = exporter.write_manifest(tmp, checkpoint, model, report, dictionaries, counts, worst,
                                              args.max_beam, spm)
    except fold.FAILURES as err:
        return fold.failed("un-export", err)
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(report["norm_types"].items()))
    print(f"norms: {kinds}; " + ("folded (largest change: encoder {encoder_out:.3g}, decoder log-probs "
                                 "{decoder_log_probs:.3g})".format(**report["fold_check"])
                                 if report["folded"] else "exported as they are (not foldable or nothing to fold)")
          + (f"; fold checked on {setup.verification()}" if report["folded"] else ""))
    for line in exporter.census_lines(counts):
        print(line)
    if worst is not None:
        print(f"ONNX Runtime vs the checkpoint: largest log-probability difference {worst:.3g}")
    if args.int8:
        print(f"int8 ({args.int8}): {sum(report['int8']['quantized_matmuls'].values())} weight matmuls quantised; "
              f"largest log-probability difference to the checkpoint "
              f"{report['int8']['largest_log_prob_difference']:.3g} (not a failure: int8 rounds)")
    if spm:
        print(f"sentencepiece model {spm['from']} ({spm['pieces']} pieces) stored: un-translate reads and writes text")
    sizes = {name: g["bytes"] / 2**20 for name, g in manifest["graphs"].items()}
    print(f"wrote {outdir}: opset {manifest['exporter']['opset']}, "
          + ", ".join(f"{name} {mib:.1f} MiB" for name, mib in sizes.items()))
    return 0

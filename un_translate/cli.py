"""un-translate: translate tokenised text with an ``un-export`` folder on ONNX Runtime,
with fairseq-generate's beam search, printing ``H-<line>\\t<score>\\t<hypothesis>`` per input
line (score in base 2, as fairseq-generate prints it).

    un-translate export/ --input test.de --beam 5 --remove-bpe > hyps.txt
"""

import argparse
import sys
import time

from .beam_search import SearchOptions, base2
from .manifest import ExportError, MissingDependency
from .onnx_model import SPINNING
from .vocabulary import BPE_SYMBOLS

DEFAULTS = SearchOptions()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="un-translate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", metavar="OUTDIR", help="a folder written by un-export")
    p.add_argument("--input", required=True, metavar="FILE",
                   help="one tokenised source sentence per line, in the exported dictionary's units "
                        "(BPE applied); '-' reads stdin")
    p.add_argument("--beam", type=int, default=DEFAULTS.beam, help=f"beam size (default: {DEFAULTS.beam})")
    p.add_argument("--nbest", type=int, default=1, help="hypotheses printed per line (default: 1)")
    p.add_argument("--lenpen", type=float, default=DEFAULTS.len_penalty,
                   help="length penalty: score / length**lenpen; < 1 favours shorter, > 1 longer "
                        f"(default: {DEFAULTS.len_penalty:g})")
    p.add_argument("--unkpen", type=float, default=DEFAULTS.unk_penalty,
                   help=f"subtracted from unk's log-probability (default: {DEFAULTS.unk_penalty:g})")
    p.add_argument("--max-len-a", type=float, default=DEFAULTS.max_len_a,
                   help="maximum length a * x + b, x = the source length with eos "
                        f"(default: a = {DEFAULTS.max_len_a:g})")
    p.add_argument("--max-len-b", type=int, default=DEFAULTS.max_len_b,
                   help=f"see --max-len-a (default: b = {DEFAULTS.max_len_b})")
    p.add_argument("--min-len", type=int, default=DEFAULTS.min_len,
                   help=f"minimum length without eos (default: {DEFAULTS.min_len})")
    p.add_argument("--batch-size", type=int, default=16, metavar="N",
                   help="sentences decoded together (default: 16)")
    p.add_argument("--remove-bpe", nargs="?", const="@@ ", default=None, metavar="SYMBOL",
                   help="remove BPE from the output like fairseq's --remove-bpe (a bare flag: '@@ '); "
                        f"one of {', '.join(map(repr, BPE_SYMBOLS))}")
    p.add_argument("--threads", type=int, default=None,
                   help="ONNX Runtime intra-op threads per graph (default: ONNX Runtime's)")
    p.add_argument("--spinning", choices=SPINNING, default="auto",
                   help="let idle ONNX Runtime threads busy-wait for work: auto (default) spins only when "
                        "--threads fit in the cores the load average leaves free")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if args.remove_bpe is not None and args.remove_bpe not in BPE_SYMBOLS:
        parser().error(f"--remove-bpe {args.remove_bpe!r}: choose one of {', '.join(map(repr, BPE_SYMBOLS))}")
    if args.nbest < 1 or args.nbest > args.beam:
        parser().error(f"--nbest {args.nbest}: give a number from 1 to --beam ({args.beam})")
    try:
        from .translator import Translator  # onnxruntime loads here, after the arguments are checked

        translator = Translator(args.folder, batch_size=args.batch_size, threads=args.threads, spinning=args.spinning,
                                remove_bpe=args.remove_bpe, beam=args.beam, len_penalty=args.lenpen,
                                unk_penalty=args.unkpen, max_len_a=args.max_len_a,
                                max_len_b=args.max_len_b, min_len=args.min_len)
        stream = sys.stdin if args.input == "-" else open(args.input, encoding="utf-8")
        with stream:
            lines = stream.read().splitlines()
        start = time.perf_counter()
        results = translator.translate(lines)
        seconds = time.perf_counter() - start
    except (ExportError, MissingDependency, ValueError, OSError) as err:
        print(f"un-translate: error: {err}", file=sys.stderr)
        return 2
    for i, hyps in enumerate(results):
        for hyp in hyps[:args.nbest]:
            print(f"H-{i}\t{base2(hyp.score)}\t{translator.detokenize(hyp)}")
    print(f"un-translate: {len(lines)} sentences in {seconds:.2f} s ({len(lines) / max(seconds, 1e-9):.1f} "
          f"sentences/s), beam {args.beam}", file=sys.stderr)
    return 0

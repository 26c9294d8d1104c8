"""un-translate: translate with an ``un-export`` folder on ONNX Runtime, with
fairseq-generate's beam search.

A folder exported with ``--spm MODEL`` reads text (one sentence a line, preprocessed as the
training data was, e.g. lowercased and tokenised) and writes one translated line per input
line, in order, decoded with that model. A folder without one reads and writes the
dictionary's pieces. ``--format fairseq`` prints fairseq-generate's
``H-<line>\\t<score>\\t<hypothesis>`` (score in base 2) instead. A blank line is not
translated: it gives a blank line (no H line). A summary goes to stderr at the end.

    un-translate export/ --input test.de --beam 5 > test.hyp.en
    sacrebleu test.en -i test.hyp.en
"""

import argparse
import os
import sys
import time
from typing import List, TextIO

from .beam_search import SearchOptions, base2
from .manifest import ExportError, MissingDependency
from .onnx_model import SPINNING
from .vocabulary import BPE_SYMBOLS

DEFAULTS = SearchOptions()
FORMATS = ("text", "fairseq")
#: above this share of unknown source tokens the summary warns that the input does not look
#: like the training data
UNK_WARNING = 0.05
#: inputs of at least this many sentences show progress on a terminal
PROGRESS_MIN_LINES = 200
#: the exit status after the reader of stdout went away (as a shell reports a SIGPIPE)
BROKEN_PIPE = 141


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="un-translate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", metavar="OUTDIR", help="a folder written by un-export")
    p.add_argument("--input", required=True, metavar="FILE",
                   help="one source sentence per line ('-': stdin): text when OUTDIR stores a sentencepiece "
                        "model (un-export --spm), else the dictionary's pieces (BPE applied)")
    p.add_argument("--format", choices=FORMATS, default=None,
                   help="text: one hypothesis per input line; fairseq: fairseq-generate's H-<line><TAB><score>"
                        "<TAB><hypothesis> lines (default: text when OUTDIR stores a sentencepiece model, "
                        "else fairseq)")
    p.add_argument("--pieces", action="store_true",
                   help="read and write the dictionary's pieces even when OUTDIR stores a sentencepiece model")
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
                   help="for pieces output: remove BPE like fairseq's --remove-bpe (a bare flag: '@@ '; "
                        "'sentencepiece' for sentencepiece pieces); "
                        f"one of {', '.join(map(repr, BPE_SYMBOLS))}")
    p.add_argument("--threads", type=int, default=None,
                   help="ONNX Runtime intra-op threads per graph (default: ONNX Runtime's)")
    p.add_argument("--spinning", choices=SPINNING, default="auto",
                   help="let idle ONNX Runtime threads busy-wait for work: auto (default) spins only when "
                        "--threads fit in the cores the load average leaves free")
    return p


def read_lines(path: str) -> List[str]:
    """The input's lines without their line ends (a last line without one included)."""
    stream = sys.stdin if path == "-" else open(path, encoding="utf-8")
    with stream:
        return [line[:-1] if line.endswith("\n") else line for line in stream]


class Progress:
    """``done/total sentences`` rewritten in place on ``stream`` when it is a terminal and
    the input has at least ``PROGRESS_MIN_LINES`` sentences; silent otherwise."""

    def __init__(self, stream: TextIO, total: int) -> None:
        self.stream = stream
        self.active = total >= PROGRESS_MIN_LINES and stream.isatty()
        self.width = 0

    def __call__(self, done: int, total: int) -> None:
        if self.active:
            text = f"\run-translate: {done}/{total} sentences"
            self.width = len(text)
            self.stream.write(text)
            self.stream.flush()

    def clear(self) -> None:
        if self.active and self.width:
            self.stream.write("\r" + " " * self.width + "\r")


def summary(sentences: int, blank: int, seconds: float, beam: int, unk: int, tokens: int, text: bool) -> List[str]:
    """The lines printed on stderr at the end: counts, time, the share of unknown source tokens,
    and a warning when that share is above ``UNK_WARNING``."""
    share = unk / tokens if tokens else 0.0
    lines = [f"un-translate: {sentences} sentences ({blank} blank) in {seconds:.2f} s "
             f"({sentences / max(seconds, 1e-9):.1f} sentences/s), beam {beam}; <unk>: {unk} of {tokens} "
             f"source tokens ({share:.1%})"]
    if share > UNK_WARNING:
        hint = ("is the input preprocessed as the training data was (language, lowercasing, tokenisation)?" if text
                else "the input must be the dictionary's pieces: export with --spm MODEL to translate text")
        lines.append(f"un-translate: warning: {share:.0%} of the source tokens are unknown to the dictionary, "
                     f"so the translations are likely wrong; {hint}")
    return lines


def write_output(lines: List[str], results, translator, fmt: str, nbest: int) -> None:
    for i, (line, hyps) in enumerate(zip(lines, results)):
        if fmt == "text":
            print(translator.detokenize(hyps[0]) if hyps else "")
            continue
        for hyp in hyps[:nbest]:
            print(f"H-{i}\t{base2(hyp.score)}\t{translator.detokenize(hyp)}")


def _quiet_stdout() -> None:
    """After a closed pipe: send what is left in stdout's buffer nowhere (no second error at exit)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


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
                                max_len_b=args.max_len_b, min_len=args.min_len, text=not args.pieces)
        text = translator.sentencepiece is not None
        fmt = args.format or ("text" if text else "fairseq")
        if text and args.remove_bpe is not None:
            raise ValueError(f"--remove-bpe {args.remove_bpe}: {args.folder} decodes its output with its "
                             f"sentencepiece model; --remove-bpe applies to pieces (--pieces)")
        if fmt == "text" and args.nbest > 1:
            raise ValueError(f"--nbest {args.nbest}: text output has one line per input line; give --format "
                             f"fairseq for n-best lists")
        lines = read_lines(args.input)
        unk, tokens = translator.unknown_tokens(line for line in lines if line.strip())
        progress = Progress(sys.stderr, len(lines))
        start = time.perf_counter()
        results = translator.translate(lines, progress)
        seconds = time.perf_counter() - start
        progress.clear()
    except (ExportError, MissingDependency, ValueError, OSError) as err:
        print(f"un-translate: error: {err}", file=sys.stderr)
        return 2
    try:
        write_output(lines, results, translator, fmt, args.nbest)
        sys.stdout.flush()
    except BrokenPipeError:
        _quiet_stdout()
        return BROKEN_PIPE
    blank = sum(1 for line in lines if not line.strip())
    for line in summary(len(lines), blank, seconds, args.beam, unk, tokens, text):
        print(line, file=sys.stderr)
    return 0

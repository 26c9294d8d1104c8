"""Compare the unfused and the fused model's ``fairseq-generate`` outputs on one test set (the
last step of ``scripts/demo.sh``): the BLEU of both, whether every hypothesis is identical, each
model's translation speed as fairseq-generate measured it (its ``Translated N sentences ... in
Ts`` line: the generation loop only, model loading excluded), and a few example translations.

    python -m un_tools.reproduce.cli compare --unfused RUN/generate-test.txt \
        --fused RUN/generate-test-avg_fused.txt [--examples 5]

Exit status 1 when the BLEU scores differ (folding must not change the translations).
"""

import argparse
import re
import sys
from pathlib import Path
from typing import Dict, Optional

from .evaluate import parse_generate

_SPEED = re.compile(r"Translated ([\d,]+) sentences \(([\d,]+) tokens\) in ([\d.]+)s "
                    r"\(([\d.]+) sentences/s, ([\d.]+) tokens/s\)")


def parse_speed(text: str) -> Optional[Dict[str, float]]:
    """fairseq-generate's own timing line as numbers, or None if it has none."""
    m = _SPEED.search(text)
    if not m:
        return None
    return dict(sentences=int(m.group(1).replace(",", "")), tokens=int(m.group(2).replace(",", "")),
                seconds=float(m.group(3)), sentences_per_s=float(m.group(4)))


def sources(text: str) -> Dict[int, str]:
    out = {}
    for line in text.splitlines():
        if line.startswith("S-"):
            head, _, rest = line.partition("\t")
            out[int(head[2:])] = rest
    return out


def compare(unfused: Path, fused: Path, examples: int = 5, label: str = "UN") -> int:
    texts = {}
    for name, path in (("unfused", unfused), ("fused", fused)):
        if not Path(path).is_file():
            raise FileNotFoundError(f"--{name}: no fairseq-generate output at {path}")
        texts[name] = Path(path).read_text(errors="replace")
    parsed = {k: parse_generate(t) for k, t in texts.items()}
    for name, (bleu, *_rest) in parsed.items():
        if bleu is None:
            raise ValueError(f"--{name} {unfused if name == 'unfused' else fused}: no BLEU4 line "
                             f"(not a complete fairseq-generate output)")
    (b_u, line_u, hyps_u, refs), (b_f, line_f, hyps_f, _) = parsed["unfused"], parsed["fused"]
    same = sum(a == b for a, b in zip(hyps_u, hyps_f))
    print(f"BLEU, unfused model: {line_u}")
    print(f"BLEU, fused model:   {line_f}")
    print(f"identical hypotheses: {same} / {len(hyps_u)}")
    speed = {k: parse_speed(t) for k, t in texts.items()}
    if speed["unfused"] and speed["fused"]:
        u, f = speed["unfused"], speed["fused"]
        print(f"translation time (fairseq-generate's own measure, {u['sentences']:,} sentences, "
              f"same flags): unfused {u['seconds']:.1f} s ({u['sentences_per_s']:.1f} sentences/s), "
              f"fused {f['seconds']:.1f} s ({f['sentences_per_s']:.1f} sentences/s): the fused "
              f"model takes {f['seconds'] / u['seconds']:.2f}x the time")
    src = sources(texts["unfused"])
    ids = sorted(src)
    if examples and ids:
        print("example translations (test set, lowercased and tokenised as the model sees them):")
        step = max(1, len(ids) // examples)
        for k in range(0, len(ids), step)[:examples]:
            # parse_generate lists hypotheses and references in sentence-id order, like ids
            print(f"  source:      {src[ids[k]]}")
            print(f"  reference:   {refs[k]}")
            print(f"  {label} (fused): {hyps_f[k]}")
            print()
    if b_u != b_f:
        print(f"error: BLEU differs ({b_u} unfused vs {b_f} fused): folding changed the model",
              file=sys.stderr)
        return 1
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m un_tools.reproduce.cli compare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--unfused", required=True, help="fairseq-generate output of the unfused model")
    p.add_argument("--fused", required=True, help="fairseq-generate output of the fused model")
    p.add_argument("--examples", type=int, default=5, metavar="N", help="example translations to print")
    p.add_argument("--label", default="UN", help="the model's name in the examples (default: UN)")
    args = p.parse_args(argv)
    try:
        return compare(Path(args.unfused), Path(args.fused), args.examples, args.label)
    except (FileNotFoundError, ValueError) as err:
        print(f"compare: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

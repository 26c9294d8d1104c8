"""A fairseq dictionary file read without fairseq: symbols, encoding of a tokenised line,
and fairseq's ``Dictionary.string`` with its ``post_process`` (``--remove-bpe``)."""

import re
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np

SPACE = re.compile(r"\s+")
OVERWRITE = "#fairseq:overwrite"
#: the ``--remove-bpe`` values fairseq knows (``@@ `` is what a bare ``--remove-bpe`` means).
BPE_SYMBOLS = ("@@ ", "@@", "subword_nmt", "sentencepiece", "wordpiece", "letter", "silence", "_EOW", "none")


class Vocabulary:
    """Symbols of a fairseq ``dict.*.txt``, after the special symbols the file omits.

    ``specials`` maps ``bos``, ``pad``, ``eos``, ``unk`` to their indices and
    ``special_symbols`` lists the first ``nspecial`` symbols, both from the manifest.
    """

    def __init__(self, path, special_symbols: Sequence[str], specials: Dict[str, int]) -> None:
        self.symbols: List[str] = list(special_symbols)
        for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
            line = line.rstrip()
            if not line:
                continue
            try:
                word, field = line.rsplit(" ", 1)
                if field == OVERWRITE:
                    word, field = word.rsplit(" ", 1)
                int(field)
            except ValueError:
                raise ValueError(f"{path}:{number}: expected '<symbol> <count>', got {line!r}") from None
            self.symbols.append(word)
        self.indices = {s: i for i, s in enumerate(self.symbols)}
        self.bos, self.pad, self.eos, self.unk = (specials[k] for k in ("bos", "pad", "eos", "unk"))

    def __len__(self) -> int:
        return len(self.symbols)

    def encode(self, line: str) -> np.ndarray:
        """fairseq's ``encode_line``: whitespace-split words, unknown ones -> unk, then eos."""
        words = SPACE.sub(" ", line).strip().split()
        return np.array([self.indices.get(w, self.unk) for w in words] + [self.eos], dtype=np.int64)

    def pieces(self, tokens: Iterable[int]) -> List[str]:
        """The symbols of ``tokens``, bos and eos dropped."""
        skip = {self.eos, self.bos}
        return [self.symbols[t] for t in map(int, tokens) if t not in skip]

    def string(self, tokens: Iterable[int], remove_bpe: Optional[str] = None) -> str:
        """fairseq's ``Dictionary.string``: bos, eos (and pad) dropped, then ``post_process``."""
        return post_process(" ".join(self.pieces(tokens)), remove_bpe)


def post_process(sentence: str, symbol: Optional[str]) -> str:
    """fairseq's ``data_utils.post_process`` (``--remove-bpe``)."""
    if symbol is None or symbol == "none":
        return sentence
    if symbol == "sentencepiece":
        return sentence.replace(" ", "").replace("\u2581", " ").strip()
    if symbol == "wordpiece":
        return sentence.replace(" ", "").replace("_", " ").strip()
    if symbol == "letter":
        return sentence.replace(" ", "").replace("|", " ").strip()
    if symbol == "silence":
        return re.sub(" +", " ", sentence.replace("<SIL>", "")).strip()
    if symbol == "_EOW":
        return sentence.replace(" ", "").replace("_EOW", " ").strip()
    if symbol in ("subword_nmt", "@@ ", "@@"):
        symbol = "@@ " if symbol == "subword_nmt" else symbol
        return (sentence + " ").replace(symbol, "").rstrip()
    raise ValueError(f"unknown --remove-bpe {symbol!r}: choose one of {', '.join(map(repr, BPE_SYMBOLS))}")

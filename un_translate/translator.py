"""Translate with an ``un-export`` folder: text (or pieces) in, batching, beam search, text
(or pieces) out."""

from pathlib import Path
from typing import Callable, Iterable, List, Optional, Tuple

import numpy as np

from .beam_search import Hypothesis, SearchOptions, beam_search
from .manifest import SOURCE_DICT, TARGET_DICT
from .onnx_model import CPU_PROVIDERS, OnnxModel
from .text import load as load_sentencepiece
from .vocabulary import Vocabulary


class Translator:
    """Beam search over the exported graphs, as fairseq-generate would run the checkpoint.

        translator = Translator("export/", beam=5)
        for hyps in translator.translate(["a1 a2 a3"]):
            print(hyps[0].score, translator.detokenize(hyps[0]))

    Options are fairseq-generate's (:class:`SearchOptions`); ``batch_size`` sentences are
    decoded together (sorted by length, returned in input order); ``threads`` and
    ``spinning`` are ONNX Runtime's (:func:`~un_translate.onnx_model.session_options`), and
    ``providers`` its execution providers (the CPU's by default).

    A folder that stores a sentencepiece model (``un-export --spm``) takes text and gives
    text; ``text=False`` (and a folder without one) takes and gives the dictionary's pieces.
    A blank line is not translated: it gets no hypothesis.
    """

    def __init__(self, folder, batch_size: int = 16, threads: Optional[int] = None,
                 remove_bpe: Optional[str] = None, spinning: str = "auto",
                 providers=CPU_PROVIDERS, text: bool = True, **search) -> None:
        self.options = SearchOptions(**search)
        self.options.check()
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} is not allowed: give a whole number >= 1")
        self.batch_size = batch_size
        self.remove_bpe = remove_bpe
        self.model = OnnxModel(folder, threads=threads, spinning=spinning, providers=providers)
        manifest = self.model.manifest
        dicts = manifest["dictionaries"]
        self.src_vocab = Vocabulary(Path(folder) / SOURCE_DICT, dicts["source"]["special_symbols"], dicts["source"]["specials"])
        self.tgt_vocab = Vocabulary(Path(folder) / TARGET_DICT, dicts["target"]["special_symbols"], dicts["target"]["specials"])
        for side, vocab in (("source", self.src_vocab), ("target", self.tgt_vocab)):
            if len(vocab) != dicts[side]["size"]:
                raise ValueError(f"{folder}: the {side} dictionary has {len(vocab)} symbols, the "
                                 f"manifest says {dicts[side]['size']}")
        self.sentencepiece = load_sentencepiece(folder, manifest) if text else None
        self.max_source_positions = manifest["model"]["max_source_positions"]
        self.max_decoder_positions = manifest["model"]["max_decoder_positions"]

    def encode(self, line: str) -> np.ndarray:
        """A source line's token ids (eos last), through the sentencepiece model if any."""
        return self.src_vocab.encode(self.sentencepiece.encode(line) if self.sentencepiece else line)

    def unknown_tokens(self, lines: Iterable[str]) -> Tuple[int, int]:
        """``(unk, tokens)``: source tokens that the dictionary does not know, of all (eos excluded)."""
        unk = total = 0
        for line in lines:
            ids = self.encode(line)[:-1]
            unk, total = unk + int((ids == self.src_vocab.unk).sum()), total + len(ids)
        return unk, total

    def translate(self, lines: Iterable[str],
                  progress: Optional[Callable[[int, int], None]] = None) -> List[List[Hypothesis]]:
        """Every line's hypotheses, best first (``beam`` of them; none for a blank line).
        ``progress(done, total)`` is called after each batch."""
        encoded = [self.encode(line) if line.strip() else None for line in lines]
        for i, src in enumerate(encoded):
            if src is not None and len(src) > self.max_source_positions:
                raise ValueError(f"line {i + 1} has {len(src)} tokens (with eos); the model takes at most "
                                 f"{self.max_source_positions}")
        results: List[List[Hypothesis]] = [[] for _ in encoded]
        order = sorted((i for i, src in enumerate(encoded) if src is not None), key=lambda i: -len(encoded[i]))
        for start in range(0, len(order), self.batch_size):
            ids = order[start:start + self.batch_size]
            lengths = np.array([len(encoded[i]) for i in ids], dtype=np.int64)
            src = np.full((len(ids), int(lengths.max())), self.src_vocab.pad, dtype=np.int64)
            for row, i in enumerate(ids):
                src[row, :lengths[row]] = encoded[i]
            for i, hyps in zip(ids, beam_search(self.model, src, lengths, self.tgt_vocab, self.options,
                                                self.max_decoder_positions)):
                results[i] = hyps
            if progress is not None:
                progress(min(start + self.batch_size, len(order)), len(order))
        return results

    def detokenize(self, hypothesis: Hypothesis) -> str:
        """The hypothesis as text (decoded with the sentencepiece model), or as fairseq-generate's
        H line prints it (``--remove-bpe`` applied) when there is none."""
        if self.sentencepiece:
            return self.sentencepiece.decode(self.tgt_vocab.pieces(hypothesis.tokens))
        return self.tgt_vocab.string(hypothesis.tokens, self.remove_bpe)

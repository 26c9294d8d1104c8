"""Translate tokenised text with an ``un-export`` folder: batching, beam search, detokens."""

from pathlib import Path
from typing import Iterable, List, Optional

import numpy as np

from .beam_search import Hypothesis, SearchOptions, beam_search
from .manifest import SOURCE_DICT, TARGET_DICT
from .onnx_model import CPU_PROVIDERS, OnnxModel
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
    """

    def __init__(self, folder, batch_size: int = 16, threads: Optional[int] = None,
                 remove_bpe: Optional[str] = None, spinning: str = "auto",
                 providers=CPU_PROVIDERS, **search) -> None:
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
        self.max_source_positions = manifest["model"]["max_source_positions"]
        self.max_decoder_positions = manifest["model"]["max_decoder_positions"]

    def translate(self, lines: Iterable[str]) -> List[List[Hypothesis]]:
        """Every line's hypotheses, best first (``beam`` of them)."""
        encoded = [self.src_vocab.encode(line) for line in lines]
        for i, src in enumerate(encoded):
            if len(src) > self.max_source_positions:
                raise ValueError(f"line {i} has {len(src)} tokens (with eos); the model takes at most "
                                 f"{self.max_source_positions}")
        results: List[List[Hypothesis]] = [[] for _ in encoded]
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
        for start in range(0, len(order), self.batch_size):
            ids = order[start:start + self.batch_size]
            lengths = np.array([len(encoded[i]) for i in ids], dtype=np.int64)
            src = np.full((len(ids), int(lengths.max())), self.src_vocab.pad, dtype=np.int64)
            for row, i in enumerate(ids):
                src[row, :lengths[row]] = encoded[i]
            for i, hyps in zip(ids, beam_search(self.model, src, lengths, self.tgt_vocab, self.options,
                                                self.max_decoder_positions)):
                results[i] = hyps
        return results

    def detokenize(self, hypothesis: Hypothesis) -> str:
        """The hypothesis as fairseq-generate's H line prints it (``--remove-bpe`` applied)."""
        return self.tgt_vocab.string(hypothesis.tokens, self.remove_bpe)

"""The translation task a checkpoint needs at deployment: its language pair and the data
that verifies a fold, found from what a user has (``un-fuse`` and ``un-export``).

fairseq's translation task needs the language pair to load ``dict.SRC.txt`` and
``dict.TGT.txt``; a checkpoint trained without ``-s/-t`` does not store it, and fairseq then
infers it only from binarized file names (``train.de-en.de.bin``), so a folder holding only
the dictionaries fails. The pair is taken, in this order, from:

1. the checkpoint, when it names one (``--source-lang``/``--target-lang`` must agree);
2. ``--source-lang`` and ``--target-lang`` (one is enough when the folder holds two dictionaries);
3. the folder's file names: binarized files name the direction (fairseq's own inference);
   two dictionaries of different sizes are matched to the encoder's and the decoder's
   embedding rows. Two dictionaries of one size (a joined dictionary) build the same model
   either way but do not say which side is which: then the flags are needed.

Verification data: the first of ``valid``, ``test``, ``train`` binarized for the pair (or
the split asked for), else random tokens of the dictionaries.
"""

import argparse
import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

#: the splits searched for verification batches, in order
SPLITS = ("valid", "test", "train")
#: the special symbols fairseq's Dictionary puts before a dict.*.txt's symbols
NSPECIAL = 4


@dataclass
class TaskSetup:
    """What :func:`prepare` found: the pair, where it came from, the verification split."""

    data: str
    source: str
    target: str
    pair_from: str
    split: Optional[str]

    def pair_line(self) -> str:
        return f"language pair {self.source}-{self.target} (from {self.pair_from})"

    def verification(self) -> str:
        """What verifies the fold, as the commands print it."""
        if self.split:
            return f"the {self.split} split of {self.data}"
        return f"random tokens of the dictionaries, no binarized split being in {self.data}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--data``, ``-s/--source-lang`` and ``-t/--target-lang``, as un-fuse and un-export take them."""
    parser.add_argument("--data", metavar="DIR",
                        help="a folder with the checkpoint's dictionaries (dict.SRC.txt, dict.TGT.txt), and "
                             "binarized splits if any (default: the folder stored in the checkpoint). The fold "
                             "is verified on a binarized split when there is one, else on random tokens")
    parser.add_argument("-s", "--source-lang", metavar="SRC",
                        help="source language, for a checkpoint that names no pair when the file names in "
                             "--data do not settle it")
    parser.add_argument("-t", "--target-lang", metavar="TGT", help="target language (see --source-lang)")


def dictionary_languages(folder: Path) -> List[str]:
    """The ``L`` of every ``dict.L.txt`` in ``folder``, sorted."""
    return sorted(p.name[len("dict."):-len(".txt")] for p in folder.glob("dict.*.txt"))


def binarized_pair(folder: Path) -> Optional[Tuple[str, str]]:
    """``(src, tgt)`` named by a binarized file ``SPLIT.SRC-TGT.L.*`` in ``folder`` (fairseq's
    ``infer_language_pair``), None when there is none."""
    for path in sorted(folder.iterdir()):
        parts = path.name.split(".")
        if len(parts) >= 3 and len(parts[1].split("-")) == 2 and path.suffix in (".bin", ".idx"):
            src, tgt = parts[1].split("-")
            return src, tgt
    return None


def _symbols(path: Path) -> int:
    """Entries of a fairseq dictionary file, the special symbols included."""
    with open(path, encoding="utf-8") as f:
        return NSPECIAL + sum(1 for line in f if line.strip())


def _embedding_rows(model_state: Dict) -> Tuple[Optional[int], Optional[int]]:
    rows = [model_state.get(f"{side}.embed_tokens.weight") for side in ("encoder", "decoder")]
    return tuple(None if w is None else int(w.shape[0]) for w in rows)


def choose_pair(folder: Path, stored: Tuple[Optional[str], Optional[str]], model_state: Dict,
                source_lang: Optional[str] = None, target_lang: Optional[str] = None) -> Tuple[str, str, str]:
    """``(src, tgt, where from)`` in the order of the module's docstring; ValueError, naming
    what would settle it, when nothing does."""
    langs = dictionary_languages(folder)
    if all(stored):
        for flag, given, want in (("--source-lang", source_lang, stored[0]), ("--target-lang", target_lang, stored[1])):
            if given is not None and given != want:
                raise ValueError(f"{flag} {given}: the checkpoint was trained on {stored[0]}-{stored[1]}")
        return stored[0], stored[1], "the checkpoint"
    if source_lang and target_lang:
        return source_lang, target_lang, "--source-lang/--target-lang"
    if (source_lang or target_lang) and len(langs) == 2:
        given = source_lang or target_lang
        if given not in langs:
            raise ValueError(f"--{'source' if source_lang else 'target'}-lang {given}: {folder} holds "
                             f"dictionaries for {' and '.join(langs)} only")
        other = langs[1 - langs.index(given)]
        pair = (given, other) if source_lang else (other, given)
        return pair[0], pair[1], "--source-lang/--target-lang and the other dictionary"
    named = binarized_pair(folder)
    if named:
        return named[0], named[1], f"the binarized file names in {folder}"
    if len(langs) == 2:
        sizes = {lang: _symbols(folder / f"dict.{lang}.txt") for lang in langs}
        enc, dec = _embedding_rows(model_state)
        fits = [(s, t) for s, t in (langs, langs[::-1]) if sizes[s] == enc and sizes[t] == dec]
        if len(fits) == 1 and sizes[langs[0]] != sizes[langs[1]]:
            return fits[0][0], fits[0][1], "the dictionary sizes"
        why = ("two dictionaries of the same size (a joined dictionary) do not say which side is the source"
               if sizes[langs[0]] == sizes[langs[1]] else "neither order fits the model's embeddings")
    else:
        why = (f"it holds dictionaries for {', '.join(langs)}" if langs
               else "it holds no dict.*.txt (the dictionaries the model was trained with)")
    raise ValueError(f"the checkpoint names no language pair and {folder} does not settle it: {why}; "
                     f"give --source-lang SRC --target-lang TGT")


def find_split(folder: Path, source: str, target: str, wanted: Optional[str] = None) -> Optional[str]:
    """The split binarized for the pair in ``folder``: ``wanted`` (ValueError when absent) or
    the first of :data:`SPLITS` present; None when none is."""
    def present(split: str) -> bool:
        return any((folder / f"{split}.{a}-{b}.{source}.idx").is_file() for a, b in ((source, target), (target, source)))

    if wanted is not None:
        if not present(wanted):
            found = [s for s in SPLITS if present(s)]
            raise ValueError(f"--gen-subset {wanted}: {folder} holds no binarized {wanted} split for "
                             f"{source}-{target} (found: {', '.join(found) or 'none, only dictionaries'})")
        return wanted
    return next((s for s in SPLITS if present(s)), None)


def _stored(state: Dict, key: str):
    cfg = state.get("cfg")
    if state.get("args") is not None:  # fairseq rebuilds from args when a checkpoint has them
        return getattr(state["args"], key, None)
    return cfg["task"].get(key) if cfg is not None else None


def _set(state: Dict, **values) -> None:
    if state.get("args") is not None:
        for key, value in values.items():
            setattr(state["args"], key, value)
    if state.get("cfg") is not None:
        for key, value in values.items():
            state["cfg"]["task"][key] = value


def prepare(state: Dict, data: Optional[str] = None, source_lang: Optional[str] = None,
            target_lang: Optional[str] = None, split: Optional[str] = None) -> Tuple[Dict, TaskSetup]:
    """A shallow copy of a checkpoint's ``state`` whose task names ``data`` (default: the
    stored folder) and the language pair, and the :class:`TaskSetup` that says what was found.
    The copy rebuilds with :func:`un_fairseq.fold.build_from_state`; a checkpoint written
    from it names its pair. ValueError (one line) for a missing folder or an unsettled pair."""
    if state.get("cfg") is None and state.get("args") is None:
        raise ValueError("the checkpoint stores neither 'cfg' nor 'args': cannot rebuild its model")
    folder = str(data if data is not None else _stored(state, "data"))
    path = Path(folder.split(":")[0])
    if not path.is_dir():
        raise ValueError(f"data folder {folder} does not exist: give --data DIR, a folder with the "
                         f"checkpoint's dictionaries (dict.SRC.txt, dict.TGT.txt)")
    src, tgt, pair_from = choose_pair(path, (_stored(state, "source_lang"), _stored(state, "target_lang")),
                                      state.get("model", {}), source_lang, target_lang)
    for lang in (src, tgt):
        if not (path / f"dict.{lang}.txt").is_file():
            raise ValueError(f"{path} has no dict.{lang}.txt for the pair {src}-{tgt} (from {pair_from})")
    new = dict(state)
    for key in ("cfg", "args"):
        if state.get(key) is not None:
            new[key] = copy.deepcopy(state[key])
    _set(new, data=folder, source_lang=src, target_lang=tgt)
    return new, TaskSetup(folder, src, tgt, pair_from, find_split(path, src, tgt, split))

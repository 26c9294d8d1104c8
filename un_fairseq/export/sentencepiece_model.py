"""``un-export --spm MODEL``: the sentencepiece model stored in the export folder, so that
``un-translate`` reads text and writes text (``un_translate.text`` reads it back)."""

import shutil
from pathlib import Path
from typing import Dict

from un_translate import manifest as layout

#: below this share of a dictionary's symbols being pieces of the model, the model is not
#: the one the checkpoint was trained with
MIN_COVERAGE = 0.5


def store(model: Path, folder: Path, task) -> Dict:
    """Copy ``model`` into ``folder`` after checking that it loads and that the source and
    target dictionaries are made of its pieces; return the manifest's ``sentencepiece`` entry.
    ValueError (one line) otherwise."""
    import sentencepiece

    from .exporter import sha256

    model = Path(model)
    if not model.is_file():
        raise FileNotFoundError(f"--spm {model}: no such file")
    try:
        sp = sentencepiece.SentencePieceProcessor(model_file=str(model))
    except (RuntimeError, OSError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ValueError(f"--spm {model} is not a sentencepiece model: {first}") from None
    coverage = {}
    for side, d in (("source", task.source_dictionary), ("target", task.target_dictionary)):
        symbols = d.symbols[d.nspecial:]
        known = sum(1 for s in symbols if sp.piece_to_id(s) != sp.unk_id())
        coverage[side] = round(known / max(1, len(symbols)), 4)
        if coverage[side] < MIN_COVERAGE:
            raise ValueError(f"--spm {model}: only {coverage[side]:.0%} of the {side} dictionary's symbols are "
                             f"pieces of this model: not the sentencepiece model the checkpoint was trained with")
    shutil.copyfile(model, folder / layout.SPM_MODEL)
    return {"file": layout.SPM_MODEL, "from": model.name, "sha256": sha256(model), "pieces": sp.get_piece_size(),
            "dictionary_symbols_that_are_pieces": coverage}

"""Text in, text out: the sentencepiece model an ``un-export --spm`` folder stores turns each
input line into the dictionary's pieces and each hypothesis back into text.

Needs the ``sentencepiece`` package only for a folder that stores a model.
"""

from pathlib import Path
from typing import Dict, Optional, Sequence

from .manifest import MissingDependency

#: what installs the package that reads a stored sentencepiece model
INSTALL_SENTENCEPIECE = "pip install sentencepiece"


class SentencePiece:
    """The stored model: :meth:`encode` a line into space-separated pieces, :meth:`decode`
    pieces into text (sentencepiece's own decoding: ``\u2581`` becomes a space, an unknown
    piece ``\u2047``)."""

    def __init__(self, path) -> None:
        try:
            import sentencepiece
        except ImportError:
            raise MissingDependency("this export stores a sentencepiece model: reading text", "sentencepiece",
                                    INSTALL_SENTENCEPIECE) from None
        self.path = Path(path)
        self.processor = sentencepiece.SentencePieceProcessor(model_file=str(path))

    def encode(self, line: str) -> str:
        return " ".join(self.processor.encode(line, out_type=str))

    def decode(self, pieces: Sequence[str]) -> str:
        return self.processor.decode_pieces(list(pieces))


def load(folder, manifest: Dict) -> Optional[SentencePiece]:
    """The folder's sentencepiece model, None when its manifest names none (pieces in and out)."""
    entry = manifest.get("sentencepiece")
    return SentencePiece(Path(folder) / entry["file"]) if entry else None

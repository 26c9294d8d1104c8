"""un-translate: translate with an ``un-export`` folder on ONNX Runtime.

Needs only numpy and onnxruntime: importing this package loads no fairseq, torch or
checkpoint (it is a separate top-level package because ``import un_fairseq`` imports
fairseq). Beam search follows fairseq-generate's semantics and defaults.

    from un_translate import Translator
    translator = Translator("export/", beam=5)
    best = translator.translate(["a1 a2 a3"])[0][0]
"""

from .beam_search import Hypothesis, SearchOptions, beam_search

__all__ = ["Hypothesis", "SearchOptions", "Translator", "beam_search"]


def __getattr__(name):
    """``Translator`` is imported on first use, so that ``import un_translate`` (and
    ``un-translate --help``) work without onnxruntime."""
    if name == "Translator":
        from .translator import Translator

        return Translator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""un-translate: translate with an ``un-export`` folder on ONNX Runtime.

Needs only numpy and onnxruntime: importing this package loads no fairseq, torch or
checkpoint (it is a separate top-level package because ``import un_fairseq`` imports
fairseq). Beam search follows fairseq-generate's semantics and defaults.

    from un_translate import Translator
    translator = Translator("export/", beam=5)
    best = translator.translate(["a1 a2 a3"])[0][0]
"""

from .beam_search import Hypothesis, SearchOptions, beam_search
from .translator import Translator

__all__ = ["Hypothesis", "SearchOptions", "Translator", "beam_search"]

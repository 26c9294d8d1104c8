"""un-fairseq: Unified Normalization (Yang et al., ACM MM 2022) and the baselines of its
Table 1 as drop-in replacements for LayerNorm in fairseq's pre-norm Transformer.

Loaded by fairseq with ``--user-dir un_fairseq``: importing it registers the
``transformer_un*`` architectures and lets fairseq checkpoints load under torch's safe
``weights_only=True`` unpickler.
"""

from . import checkpoint_safety, models  # noqa: F401

checkpoint_safety.allow_fairseq_checkpoint_types()

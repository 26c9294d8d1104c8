"""un-fairseq: Unified Normalization (Yang et al., ACM MM 2022) and the baselines of its
Table 1 as drop-in replacements for LayerNorm in fairseq's pre-norm Transformer.

Loaded by fairseq with ``--user-dir un_fairseq``: importing it registers the
``transformer_un*`` architectures, lets fairseq checkpoints load under torch's safe
``weights_only=True`` unpickler, and connects the norms to fairseq's fp16 / amp optimizer
wrappers (loss scale, rollback of skipped updates: ``fp16_hooks.py``).
"""

import logging

# fairseq's text_to_speech task logs "Please install tensorboardX" when fairseq's tasks are
# imported, which the plugin's own commands (un-fuse, un-export, ...) would otherwise print first
logging.getLogger("fairseq.tasks.text_to_speech").setLevel(logging.WARNING)

from . import checkpoint_safety, fp16_hooks, models  # noqa: E402,F401

checkpoint_safety.allow_fairseq_checkpoint_types()
fp16_hooks.install()

"""un-fairseq: Unified Normalization (Yang et al., ACM MM 2022) and the baselines of its
Table 1 as drop-in replacements for LayerNorm in fairseq's pre-norm Transformer.

Loaded by fairseq with ``--user-dir un_fairseq``: importing it registers the
``transformer_un*`` architectures and lets fairseq checkpoints load under torch's safe
``weights_only=True`` unpickler. It changes nothing of fairseq: a run that trains with
``--fp16`` / ``--amp`` connects the norms to the optimizer's loss scale when it starts
(``fp16_hooks.py``).
"""

import logging

# fairseq's text_to_speech task logs "Please install tensorboardX" when fairseq's tasks are
# imported, which the plugin's own commands (un-fuse, un-export, ...) would otherwise print first
logging.getLogger("fairseq.tasks.text_to_speech").setLevel(logging.WARNING)

from . import checkpoint_io, models  # noqa: E402,F401

checkpoint_io.allow_fairseq_checkpoint_types()

"""Loading fairseq checkpoints under torch's safe unpickler.

Since torch 2.6, ``torch.load`` defaults to ``weights_only=True``, which refuses any class it
does not know; a fairseq checkpoint holds a few (its training arguments as an
``argparse.Namespace``, the enums of its config). Rather than turning the protection off, we
allow exactly those types, so that a checkpoint carrying anything else (a malicious pickle)
is still refused.
"""

import argparse

import torch

#: What a fairseq translation checkpoint (and its averaged or fused version) holds, besides
#: tensors and containers that torch already allows.
FAIRSEQ_CHECKPOINT_TYPES = [
    argparse.Namespace,  # the training arguments of legacy (argparse) models
]


def allow_fairseq_checkpoint_types() -> None:
    torch.serialization.add_safe_globals(FAIRSEQ_CHECKPOINT_TYPES)

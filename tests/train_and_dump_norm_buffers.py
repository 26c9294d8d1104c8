"""fairseq-train that also saves this rank's model buffers when it exits (tests only).

    python tests/train_and_dump_norm_buffers.py DUMP_DIR FAIRSEQ_TRAIN_ARGS...

Only rank 0's buffers reach fairseq's checkpoints; the multi-process tests start this in
place of fairseq-train (``scripts/train-distributed.sh --command``) to compare every
rank's normalizer statistics at the end of training: it writes ``DUMP_DIR/rank-R.pt``.
"""

import atexit
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from fairseq_cli.train import cli_main
from un_fairseq.models.transformer_un import TransformerUNModel


def dump_buffers_at_exit(dump_dir: Path) -> None:
    """Find the model at its first forward call, save its buffers when the process exits."""
    def capture(module, args):
        if isinstance(module, TransformerUNModel):
            handle.remove()
            rank = dist.get_rank() if dist.is_initialized() else 0
            atexit.register(lambda: torch.save(
                {k: v.detach().cpu().clone() for k, v in module.named_buffers()},
                dump_dir / f"rank-{rank}.pt"))

    handle = nn.modules.module.register_module_forward_pre_hook(capture)


if __name__ == "__main__":
    dump_buffers_at_exit(Path(sys.argv[1]))
    sys.argv = ["fairseq-train"] + sys.argv[2:]
    cli_main()

"""fairseq-train that records when each training forward call of the model starts.

    python -m un_tools.benchmarks.update_timer OUT_DIR FAIRSEQ_TRAIN_ARGS...

At exit each rank writes ``OUT_DIR/rank-R.json``: ``{"rank": R, "starts": [seconds, ...]}``
(``time.perf_counter`` at the start of every training forward of ``transformer_un``). With
``--update-freq 1`` consecutive differences are whole updates: forward, backward, gradient
all-reduce, optimizer step, data loading and logging, but not the start-up. Used by
``scripts/benchmark_distributed.py`` through ``scripts/train-distributed.sh --command``. A
worker: it imports fairseq and the plugin, which it runs.
"""

import atexit
import json
import sys
import time
from pathlib import Path

import torch.distributed as dist
from torch import nn

from fairseq_cli.train import cli_main
from un_fairseq.models.transformer_un import TransformerUNModel


def record_forward_starts(out_dir: Path) -> None:
    starts = []
    where = {}

    def record(module, args):
        if isinstance(module, TransformerUNModel) and module.training:
            starts.append(time.perf_counter())
            if not where:
                where["rank"] = dist.get_rank() if dist.is_initialized() else 0
                atexit.register(write)

    def write():
        path = out_dir / f"rank-{where['rank']}.json"
        path.write_text(json.dumps({"rank": where["rank"], "starts": starts}))

    nn.modules.module.register_module_forward_pre_hook(record)


if __name__ == "__main__":
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    record_forward_starts(out)
    sys.argv = ["fairseq-train"] + sys.argv[2:]
    cli_main()

"""Average the parameters and statistics of several fairseq checkpoints.

The same arithmetic as fairseq's ``scripts/average_checkpoints.py`` (which the wheel does
not ship and which would fail under torch's safe loading): floating-point tensors are
averaged; integer counters (``num_steps``, ``num_skips``, ``num_batches_tracked``) are taken
from the last checkpoint given (the newest, with ``--num-*-checkpoints``), since an average
of counts means nothing. Everything else (arguments, optimizer history) is kept from it too.

    un-average-checkpoints --inputs CKPT_DIR --num-epoch-checkpoints 10 --output avg.pt
"""

import argparse
import re
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Dict, List

import torch

from .checkpoint_io import load_checkpoint, save_atomically


def average_states(paths: List[Path]) -> Dict:
    """The state of the last of ``paths`` with its model averaged over all of them."""
    if not paths:
        raise ValueError("no checkpoints to average")
    sums: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    newest = None
    for path in paths:
        state = load_checkpoint(path)
        model = state["model"]
        if sums and set(model) != set(sums):
            raise ValueError(f"{path} does not hold the same parameters as {paths[0]}")
        for key, value in model.items():
            if value.is_floating_point():
                value = value.double()
                sums[key] = sums[key] + value if key in sums else value.clone()
            else:
                sums[key] = value  # counters: the newest wins
        newest = state
    newest["model"] = OrderedDict(
        (k, (v / len(paths)).to(newest["model"][k].dtype) if v.is_floating_point() else v)
        for k, v in sums.items()
    )
    return newest


def last_checkpoints(folder: Path, count: int, by_update: bool) -> List[Path]:
    """The ``count`` newest ``checkpointE.pt`` (or ``checkpoint_E_U.pt``) files in ``folder``,
    oldest first (so the newest is the one whose counters and arguments are kept)."""
    pattern = re.compile(r"checkpoint_\d+_(\d+)\.pt$" if by_update else r"checkpoint(\d+)\.pt$")
    found = sorted(
        ((int(m.group(1)), p) for p in folder.iterdir() if (m := pattern.match(p.name))),
        reverse=True,
    )
    if len(found) < count:
        kind = "update" if by_update else "epoch"
        raise ValueError(f"{folder} holds {len(found)} {kind} checkpoints, {count} were asked for")
    return [p for _, p in reversed(found[:count])]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="un-average-checkpoints", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", nargs="+", required=True,
                        help="checkpoint files, or one folder with --num-*-checkpoints")
    parser.add_argument("--output", required=True, help="file to write (atomically)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--num-epoch-checkpoints", type=int, metavar="N",
                       help="average the N newest checkpointE.pt files of the folder")
    group.add_argument("--num-update-checkpoints", type=int, metavar="N",
                       help="average the N newest checkpoint_E_U.pt files of the folder")
    args = parser.parse_args(argv)
    count = args.num_epoch_checkpoints or args.num_update_checkpoints
    try:
        if count:
            if len(args.inputs) != 1 or not Path(args.inputs[0]).is_dir():
                parser.error("--num-*-checkpoints needs exactly one folder in --inputs")
            paths = last_checkpoints(Path(args.inputs[0]), count, bool(args.num_update_checkpoints))
        else:
            paths = [Path(p) for p in args.inputs]
        if Path(args.output).resolve() in {p.resolve() for p in paths}:
            raise ValueError(f"--output {args.output} is one of the inputs: refusing to overwrite it")
        size = save_atomically(average_states(paths), args.output)
    except (ValueError, FileNotFoundError) as err:
        print(f"un-average-checkpoints: error: {err}", file=sys.stderr)
        return 2
    print(f"averaged {len(paths)} checkpoints: {', '.join(p.name for p in paths)}")
    print(f"wrote {args.output} ({size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

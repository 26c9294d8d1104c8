"""``un-fuse``: fold every offline normalizer of a ``transformer_un`` checkpoint into the linear
layers that read its output (paper Algorithm 1) and write a fairseq checkpoint with no
normalisation op; DyT and Derf fold their weight and bias the same way and keep their
``tanh`` / ``erf``. The fold pipeline (rebuild, fold, verification, its flags, defaults and
errors) is :func:`un_fairseq.fold.load_folded`, shared with ``un-export``; this module is the
command: refusals, atomic output, the summary.

    un-fuse checkpoint_best.pt checkpoint_fused.pt --data data-bin/iwslt14.tokenized.de-en

The language pair comes from the checkpoint, else -s/-t, else the file names in --data; the
fused checkpoint names it (details: un_fairseq/task_setup.py).
"""

import argparse
import sys
from pathlib import Path
from typing import Dict, Tuple

import torch
from torch import Tensor

from . import fold, task_setup
from .checkpoint_io import load_checkpoint, save_atomically

# -- the command ------------------------------------------------------------------------

def _summary(plain_sd: Dict[str, Tensor], fused_sd: Dict[str, Tensor]) -> Tuple[int, int, int]:
    """Tensors changed, added and removed between two state dicts."""
    changed = sum(1 for k in fused_sd if k in plain_sd and not torch.equal(fused_sd[k], plain_sd[k]))
    return changed, len(set(fused_sd) - set(plain_sd)), len(set(plain_sd) - set(fused_sd))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="un-fuse", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", help=f"a transformer_un checkpoint (norm types {fold.FOLDABLE})")
    parser.add_argument("output", help="the fused checkpoint to write (atomically; never the input)")
    task_setup.add_arguments(parser)
    fold.add_verification_args(parser)
    args = parser.parse_args(argv)

    src, dst = Path(args.input), Path(args.output)
    try:
        if dst.resolve() == src.resolve() or (dst.exists() and src.exists() and dst.samefile(src)):
            raise ValueError(f"output {dst} is the input: refusing to overwrite it")
        state, setup = task_setup.prepare(load_checkpoint(src), args.data, args.source_lang, args.target_lang,
                                          args.gen_subset)
        print(setup.pair_line())
        result = fold.load_folded(state, require_fold=True, **fold.verification(args, setup.split))
        print(f"verify ({setup.verification()}): largest difference: encoder output "
              f"{result.check['encoder_out']:.3g}, decoder log-probabilities "
              f"{result.check['decoder_log_probs']:.3g}; tolerance {args.tolerance:g} * (1 + |value|)"
              + ("" if args.verify else " (not enforced: --no-verify)"))
        new_state = fold.folded_state(state, result.model)
        size = save_atomically(new_state, dst)
    except fold.FAILURES as err:
        return fold.failed("un-fuse", err)
    changed, added, removed = _summary(result.reference.state_dict(), new_state["model"])
    kinds = result.norm_types
    folded = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()) if k != fold.IDENTITY) or "no norm"
    print(f"folded norms: {folded}; already {fold.IDENTITY!r}: {kinds.get(fold.IDENTITY, 0)}")
    print(f"parameters: {changed} tensors changed, {added} added (biases, untied output projection), "
          f"{removed} removed (norm parameters and statistics)")
    print(f"wrote {dst} ({size / 2**20:.1f} MiB; input {src.stat().st_size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``un-fuse``: fold every offline normalizer of a ``transformer_un`` checkpoint into the linear
layers that read its output (paper Algorithm 1) and write a fairseq checkpoint with no
normalisation op. Which norm folds into which linear layer, and the arithmetic, live in
:mod:`un_fairseq.fold` (shared with ``un-export``); this module is the command: verification
on real batches, refusals, atomic output.

    un-fuse checkpoint_best.pt checkpoint_fused.pt --data data-bin/iwslt14.tokenized.de-en

The language pair comes from the checkpoint, else -s/-t, else the file names in --data; the
fused checkpoint names it (details: un_fairseq/task_setup.py).
"""

import argparse
import copy
import sys
from pathlib import Path
from typing import Dict, Tuple

import torch
from torch import Tensor

from . import task_setup
from .checkpoint_io import load_checkpoint, save_atomically
from .fold import (build_from_state, check_foldable, compare, encoder_output_affine, fold_model, folded_state,
                   norm_kinds, verification_batches)

# -- the command ------------------------------------------------------------------------

def _summary(plain_sd: Dict[str, Tensor], fused_sd: Dict[str, Tensor]) -> Tuple[int, int, int]:
    """Tensors changed, added and removed between two state dicts."""
    changed = sum(1 for k in fused_sd if k in plain_sd and not torch.equal(fused_sd[k], plain_sd[k]))
    return changed, len(set(fused_sd) - set(plain_sd)), len(set(plain_sd) - set(fused_sd))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="un-fuse", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", help="a transformer_un checkpoint (every norm offline or 'none')")
    parser.add_argument("output", help="the fused checkpoint to write (atomically; never the input)")
    task_setup.add_arguments(parser)
    parser.add_argument("--gen-subset", default=None, metavar="SPLIT",
                        help="binarized split of --data used by --verify (default: the first of "
                             + ", ".join(task_setup.SPLITS) + " there, else random tokens)")
    parser.add_argument("--verify-batches", type=int, default=8, metavar="N",
                        help="batches compared by --verify (default: 8)")
    parser.add_argument("--verify", action=argparse.BooleanOptionalAction, default=True,
                        help="run the unfused and fused models in eval mode and fail (writing "
                             "nothing) if encoder outputs or decoder log-probabilities differ by "
                             "more than --tolerance (default: on; --no-verify skips it)")
    parser.add_argument("--tolerance", type=float, default=1e-4, metavar="TOL",
                        help="allowed |unfused - fused| per value, relative and absolute: "
                             "TOL * (1 + |unfused|) (default: 1e-4, for float32)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the random verification tokens")
    args = parser.parse_args(argv)

    src, dst = Path(args.input), Path(args.output)
    try:
        if dst.resolve() == src.resolve() or (dst.exists() and src.exists() and dst.samefile(src)):
            raise ValueError(f"output {dst} is the input: refusing to overwrite it")
        state, setup = task_setup.prepare(load_checkpoint(src), args.data, args.source_lang, args.target_lang,
                                          args.gen_subset)
        print(setup.pair_line())
        task, model = build_from_state(state)
        check_foldable(model)
        plain_sd = {k: v.clone() for k, v in model.state_dict().items()}
        plain = copy.deepcopy(model) if args.verify else None
        enc_affine = encoder_output_affine(model)
        kinds = norm_kinds(model)
        fold_model(model)
        if args.verify:
            worst_enc, worst_dec, bad = compare(task, plain, model, enc_affine,
                                                verification_batches(task, model, setup.split, args.verify_batches,
                                                                     args.seed),
                                                args.tolerance)
            print(f"verify ({setup.verification()}): largest difference: encoder output {worst_enc:.3g}, decoder "
                  f"log-probabilities {worst_dec:.3g}; tolerance {args.tolerance:g} * (1 + |value|)")
            if bad:
                raise ValueError(f"verification failed: {bad} values differ by more than the tolerance; "
                                 f"nothing written")
        new_state = folded_state(state, model)
        size = save_atomically(new_state, dst)
    except KeyboardInterrupt:
        print("un-fuse: interrupted; nothing written", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError) as err:
        print(f"un-fuse: error: {err}", file=sys.stderr)
        return 2
    changed, added, removed = _summary(plain_sd, new_state["model"])
    folded = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()) if k != "none") or "none"
    print(f"folded norms: {folded}; already 'none': {kinds.get('none', 0)}")
    print(f"parameters: {changed} tensors changed, {added} added (biases, untied output projection), "
          f"{removed} removed (norm parameters and statistics)")
    print(f"wrote {dst} ({size / 2**20:.1f} MiB; input {src.stat().st_size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

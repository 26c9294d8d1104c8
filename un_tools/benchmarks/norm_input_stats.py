"""What each norm of a trained ``transformer_un`` checkpoint hands to its sub-layer: the spread
of the per-token scale at every norm's input and output, on real batches.

LayerNorm gives every token the same root-mean-square (before its gain); a batch-statistics
norm (UN, BN, MABN, PN*) divides every token of a channel by the same number, so the tokens keep
their relative scales, and attention logits (quadratic in the scale) and ReLU FFNs see them.
This prints, per norm position, over the real (non-padding) tokens of ``--batches`` batches of
``--subset``, in eval mode:

- ``in rms``: median per-token RMS of the norm's input (the residual stream),
- ``in cv`` / ``out cv``: coefficient of variation (std / mean) of the per-token RMS of the
  input / output: 0 means every token has the same scale,
- ``out p99/p1``: ratio of the 99th to the 1st percentile of the output's per-token RMS.

    python scripts/norm_input_stats.py RUN/checkpoints/checkpoint2.pt --data work/m30k/bin
"""

import argparse
import statistics
from collections import defaultdict

import torch

from un_fairseq.modules import build_norm  # noqa: F401  (registers the plugin's types)


def per_token_rms(x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
    """``x``: T x B x C, ``pad``: B x T (True at padding) -> RMS of each real token (N)."""
    rms = x.float().pow(2).mean(-1).sqrt()  # T x B
    return rms.t()[~pad]


def main(argv=None) -> int:
    from fairseq import checkpoint_utils

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("--data", required=True, help="the binarized data folder the model was trained on")
    p.add_argument("--subset", default="valid")
    p.add_argument("--batches", type=int, default=4)
    p.add_argument("--max-tokens", type=int, default=4096)
    args = p.parse_args(argv)
    torch.manual_seed(0)
    models, _cfg, task = checkpoint_utils.load_model_ensemble_and_task(
        [args.checkpoint], arg_overrides={"data": args.data})
    model = models[0].eval()
    task.load_dataset(args.subset)
    itr = task.get_batch_iterator(task.dataset(args.subset), max_tokens=args.max_tokens,
                                  seed=1).next_epoch_itr(shuffle=False)
    stats = defaultdict(lambda: defaultdict(list))
    masks = {}

    def hook(name, side):
        def fn(module, inputs, output):
            pad = masks[side]
            stats[name]["in"].append(per_token_rms(inputs[0], pad))
            stats[name]["out"].append(per_token_rms(output, pad))
        return fn

    for name, module in model.named_modules():
        if name.endswith("layer_norm"):
            module.register_forward_hook(hook(name, name.split(".")[0]))
    with torch.no_grad():
        for i, sample in enumerate(itr):
            if i >= args.batches:
                break
            net = sample["net_input"]
            masks["encoder"] = net["src_tokens"].eq(task.source_dictionary.pad())
            masks["decoder"] = net["prev_output_tokens"].eq(task.target_dictionary.pad())
            model(**net)
    print(f"{args.checkpoint}: {args.batches} batches of {args.subset}, eval mode")
    print(f"{'norm':48s} {'in rms':>8s} {'in cv':>6s} {'out cv':>6s} {'out p99/p1':>10s}")
    cvs = []
    for name, s in stats.items():
        x_in, x_out = torch.cat(s["in"]), torch.cat(s["out"])
        cv_in = (x_in.std() / x_in.mean()).item()
        cv_out = (x_out.std() / x_out.mean()).item()
        q = torch.quantile(x_out, torch.tensor([0.01, 0.99]))
        cvs.append(cv_out)
        print(f"{name:48s} {x_in.median().item():8.2f} {cv_in:6.2f} {cv_out:6.2f} {(q[1] / q[0]).item():10.1f}")
    print(f"mean out cv over the {len(cvs)} norms: {statistics.fmean(cvs):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

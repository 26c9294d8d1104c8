"""How much a batch's statistics move from one training batch to the next at every norm of a
trained ``transformer_un`` checkpoint, and how much of that follows the batch's sentence length.

A batch-statistics norm divides a channel of every token by a number computed from whole
batches: UN's training forward divides batch ``t`` by the geometric mean of the quadratic means
``s`` of the last ``M`` batches (``docs/normalizers.md``, UN step 6), its inference by
``running_var``. fairseq builds each batch from sentences of similar length, so if ``s`` depends
on sentence length, consecutive batches differ and UN's window mixes them. Per norm position,
over ``--batches`` consecutive batches of ``--subset`` in training order (dropout active as in
training unless ``--no-dropout``; the norms run in eval mode, so nothing in the checkpoint's
state changes), with ``s_t`` the per-channel mean of ``x^2`` over the batch's real tokens (over
every position, padding included, with ``--count-padding``: the release's statistics, what a
model trained with ``--un-count-padding`` divides by; the default follows the checkpoint):

- ``sd log s``: standard deviation over batches of ``log s_t``, averaged over channels;
- ``rms d`` / ``p99 |d|``: ``d = log s_t - mean(log s_{t-M+1..t})``, the log of the ratio of a
  batch's own quadratic mean to the geometric mean UN divides it by (the output's scale is then
  off by ``exp(d/2)``): root mean square and 99th percentile of ``|d|`` over batches and channels;
- ``corr len``: Pearson correlation over batches of ``log`` (mean source length of the batch)
  with the channel average of ``log s_t``.

The statistics describe the norm's input, so they can be taken on any checkpoint (an LN model
shows what an offline norm would face on the same residual stream).

    python scripts/norm_batch_stats.py RUN/checkpoints/checkpoint3.pt --data work/m30k/bin
"""

import argparse
import os
from collections import defaultdict
from typing import Optional

import torch

from un_fairseq.models.norm_args import NORM_DEFAULTS


def quadratic_mean(x: torch.Tensor, pad: Optional[torch.Tensor]) -> torch.Tensor:
    """``x``: T x B x C, ``pad``: B x T (True at padding) -> ``mean(x^2)`` over real tokens (C),
    float64; over every position when ``pad`` is None."""
    rows = x.reshape(-1, x.shape[-1]) if pad is None else x.transpose(0, 1)[~pad]  # N x C
    return rows.double().pow(2).mean(0)


def window_log_deviation(log_s: torch.Tensor, window: int) -> torch.Tensor:
    """``log_s``: batches x C -> ``log_s[t] - mean(log_s[t-M+1..t])`` for ``t >= M-1``
    ((batches - M + 1) x C): the log of a batch's quadratic mean over the geometric mean of the
    window that ends with it."""
    if not 1 <= window <= log_s.shape[0]:
        raise ValueError(f"window {window} must be between 1 and the number of batches ({log_s.shape[0]})")
    return log_s[window - 1:] - log_s.unfold(0, window, 1).mean(-1)


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson correlation of two 1-d tensors."""
    a, b = a.double() - a.double().mean(), b.double() - b.double().mean()
    return float((a * b).sum() / (a.norm() * b.norm()))


def main(argv=None) -> int:
    from fairseq import checkpoint_utils
    from fairseq.modules import FairseqDropout

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("--data", required=True, help="the binarized data folder the model was trained on")
    p.add_argument("--subset", default="train")
    p.add_argument("--batches", type=int, default=80, help="consecutive batches to read (default: 80)")
    p.add_argument("--max-tokens", type=int, default=4096, help="tokens per batch, as in training (default: 4096)")
    p.add_argument("--window", type=int, default=None,
                   help="M; default: the checkpoint's UN forward window, else UN's default "
                        f"({NORM_DEFAULTS['un_window']})")
    p.add_argument("--epoch", type=int, default=1, help="the epoch whose batch order is read (default: 1)")
    p.add_argument("--seed", type=int, default=1, help="the training seed (sets the batch order; default: 1)")
    p.add_argument("--no-dropout", action="store_true", help="statistics without dropout (inference's input)")
    p.add_argument("--count-padding", action=argparse.BooleanOptionalAction, default=None,
                   help="s_t over every position, padding included (as --un-count-padding trains); "
                        "default: as the checkpoint's norms count, else real tokens only")
    args = p.parse_args(argv)
    if args.batches < 2:
        p.error(f"--batches {args.batches}: need at least 2")
    for path, what in ((args.checkpoint, "checkpoint"), (args.data, "--data folder")):
        if not os.path.exists(path):
            p.error(f"{what} not found: {path}")

    torch.manual_seed(args.seed)
    models, _cfg, task = checkpoint_utils.load_model_ensemble_and_task(
        [args.checkpoint], arg_overrides={"data": args.data})
    model = models[0].eval()
    if not args.no_dropout:
        for module in model.modules():
            if isinstance(module, FairseqDropout):
                module.train()
    norms = [(n, m) for n, m in model.named_modules() if n.endswith("layer_norm")]
    window = args.window if args.window is not None else next(
        (m.fwd_window for _, m in norms if hasattr(m, "fwd_window")), NORM_DEFAULTS["un_window"])
    count_padding = args.count_padding if args.count_padding is not None else any(
        getattr(m, "count_padding", False) for _, m in norms)
    if not 1 <= window <= args.batches:
        p.error(f"--window {window}: must be between 1 and --batches ({args.batches})")

    task.load_dataset(args.subset)
    itr = task.get_batch_iterator(task.dataset(args.subset), max_tokens=args.max_tokens, seed=args.seed,
                                  epoch=args.epoch).next_epoch_itr(shuffle=args.subset == "train")
    log_s, lengths, masks = defaultdict(list), [], {}

    def hook(name, side):
        def fn(module, inputs):
            log_s[name].append(quadratic_mean(inputs[0], None if count_padding else masks[side]).log())
        return fn

    for name, module in norms:
        module.register_forward_pre_hook(hook(name, name.split(".")[0]))
    with torch.no_grad():
        for sample in itr:
            if len(lengths) == args.batches:
                break
            net = sample["net_input"]
            masks["encoder"] = net["src_tokens"].eq(task.source_dictionary.pad())
            masks["decoder"] = net["prev_output_tokens"].eq(task.target_dictionary.pad())
            lengths.append(float(net["src_lengths"].double().mean()))
            model(**net)
    if len(lengths) < window:
        print(f"error: {args.subset} has {len(lengths)} batches, fewer than the window {window}")
        return 2
    log_len = torch.tensor(lengths, dtype=torch.float64).log()
    print(f"{args.checkpoint}: {len(lengths)} consecutive batches of {args.subset} (epoch {args.epoch}, "
          f"seed {args.seed}), window M = {window}, dropout {'off' if args.no_dropout else 'on'}, "
          f"s_t over {'every position (padding counted)' if count_padding else 'real tokens'}; "
          f"mean source length per batch {min(lengths):.1f} to {max(lengths):.1f}")
    print(f"{'norm':42s} {'sd log s':>8s} {'rms d':>6s} {'p99 |d|':>7s} {'corr len':>8s}")
    for name, _ in norms:
        ls = torch.stack(log_s[name])  # batches x C
        d = window_log_deviation(ls, window).abs()
        print(f"{name:42s} {ls.std(0).mean().item():8.3f} {d.pow(2).mean().sqrt().item():6.3f} "
              f"{torch.quantile(d.flatten(), 0.99).item():7.3f} {pearson(log_len, ls.mean(1)):+8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

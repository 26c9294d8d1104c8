"""One rank of the 2-process tests of ``sync_stats`` (tests/test_distributed.py starts it).

    python tests/distributed_worker.py JOB RANK WORLD_SIZE STORE OUT

Joins a gloo process group through the file ``STORE``, runs every case of ``JOB`` (written by
the test: full batches, which columns of the batch are this rank's, start states) on its
share of each batch with ``sync_stats=True``, and saves what it computed to ``OUT``: per
step the output and input gradient of its rows, its parameter gradients and the norm's
buffers. The test compares them with one process on the full batches.

Two kinds of case: ``norm`` (one normalizer, forward and backward per step) and ``model``
(a small model trained with fairseq's LegacyDistributedDataParallel and the gradient
scaling of fairseq's trainer: summed losses, gradients averaged over ranks by DDP, then
multiplied by world size / total sample size).
"""

import sys

import torch
import torch.distributed as dist
from torch import nn

from fairseq.distributed import LegacyDistributedDataParallel
from un_fairseq.modules import build_norm


class TinyModel(nn.Module):
    """``Linear -> norm -> Linear`` on ``T x B x C_in``, so that gradients through the norm's
    statistics reach a parameter below it (BN) and the norm's own parameters are trained."""

    def __init__(self, kind, options, c_in=6, c=8, sync_stats=False):
        super().__init__()
        self.lin1 = nn.Linear(c_in, c)
        self.norm = build_norm(kind, c, sync_stats=sync_stats, **options)
        self.lin2 = nn.Linear(c, 3)

    def forward(self, x, mask):
        return self.lin2(self.norm(self.lin1(x), padding_mask=mask))


def model_loss(out, target, mask):
    """Summed over real tokens, as fairseq's criteria do; returns (loss, sample size)."""
    keep = (~mask).t().unsqueeze(-1).to(out.dtype)
    return 0.5 * ((out - target) ** 2 * keep).sum(), keep.sum()


def own(tensor, cols, batch_dim):
    return tensor.narrow(batch_dim, cols[0], cols[1] - cols[0]).clone()


def run_norm_case(case, cols):
    norm = build_norm(case["kind"], case["weight"].numel(), sync_stats=True, **case["options"])
    with torch.no_grad():
        norm.weight.copy_(case["weight"])
        norm.bias.copy_(case["bias"])
    if case["state"] is not None:
        state = norm.state_dict()
        state.update(case["state"])
        norm.load_state_dict(state)
    norm.train()
    records = []
    for step in case["steps"]:
        x = own(step["x"], cols, 1).requires_grad_(True)
        mask = own(step["mask"], cols, 0)
        norm.weight.grad = norm.bias.grad = None
        y = norm(x, padding_mask=mask)
        y.backward(own(step["dy"], cols, 1))
        records.append(dict(
            y=y.detach(), dx=x.grad, dweight=norm.weight.grad.clone(), dbias=norm.bias.grad.clone(),
            buffers={k: v.clone() for k, v in norm.named_buffers()},
        ))
    return records


def run_model_case(case, cols):
    model = TinyModel(case["kind"], case["options"], sync_stats=True)
    model.load_state_dict(case["init"])
    ddp = LegacyDistributedDataParallel(model, dist.group.WORLD)
    optimizer = torch.optim.SGD(model.parameters(), lr=case["lr"])
    world = dist.get_world_size()
    records = []
    for step in case["steps"]:
        optimizer.zero_grad()
        mask = own(step["mask"], cols, 0)
        loss, sample_size = model_loss(ddp(own(step["x"], cols, 1), mask), own(step["target"], cols, 1), mask)
        loss.backward()
        ddp.all_reduce_grads()  # averages over ranks, as fairseq's legacy_ddp does
        dist.all_reduce(sample_size)  # fairseq's trainer sums the sample sizes over ranks
        for p in model.parameters():
            p.grad.mul_(world / sample_size)
        optimizer.step()
        records.append(dict(state={k: v.clone() for k, v in model.state_dict().items()}))
    return records


def main(job_path, rank, world_size, store, out_path):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world_size)
    job = torch.load(job_path)
    results = {}
    for name, case in job.items():
        cols = case["split"][rank]
        run = run_model_case if case["type"] == "model" else run_norm_case
        results[name] = run(case, cols)
    torch.save(results, out_path)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5])

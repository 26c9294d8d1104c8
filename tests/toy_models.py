"""Tiny ``transformer_un`` models on the toy corpus: built from fairseq's own argument
parser, trained a few Adam steps (which moves the weights and every running statistic), and
saved as fairseq-train saves a checkpoint."""

import torch
from omegaconf import OmegaConf
from torch import nn

import un_fairseq  # noqa: F401  (registers the models, allows fairseq checkpoint types)
from fairseq import options, tasks
from fairseq.dataclass.utils import convert_namespace_to_omegaconf
from fairseq_fixtures import TINY_MODEL

NORM_FLAGS = ["--un-warmup", "2", "--un-window", "2", "--mabn-warmup", "2", "--mabn-window", "2",
              "--pn-warmup", "2"]


def build(toy_data, *extra, arch=TINY_MODEL):
    norm_flags = NORM_FLAGS if arch[1].startswith("transformer_un") else []
    args = options.parse_args_and_arch(
        options.get_training_parser(),
        [str(toy_data), "--user-dir", "un_fairseq", *arch, "--cpu", "--dropout", "0", *norm_flags, *extra])
    task = tasks.setup_task(args)
    task.load_dataset("train")
    return args, task, task.build_model(args)


def batches(task, size=16):
    dataset = task.dataset("train")
    return [dataset.collater([dataset[i] for i in range(start, start + size)]) for start in range(0, 400, size)]


def train_steps(model, task, steps, lr=3e-3, seed=0):
    """Adam on token cross-entropy: moves the weights and every running statistic."""
    torch.manual_seed(seed)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    train_batches = batches(task)
    for step in range(steps):
        batch = train_batches[step % len(train_batches)]
        out = model(**batch["net_input"])
        lprobs = model.get_normalized_probs(out, log_probs=True)
        loss = nn.functional.nll_loss(lprobs.view(-1, lprobs.size(-1)), batch["target"].view(-1),
                                      ignore_index=task.target_dictionary.pad())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def save_checkpoint(args, model, path):
    """What fairseq-train stores: the cfg as a container and the model's state dict."""
    cfg = OmegaConf.to_container(convert_namespace_to_omegaconf(args))
    torch.save({"args": None, "cfg": cfg, "model": model.state_dict(),
                "optimizer_history": [{"criterion_name": "CrossEntropyCriterion", "optimizer_name": "Adam",
                                       "lr_scheduler_state": {}, "num_updates": 0}],
                "extra_state": {}, "last_optimizer_state": None}, path)
    return path

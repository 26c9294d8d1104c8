"""transformer_un in-process: norm placement, padding plumbing, incremental decoding, flag
validation and safe checkpoint loading."""

import os
import pickle
import subprocess
import sys

import pytest
import torch
from torch import nn

import un_fairseq  # noqa: F401  (registers the models, allows fairseq checkpoint types)
from fairseq import checkpoint_utils, options, tasks
from fairseq_fixtures import REPO, TINY_MODEL
from un_fairseq.modules import PaddingAwareNorm, norm_type_of, registry
from un_fairseq.modules.registry import flag_options

NORM_SPECS, NORM_TYPES = registry.norm_specs(), registry.norm_types()

ENCODER_POSITIONS = ("self_attn_layer_norm", "final_layer_norm")
DECODER_POSITIONS = ("self_attn_layer_norm", "encoder_attn_layer_norm", "final_layer_norm")


def parse(toy_data, *extra):
    parser = options.get_training_parser()
    return options.parse_args_and_arch(
        parser, [str(toy_data), "--user-dir", "un_fairseq", *TINY_MODEL, "--cpu", "--dropout", "0",
                 "--un-warmup", "2", "--un-window", "2", "--mabn-warmup", "2", "--mabn-window", "2",
                 "--pn-warmup", "2", *extra]
    )


def build(toy_data, *extra):
    args = parse(toy_data, *extra)
    task = tasks.setup_task(args)
    task.load_dataset("train")
    return task, task.build_model(args)


def norms_by_position(model):
    found = {}
    for side, positions in (("encoder", ENCODER_POSITIONS), ("decoder", DECODER_POSITIONS)):
        stack = getattr(model, side)
        for i, layer in enumerate(stack.layers):
            for name in positions:
                found[f"{side}.layers.{i}.{name}"] = getattr(layer, name)
        found[f"{side}.layer_norm"] = stack.layer_norm
    return found


def first_batch(task, size=8):
    dataset = task.dataset("train")
    return dataset.collater([dataset[i] for i in range(size)])


@pytest.mark.parametrize("norm", NORM_TYPES)
def test_every_pre_norm_position_holds_the_chosen_norm(toy_data, norm):
    _, model = build(toy_data, "--norm-type", norm)
    found = norms_by_position(model)
    assert len(found) == 2 * 2 + 2 * 3 + 2
    assert {norm_type_of(m) for m in found.values()} == {norm}
    assert model.encoder.cfg.encoder.normalize_before and model.decoder.cfg.decoder.normalize_before
    if norm != "layer":  # no LayerNorm is left anywhere
        assert not any(isinstance(m, nn.LayerNorm) for m in model.modules())


def test_side_overrides(toy_data):
    _, model = build(toy_data, "--norm-type", "un", "--encoder-norm-type", "layer", "--decoder-norm-type", "mabn")
    kinds = {k: norm_type_of(m) for k, m in norms_by_position(model).items()}
    assert {v for k, v in kinds.items() if k.startswith("encoder")} == {"layer"}
    assert {v for k, v in kinds.items() if k.startswith("decoder")} == {"mabn"}


def test_final_norm_override(toy_data):
    """--final-norm-type sets each stack's final norm and nothing else, over a side override too."""
    _, model = build(toy_data, "--norm-type", "un", "--decoder-norm-type", "mabn", "--final-norm-type", "layer")
    kinds = {k: norm_type_of(m) for k, m in norms_by_position(model).items()}
    assert {k for k, v in kinds.items() if v == "layer"} == {"encoder.layer_norm", "decoder.layer_norm"}
    assert {v for k, v in kinds.items() if k.startswith("encoder.layers")} == {"un"}
    assert {v for k, v in kinds.items() if k.startswith("decoder.layers")} == {"mabn"}


def test_parameter_names_are_fairseqs(toy_data):
    _, model = build(toy_data, "--norm-type", "un")
    keys = set(model.state_dict())
    for name in ("encoder.layers.0.self_attn_layer_norm.weight", "encoder.layer_norm.running_var",
                 "decoder.layers.1.encoder_attn_layer_norm.bias", "decoder.layer_norm.weight"):
        assert name in keys


def test_padding_mask_reaches_every_norm_in_training(toy_data):
    task, model = build(toy_data, "--norm-type", "un")
    sample = first_batch(task)
    src = sample["net_input"]["src_tokens"]
    prev = sample["net_input"]["prev_output_tokens"]
    pad = task.source_dictionary.pad()
    assert src.eq(pad).any() and prev.eq(pad).any(), "the batch must contain padding"
    seen = {}

    def spy(name):
        def hook(module, inputs):
            seen[name] = (inputs[0].shape, module.context_padding_mask)
        return hook

    for name, norm in norms_by_position(model).items():
        norm.register_forward_pre_hook(spy(name))
    model.train()
    model(**sample["net_input"])
    assert len(seen) == 12
    for name, (shape, mask) in seen.items():
        expected = src.eq(pad) if name.startswith("encoder") else prev.eq(pad)
        assert mask is not None and torch.equal(mask, expected), name
        assert shape[:2] == (mask.shape[1], mask.shape[0]), name
    # handed down only for the forward: nothing is left behind
    assert all(m.context_padding_mask is None for m in model.modules() if isinstance(m, PaddingAwareNorm))


@pytest.mark.parametrize("norm", NORM_TYPES)
def test_incremental_decoding_equals_full_forward(toy_data, norm):
    task, model = build(toy_data, "--norm-type", norm)
    sample = first_batch(task)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    model.train()
    for _ in range(4):  # move the running statistics past warmup
        out, _ = model(**sample["net_input"])
        out.float().logsumexp(-1).mean().backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    net = sample["net_input"]
    with torch.no_grad():
        enc = model.encoder(net["src_tokens"], net["src_lengths"])
        full, _ = model.decoder(net["prev_output_tokens"], encoder_out=enc)
        state = {}
        steps = []
        for t in range(net["prev_output_tokens"].shape[1]):
            step, _ = model.decoder(net["prev_output_tokens"][:, : t + 1], encoder_out=enc,
                                    incremental_state=state)
            steps.append(step)
    incremental = torch.cat(steps, dim=1)
    real = ~net["prev_output_tokens"].eq(task.target_dictionary.pad())
    torch.testing.assert_close(incremental[real], full[real], rtol=1e-4, atol=1e-4)


BAD_FLAGS = [
    (["--norm-type", "fancy"], "fancy", "choose from"),
    (["--un-window", "0"], "--un-window", ">= 1"),
    (["--un-window", "4,0"], "--un-window", ">= 1"),
    (["--un-momentum", "1.5"], "--un-momentum", "between 0 and 1"),
    (["--un-momentum", "0"], "--un-momentum", "between 0 and 1"),
    (["--un-warmup", "-5"], "--un-warmup", ">= 0"),
    (["--un-eps", "0"], "--un-eps", "> 0"),
    (["--mabn-momentum", "-0.1"], "--mabn-momentum", "between 0 and 1"),
    (["--dyt-alpha-init", "0"], "--dyt-alpha-init", "> 0"),
    (["--derf-alpha-init", "-0.5"], "--derf-alpha-init", "> 0"),
    (["--derf-shift-init", "nan"], "--derf-shift-init", "finite number"),
]


@pytest.mark.parametrize("flags,names,allowed", BAD_FLAGS, ids=[" ".join(f[0]) for f in BAD_FLAGS])
def test_bad_flag_stops_with_a_message(toy_data, capsys, flags, names, allowed):
    with pytest.raises(SystemExit) as stop:
        parse(toy_data, *flags)
    assert stop.value.code != 0
    err = capsys.readouterr().err
    assert names in err and flags[1] in err and allowed in err, err


def test_checkpoint_activations_are_refused(toy_data):
    args = parse(toy_data, "--checkpoint-activations")
    task = tasks.setup_task(args)
    with pytest.raises(ValueError, match="--checkpoint-activations"):
        task.build_model(args)


class _Payload:
    """An object whose unpickling would run code."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_checkpoint_with_eval_bleu_counts_loads(tmp_path):
    """--eval-bleu stores its n-gram counts as numpy arrays in the checkpoint's metrics."""
    import numpy as np

    path = tmp_path / "bleu.pt"
    counts = np.array([12, 7, 3, 1], dtype=np.int64)
    torch.save({"args": None, "cfg": None, "model": {"w": torch.zeros(1)},
                "extra_state": {"metrics": {"valid": {"_bleu_counts_": counts}}}}, path)
    state = torch.load(path, map_location="cpu", weights_only=True)  # fairseq's load, minus its upgrades
    assert np.array_equal(state["extra_state"]["metrics"]["valid"]["_bleu_counts_"], counts)


def test_malicious_checkpoint_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"args": None, "cfg": None, "model": {"w": torch.zeros(1)}, "extra": _Payload(marker)}, path)
    with pytest.raises(pickle.UnpicklingError):
        checkpoint_utils.load_checkpoint_to_cpu(str(path))
    assert not marker.exists()


def test_norm_flags_are_listed_with_their_help(capsys):
    """``python -m un_fairseq.norm_flags`` lists the norm flags alone."""
    from un_fairseq.models import norm_args

    assert norm_args.main() == 0
    out = capsys.readouterr().out
    for flag in ("--norm-type", *(opt.flag for opt, _ in flag_options().values())):
        assert flag in out
    assert "power_noscale" in out


def test_norm_flags_command_runs_as_documented():
    """The command the docs give for listing the flags (fairseq's --help shows no model flag)."""
    done = subprocess.run([sys.executable, "-m", "un_fairseq.norm_flags"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "--un-window" in done.stdout and "--norm-kernels" in done.stdout
    assert "Warning" not in done.stderr, done.stderr[-2000:]


# ------------------------------------------- every norm flag reaches the built modules
def other_value(opt):
    """A valid value of ``opt`` that is not its default: ``(command-line text, value)``."""
    if opt.kind == "flag":
        return None, not opt.default
    if opt.kind == "window":
        return str(opt.default + 1), opt.default + 1
    if opt.kind == "warmup":
        return str(opt.default + 7), opt.default + 7
    if opt.kind == "momentum":
        value = 0.77 if opt.default != 0.77 else 0.66
        return str(value), value
    if opt.kind == "eps":
        return "3e-05", 3e-5
    if opt.kind in ("real", "positive"):
        return str(opt.default + 0.25), opt.default + 0.25
    raise AssertionError(f"no test value for options of kind {opt.kind!r}: add one here")


FLAG_CASES = [(norm, dest) for dest, (_, norms) in flag_options().items() for norm in norms]


def built_norms(toy_data, *flags):
    args = options.parse_args_and_arch(
        options.get_training_parser(),
        [str(toy_data), "--user-dir", "un_fairseq", *TINY_MODEL, "--cpu", *flags])
    task = tasks.setup_task(args)
    return args, list(norms_by_position(task.build_model(args)).values())


def same(opt, got, expected):
    return opt.check(got) == opt.check(expected)


@pytest.mark.parametrize("norm,dest", FLAG_CASES, ids=[f"{n}-{d}" for n, d in FLAG_CASES])
def test_every_norm_flag_reaches_the_built_modules(toy_data, norm, dest):
    """Generated from the registry: a new option with a flag is covered without a new test."""
    opt, _ = flag_options()[dest]
    text, value = other_value(opt)
    flag = [opt.flag] if text is None else [opt.flag, text]
    _, norms = built_norms(toy_data, "--norm-type", norm, *flag)
    assert len(norms) == 12
    for module in norms:
        assert norm_type_of(module) == norm
        got = module.constructor_options()[opt.name]
        assert same(opt, got, value), f"{opt.flag} {text}: {norm} built with {opt.name}={got!r}"


@pytest.mark.parametrize("norm", [n for n in NORM_TYPES if NORM_SPECS[n].options])
def test_without_flags_the_modules_get_the_registry_defaults(toy_data, norm):
    args, norms = built_norms(toy_data, "--norm-type", norm, "--warmup-updates", "123")
    for opt in NORM_SPECS[norm].options:
        if opt.from_model is not None:
            expected = args.encoder_attention_heads  # == the decoder's in TINY_MODEL
        elif opt.fallback is not None:
            expected = getattr(args, opt.fallback)
        else:
            expected = opt.default
        for module in norms:
            got = module.constructor_options()[opt.name]
            assert same(opt, got, expected), f"{norm}: {opt.name}={got!r}, expected {expected!r}"

"""un-fuse: folding every offline norm into the next linear layers (spec, "Folding an offline
layer"), its refusals, its command, and fused checkpoints through the real fairseq-generate."""

import copy
import re
import sys

import pytest
import torch
from torch import nn

import un_fairseq  # noqa: F401  (registers the models, allows fairseq checkpoint types)
from fairseq_fixtures import REPO, TINY_MODEL, generate, run
from toy_models import batches, build, save_checkpoint, train_steps
from un_fairseq import fold, fuse
from un_fairseq.checkpoint_io import load_checkpoint
from un_fairseq.modules import NoNorm, PaddingAwareNorm
from un_fairseq.modules.registry import offline_norm_types

OFFLINE_NORM_TYPES = offline_norm_types()


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def outputs(model, batch):
    """Encoder output after the final encoder norm (T x B x C) and decoder log-probs."""
    with torch.no_grad():
        net = batch["net_input"]
        enc = model.encoder(net["src_tokens"], src_lengths=net["src_lengths"])
        dec = model.decoder(net["prev_output_tokens"], encoder_out=enc)
        return enc["encoder_out"][0], model.get_normalized_probs(dec, log_probs=True)


@pytest.mark.parametrize("norm", OFFLINE_NORM_TYPES + ("none",))
def test_fused_model_computes_the_eval_model(toy_data, norm):
    args, task, model = build(toy_data, "--norm-type", norm)
    with torch.no_grad():  # non-trivial affine parameters, so that W b and W * a both matter
        for m in model.modules():
            if isinstance(m, PaddingAwareNorm):
                m.weight.uniform_(0.5, 1.5), m.bias.uniform_(-0.5, 0.5)
    train_steps(model, task, 6)
    batch = batches(task)[3]
    enc_ref, dec_ref = outputs(model, batch)
    enc_affine = None if norm == "none" else model.encoder.layer_norm.inference_scale()

    fused = fold.fold_model(copy.deepcopy(model))
    enc, dec = outputs(fused, batch)
    if enc_affine is not None:  # the final encoder norm now lives in the cross-attention
        enc = enc * enc_affine[0] + enc_affine[1]
    real = ~batch["net_input"]["src_tokens"].eq(task.source_dictionary.pad()).t()
    torch.testing.assert_close(enc[real], enc_ref[real], rtol=1e-5, atol=1e-5)
    tgt = batch["target"].ne(task.target_dictionary.pad())
    torch.testing.assert_close(dec[tgt], dec_ref[tgt], rtol=1e-5, atol=1e-5)

    norms = [m for m in fused.modules() if isinstance(m, (PaddingAwareNorm, nn.LayerNorm, NoNorm))]
    assert norms and all(type(m) is NoNorm for m in norms)
    out_proj = fused.decoder.output_projection
    assert out_proj.bias is not None and out_proj.weight is not fused.decoder.embed_tokens.weight
    if norm != "none":  # the norms mattered: dropping them without folding changes the output
        dropped = copy.deepcopy(model)
        for name, m in list(dropped.named_modules()):
            if isinstance(m, PaddingAwareNorm):
                owner, _, attr = name.rpartition(".")
                setattr(dropped.get_submodule(owner), attr, NoNorm())
        assert (outputs(dropped, batch)[1] - dec_ref)[tgt].abs().max() > 1e-2


@pytest.mark.parametrize("norm", ["layer", "rms", "power"])
def test_online_norms_are_refused_by_name(toy_data, norm):
    _, _, model = build(toy_data, "--encoder-norm-type", "un", "--decoder-norm-type", norm)
    with pytest.raises(ValueError) as err:
        fold.fold_model(model)
    message = str(err.value)
    assert f"decoder.layers.0.self_attn_layer_norm ({norm})" in message
    assert "decoder.layer_norm" not in message  # an online final norm would be kept
    assert "encoder.layers" not in message
    assert all(kind in message for kind in OFFLINE_NORM_TYPES)
    assert type(model.encoder.layer_norm).__name__ == "UnifiedNorm"  # nothing was changed


def test_an_online_final_norm_is_kept_and_the_rest_folded(toy_data, tmp_path, capsys):
    """UN in the layers, LayerNorm as the final norms: un-fuse folds the layers' norms, keeps
    both LayerNorms and the tied output projection, and the rebuilt checkpoint computes the
    unfolded model's encoder outputs and log-probabilities."""
    args, task, model = build(toy_data, "--norm-type", "un", "--final-norm-type", "layer")
    model = train_steps(model, task, 6)
    ckpt = save_checkpoint(args, model, tmp_path / "un-ln.pt")
    out = tmp_path / "fused.pt"
    assert fuse.main([str(ckpt), str(out), "--data", str(toy_data)]) == 0
    assert "folded norms: 2 layer, 10 un" in capsys.readouterr().out
    cfg = load_checkpoint(out)["cfg"]["model"]
    assert (cfg.norm_type, cfg.final_norm_type, cfg.fused_output_projection) == ("none", "layer", False)
    _, rebuilt = fold.build_from_state(load_checkpoint(out), str(toy_data))
    kinds = {name: type(m).__name__ for name, m in rebuilt.named_modules() if name.endswith("layer_norm")}
    assert {k for k, v in kinds.items() if v != "NoNorm"} == {"encoder.layer_norm", "decoder.layer_norm"}
    batch = batches(task)[2]
    model.eval()
    for ref, got in zip(outputs(model, batch), outputs(rebuilt, batch)):
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


def test_a_fused_checkpoint_keeps_an_elementwise_final_norm(toy_data, tmp_path, capsys):
    """UN in the layers, DyT as the final norms: the fused checkpoint rebuilds identity layers
    and DyT final norms (its cfg says so), and un-fuse's check of it against the unfolded model
    passes."""
    args, task, model = build(toy_data, "--norm-type", "un", "--final-norm-type", "dyt")
    ckpt = save_checkpoint(args, train_steps(model, task, 6), tmp_path / "un-dyt.pt")
    out = tmp_path / "fused.pt"
    assert fuse.main([str(ckpt), str(out), "--data", str(toy_data)]) == 0
    assert "folded norms: 2 dyt, 10 un" in capsys.readouterr().out
    cfg = load_checkpoint(out)["cfg"]["model"]
    assert (cfg.norm_type, cfg.encoder_norm_type, cfg.decoder_norm_type, cfg.final_norm_type) == \
        ("none", None, None, "dyt")
    _, rebuilt = fold.build_from_state(load_checkpoint(out), str(toy_data))
    kinds = {name: type(m).__name__ for name, m in rebuilt.named_modules() if name.endswith("layer_norm")}
    assert {k for k, v in kinds.items() if v != "NoNorm"} == {"encoder.layer_norm", "decoder.layer_norm"}


def test_other_models_are_refused(toy_data, tmp_path):
    args, _, model = build(toy_data, arch=["--arch", "transformer", *TINY_MODEL[2:]])
    with pytest.raises(ValueError, match="transformer_un"):
        fold.fold_model(model)
    ckpt = save_checkpoint(args, model, tmp_path / "plain.pt")
    with pytest.raises(ValueError, match="not a transformer_un model: its arch is 'transformer'"):
        fold.load_folded(load_checkpoint(ckpt))


def test_command_refuses_its_input_and_leaves_nothing_after_a_failure(toy_data, tmp_path, capsys):
    args, task, model = build(toy_data, "--norm-type", "un")
    ckpt = save_checkpoint(args, train_steps(model, task, 4), tmp_path / "un.pt")
    before = ckpt.read_bytes()
    assert fuse.main([str(ckpt), str(tmp_path / "." / "un.pt")]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert ckpt.read_bytes() == before

    out = tmp_path / "fused.pt"
    assert fuse.main([str(ckpt), str(out), "--data", str(toy_data), "--tolerance", "1e-12"]) == 2
    assert "folding changed" in capsys.readouterr().err
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["un.pt"]

    args, task, model = build(toy_data, "--norm-type", "layer")
    online = save_checkpoint(args, model, tmp_path / "ln.pt")
    assert fuse.main([str(online), str(out)]) == 2
    assert "encoder.layers.0.self_attn_layer_norm (layer)" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("flags", [("--norm-type", "un"), ("--norm-type", "dyt"),
                                   ("--norm-type", "un", "--final-norm-type", "layer")], ids=["un", "dyt", "un-final-layer"])
def test_a_fused_checkpoint_is_not_fused_again(toy_data, tmp_path, capsys, flags):
    """un-fuse on its own output: one line saying there is nothing to fold, nothing written."""
    args, task, model = build(toy_data, *flags)
    ckpt = save_checkpoint(args, train_steps(model, task, 4), tmp_path / "model.pt")
    fused, again = tmp_path / "fused.pt", tmp_path / "again.pt"
    assert fuse.main([str(ckpt), str(fused), "--data", str(toy_data)]) == 0
    capsys.readouterr()
    assert fuse.main([str(fused), str(again), "--data", str(toy_data)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nothing left to fold" in err and "nothing written" in err, err
    assert not again.exists()


def test_console_command_help_lists_every_flag():
    text = run(["un-fuse", "--help"]).stdout
    for flag in ("--data", "--gen-subset", "--verify-batches", "--verify", "--no-verify", "--tolerance", "--seed"):
        assert flag in text


def _hypotheses(stdout):
    """``{id: (tokens, score)}`` of fairseq-generate's H lines, and its BLEU line."""
    hyps = {}
    for line in stdout.splitlines():
        if line.startswith("H-"):
            key, score, text = line.split("\t")
            hyps[key] = (text, float(score))
    return hyps, re.search(r"BLEU4 = .*", stdout).group(0)


def test_fused_checkpoint_generates_the_same_hypotheses(toy_data, tmp_path, capsys):
    args, task, model = build(toy_data, "--norm-type", "un", "--share-all-embeddings")
    ckpt = save_checkpoint(args, train_steps(model, task, 150), tmp_path / "un.pt")
    out = tmp_path / "fused.pt"
    assert fuse.main([str(ckpt), str(out), "--data", str(toy_data)]) == 0  # un-fuse, in-process
    printed = capsys.readouterr().out
    assert "folded norms: 12 un" in printed and "largest difference" in printed
    state = load_checkpoint(out)
    assert state["cfg"]["model"].norm_type == "none" and state["cfg"]["model"].fused_output_projection
    assert not any(k.endswith("running_var") for k in state["model"])

    plain_hyps, plain_bleu = _hypotheses(generate(toy_data, ckpt, "--gen-subset", "test").stdout)
    fused_hyps, fused_bleu = _hypotheses(generate(toy_data, out, "--gen-subset", "test").stdout)
    assert len(plain_hyps) == 40 and len({text for text, _ in plain_hyps.values()}) > 10
    assert {k: t for k, (t, _) in fused_hyps.items()} == {k: t for k, (t, _) in plain_hyps.items()}
    assert all(abs(fused_hyps[k][1] - s) < 1e-4 for k, (_, s) in plain_hyps.items())
    assert fused_bleu == plain_bleu


@pytest.mark.parametrize("script", ["benchmark_inference.py", "benchmark_training.py"])
def test_benchmarks_run_in_smoke_mode(tmp_path, script):
    import subprocess

    proc = subprocess.run([sys.executable, str(REPO / "scripts" / script), "--smoke", "--out", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    names = {p.suffix for p in tmp_path.iterdir()}
    assert {".json", ".md"} <= names
    if script == "benchmark_inference.py":
        assert ".png" in names
    else:  # the training step of every model the rivals' table compares
        import json

        steps = {r["variant"] for r in json.loads((tmp_path / "training.json").read_text())["training_step"]}
        assert {"LN", "UN", "no norm", "DyT", "Derf"} <= steps

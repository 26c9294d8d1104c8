"""DyT and Derf (docs/normalizers.md, "DyT" and "Derf"): the modules against the float64
reference of ``tests/reference.py`` (values and the gradients of x, alpha, shift, weight and
bias, in float32, fp16 and bf16), their fold (``un-fuse``: weight and bias into the next
linear layers, tanh / erf kept), their export (``un-export``: Tanh / Erf, ONNX Runtime equal
to fairseq-generate, int8), and the command-line paths that the registry-wide tests
(test_cli, test_cli_fp16, test_distributed_cli, test_transformer_un) do not run for every
norm: resume, fairseq-interactive and fairseq's hub interface."""

import copy
import json
import re

import pytest
import torch
from torch import nn

from fairseq_fixtures import generate, run, train
from reference import RefDerf, RefDyT
from test_export import _export, _graphs, _h_lines, _translate  # un-export's and un-translate's test helpers
from toy_models import batches, build, save_checkpoint, train_steps
from un_fairseq import fold, fuse
from un_fairseq.checkpoint_io import load_checkpoint
from un_fairseq.export.census import NORM_OPS, op_counts
from un_fairseq.modules import build_norm, registry
from un_fairseq.modules.dyt import Derf, DyT, ElementwiseNorm

KINDS = {"dyt": (DyT, RefDyT), "derf": (Derf, RefDerf)}
SCALARS = {"dyt": ("alpha",), "derf": ("alpha", "shift")}
OP = {"dyt": "Tanh", "derf": "Erf"}


# ------------------------------------------------------------------ the registration
@pytest.mark.parametrize("kind", KINDS)
def test_registered_as_an_elementwise_norm_that_folds_its_affine_map(kind):
    """Declared on its class: its name builds it, it is online (not a fixed affine map), uses
    no batch statistics, and un-fuse folds it (weight and bias) through ``split_affine``."""
    cls, _ = KINDS[kind]
    spec = registry.spec_of(kind)
    assert spec.cls is cls and spec.label == {"dyt": "DyT", "derf": "Derf"}[kind]
    assert kind not in registry.offline_norm_types() and kind not in registry.batch_stat_norm_types()
    assert kind in fold.ELEMENTWISE and kind in fold.FOLDABLE_TYPES
    assert registry.norm_type_of(build_norm(kind, 4)) == kind


# ------------------------------------------------------------------ the modules
def make(kind, C, seed=0, affine=True):
    """The module (float32) and the reference with the same random parameters: alpha in
    [0.3, 1.3], shift around 0, weight around 1, bias around 0."""
    cls, ref_cls = KINDS[kind]
    mod, ref = cls(C, elementwise_affine=affine), ref_cls(C, affine=affine)
    g = torch.Generator().manual_seed(100 + seed)
    with torch.no_grad():
        mod.alpha.fill_(0.3 + float(torch.rand(1, generator=g)))
        if kind == "derf":
            mod.shift.fill_(0.4 * float(torch.randn(1, generator=g)))
        if affine:
            mod.weight.copy_(1.0 + 0.5 * torch.randn(C, generator=g))
            mod.bias.copy_(0.3 * torch.randn(C, generator=g))
            ref.set_params(mod.weight, mod.bias)
    ref.set_scalars(*(float(getattr(mod, s).detach()) for s in SCALARS[kind]))
    return mod, ref


def inputs(shape, seed, dtype=torch.float32):
    """``x`` with channels on different scales (some saturate tanh / erf), and ``dy``."""
    g = torch.Generator().manual_seed(seed)
    C = shape[-1]
    x = torch.randn(*shape, generator=g) * torch.linspace(0.2, 4.0, C) + 0.3
    return x.to(dtype), torch.randn(*shape, generator=g).to(dtype)


def forward_backward(mod, x, dy, mask=None):
    """``y``, ``dx`` and ``{parameter: gradient}`` of one autograd step."""
    mod.zero_grad(set_to_none=True)
    xg = x.clone().requires_grad_(True)
    y = mod(xg, padding_mask=mask)
    y.backward(dy)
    return y, xg.grad, {n: p.grad for n, p in mod.named_parameters()}


def reference_grads(ref, dy):
    dx, dw, db, scalars = ref.backward(dy)
    grads = {"weight": dw, "bias": db, **scalars}
    return dx, {k: v for k, v in grads.items() if v is not None}


def close(got, want, what, rtol, atol):
    torch.testing.assert_close(got.detach().double().reshape(want.shape), want.double(), rtol=rtol, atol=atol,
                               msg=lambda m: f"{what}: {m}")


@pytest.mark.parametrize("affine", [True, False], ids=["affine", "folded"])
@pytest.mark.parametrize("shape", [(6, 3, 8), (10, 8), (2, 3, 2, 8)], ids=["TxBxC", "NxC", "4d"])
@pytest.mark.parametrize("kind", KINDS)
def test_matches_the_float64_reference(kind, shape, affine):
    """Output and every gradient, in training and in eval mode (there is no state: both the
    same), for several parameter draws."""
    for seed in range(3):
        mod, ref = make(kind, shape[-1], seed, affine)
        x, dy = inputs(shape, seed)
        for training in (True, False):
            mod.train(training)
            y, dx, grads = forward_backward(mod, x, dy)
            assert y.dtype == x.dtype and y.shape == x.shape
            close(y, ref.forward(x), f"{kind} y", 1e-5, 1e-6)
            dx_ref, grads_ref = reference_grads(ref, dy)
            close(dx, dx_ref, f"{kind} dx", 1e-5, 1e-6)
            assert set(grads) == set(grads_ref), (sorted(grads), sorted(grads_ref))
            for name, want in grads_ref.items():
                close(grads[name], want, f"{kind} d{name}", 1e-5, 1e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("kind", KINDS)
def test_low_precision_input(kind, dtype):
    """Half-precision activations, float32 parameters: the output and ``dx`` in the input's
    dtype, the parameters' gradients float32, all within a few units of the dtype's rounding
    of the float64 reference on the same (rounded) values; the scalars' gradients, sums over
    every element, within a few units of rounding of the sum of their terms' magnitudes."""
    eps = torch.finfo(dtype).eps
    C = 8
    mod, ref = make(kind, C, 7)
    for seed in range(3):
        x, dy = inputs((6, 3, C), 20 + seed, dtype)
        y, dx, grads = forward_backward(mod, x, dy)
        assert y.dtype == dtype and dx.dtype == dtype
        assert all(g.dtype == torch.float32 for g in grads.values())
        close(y, ref.forward(x), f"{kind} y", 4 * eps, 4 * eps)
        dx_ref, grads_ref = reference_grads(ref, dy)
        close(dx, dx_ref, f"{kind} dx", 4 * eps, 4 * eps)
        magnitudes = terms_magnitudes(kind, ref, x, dy)
        for name, want in grads_ref.items():
            close(grads[name], want, f"{kind} d{name}", 0, 8 * eps * magnitudes[name] + 1e-6)


def terms_magnitudes(kind, ref, x, dy):
    """``{parameter: sum |term|}`` of the reference's gradient sums (the largest over channels
    for weight and bias), from the spec's formulas: ``|dy w x f'|`` for alpha, ``|dy w f'|``
    for shift, ``|dy f|`` for weight, ``|dy|`` for bias."""
    x64, dy64 = x.double(), dy.double().abs()
    ref.forward(x64)
    f, df, w = ref._ctx["f"].abs(), ref._ctx["df"].abs(), ref.weight.abs()
    lead = tuple(range(x64.dim() - 1))
    out = {"alpha": float((dy64 * w * x64.abs() * df).sum()), "weight": float((dy64 * f).sum(lead).max()),
           "bias": float(dy64.sum(lead).max())}
    if kind == "derf":
        out["shift"] = float((dy64 * w * df).sum())
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_parameters_and_init_are_the_authors(kind):
    """Names as in the authors' code; alpha (and shift) one-element parameters; weight 1,
    bias 0; the inits from the options; a folded twin has the scalars only."""
    cls, _ = KINDS[kind]
    mod = cls(8)
    params = dict(mod.named_parameters())
    assert set(params) == {"weight", "bias", *SCALARS[kind]}
    assert torch.equal(mod.weight, torch.ones(8)) and torch.equal(mod.bias, torch.zeros(8))
    spec = registry.spec_of(kind)
    assert torch.equal(mod.alpha, torch.full((1,), spec.default_of("alpha_init_value")))
    assert spec.default_of("alpha_init_value") == 0.5
    if kind == "derf":
        assert torch.equal(mod.shift, torch.zeros(1)) and spec.default_of("shift_init_value") == 0.0
        mod = cls(8, alpha_init_value=0.2, shift_init_value=-0.3)
        assert torch.equal(mod.shift, torch.full((1,), -0.3))
    else:
        mod = cls(8, alpha_init_value=0.2)
    assert torch.equal(mod.alpha, torch.full((1,), 0.2))
    folded = cls(8, elementwise_affine=False)
    assert set(dict(folded.named_parameters())) == set(SCALARS[kind])
    assert folded.weight is None and folded.bias is None


@pytest.mark.parametrize("kind", KINDS)
def test_padding_mask_changes_nothing(kind):
    """Elementwise: padding positions take part in nothing, so a mask is accepted and ignored."""
    mod, _ = make(kind, 8, 3)
    x, dy = inputs((5, 3, 8), 5)
    mask = torch.zeros(3, 5, dtype=torch.bool)
    mask[1:, 3:] = True
    plain = forward_backward(mod, x, dy)
    masked = forward_backward(mod, x, dy, mask)
    assert torch.equal(plain[0], masked[0]) and torch.equal(plain[1], masked[1])
    assert all(torch.equal(plain[2][n], masked[2][n]) for n in plain[2])


@pytest.mark.parametrize("kind", KINDS)
def test_split_affine_is_the_function_and_its_affine_map(kind):
    mod, ref = make(kind, 8, 4)
    x, _ = inputs((6, 3, 8), 9)
    kept, (a, b) = mod.split_affine()
    assert type(kept) is type(mod) and not kept.elementwise_affine
    assert set(dict(kept.named_parameters())) == set(SCALARS[kind])
    assert all(torch.equal(getattr(kept, s), getattr(mod, s)) for s in SCALARS[kind])
    assert torch.equal(a, mod.weight) and torch.equal(b, mod.bias)
    ref.affine = False
    close(kept(x), ref.forward(x), f"{kind} f", 1e-6, 1e-6)
    assert kept.split_affine() == (kept, None)  # nothing left to fold
    twin = build_norm(kind, 8, **kept.constructor_options())
    assert not twin.elementwise_affine and twin.load_state_dict(kept.state_dict()) is not None


# --------------------------------------------------------------------- un-fuse
def randomise_norms(model, seed=0):
    """Weights, biases and scalars away from their init, so that every fold term matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, ElementwiseNorm):
                m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=g))
                m.bias.copy_(0.6 * torch.rand(m.bias.shape, generator=g) - 0.3)
                m.alpha.fill_(0.3 + float(torch.rand(1, generator=g)))
                if hasattr(m, "shift"):
                    m.shift.fill_(0.4 * float(torch.rand(1, generator=g)) - 0.2)


def outputs(model, batch, enc_affine=None):
    """Encoder output (``T x B x C``, after ``enc_affine`` when given) and decoder log-probs."""
    with torch.no_grad():
        net = batch["net_input"]
        enc = model.encoder(net["src_tokens"], src_lengths=net["src_lengths"])
        dec = model.decoder(net["prev_output_tokens"], encoder_out=enc)
        out = enc["encoder_out"][0]
        if enc_affine is not None:
            out = out * enc_affine[0].to(out.dtype) + enc_affine[1].to(out.dtype)
        return out, model.get_normalized_probs(dec, log_probs=True)


@pytest.mark.parametrize("kind", KINDS)
def test_fold_keeps_the_function_and_computes_the_eval_model(toy_data, kind):
    """Every norm (final norms included) becomes its function alone, with its own scalars;
    the folded model computes the eval model: to float64 rounding in float64 (the fold's
    math), to float32 rounding in float32, and with the scale kept apart (int8's scheme)."""
    _, task, model = build(toy_data, "--norm-type", kind)
    train_steps(model, task, 5)
    randomise_norms(model)
    batch = batches(task)[3]
    src_real = ~batch["net_input"]["src_tokens"].eq(task.source_dictionary.pad()).t()
    tgt_real = batch["target"].ne(task.target_dictionary.pad())

    for dtype, tol in ((torch.float64, 1e-10), (torch.float32, 1e-5)):
        plain = copy.deepcopy(model).to(dtype).eval()
        enc_ref, dec_ref = outputs(plain, batch)
        affine = fold.encoder_output_affine(plain)
        assert torch.equal(affine[0], plain.encoder.layer_norm.weight)
        folded = fold.fold_model(copy.deepcopy(plain))
        enc, dec = outputs(folded, batch, affine)
        torch.testing.assert_close(enc[src_real], enc_ref[src_real], rtol=tol, atol=tol)
        torch.testing.assert_close(dec[tgt_real], dec_ref[tgt_real], rtol=tol, atol=tol)

    names = [n for n, m in plain.named_modules() if isinstance(m, ElementwiseNorm)]
    assert len(names) == 12 and {"encoder.layer_norm", "decoder.layer_norm"} <= set(names)
    for name in names:
        kept, before = folded.get_submodule(name), plain.get_submodule(name)
        assert type(kept) is type(before) and not kept.elementwise_affine
        assert set(dict(kept.named_parameters())) == set(SCALARS[kind])
        assert all(torch.equal(getattr(kept, s), getattr(before, s)) for s in SCALARS[kind])
    out_proj = folded.decoder.output_projection
    assert out_proj.bias is not None and out_proj.weight is not folded.decoder.embed_tokens.weight

    scaled = fold.fold_model(copy.deepcopy(plain), keep_scale=True)
    assert all(isinstance(scaled.get_submodule(n), nn.Sequential) for n in names)
    enc, dec = outputs(scaled, batch, (torch.ones_like(affine[0]), affine[1]))
    torch.testing.assert_close(enc[src_real], enc_ref[src_real], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(dec[tgt_real], dec_ref[tgt_real], rtol=1e-5, atol=1e-5)

    # not vacuous: the functions alone, without folding weight and bias, compute something else
    dropped = copy.deepcopy(plain)
    for name in names:
        owner, _, attr = name.rpartition(".")
        setattr(dropped.get_submodule(owner), attr, dropped.get_submodule(name).split_affine()[0])
    assert (outputs(dropped, batch)[1] - dec_ref)[tgt_real].abs().max() > 1e-2


#: DyT in the encoder, Derf in the decoder: one trained model exercises both kinds, a side each
PAIR = ("--encoder-norm-type", "dyt", "--decoder-norm-type", "derf")
#: norm positions of the toy model (2 + 2 layers): encoder 2 x 2 + final, decoder 2 x 3 + final
SIDES = {"encoder": ("dyt", 5), "decoder": ("derf", 7)}


@pytest.fixture(scope="module")
def checkpoint(toy_data, tmp_path_factory):
    """A trained toy checkpoint (60 Adam steps, shared embeddings: enough for the more than
    10 distinct hypotheses of 40 that :func:`assert_same_hypotheses` requires), DyT encoder
    and Derf decoder (:data:`PAIR`)."""
    args, task, model = build(toy_data, *PAIR)
    return save_checkpoint(args, train_steps(model, task, 60), tmp_path_factory.mktemp("dyt-ckpt") / "pair.pt")


def assert_same_hypotheses(got, expected, score_tolerance=1e-4):
    assert len(expected) == 40 and len({t for t, _ in expected.values()}) > 10
    assert {k: t for k, (t, _) in got.items()} == {k: t for k, (t, _) in expected.items()}
    assert max(abs(got[k][1] - s) for k, (_, s) in expected.items()) < score_tolerance


def assert_one_op_per_norm(graphs):
    """The encoder graph holds one Tanh per DyT position, the decoder step one Erf per Derf
    position (the final encoder norm's f is in the encoder graph), and no other of the two."""
    for name, graph in graphs.items():
        counts = op_counts(graph)
        kind, positions = SIDES["encoder" if name == "encoder" else "decoder"]
        assert {op: counts.get(op, 0) for op in OP.values()} == {o: positions if k == kind else 0
                                                                for k, o in OP.items()}, (name, counts)


def test_fused_checkpoint_generates_the_same_hypotheses(toy_data, checkpoint, tmp_path, capsys):
    out = tmp_path / "fused.pt"
    assert fuse.main([str(checkpoint), str(out), "--data", str(toy_data)]) == 0
    assert "folded norms: 7 derf, 5 dyt;" in capsys.readouterr().out
    state = load_checkpoint(out)
    cfg = state["cfg"]["model"]
    assert (cfg.encoder_norm_type, cfg.decoder_norm_type) == ("dyt", "derf") and cfg.norm_affine_folded
    for side, (kind, positions) in SIDES.items():
        norm_keys = [k for k in state["model"] if k.startswith(side) and "layer_norm." in k]
        assert sorted({k.rsplit(".", 1)[1] for k in norm_keys}) == sorted(SCALARS[kind])
        assert len(norm_keys) == positions * len(SCALARS[kind])

    expected = _h_lines(generate(toy_data, checkpoint, "--gen-subset", "test").stdout)
    fused = _h_lines(generate(toy_data, out, "--gen-subset", "test").stdout)
    assert_same_hypotheses(fused, expected)


# --------------------------------------------------------------------- un-export
def test_export_keeps_one_op_per_norm_and_translates_as_fairseq_generate(toy_data, checkpoint, tmp_path, capsys):
    """fp32: one Tanh (Erf) per norm position and no normalisation op; ONNX Runtime's
    beam search gives fairseq-generate's hypotheses on the whole toy test set."""
    outdir = tmp_path / "fp32"
    printed = _export(checkpoint, outdir, "--data", toy_data)
    assert "folded" in printed and printed.count("normalisation ops: none") == 2
    graphs = _graphs(outdir)
    assert_one_op_per_norm(graphs)
    for graph in graphs.values():
        assert not set(op_counts(graph)) & set(NORM_OPS)
    manifest = json.loads((outdir / "manifest.json").read_text())
    assert manifest["norms"]["folded"] and manifest["norms"]["graph_norm_types"] == {"dyt": 5, "derf": 7}

    source = toy_data.parent / "text" / "test.src"
    expected = _h_lines(generate(toy_data, checkpoint, "--gen-subset", "test").stdout)
    assert_same_hypotheses(_translate(outdir, source, capsys, "--beam", 5, "--max-len-b", 16), expected)


@pytest.mark.parametrize("scheme", ["folded", "scaled"])
def test_int8_quantises_every_weight_matmul_and_translates(toy_data, checkpoint, tmp_path, capsys, scheme):
    outdir = tmp_path / "int8"
    assert f"int8 ({scheme}): " in _export(checkpoint, outdir, "--data", toy_data, "--int8", scheme)
    manifest = json.loads((outdir / "manifest.json").read_text())
    graphs = _graphs(outdir)
    for name, graph in graphs.items():
        weights = {init.name for init in graph.graph.initializer}
        assert not [n for n in graph.graph.node if n.op_type == "MatMul" and n.input[1] in weights], name
        assert op_counts(graph).get("MatMulIntegerToFloat", 0) == manifest["int8"]["quantized_matmuls"][name] > 0
    assert_one_op_per_norm(graphs)
    got = _translate(outdir, toy_data.parent / "text" / "test.src", capsys, "--beam", 5, "--max-len-b", 16)
    assert len(got) == 40 and all(t for t, _ in got.values())


# ------------------------------------------------ resume, interactive, the hub interface


def test_resume_mid_epoch_is_bit_identical(toy_data, tmp_path):
    """Stopped at a mid-epoch checkpoint and restarted == never stopped (DyT encoder, Derf
    decoder): every parameter, the scalars included."""
    common = (*PAIR, "--dyt-alpha-init", "0.4", "--derf-shift-init", "0.1", "--save-interval-updates", "3",
              "--no-epoch-checkpoints")
    train(toy_data, tmp_path / "straight", *common, "--max-update", "6")
    train(toy_data, tmp_path / "resumed", *common, "--max-update", "3")
    first = load_checkpoint(tmp_path / "resumed" / "checkpoint_last.pt")["model"]
    log = train(toy_data, tmp_path / "resumed", *common, "--max-update", "6")
    assert "Loaded checkpoint" in log.stdout + log.stderr
    straight = load_checkpoint(tmp_path / "straight" / "checkpoint_last.pt")["model"]
    resumed = load_checkpoint(tmp_path / "resumed" / "checkpoint_last.pt")["model"]
    assert set(straight) == set(resumed)
    scalars = [k for k in straight if k.endswith((".alpha", ".shift"))]
    assert len(scalars) == 5 + 2 * 7  # encoder: 5 alphas; decoder: 7 alphas and 7 shifts
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key
    assert not all(torch.equal(first[k], straight[k]) for k in scalars)  # training moved them


def test_interactive_and_hub_translate_alike(toy_data, tmp_path):
    train(toy_data, tmp_path, *PAIR, "--max-update", "3", "--no-epoch-checkpoints")
    proc = run(["fairseq-interactive", toy_data, "--user-dir", "un_fairseq", "--path",
                tmp_path / "checkpoint_last.pt", "--beam", "2", "--cpu", "--source-lang", "src",
                "--target-lang", "tgt", "--max-len-b", "8"], input="a1 a2 a3\na4 a5\n", timeout=300)
    interactive = re.findall(r"^H-\d+\t\S+\t(.*)$", proc.stdout, flags=re.M)
    assert len(interactive) == 2, proc.stdout

    from fairseq.models.transformer import TransformerModel

    hub = TransformerModel.from_pretrained(str(tmp_path), checkpoint_file="checkpoint_last.pt",
                                           data_name_or_path=str(toy_data), source_lang="src", target_lang="tgt",
                                           cpu=True)
    assert {type(m) for m in hub.models[0].modules() if isinstance(m, ElementwiseNorm)} == {DyT, Derf}
    assert hub.translate(["a1 a2 a3", "a4 a5"], beam=2, max_len_b=8) == interactive

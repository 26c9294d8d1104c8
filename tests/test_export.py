"""un-export and un-translate: the export modules against fairseq's own forward, the ONNX
graphs (checker, dynamic shapes, op census, manifest), the refusals, and translations on
ONNX Runtime equal to fairseq-generate's on the toy corpus."""

import copy
import hashlib
import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch

from fairseq_fixtures import REPO, TINY_MODEL, generate, run
from toy_models import build, save_checkpoint, train_steps
from un_fairseq import fold
from un_atomic import atomic_dir
from un_fairseq.export import cli as export_cli
from un_fairseq.export.census import NORM_OPS, norm_op_counts, op_counts
from conftest import cpu_features
from un_fairseq.export.graphs import DecoderStepGraph, EncoderGraph
from un_fairseq.modules import PaddingAwareNorm
from un_translate import Translator
from un_translate import cli as translate_cli
from un_translate.beam_search import base2
from un_translate.vocabulary import BPE_SYMBOLS, Vocabulary, post_process


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _right_padded(task, lengths, seed=0):
    """Random source sentences of ``lengths`` (eos included), right-padded: ``B x S``."""
    gen = torch.Generator().manual_seed(seed)
    d = task.source_dictionary
    src = torch.full((len(lengths), max(lengths)), d.pad())
    for row, n in enumerate(lengths):
        src[row, :n - 1] = torch.randint(d.nspecial, len(d), (n - 1,), generator=gen)
        src[row, n - 1] = d.eos()
    return src, torch.tensor(lengths)


# -- the export modules compute fairseq's forward ---------------------------------------

VARIANTS = {
    "un": ["--norm-type", "un"],
    "layer": ["--norm-type", "layer"],
    "rms": ["--norm-type", "rms"],
    "power": ["--norm-type", "power"],
    "mabn, learned positions, gelu, no embed scale": [
        "--norm-type", "mabn", "--encoder-learned-pos", "--decoder-learned-pos", "--activation-fn", "gelu",
        "--no-scale-embedding"],
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_graph_modules_compute_fairseqs_incremental_decoding(toy_data, variant):
    """Encoder output and every step's log-probabilities of the export modules (on the
    folded model when foldable) equal fairseq's own forward of the unfolded model with
    fairseq's incremental decoding, at every real token of a padded batch."""
    _, task, model = build(toy_data, *VARIANTS[variant])
    train_steps(model, task, 5)
    with torch.no_grad():
        for m in model.modules():  # norms away from their initial affine
            if isinstance(m, PaddingAwareNorm) or hasattr(m, "weight") and type(m).__name__ == "LayerNorm":
                m.weight.uniform_(0.5, 1.5)
                if getattr(m, "bias", None) is not None:
                    m.bias.uniform_(-0.3, 0.3)
    reference = model.eval()
    foldable = variant.split(",")[0] in ("un", "mabn")
    exported = fold.fold_model(copy.deepcopy(model)) if foldable else model
    src, lengths = _right_padded(task, [9, 6, 3])

    rows = torch.tensor([0, 0, 1, 1, 2, 2])  # two target rows per sentence share its keys and values
    prev = torch.randint(4, len(task.target_dictionary), (6, 6))
    prev[:, 0] = task.target_dictionary.eos()
    pad = task.target_dictionary.pad()

    with torch.no_grad():
        enc_out, mask, *cross = EncoderGraph(exported)(src, lengths)
        fairseq_enc = exported.encoder(src, src_lengths=lengths)
        real = ~mask
        assert torch.equal(mask, src.eq(task.source_dictionary.pad()))
        torch.testing.assert_close(enc_out[real], fairseq_enc["encoder_out"][0].transpose(0, 1)[real],
                                   rtol=1e-5, atol=1e-5)

        ref_enc = reference.encoder(src[rows], src_lengths=lengths[rows])
        state = {}
        step_graph = DecoderStepGraph(exported, max_beam=4)
        layers = len(cross) // 2
        _, heads, _, dim = cross[0].shape
        capacity = prev.size(1) + 2
        past = [torch.zeros(6, heads, capacity, dim) for _ in range(2 * layers)]
        indirection = torch.zeros(3, 2, capacity, dtype=torch.int32)
        bias = torch.zeros(len(task.target_dictionary))
        bias[pad] = float("-inf")
        gen = torch.Generator().manual_seed(3)
        for t in range(prev.size(1)):
            out = reference.decoder(prev[:, :t + 1], encoder_out=ref_enc, incremental_state=state)
            expected = reference.get_normalized_probs(out, log_probs=True)[:, -1]
            expected[:, pad] = float("-inf")
            values, tokens, eos, *past = step_graph(prev[:, t], torch.tensor(t), bias, mask, tuple(cross[:layers]),
                                                    tuple(cross[layers:]), indirection, tuple(past[:layers]),
                                                    tuple(past[layers:]))
            torch.testing.assert_close(values, expected.topk(8).values, rtol=1e-5, atol=2e-5)
            torch.testing.assert_close(values, expected.gather(1, tokens), rtol=1e-5, atol=2e-5)
            torch.testing.assert_close(eos, expected[:, task.target_dictionary.eos()], rtol=1e-5, atol=2e-5)
            assert all(c.shape == (6, heads, capacity, dim) for c in past)
            # beam search's reorder: each row continues a random row of its sentence; fairseq
            # copies its caches, the graph reads through the indirection
            parents = torch.randint(0, 2, (3, 2), generator=gen)
            new_order = (torch.arange(3)[:, None] * 2 + parents).reshape(-1)
            reference.decoder.reorder_incremental_state_scripting(state, new_order)
            prev = prev.clone()
            prev[:, :t + 1] = prev[new_order, :t + 1]
            indirection = indirection.gather(1, parents[:, :, None].expand(-1, -1, capacity))
            indirection[:, :, t] = parents.int()


# -- the command -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def checkpoints(toy_data, tmp_path_factory):
    """Trained toy checkpoints: ``{norm: path}`` for UN, LN and RMSNorm."""
    folder = tmp_path_factory.mktemp("export-ckpt")
    out = {}
    for norm in ("un", "layer", "rms"):
        args, task, model = build(toy_data, "--norm-type", norm)
        out[norm] = save_checkpoint(args, train_steps(model, task, 150 if norm != "rms" else 10), folder / f"{norm}.pt")
    return out


@pytest.fixture(scope="module")
def exports(toy_data, checkpoints, tmp_path_factory):
    """``{norm: (OUTDIR, what un-export printed)}``."""
    folder = tmp_path_factory.mktemp("export")
    out = {}
    for norm, ckpt in checkpoints.items():
        printed = _export(ckpt, folder / norm, "--data", toy_data)
        out[norm] = (folder / norm, printed)
    return out


def _export(ckpt, outdir, *extra):
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert export_cli.main([str(ckpt), str(outdir), *map(str, extra)]) == 0
    return buffer.getvalue()


def _graphs(outdir):
    return {name: onnx.load(str(outdir / f"{name}.onnx")) for name in ("encoder", "decoder_step")}


def test_folded_un_graphs_have_no_normalisation_op_and_ln_graphs_do(exports):
    un_dir, un_printed = exports["un"]
    for name, graph in _graphs(un_dir).items():
        onnx.checker.check_model(graph, full_check=True)
        counts = op_counts(graph)
        assert not set(counts) & set(NORM_OPS), (name, counts)
        assert counts["MatMul"] >= 8 and counts["Softmax"] >= 2  # the attention is there
    assert "folded" in un_printed and un_printed.count("normalisation ops: none") == 2

    ln_counts = {name: op_counts(g) for name, g in _graphs(exports["layer"][0]).items()}
    # 2 layers: encoder 2 x 2 + final = 5 LayerNorms, decoder 2 x 3 + final = 7
    assert ln_counts["encoder"].get("LayerNormalization") == 5
    assert ln_counts["decoder_step"].get("LayerNormalization") == 7
    assert "normalisation ops: LayerNormalization 5" in exports["layer"][1]

    rms_counts = {name: op_counts(g) for name, g in _graphs(exports["rms"][0]).items()}
    for counts in rms_counts.values():  # a norm lowered to primitive ops is caught too
        assert {"ReduceMean", "Sqrt", "Pow"} <= set(counts)


def test_manifest_and_dynamic_shapes(exports, checkpoints):
    outdir, _ = exports["un"]
    manifest = json.loads((outdir / "manifest.json").read_text())
    assert manifest["source_checkpoint"]["sha256"] == hashlib.sha256(checkpoints["un"].read_bytes()).hexdigest()
    assert manifest["norms"]["norm_types"] == {"un": 12} and manifest["norms"]["folded"]
    assert manifest["norms"]["graph_norm_types"] == {"none": 12}
    assert manifest["exporter"]["opset"] >= 18
    assert manifest["model"]["decoder_layers"] == 2 and manifest["model"]["decoder_heads"] == 4
    assert manifest["census"]["encoder"] == op_counts(_graphs(outdir)["encoder"])
    assert manifest["onnxruntime_check"]["largest_log_prob_difference"] < 1e-4
    ln = json.loads((exports["layer"][0] / "manifest.json").read_text())
    assert not ln["norms"]["folded"] and ln["norms"]["normalisation_ops_in_graphs"]["encoder"]

    graphs = _graphs(outdir)
    dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
            for g in graphs.values() for i in g.graph.input}
    batch, src_len = dims["src_tokens"]
    assert isinstance(batch, str) and isinstance(src_len, str)  # symbolic, not traced sizes
    assert isinstance(dims["past_k_0"][0], str) and isinstance(dims["past_k_1"][2], str)
    assert dims["past_k_0"][1] == 4 and dims["step"] == []
    assert all(isinstance(d, str) for d in dims["cache_indirection"])  # batch, beam and capacity
    assert manifest["census"]["decoder_step"]["DecoderMaskedMultiHeadAttention"] == 2  # one per layer
    assert manifest["model"]["candidates_per_row"] == 2 * 10


def test_refusals_name_the_problem_and_leave_nothing(toy_data, checkpoints, tmp_path, capsys):
    args, _, model = build(toy_data, arch=["--arch", "transformer", *TINY_MODEL[2:]])
    plain = save_checkpoint(args, model, tmp_path / "plain.pt")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(checkpoints["un"].read_bytes()[:1000])
    cases = [
        ([plain, tmp_path / "out"], "not a transformer_un model: its arch is 'transformer'"),
        ([truncated, tmp_path / "out"], "truncated"),
        ([tmp_path / "missing.pt", tmp_path / "out"], "no checkpoint at"),
        ([checkpoints["un"], tmp_path / "out", "--tolerance", "1e-12"], "folding changed"),
    ]
    for argv, message in cases:
        assert export_cli.main([str(a) for a in argv] + ["--data", str(toy_data)]) == 2
        assert message in capsys.readouterr().err
        assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.pt", "truncated.pt"]  # no OUTDIR, no temp dir

    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    assert export_cli.main([str(checkpoints["layer"]), str(existing)]) == 2
    assert "exists; give --overwrite" in capsys.readouterr().err
    assert [p.name for p in existing.iterdir()] == ["keep.txt"]


def test_outdir_is_replaced_only_once_complete(tmp_path):
    """What ``--overwrite`` relies on: the old folder stays until the new one is complete."""
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "new.txt").write_text("new")
            raise RuntimeError("export failed")
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and [p.name for p in target.iterdir()] == ["old.txt"]
    with atomic_dir(target) as tmp:
        (tmp / "new.txt").write_text("new")
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and [p.name for p in target.iterdir()] == ["new.txt"]


def test_console_commands_help_lists_every_flag():
    text = run(["un-export", "--help"]).stdout
    for flag in ("--data", "--overwrite", "--opset", "--verify", "--no-verify", "--verify-batches", "--tolerance",
                 "--int8", "--max-beam"):
        assert flag in text
    text = run(["un-translate", "--help"]).stdout
    for flag in ("--input", "--beam", "--nbest", "--lenpen", "--unkpen", "--max-len-a", "--max-len-b",
                 "--min-len", "--batch-size", "--remove-bpe", "--threads", "--spinning"):
        assert flag in text


def test_translator_imports_neither_torch_nor_fairseq():
    code = ("import sys, un_translate, un_translate.cli; "
            "bad = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'fairseq', 'un_fairseq'}); "
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_vocabulary_and_bpe_removal_match_fairseq(exports, toy_data):
    from fairseq.data import Dictionary, data_utils

    outdir, _ = exports["un"]
    manifest = json.loads((outdir / "manifest.json").read_text())["dictionaries"]["source"]
    ours = Vocabulary(outdir / "dict.src.txt", manifest["special_symbols"], manifest["specials"])
    theirs = Dictionary.load(str(toy_data / "dict.src.txt"))
    assert ours.symbols == theirs.symbols
    line = "a1  a5 zz\ta3 "
    assert ours.encode(line).tolist() == theirs.encode_line(line, add_if_not_exist=False).tolist()
    for symbol in BPE_SYMBOLS:
        for text in ("ab@@ c d@@ e f", "\u2581a b\u2581c", "a_b c_EOW d <SIL>  e|f"):
            assert post_process(text, symbol) == data_utils.post_process(text, symbol), symbol
    with pytest.raises(ValueError, match="unknown --remove-bpe 'xx'"):
        post_process("a", "xx")


# -- parity with fairseq-generate ---------------------------------------------------------

def _h_lines(stdout):
    """``{line id: (hypothesis, score)}`` of H lines."""
    out = {}
    for line in stdout.splitlines():
        if line.startswith("H-"):
            key, score, text = line.split("\t")
            out[int(key[2:])] = (text, float(score))
    return out


def _translate(outdir, source, capsys, *flags):
    capsys.readouterr()
    assert translate_cli.main([str(outdir), "--input", str(source), "--threads", "1", *map(str, flags)]) == 0
    return _h_lines(capsys.readouterr().out)


def test_an_online_final_norm_is_exported_beside_the_folded_layers(toy_data, tmp_path):
    """UN in the layers and LayerNorm as the final norms (--final-norm-type layer): the layers'
    norms fold away, one LayerNormalization per graph is left (the encoder's and the decoder's
    final norm), and un-export's own check of the graphs against the checkpoint passes."""
    args, task, model = build(toy_data, "--norm-type", "un", "--final-norm-type", "layer")
    ckpt = save_checkpoint(args, train_steps(model, task, 20), tmp_path / "un-ln.pt")
    printed = _export(ckpt, tmp_path / "out", "--data", toy_data)
    assert "folded" in printed
    counts = {name: op_counts(graph) for name, graph in _graphs(tmp_path / "out").items()}
    for name, c in counts.items():
        assert {op: n for op, n in c.items() if op in NORM_OPS} == {"LayerNormalization": 1}, (name, c)


@pytest.mark.parametrize("norm", ["un", "layer"])
def test_onnxruntime_translations_equal_fairseq_generate(toy_data, checkpoints, exports, norm, capsys):
    """The whole toy test set, beam 5: identical hypotheses, scores within float32 noise."""
    source = toy_data.parent / "text" / "test.src"
    expected = _h_lines(generate(toy_data, checkpoints[norm], "--gen-subset", "test").stdout)
    got = _translate(exports[norm][0], source, capsys, "--beam", 5, "--max-len-b", 16)
    assert len(expected) == 40 and len({t for t, _ in expected.values()}) > 10
    assert {k: t for k, (t, _) in got.items()} == {k: t for k, (t, _) in expected.items()}
    assert max(abs(got[k][1] - s) for k, (_, s) in expected.items()) < 1e-4


def test_search_options_and_batching_follow_fairseq_generate(toy_data, checkpoints, exports, capsys):
    """Length penalty, max_len_a/b, min_len, unk penalty and a smaller beam; fairseq-generate
    one sentence per batch (its max_len_a multiplies the batch's padded length)."""
    source = toy_data.parent / "text" / "test.src"
    flags = ["--beam", 4, "--lenpen", 0.6, "--max-len-a", 0.5, "--max-len-b", 2, "--min-len", 3, "--unkpen", 0.5]
    expected = _h_lines(generate(toy_data, checkpoints["un"], "--gen-subset", "test", *map(str, flags),
                                 "--batch-size", "1", "--required-batch-size-multiple", "1").stdout)
    for batch_size in (1, 7):
        got = _translate(exports["un"][0], source, capsys, *flags, "--batch-size", batch_size)
        assert {k: t for k, (t, _) in got.items()} == {k: t for k, (t, _) in expected.items()}
        assert max(abs(got[k][1] - s) for k, (_, s) in expected.items()) < 1e-4


@pytest.mark.parametrize("options", [
    dict(beam=5, max_len_b=12),
    dict(beam=3, len_penalty=0.5, min_len=2, max_len_b=5),
    dict(beam=8, len_penalty=1.5, unk_penalty=-1.0, max_len_a=0.5, max_len_b=3),
])
def test_every_hypothesis_equals_sequence_generators_with_a_tiny_vocabulary(tmp_path, options, monkeypatch):
    """All ``beam`` hypotheses of each sentence (not just the best), against fairseq's
    SequenceGenerator in-process, on a random model over 5 words: the first step has fewer
    candidates than ``2 x beam``, and the short maximum lengths force eos. The decoder's
    buffers start at one position, so they grow (and shrink as sentences finish) on the way."""
    from fairseq.sequence_generator import SequenceGenerator

    from un_tools.benchmarks.common import build_variant_models, model_args, toy_task
    from un_fairseq.export import exporter
    from un_translate import onnx_model
    from un_translate.beam_search import SearchOptions, beam_search

    monkeypatch.setattr(onnx_model, "FIRST_CAPACITY", 1)

    task = toy_task(9)
    small = ["--encoder-layers", "1", "--decoder-layers", "2", "--encoder-embed-dim", "16",
             "--decoder-embed-dim", "16", "--encoder-ffn-embed-dim", "32", "--decoder-ffn-embed-dim", "32",
             "--encoder-attention-heads", "2", "--decoder-attention-heads", "2"]
    model = build_variant_models(model_args("transformer_un", "layer", small), task, ["layer"], seed=3)["layer"]
    exporter.export_graphs(model, tmp_path)
    exporter.write_manifest(tmp_path, None, model, {"norm_types": {}}, exporter.write_dictionaries(task, tmp_path),
                            exporter.census(tmp_path), None)
    translator = Translator(tmp_path, threads=1)
    src, lengths = _right_padded(task, [7, 5, 4, 2], seed=4)

    fairseq_hyps = SequenceGenerator(
        [model], task.target_dictionary, beam_size=options["beam"], max_len_a=options.get("max_len_a", 0),
        max_len_b=options["max_len_b"], min_len=options.get("min_len", 1),
        len_penalty=options.get("len_penalty", 1.0), unk_penalty=options.get("unk_penalty", 0.0),
    ).generate([model], {"net_input": {"src_tokens": src, "src_lengths": lengths}})
    ours = beam_search(translator.model, src.numpy(), lengths.numpy(), translator.tgt_vocab,
                       SearchOptions(**options), model.max_decoder_positions())
    if options.get("max_len_a"):  # fairseq: the batch's padded length; ours: each sentence's own
        keep = [i for i, n in enumerate(lengths.tolist()) if n == src.size(1)]
        fairseq_hyps, ours = [fairseq_hyps[i] for i in keep], [ours[i] for i in keep]
    for theirs, mine in zip(fairseq_hyps, ours):
        assert [h["tokens"].tolist() for h in theirs] == [h.tokens.tolist() for h in mine]
        np.testing.assert_allclose([h.score for h in mine], [float(h["score"]) for h in theirs], rtol=1e-5, atol=1e-5)


def test_translator_api_and_bad_input(exports, tmp_path, capsys):
    outdir, _ = exports["un"]
    translator = Translator(outdir, beam=3, threads=1)
    hyps = translator.translate(["a1 a2 a3", "", "a5 unknownword"])
    assert [len(h) for h in hyps] == [3, 0, 3]  # a blank line is not translated
    best = hyps[0][0]
    assert best.tokens[-1] == translator.tgt_vocab.eos and best.score >= hyps[0][1].score
    assert abs(best.positional_scores.sum() / len(best.tokens) - best.score) < 1e-5  # lenpen 1
    assert isinstance(base2(best.score), float)

    assert translate_cli.main([str(tmp_path), "--input", str(tmp_path / "x")]) == 2
    assert "not an un-export folder: no manifest.json" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        translate_cli.main([str(outdir), "--input", "x", "--remove-bpe", "@@@"])
    assert "--remove-bpe '@@@'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="beam=0"):
        Translator(outdir, beam=0)


# -- int8 -------------------------------------------------------------------------------------

#: what int8 may change on the toy models (150 Adam steps, 2 layers of 32 channels), against
#: fairseq-generate's fp32 hypotheses: at least this share identical, and their scores
#: (base 2, length-normalised) within this distance
INT8_MIN_IDENTICAL = 0.6
INT8_SCORE_TOLERANCE = 0.1


@pytest.mark.parametrize("norm, scheme", [("un", "scaled"), ("un", "folded"), ("layer", "scaled")])
def test_int8_export_quantises_the_weight_matmuls_and_stays_close(toy_data, checkpoints, exports, tmp_path,
                                                                   capsys, norm, scheme):
    outdir = tmp_path / "int8"
    printed = _export(checkpoints[norm], outdir, "--data", toy_data, "--int8", scheme)
    assert f"int8 ({scheme}): " in printed
    manifest = json.loads((outdir / "manifest.json").read_text())
    assert manifest["int8"]["scheme"] == scheme and manifest["int8"]["per_channel"]
    for name, graph in _graphs(outdir).items():
        counts = op_counts(graph)
        weights = {init.name for init in graph.graph.initializer}
        float_weight_matmuls = [n for n in graph.graph.node if n.op_type == "MatMul" and n.input[1] in weights]
        assert not float_weight_matmuls, name  # every weight matmul is int8
        assert counts.get("MatMulIntegerToFloat", 0) == \
            manifest["int8"]["quantized_matmuls"][name] > 0
        if norm == "un":  # still no normalisation op: a kept scale is a Mul
            assert not norm_op_counts(graph), (name, counts)
    fp32 = json.loads((exports[norm][0] / "manifest.json").read_text())
    assert manifest["graphs"]["decoder_step"]["bytes"] < 0.9 * fp32["graphs"]["decoder_step"]["bytes"]

    source = toy_data.parent / "text" / "test.src"
    expected = _h_lines(generate(toy_data, checkpoints[norm], "--gen-subset", "test").stdout)
    got = _translate(outdir, source, capsys, "--beam", 5, "--max-len-b", 16)
    same = [k for k, (t, _) in expected.items() if got[k][0] == t]
    print(f"int8 {norm} {scheme}: {len(same)} of {len(expected)} hypotheses as fp32; cpu: {cpu_features()}")
    assert len(same) >= INT8_MIN_IDENTICAL * len(expected), (len(same), len(expected), cpu_features())
    assert max(abs(got[k][1] - expected[k][1]) for k in same) < INT8_SCORE_TOLERANCE, cpu_features()
    _assert_batch_invariant(outdir, source, capsys, got)


def _assert_batch_invariant(outdir, source, capsys, at_16):
    """Each sentence alone (batch 1) translates as among 15 others (the default batch of 16):
    the same hypothesis, its score within float32 noise (the float ops' blocking may change)."""
    alone = _translate(outdir, source, capsys, "--beam", 5, "--max-len-b", 16, "--batch-size", 1)
    assert {k: t for k, (t, _) in alone.items()} == {k: t for k, (t, _) in at_16.items()}, cpu_features()
    assert max(abs(alone[k][1] - at_16[k][1]) for k in alone) < 1e-4


def test_fp32_translations_do_not_depend_on_the_batch(toy_data, exports, capsys):
    source = toy_data.parent / "text" / "test.src"
    _assert_batch_invariant(exports["un"][0], source, capsys,
                            _translate(exports["un"][0], source, capsys, "--beam", 5, "--max-len-b", 16))


def test_keep_scale_fold_computes_the_model(toy_data):
    """``fold_model(keep_scale=True)``: the shifts folded, each scale a per-channel multiply
    where its norm was; the same outputs as the unfolded model."""
    from un_fairseq.fold import ChannelScale

    _, task, model = build(toy_data, "--norm-type", "un")
    train_steps(model, task, 5)
    folded = fold.fold_model(copy.deepcopy(model), keep_scale=True)
    assert len([m for m in folded.modules() if isinstance(m, ChannelScale)]) == 12
    a, _ = model.encoder.layers[0].self_attn_layer_norm.inference_scale()
    torch.testing.assert_close(folded.encoder.layers[0].self_attn_layer_norm.scale, a.float())
    src, lengths = _right_padded(task, [9, 6, 3])
    prev = torch.randint(4, len(task.target_dictionary), (3, 5))
    prev[:, 0] = task.target_dictionary.eos()
    with torch.no_grad():
        outs = [m.get_normalized_probs(m(src, lengths, prev), log_probs=True) for m in (model.eval(), folded.eval())]
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=2e-5)


# -- the deployment benchmark --------------------------------------------------------------------

def test_deploy_benchmark_runs_in_smoke_mode(tmp_path):
    # one row per runtime (each row is a model exported and a process measured): fairseq eager,
    # ONNX Runtime (int8, a DyT model: export, quantisation and the elementwise op), CTranslate2
    # where it is installed; the exports themselves are tested above
    rows = "fairseq eager UN folded,ORT int8 DyT folded,CT2 int8 LN"
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "benchmark_deploy.py"), "--smoke", "--variants",
                           rows, "--out", str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "deploy.json").read_text())
    measured = {r["variant"] for r in result["speed"]}
    assert {"fairseq eager UN folded", "ORT int8 DyT folded"} <= measured
    assert all(r["sentences_per_s"] > 0 and r["cpu_s"] > 0 for r in result["speed"])
    assert set(result["memory"]) == measured and all(m["peak_rss_mib"] > 0 for m in result["memory"].values())
    table = (tmp_path / "deploy.md").read_text()
    assert all(f"| {name} | 1 |" in table for name in measured)


# -- the commands without the extra, and bad files ------------------------------------------

#: runs a console script's ``main`` with ``sys.argv`` = ARGS while the modules of the export
#: extra cannot be imported (as in an install without ``[export]``)
WITHOUT_EXTRA = """
import importlib, sys
BLOCKED = {"onnx", "onnxruntime", "onnxscript"}
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Block())
module, func = sys.argv[1].split(":")
sys.argv = sys.argv[1:]
sys.exit(getattr(importlib.import_module(module), func)())
"""

ENTRY_POINTS = {"un-fuse": "un_fairseq.fuse:main", "un-export": "un_fairseq.export.cli:main",
                "un-translate": "un_translate.cli:main",
                "un-average-checkpoints": "un_fairseq.average_checkpoints:main"}


def without_extra(command, *args, timeout=120):
    return subprocess.run([sys.executable, "-c", WITHOUT_EXTRA, ENTRY_POINTS[command], *map(str, args)],
                          cwd=REPO, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("command", ENTRY_POINTS)
def test_every_command_answers_help_without_the_extra(command):
    proc = without_extra(command, "--help")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith(f"usage: {command}")
    assert "tensorboardX" not in proc.stdout + proc.stderr


def test_a_missing_extra_is_one_line_naming_the_install(checkpoints, exports, tmp_path):
    for command, args in (("un-export", [checkpoints["un"], tmp_path / "out"]),
                          ("un-translate", [exports["un"][0], "--input", tmp_path / "in.txt"])):
        proc = without_extra(command, *args)
        assert proc.returncode == 2, proc.stderr[-2000:]
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "pip install 'un-fairseq[export]'" in lines[0], proc.stderr
        assert "tensorboardX" not in proc.stdout + proc.stderr
    assert not (tmp_path / "out").exists()


def test_an_onnxruntime_older_than_the_working_kernel_is_one_line_naming_the_upgrade(exports, tmp_path, capsys,
                                                                                   monkeypatch):
    """onnxruntime 1.20 has the decoder's attention kernel but translates wrongly with it
    (un_translate.manifest.MIN_ONNXRUNTIME): un-translate refuses it instead."""
    import onnxruntime

    from un_translate.manifest import MIN_ONNXRUNTIME

    source = tmp_path / "in.txt"
    source.write_text("a b c\n")
    monkeypatch.setattr(onnxruntime, "__version__", "1.20.1")
    capsys.readouterr()
    assert translate_cli.main([str(exports["un"][0]), "--input", str(source)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "found 1.20.1" in err[0] and f"pip install -U 'onnxruntime>={MIN_ONNXRUNTIME}'" in err[0]
    monkeypatch.setattr(onnxruntime, "__version__", MIN_ONNXRUNTIME + ".0")
    assert translate_cli.main([str(exports["un"][0]), "--input", str(source)]) == 0


def test_bad_checkpoints_and_folders_are_one_line_naming_the_file(checkpoints, exports, tmp_path):
    import shutil

    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint\n")
    truncated = tmp_path / "cut.pt"
    truncated.write_bytes(checkpoints["un"].read_bytes()[:len(checkpoints["un"].read_bytes()) // 2])
    for bad, what in ((text, "not a torch checkpoint"), (truncated, "truncated")):
        for command, args in (("un-fuse", [bad, tmp_path / "out.pt"]), ("un-export", [bad, tmp_path / "out"])):
            proc = run([command, *args], check=False, timeout=300)
            assert proc.returncode == 2, proc.stderr[-2000:]
            lines = proc.stderr.strip().splitlines()
            assert len(lines) == 1 and str(bad) in lines[0] and what in lines[0], (command, proc.stderr)
            assert "tensorboardX" not in proc.stdout + proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.pt", "notes.pt"]  # nothing written

    source = tmp_path / "in.txt"
    source.write_text("a1 a2\n")
    for name, damage in (("decoder_step.onnx", "missing"), ("decoder_step.onnx", "corrupt"),
                         ("dict.tgt.txt", "corrupt"), ("manifest.json", "corrupt")):
        folder = tmp_path / f"{name}-{damage}"
        shutil.copytree(exports["un"][0], folder)
        if damage == "missing":
            (folder / name).unlink()
        else:
            data = (folder / name).read_bytes()
            (folder / name).write_bytes(data[:len(data) // 3] + b"\n<bad line>\n")
        proc = run(["un-translate", folder, "--input", source, "--threads", "1"], check=False, timeout=300)
        assert proc.returncode == 2, proc.stderr[-2000:]
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and name in lines[0], (name, damage, proc.stderr)
        assert not proc.stdout

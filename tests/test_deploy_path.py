"""The deploy path a user walks with a model someone sent: a checkpoint that names no language
pair, its two dictionaries and its sentencepiece model -> un-fuse, un-export --spm ->
un-translate from text to text. On the toy corpus encoded with a sentencepiece model trained
here; the reference is fairseq-generate on the same corpus, binarized."""

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from fairseq_fixtures import REPO, generate, run
from toy_models import build, save_checkpoint, train_steps
from un_fairseq import task_setup
from un_fairseq.checkpoint_io import load_checkpoint
from un_fairseq.export import cli as export_cli
from un_fairseq.fuse import main as fuse_main
from un_translate import cli as translate_cli

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


# -- fixtures: an sentencepiece toy corpus, a checkpoint without a pair, a dictionaries-only folder --

@pytest.fixture(scope="module")
def corpus(toy_data, tmp_path_factory):
    """``{"text": folder of toy text, "bin": binarized pieces, "dicts": only dict.src.txt,
    dict.tgt.txt and spm.model}``; sentencepiece BPE learnt on the toy training text."""
    import sentencepiece

    root = tmp_path_factory.mktemp("spm-corpus")
    text = toy_data.parent / "text"
    sentencepiece.SentencePieceTrainer.train(
        input=f"{text / 'train.src'},{text / 'train.tgt'}", model_prefix=str(root / "spm"), vocab_size=30, hard_vocab_limit=False,
        model_type="bpe", character_coverage=1.0, minloglevel=2)
    sp = sentencepiece.SentencePieceProcessor(model_file=str(root / "spm.model"))
    pieces = root / "pieces"
    pieces.mkdir()
    for split in ("train", "valid", "test"):
        for lang in ("src", "tgt"):
            lines = (text / f"{split}.{lang}").read_text().splitlines()
            (pieces / f"{split}.{lang}").write_text("".join(" ".join(sp.encode(x, out_type=str)) + "\n" for x in lines))
    run(["fairseq-preprocess", "--source-lang", "src", "--target-lang", "tgt", "--trainpref", pieces / "train",
         "--validpref", pieces / "valid", "--testpref", pieces / "test", "--destdir", root / "bin",
         "--joined-dictionary", "--workers", "1"])
    dicts = root / "dicts"
    dicts.mkdir()
    for name in ("dict.src.txt", "dict.tgt.txt"):
        shutil.copy(root / "bin" / name, dicts / name)
    shutil.copy(root / "spm.model", dicts / "spm.model")
    return {"text": text, "bin": root / "bin", "dicts": dicts, "spm": dicts / "spm.model", "root": root}


@pytest.fixture(scope="module")
def old_checkpoint(corpus):
    """A trained UN checkpoint that names no language pair (trained without -s/-t)."""
    args, task, model = build(corpus["bin"], "--norm-type", "un")
    path = save_checkpoint(args, train_steps(model, task, 150), corpus["root"] / "un.pt")
    state = load_checkpoint(path)
    state["cfg"]["task"]["source_lang"] = state["cfg"]["task"]["target_lang"] = None
    torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def text_export(corpus, old_checkpoint):
    """``(OUTDIR, what un-export printed)``: the old checkpoint with only the dictionaries, --spm."""
    outdir = corpus["root"] / "export"
    printed = _call(export_cli.main, [old_checkpoint, outdir, "--data", corpus["dicts"], "-s", "src", "-t", "tgt",
                                      "--spm", corpus["spm"]])
    return outdir, printed


def _call(main, argv, code=0):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        got = main([str(a) for a in argv])
    assert got == code, out.getvalue() + err.getvalue()
    return out.getvalue() + err.getvalue()


def _generate_text(corpus, checkpoint):
    """fairseq-generate's best hypothesis of each test sentence, sentencepiece removed, in order."""
    out = generate(corpus["bin"], checkpoint, "--gen-subset", "test", "--remove-bpe", "sentencepiece").stdout
    hyps = {int(k[2:]): text for k, _, text in (line.split("\t") for line in out.splitlines() if line.startswith("H-"))}
    return [hyps[i] for i in range(len(hyps))]


def test_help_lists_the_new_flags():
    export_help = export_cli.parser().format_help()
    for flag in ("--data", "--source-lang", "--target-lang", "--spm", "--overwrite"):
        assert flag in export_help
    translate_help = translate_cli.parser().format_help()
    for flag in ("--format", "--pieces", "--remove-bpe"):
        assert flag in translate_help


# -- the language pair ----------------------------------------------------------------------

def _folder(tmp_path, sizes):
    tmp_path.mkdir(exist_ok=True)
    for lang, n in sizes.items():
        (tmp_path / f"dict.{lang}.txt").write_text("".join(f"w{i} 1\n" for i in range(n)))
    return tmp_path


def test_the_pair_comes_from_the_checkpoint_then_the_flags_then_the_file_names(tmp_path):
    rows = lambda enc, dec: {"encoder.embed_tokens.weight": torch.zeros(enc, 1),  # noqa: E731
                             "decoder.embed_tokens.weight": torch.zeros(dec, 1)}
    joined = _folder(tmp_path / "joined", {"de": 6, "en": 6})
    choose = task_setup.choose_pair
    assert choose(joined, ("en", "de"), rows(10, 10)) == ("en", "de", "the checkpoint")
    with pytest.raises(ValueError, match="--source-lang de: the checkpoint was trained on en-de"):
        choose(joined, ("en", "de"), rows(10, 10), "de")
    assert choose(joined, (None, None), rows(10, 10), "de", "en")[:2] == ("de", "en")
    assert choose(joined, (None, None), rows(10, 10), None, "de")[:2] == ("en", "de")  # the other dictionary
    with pytest.raises(ValueError, match="same size .* give --source-lang SRC --target-lang TGT"):
        choose(joined, (None, None), rows(10, 10))
    # dictionaries of different sizes: the embeddings say which is which (4 special symbols each)
    apart = _folder(tmp_path / "apart", {"de": 6, "en": 8})
    assert choose(apart, (None, None), rows(12, 10)) == ("en", "de", "the dictionary sizes")
    with pytest.raises(ValueError, match="neither order fits"):
        choose(apart, (None, None), rows(11, 10))
    # binarized file names give the direction, as fairseq infers it
    (joined / "test.en-de.en.idx").write_text("")
    assert choose(joined, (None, None), rows(10, 10))[:2] == ("en", "de")
    assert task_setup.find_split(joined, "en", "de") == "test"
    with pytest.raises(ValueError, match=r"--gen-subset valid: .* \(found: test\)"):
        task_setup.find_split(joined, "en", "de", "valid")
    with pytest.raises(ValueError, match="holds no dict"):
        choose(tmp_path, (None, None), rows(10, 10))


def test_fuse_works_with_only_the_dictionaries_and_names_the_pair(corpus, old_checkpoint, tmp_path):
    fused = tmp_path / "fused.pt"
    err = _call(fuse_main, [old_checkpoint, fused, "--data", corpus["dicts"]], code=2)
    assert "names no language pair" in err and "give --source-lang SRC --target-lang TGT" in err
    assert not fused.exists() and err.count("\n") == 1

    printed = _call(fuse_main, [old_checkpoint, fused, "--data", corpus["dicts"], "-s", "src"])
    assert "language pair src-tgt (from --source-lang/--target-lang and the other dictionary)" in printed
    assert "verify (random tokens of the dictionaries" in printed
    task = load_checkpoint(fused)["cfg"]["task"]
    assert (task["source_lang"], task["target_lang"]) == ("src", "tgt")

    # a checkpoint that names its pair (as the training profiles now make them); a binarized
    # folder is used for verification
    named, again = tmp_path / "named.pt", tmp_path / "again.pt"
    state = load_checkpoint(old_checkpoint)
    state["cfg"]["task"].update(source_lang="src", target_lang="tgt")
    torch.save(state, named)
    printed = _call(fuse_main, [named, again, "--data", corpus["bin"]])
    assert "language pair src-tgt (from the checkpoint)" in printed
    assert f"verify (the valid split of {corpus['bin']})" in printed
    printed = _call(fuse_main, [old_checkpoint, again, "--data", corpus["bin"], "--gen-subset", "test"])
    assert "(from the binarized file names" in printed and "verify (the test split" in printed


# -- text in, text out ----------------------------------------------------------------------

def test_export_stores_the_sentencepiece_model_and_translates_text_as_fairseq_generate(
        corpus, old_checkpoint, text_export, tmp_path, capsys):
    outdir, printed = text_export
    manifest = json.loads((outdir / "manifest.json").read_text())
    assert manifest["sentencepiece"]["file"] == "sentencepiece.model" and manifest["sentencepiece"]["from"] == "spm.model"
    assert (outdir / "sentencepiece.model").read_bytes() == corpus["spm"].read_bytes()
    assert manifest["dictionaries"]["source"]["language"] == "src"
    assert "language pair src-tgt" in printed and "fold checked on random tokens" in printed

    expected = _generate_text(corpus, old_checkpoint)
    source = (corpus["text"] / "test.src").read_text().splitlines()
    assert len(expected) == len(source) == 40 and len(set(expected)) > 10
    # blank lines anywhere: a blank line out at the same place, the others unchanged
    lines = [""] + source[:20] + ["", "   "] + source[20:] + [""]
    (tmp_path / "in.txt").write_text("\n".join(lines) + "\n")
    capsys.readouterr()
    assert translate_cli.main([str(outdir), "--input", str(tmp_path / "in.txt"), "--threads", "1",
                               "--max-len-b", "16"]) == 0
    out, err = capsys.readouterr()
    assert out.split("\n")[:-1] == [""] + expected[:20] + ["", ""] + expected[20:] + [""]
    assert "44 sentences (4 blank)" in err and "<unk>: 0 of" in err and "warning" not in err

    # fairseq's format: H lines with scores, none for a blank line
    assert translate_cli.main([str(outdir), "--input", str(tmp_path / "in.txt"), "--threads", "1",
                               "--max-len-b", "16", "--format", "fairseq"]) == 0
    h_lines = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert [int(h[0][2:]) for h in h_lines] == [i for i, x in enumerate(lines) if x.strip()]
    assert [h[2] for h in h_lines] == expected and all(float(h[1]) < 0 for h in h_lines)


def test_unknown_tokens_are_counted_and_warned_about(text_export, tmp_path, capsys):
    outdir, _ = text_export
    (tmp_path / "in.txt").write_text("a1 a2 a3\nqqq zzz\n")
    assert translate_cli.main([str(outdir), "--input", str(tmp_path / "in.txt"), "--threads", "1"]) == 0
    err = capsys.readouterr().err
    assert "warning: " in err and "unknown to the dictionary" in err and "preprocessed" in err
    # the same export fed raw text as pieces: nearly every token unknown
    assert translate_cli.main([str(outdir), "--input", str(tmp_path / "in.txt"), "--threads", "1", "--pieces"]) == 0
    err = capsys.readouterr().err
    assert "<unk>: 5 of 5 source tokens (100.0%)" in err and "export with --spm MODEL" in err


def test_progress_shows_on_a_terminal_only(text_export, tmp_path, monkeypatch, capsys):
    outdir, _ = text_export
    (tmp_path / "in.txt").write_text("a1 a2\n" * translate_cli.PROGRESS_MIN_LINES)

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    for stream, shown in ((Terminal(), True), (io.StringIO(), False)):
        monkeypatch.setattr(sys, "stderr", stream)
        assert translate_cli.main([str(outdir), "--input", str(tmp_path / "in.txt"), "--threads", "1",
                                   "--batch-size", "64", "--beam", "2"]) == 0
        text = stream.getvalue()
        assert (f"\run-translate: 64/{translate_cli.PROGRESS_MIN_LINES} sentences" in text) == shown
        assert f"{translate_cli.PROGRESS_MIN_LINES} sentences (0 blank)" in text


def test_a_closed_pipe_ends_quietly(text_export, tmp_path):
    outdir, _ = text_export
    (tmp_path / "in.txt").write_text("a1 a2 a3\n" * 50)
    proc = subprocess.Popen([sys.executable, "-m", "un_translate", str(outdir), "--input", str(tmp_path / "in.txt"),
                             "--threads", "1"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before anything is written (as `| head -0`)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == translate_cli.BROKEN_PIPE and b"Traceback" not in err and b"Error" not in err, err


def test_a_missing_sentencepiece_package_is_one_line(text_export, tmp_path, monkeypatch, capsys):
    outdir, _ = text_export
    (tmp_path / "in.txt").write_text("a1\n")
    monkeypatch.setitem(sys.modules, "sentencepiece", None)  # import fails
    assert translate_cli.main([str(outdir), "--input", str(tmp_path / "in.txt")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install sentencepiece" in err


def test_a_wrong_sentencepiece_model_is_refused(corpus, old_checkpoint, tmp_path):
    import sentencepiece

    other = tmp_path / "other"
    (tmp_path / "x.txt").write_text("xyz uvw rst opq\n" * 20)
    sentencepiece.SentencePieceTrainer.train(input=str(tmp_path / "x.txt"), model_prefix=str(other), vocab_size=20, hard_vocab_limit=False,
                                             minloglevel=2)
    err = _call(export_cli.main, [old_checkpoint, tmp_path / "out", "--data", corpus["dicts"], "-s", "src",
                                  "-t", "tgt", "--spm", f"{other}.model", "--no-verify"], code=2)
    assert "not the sentencepiece model the checkpoint was trained with" in err and not (tmp_path / "out").exists()


# -- --overwrite ------------------------------------------------------------------------------

def test_overwrite_replaces_only_an_earlier_export(corpus, old_checkpoint, text_export, tmp_path):
    outdir, _ = text_export
    argv = [old_checkpoint, None, "--data", corpus["dicts"], "-s", "src", "-t", "tgt", "--overwrite", "--no-verify"]
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    mixed = tmp_path / "mixed"
    shutil.copytree(outdir, mixed)
    (mixed / "notes.txt").write_text("mine")
    a_file = tmp_path / "file.txt"
    a_file.write_text("mine")
    for target, message in ((foreign, "not an earlier un-export folder (no manifest.json)"),
                            (mixed, "holds files un-export did not write (notes.txt)"),
                            (a_file, "not an earlier un-export folder")):
        before = sorted(p.name for p in target.iterdir()) if target.is_dir() else target.read_text()
        argv[1] = target
        err = _call(export_cli.main, argv, code=2)
        assert message in err and err.count("\n") == 1
        assert (sorted(p.name for p in target.iterdir()) if target.is_dir() else target.read_text()) == before

    earlier = tmp_path / "earlier"
    shutil.copytree(outdir, earlier)
    argv[1] = earlier
    _call(export_cli.main, argv)
    assert json.loads((earlier / "manifest.json").read_text())["sentencepiece"] is None  # the new export
    assert sorted(p.name for p in tmp_path.iterdir()) == ["earlier", "file.txt", "foreign", "mixed"]


# -- the training profiles and the data scripts ------------------------------------------------

def test_every_training_profile_names_the_language_pair(tmp_path):
    from un_tools.reproduce import config, train

    for name in config.available():
        profile = config.load_profile(name)
        if not profile.dataset:
            continue
        dataset = config.load_dataset(profile.dataset)
        cmd = train.build_command(profile, dataset, "un", 1, tmp_path, tmp_path, [])
        assert config.flag_value(cmd, "--source-lang") == dataset.src, name
        assert config.flag_value(cmd, "--target-lang") == dataset.tgt, name


@pytest.mark.parametrize("script", ["prepare-iwslt14.sh", "prepare-multi30k.sh", "prepare-wmt14-en-fr.sh"])
def test_data_scripts_read_relative_paths_from_where_they_are_called(tmp_path, script):
    """``--orig here`` / ``--raw here`` is the caller's ``here`` (the scripts used to cd to the
    checkout, where it is not): the script finds the folder and names what it lacks."""
    (tmp_path / "here").mkdir()
    args = ["--raw", "here"] if script == "prepare-multi30k.sh" else ["--orig", "here", "--test-only"]
    proc = subprocess.run(["bash", str(REPO / "scripts" / script), *args, "--out", "out"],
                          cwd=tmp_path, env={**os.environ, "PYTHON": sys.executable}, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode != 0 and "missing" in proc.stderr and "here/" in proc.stderr, proc.stderr
    assert "no such directory" not in proc.stderr and "Traceback" not in proc.stderr
    assert not (REPO / "out").exists()

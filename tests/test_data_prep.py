"""Tests of the data-preparation scripts (scripts/prepare-*.sh, un_tools/data/).

References used, none of them produced by our code:
* the real Moses Perl scripts shipped in the PyPI package ``mosestokenizer`` (run with
  ``perl``; its tokenizer is a 2016 snapshot, patched here with the three later changes
  of Moses master that fairseq's recipe clones),
* GNU grep/sed running the recipe's own XML extraction commands,
* the Multi30k authors' Moses output (``shared/data/multi30k/tok``),
* lines and sizes of fairseq's own IWSLT14 output (``prepare-iwslt14.sh`` run with
  the canonical codes, as committed in a fairseq checkout).

The comparisons run on excerpts of the real data shipped in ``tests/data`` (sources in its
README), and also on the full sets where the project's ``../shared/data`` lies beside the
checkout; tests that need the full sets skip, saying so, where it does not.
"""

import gzip
import importlib.util
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from un_tools.data import common, iwslt14, multi30k, wmt14
from un_tools.data.moses import MosesPunctNormalizer, MosesTokenizer, clean_corpus, lowercase

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
EXCERPTS = Path(__file__).resolve().parent / "data"  # same layout as DATA, a few dozen lines each
NO_SHARED = (f"needs the full corpora of the project's shared data folder at {DATA}, which is "
             "not part of the repository (the same comparison runs on tests/data excerpts)")
ORIG = DATA / "iwslt14" / "orig"
CODES = DATA / "iwslt14" / "bpe10k.code"
ENV = {**os.environ, "PYTHON": sys.executable, "LC_ALL": "C.UTF-8"}

TRICKY = [
    "Hello, Mr. Smith. He lives in the U.S.",
    "It costs 5,300 dollars, not 5,",
    "Wait... what?.. Really....",
    "I'm sure it's the 1990's, isn't it?",
    "He said: 'no.'",
    "a | b [c] <d> & \"e\"",
    "Spaghetti, Inc. Right?",
    "No. 5 and No. Five, pp. 7.",
    "x\x01y\x1cz\tw",
    "   ",
    "",
    "non\u00a0breaking space and\u2009thin space",
    "e-mail co-advised well-known 3-4 (see p. 4).",
    "z.B. usw. Dr. Müller, Nr. 5 und 3. Mai.",
]


@pytest.fixture(scope="session")
def data():
    if not DATA.is_dir():
        pytest.skip(NO_SHARED)
    return DATA


@pytest.fixture(params=["excerpt", "shared"])
def source(request):
    """``(kind, folder)``: the excerpts in tests/data, then the full shared data."""
    if request.param == "shared" and not DATA.is_dir():
        pytest.skip(NO_SHARED)
    return request.param, (EXCERPTS if request.param == "excerpt" else DATA)


def multi30k_raw(folder, split, lang):
    """A raw Multi30k file: gzip in the shared data, plain text in the excerpts."""
    gz = folder / "multi30k" / "raw" / f"{split}.{lang}.gz"
    return gz if gz.exists() else gz.with_suffix("")


@pytest.fixture(scope="session")
def perl_moses(tmp_path_factory):
    """Moses tokenizer.perl (+ lowercase.perl, normalize-punctuation.perl) as of master."""
    spec = importlib.util.find_spec("mosestokenizer")
    assert spec is not None, ("the reference Moses Perl scripts come from the PyPI package "
                              "'mosestokenizer': pip install --no-deps mosestokenizer==1.2.1")
    pkg = Path(spec.submodule_search_locations[0])
    d = tmp_path_factory.mktemp("moses")
    src = (pkg / "tokenizer-v1.1.perl").read_text(encoding="utf-8")
    patches = [  # Moses master changes since that snapshot (text of moses-smt/mosesdecoder)
        ("    $text =~ s/[,]([^\\p{IsN}])/ , $1/g;\n",
         "    $text =~ s/[,]([^\\p{IsN}])/ , $1/g;\n    $text =~ s/([\\p{IsN}])[,]$/$1 ,/g;\n"),
        ("            my $pre = $1;\n            if ((",
         "            my $pre = $1;\n            if ($i == scalar(@words)-1) {\n"
         "                $word = $pre.\" .\";\n            }\n            elsif (("),
        ("    # restore protected\n", "    $text =~ s/\\.\\' ?$/ . ' /;\n\n    # restore protected\n"),
    ]
    for old, new in patches:  # the first occurrence is in sub tokenize (the second in tokenize_penn)
        assert old in src, f"patch anchor not found in tokenizer-v1.1.perl: {old!r}"
        src = src.replace(old, new, 1)
    (d / "tokenizer.perl").write_text(src, encoding="utf-8")
    # Moses master's prefix lists (those sacremoses ships) in the Perl file format.
    from sacremoses import MosesTokenizer as Sacre

    (d / "nonbreaking_prefixes").mkdir()
    for lang in ("de", "en", "fr"):
        t = Sacre(lang)
        items = list(t.NONBREAKING_PREFIXES) + [
            f"{p} #NUMERIC_ONLY#" for p in t.NUMERIC_ONLY_PREFIXES if f"{p} #NUMERIC_ONLY#" not in t.NONBREAKING_PREFIXES]
        (d / "nonbreaking_prefixes" / f"nonbreaking_prefix.{lang}").write_text("\n".join(items) + "\n", encoding="utf-8")
    (d / "lowercase.perl").write_text(
        'binmode(STDIN, ":utf8");\nbinmode(STDOUT, ":utf8");\nwhile(<STDIN>) {\n  print lc($_);\n}\n')
    (d / "normalize-punctuation.perl").write_bytes((pkg / "normalize-punctuation.perl").read_bytes())
    return d


def perl(script, args, lines):
    res = subprocess.run(["perl", str(script), *args], input="".join(x + "\n" for x in lines).encode(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=True, timeout=300)
    return res.stdout.decode("utf-8").split("\n")[:-1]


def sed_extract(xml):
    """The recipe's own command line."""
    cmd = (f"grep '<seg id' '{xml}' | sed -e 's/<seg id=\"[0-9]*\">\\s*//g' | "
           "sed -e 's/\\s*<\\/seg>\\s*//g' | sed -e \"s/\\’/\\'/g\"")
    out = subprocess.run(["bash", "-c", cmd], stdout=subprocess.PIPE, check=True, env=ENV, timeout=60).stdout
    return out.decode("utf-8").split("\n")[:-1]


def run_script(name, *args, env=ENV):
    """Through the bash wrapper, in a fresh interpreter."""
    return subprocess.run(["bash", str(ROOT / "scripts" / name), *map(str, args)], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=600)


def run_cli(capsys, module, *args):
    """What the wrapper runs, ``python -m un_tools.data.MODULE ARGS``, in this process:
    returns (exit status, stdout, stderr)."""
    capsys.readouterr()
    try:
        common.run_main(lambda: module.main([str(a) for a in args]))
        code = 0
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


# --- IWSLT14 XML extraction -------------------------------------------------------------

def test_iwslt_xml_extraction_matches_grep_sed(data):
    counts = {}
    for lang in ("de", "en"):
        total = 0
        for s in iwslt14.TEST_SETS:
            xml = ORIG / f"{s}.de-en.{lang}.xml"
            ours = iwslt14.xml_segments(xml)
            assert ours == sed_extract(xml), xml
            counts[s] = len(ours)
            total += len(ours)
        assert total == 6750
    assert counts == {"IWSLT14.TED.dev2010": 887, "IWSLT14.TEDX.dev2012": 1165, "IWSLT14.TED.tst2010": 1565,
                      "IWSLT14.TED.tst2011": 1433, "IWSLT14.TED.tst2012": 1700}


def test_iwslt_xml_extraction_matches_grep_sed_on_excerpts():
    for lang in ("de", "en"):
        xml = EXCERPTS / "iwslt14" / "orig" / f"IWSLT14.TED.dev2010.de-en.{lang}.xml"
        ours = iwslt14.xml_segments(xml)
        assert len(ours) == 40 and ours == sed_extract(xml)


def test_xml_extraction_edge_cases(tmp_path):
    xml = tmp_path / "x.xml"
    xml.write_text('<doc>\n<seg id="1">  a ’b’ </seg>  \n  <seg id="12">\tc\u3000</seg>\n<seg id="x">no</seg>\n'
                   '<seg id="3"></seg>\n<seg id="4"> \u00a0d\u00a0 </seg>\n', encoding="utf-8")
    assert iwslt14.xml_segments(xml) == sed_extract(xml)


# --- Moses ports against the real Perl scripts --------------------------------------------

@pytest.mark.parametrize("lang", ["de", "en"])
def test_tokenizer_matches_perl_on_iwslt(perl_moses, source, lang):
    kind, folder = source
    sets = iwslt14.TEST_SETS[:2] if kind == "shared" else ["IWSLT14.TED.dev2010"]
    lines = [x for s in sets for x in iwslt14.xml_segments(folder / "iwslt14" / "orig" / f"{s}.de-en.{lang}.xml")]
    lines += TRICKY
    ref = perl(perl_moses / "lowercase.perl", [], perl(perl_moses / "tokenizer.perl", ["-q", "-threads", "8", "-l", lang], lines))
    tok = MosesTokenizer(lang)
    ours = [lowercase(tok(x)) for x in lines]
    assert len(ours) == len(ref)
    diffs = [(x, o, r) for x, o, r in zip(lines, ours, ref) if o != r]
    assert diffs == []


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_aggressive_tokenizer_matches_perl_on_newstest(perl_moses, source, lang):
    side = "src" if lang == "en" else "ref"
    lines = iwslt14.xml_segments(source[1] / "wmt14-en-fr" / f"newstest2014-fren-{side}.{lang}.sgm")[:1000] + TRICKY
    ref = perl(perl_moses / "tokenizer.perl", ["-q", "-a", "-l", lang], lines)
    tok = MosesTokenizer(lang, aggressive_dash_splits=True)
    assert [(x, tok(x)) for x in lines] == list(zip(lines, ref))


def test_final_period_rule():
    # Moses master splits the period off the last word even after an abbreviation;
    # fairseq's own IWSLT14 output has "... in the u.s ." (see the reference lines below).
    assert MosesTokenizer("en")("roads in the U.S.") == "roads in the U.S ."
    assert MosesTokenizer("en", split_final_period=False)("roads in the U.S.") == "roads in the U.S."
    assert MosesTokenizer("en")("Mr. Smith came.") == "Mr. Smith came ."


@pytest.mark.parametrize("lang", ["de", "en", "fr"])
def test_normalizer_and_lowercase_match_perl(perl_moses, source, lang):
    raw = multi30k_raw(source[1], "val", "de" if lang == "fr" else lang)
    lines = common.read_lines(raw)[:500] + TRICKY + [
        'Sie sagte: „Hallo.“', "l’homme ‘quoted’ ‚low‘ «\u00a0fr\u00a0» 5\u00a0000 ´x´ …", 'He said "x", "y."',
        "( a ) b ( c ).", "50 % 3 ''q'' `b`", "ΣΟΦΟΣ İstanbul ǅ"]
    assert [lowercase(x) for x in lines] == perl(perl_moses / "lowercase.perl", [], lines)
    norm = MosesPunctNormalizer(lang)
    assert [norm(x) for x in lines] == perl(perl_moses / "normalize-punctuation.perl", ["-l", lang], lines)


# --- Multi30k: identical to the dataset authors' Moses output ------------------------------

@pytest.mark.parametrize("split", ["train", "val", "test_2016_flickr"])
@pytest.mark.parametrize("lang", ["de", "en"])
def test_multi30k_tokenization_identical(data, split, lang):
    """On every line of the full sets (shared data)."""
    raw = common.read_lines(DATA / "multi30k" / "raw" / f"{split}.{lang}.gz")
    ref = common.read_lines(DATA / "multi30k" / "tok" / f"{split}.lc.norm.tok.{lang}")
    ours = multi30k.tokenize_lines(raw, lang)
    assert len(ours) == len(ref)
    assert [(r, o) for r, o, t in zip(raw, ours, ref) if o != t] == []


@pytest.mark.parametrize("lang", ["de", "en"])
def test_multi30k_tokenization_identical_on_excerpts(lang):
    raw = common.read_lines(multi30k_raw(EXCERPTS, "val", lang))
    ref = common.read_lines(EXCERPTS / "multi30k" / "tok" / f"val.lc.norm.tok.{lang}")
    assert len(raw) == len(ref) == 40
    assert multi30k.tokenize_lines(raw, lang) == ref


# --- clean-corpus-n -----------------------------------------------------------------------

def test_clean_corpus_rules():
    w = lambda n: " ".join(["w"] * n)  # noqa: E731
    pairs = [
        (w(1), w(1)),          # kept: 1 token each
        ("", w(1)),            # dropped: empty
        ("   ", w(2)),         # dropped: blank after whitespace cleaning
        (w(175), w(175)),      # kept: at the maximum
        (w(176), w(150)),      # dropped: too long
        (w(10), w(15)),        # kept: ratio exactly 1.5
        (w(10), w(16)),        # dropped: ratio 1.6
        (w(16), w(10)),        # dropped: ratio 1.6 the other way
        ("a  b\t c ", " x y z"),  # kept, whitespace normalised
        ("a|b c", "x y"),      # kept, factor bar removed
        ("x" * 1001, "y"),     # dropped: word longer than 1000 characters
        ("x" * 1000, "y"),     # kept
    ]
    kept = clean_corpus([p[0] for p in pairs], [p[1] for p in pairs], 1, 175, 1.5)
    assert kept == [(w(1), w(1)), (w(175), w(175)), (w(10), w(15)), ("a b c", "x y z"), ("ab c", "x y"),
                    ("x" * 1000, "y")]
    with pytest.raises(ValueError):
        clean_corpus(["a"], [], 1, 175, 1.5)


# --- scripts ------------------------------------------------------------------------------

# Lines of fairseq's own iwslt14.tokenized.de-en/test.{de,en} (canonical codes), and its sizes.
FAIRSEQ_TEST_DE_LINE_174 = "aber dies sind alle straßen in den u.@@ s@@ .@@ a ."
FAIRSEQ_TEST_EN_LINES = [
    "like here , we have mr. di@@ mit@@ ry gol@@ u@@ bo@@ v from the city of k@@ ie@@ v in u@@ kra@@ ine .",
    "well dig@@ in@@ ot@@ ar is a c@@ .@@ a .",
    "they had sold this tool for 2@@ 8@@ 0,000 euro@@ s to the eg@@ yp@@ ti@@ an government .",
]
FAIRSEQ_TEST_CHARS = {"de": 797927, "en": 714592}


def test_iwslt_test_only_on_shared_data(data, tmp_path, capsys):
    out = tmp_path / "iwslt"
    res = run_script("prepare-iwslt14.sh", "--orig", ORIG, "--bpe-codes", CODES, "--test-only", "--out", out)
    assert res.returncode == 0, res.stderr
    assert "6,750 lines" in res.stdout
    de, en = (common.read_lines(out / f"test.{l}") for l in ("de", "en"))
    assert len(de) == len(en) == 6750
    assert de[173] == FAIRSEQ_TEST_DE_LINE_174
    assert all(x in en for x in FAIRSEQ_TEST_EN_LINES)
    for l in ("de", "en"):
        assert len((out / f"test.{l}").read_text(encoding="utf-8")) == FAIRSEQ_TEST_CHARS[l]
        tok = common.read_lines(out / "tmp" / f"test.{l}")  # concatenation order of the recipe
        starts = [0, 887, 887 + 1165, 887 + 1165 + 1565, 6750 - 1700]
        for s, start in zip(iwslt14.TEST_SETS, starts):
            assert tok[start] == common.read_lines(out / "tmp" / f"{s}.de-en.{l}")[0]
    assert not (out / "train.de").exists() and not (out / "bin").exists()

    # idempotent re-run: nothing rewritten
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    code, stdout, err = run_cli(capsys, iwslt14, "--orig", ORIG, "--bpe-codes", CODES, "--test-only", "--out", out)
    assert code == 0, err
    assert "6,750 lines" in stdout
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == mtimes


def test_iwslt_missing_training_file(tmp_path, capsys):
    codes = tmp_path / "codes"
    codes.write_text("#version: 0.2\ne n\n", encoding="utf-8")
    code, _, err = run_cli(capsys, iwslt14, "--orig", EXCERPTS / "iwslt14" / "orig", "--bpe-codes", codes,
                           "--out", tmp_path / "o")
    assert code == 2
    assert "train.tags.de-en.de" in err and "train.tags.de-en.en" in err
    assert not (tmp_path / "o").exists()  # checked before any work


def test_iwslt_bad_codes_leave_no_partial_output(tmp_path, capsys):
    out = tmp_path / "o"
    code, _, err = run_cli(capsys, iwslt14, "--orig", EXCERPTS / "iwslt14" / "orig", "--bpe-codes",
                           tmp_path / "nope.code", "--test-only",
                           "--test-sets", "IWSLT14.TED.dev2010", "--out", out)
    assert code == 2 and "nope.code" in err
    assert not (out / "test.de").exists() and not (out / "test.en").exists()
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]
    assert len(common.read_lines(out / "tmp" / "test.de")) == 40  # finished steps are complete


def test_write_lines_is_atomic(tmp_path):
    def lines():
        yield "first"
        raise RuntimeError("disk full")

    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError):
        common.write_lines(target, lines())
    assert list(tmp_path.iterdir()) == []


def test_download_error_is_clear(tmp_path):
    with pytest.raises(common.PrepError, match="^could not download http://127.0.0.1:9/de-en.tgz: .*; do this$"):
        common.download("http://127.0.0.1:9/de-en.tgz", tmp_path / "de-en.tgz", "do this")
    assert list(tmp_path.iterdir()) == []


# --- downloads: a local copy works, an HTML page or a broken archive is one clear error ---------

HTML = "<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head><body>gone</body></html>\n"


def iwslt_archive(path, test_sets=("IWSLT14.TED.dev2010",), drop=()):
    """A gzip tar laid out as fairseq's de-en.tgz: the excerpts' XML files and a few training lines."""
    with tarfile.open(path, "w:gz") as t:
        for l in ("de", "en"):
            for s in test_sets:
                t.add(EXCERPTS / "iwslt14" / "orig" / f"{s}.de-en.{l}.xml", f"de-en/{s}.de-en.{l}.xml")
            train = path.parent / f"train.tags.de-en.{l}"
            train.write_text("<url>http://x</url>\nein satz .\n", encoding="utf-8")
            if f"de-en/train.tags.de-en.{l}" not in drop:
                t.add(train, f"de-en/train.tags.de-en.{l}")
    return path


def test_iwslt_archive_by_url_or_file_gives_the_same_test_set(tmp_path, capsys):
    archive = iwslt_archive(tmp_path / "de-en.tgz")
    sets = ["--test-sets", "IWSLT14.TED.dev2010", "--test-only"]
    code, _, err = run_cli(capsys, iwslt14, "--orig", EXCERPTS / "iwslt14" / "orig", *sets, "--out", tmp_path / "a")
    assert code == 0, err
    code, _, err = run_cli(capsys, iwslt14, "--url", archive.as_uri(), *sets, "--out", tmp_path / "b")
    assert code == 0, err
    assert "MD5" in err and iwslt14.MD5 in err  # a warning only: the excerpt is not the real archive
    code, _, err = run_cli(capsys, iwslt14, "--orig", archive, *sets, "--out", tmp_path / "c")
    assert code == 0, err
    for l in ("de", "en"):
        expected = common.read_lines(tmp_path / "a" / "tmp" / f"test.{l}")
        assert len(expected) == 40
        assert common.read_lines(tmp_path / "b" / "tmp" / f"test.{l}") == expected
        assert common.read_lines(tmp_path / "c" / "tmp" / f"test.{l}") == expected
    assert (tmp_path / "b" / "tmp" / "de-en.tgz").read_bytes() == archive.read_bytes()


@pytest.mark.parametrize("case", ["html-by-url", "html-as-orig", "truncated", "plain-tar", "incomplete"])
def test_iwslt_bad_archive_is_one_clear_line_and_writes_nothing(tmp_path, capsys, case):
    good = iwslt_archive(tmp_path / "good.tgz")
    bad = tmp_path / "dl" / "de-en.tgz"  # what a dead link saves under the archive's name
    bad.parent.mkdir()
    if case.startswith("html"):
        bad.write_text(HTML)
    elif case == "truncated":
        bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif case == "plain-tar":
        with tarfile.open(bad, "w") as t:
            t.add(EXCERPTS / "iwslt14" / "orig", "de-en")
    else:
        iwslt_archive(bad, drop=("de-en/train.tags.de-en.en",))
    source = ["--orig", bad] if case == "html-as-orig" else ["--url", bad.as_uri()]
    out = tmp_path / "out"
    code, stdout, err = run_cli(capsys, iwslt14, *source, "--test-only", "--test-sets", "IWSLT14.TED.dev2010",
                                "--out", out)
    assert code == 2
    lines = [x for x in err.splitlines() if not x.startswith("warning: ")]
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "by hand" in lines[0] and "--orig" in lines[0] and "curl" in lines[0]
    reason = {"html-by-url": "HTML page", "html-as-orig": "HTML page", "truncated": "not a complete gzip tar",
              "plain-tar": "not a complete gzip tar", "incomplete": "lacks de-en/train.tags.de-en.en"}[case]
    assert reason in lines[0]
    assert not out.exists()
    assert bad.exists()  # the user's own file (or the server's) is never removed


def test_iwslt_bad_download_into_an_existing_folder_leaves_it_as_it_was(tmp_path, capsys):
    bad = tmp_path / "de-en.tgz"
    bad.write_text(HTML)
    out = tmp_path / "out"
    (out / "tmp").mkdir(parents=True)
    (out / "notes.txt").write_text("mine")
    code, _, err = run_cli(capsys, iwslt14, "--url", bad.as_uri(), "--test-only", "--out", out)
    assert code == 2 and "HTML page" in err
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == ["notes.txt", "tmp"]


def test_multi30k_html_download_is_one_clear_line_and_writes_nothing(tmp_path, capsys, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    for split in ("train", "val", "test_2016_flickr"):
        for l in ("de", "en"):
            (site / f"{split}.{l}.gz").write_bytes(gzip.compress((EXCERPTS / "multi30k" / "raw" / f"val.{l}").read_bytes()))
    (site / "test_2016_flickr.en.gz").write_text(HTML)
    monkeypatch.setattr(multi30k, "URL", site.as_uri() + "/{name}")
    monkeypatch.setattr(multi30k, "DEFAULT_RAW", tmp_path / "none")
    out = tmp_path / "m30k"
    code, _, err = run_cli(capsys, multi30k, "--out", out)
    assert code == 2
    assert len(err.splitlines()) == 1 and "HTML page" in err and "--raw" in err and "by hand" in err
    assert not out.exists()


def test_wmt14_truncated_download_is_one_clear_line_and_writes_nothing(tmp_path, capsys, monkeypatch):
    archive = tmp_path / "test-full.tgz"
    with tarfile.open(archive, "w:gz") as t:
        t.add(EXCERPTS / "wmt14-en-fr", "test-full")
    archive.write_bytes(archive.read_bytes()[:200])
    monkeypatch.setattr(wmt14, "URLS", [archive.as_uri()])
    out = tmp_path / "wmt"
    code, _, err = run_cli(capsys, wmt14, "--test-only", "--out", out)
    assert code == 2
    assert len(err.splitlines()) == 1 and "not a complete gzip tar" in err and "--orig" in err
    assert not out.exists()


def test_prepare_scripts_import_neither_fairseq_nor_torch(tmp_path):
    """--help and a full Multi30k preparation (on the excerpts) through the bash wrapper, with
    Python's import profiler on: fairseq runs only as fairseq-preprocess's own process."""
    raw = tmp_path / "raw"
    raw.mkdir()
    for split in ("train", "val", "test_2016_flickr"):
        for l in ("de", "en"):
            (raw / f"{split}.{l}.gz").write_bytes(gzip.compress((EXCERPTS / "multi30k" / "raw" / f"val.{l}").read_bytes()))
    env = {**ENV, "PYTHONPROFILEIMPORTTIME": "1"}
    for args in (["--help"], ["--raw", raw, "--vocab-size", "120", "--out", tmp_path / "out"]):
        res = run_script("prepare-multi30k.sh", *args, env=env)
        assert res.returncode == 0, res.stderr[-3000:]
        imported = {line.rsplit("|", 1)[1].strip().split(".")[0]
                    for line in res.stderr.splitlines() if line.startswith("import time:") and "|" in line}
        assert "un_tools" in imported  # the profiler did see the script's imports
        assert not imported & {"torch", "fairseq", "fairseq_cli", "un_fairseq"}, args
    assert (tmp_path / "out" / "bin" / "dict.de.txt").exists()


def test_wmt14_test_only_and_missing_corpora(data, tmp_path, capsys):
    code, stdout, err = run_cli(capsys, wmt14, "--orig", DATA / "wmt14-en-fr", "--test-only", "--out", tmp_path / "t")
    assert code == 0, err
    assert "3,003 lines" in stdout
    for l in ("en", "fr"):
        assert len(common.read_lines(tmp_path / "t" / "tmp" / f"test.{l}")) == 3003
    code, _, err = run_cli(capsys, wmt14, "--orig", DATA / "wmt14-en-fr", "--out", tmp_path / "full")
    assert code == 2
    for name in ("europarl-v7.fr-en.en", "commoncrawl.fr-en.fr", "undoc.2000.fr-en.en",
                 "news-commentary-v9.fr-en.fr", "giga-fren.release2.fixed.en"):
        assert name in err


def test_multi30k_script_small(data, tmp_path, capsys):
    raw = tmp_path / "raw"
    raw.mkdir()
    for split in ("train", "val", "test_2016_flickr"):
        for l in ("de", "en"):
            lines = common.read_lines(DATA / "multi30k" / "raw" / f"{split}.{l}.gz")[:300 if split == "train" else 20]
            with gzip.open(raw / f"{split}.{l}.gz", "wt", encoding="utf-8") as f:
                f.write("".join(x + "\n" for x in lines))
    out = tmp_path / "m30k"
    code, stdout, err = run_cli(capsys, multi30k, "--raw", raw, "--vocab-size", "400", "--out", out)
    assert code == 0, err
    assert "vocabulary: 400" in stdout
    assert len(common.read_lines(out / "train.de")) == 300 and len(common.read_lines(out / "test.en")) == 20
    assert (out / "bin" / "train.de-en.de.bin").exists() and (out / "bin" / "dict.en.txt").exists()
    assert (out / "bin" / "dict.de.txt").read_bytes() == (out / "bin" / "dict.en.txt").read_bytes()
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    assert run_cli(capsys, multi30k, "--raw", raw, "--vocab-size", "400", "--out", out)[0] == 0
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == mtimes
    code, _, err = run_cli(capsys, multi30k, "--raw", tmp_path / "none", "--out", tmp_path / "x")
    assert code == 2 and "none" in err


@pytest.mark.parametrize("module,script,flags", [
    (iwslt14, "prepare-iwslt14.sh", ["--orig", "--bpe-codes", "--test-only", "--out"]),
    (wmt14, "prepare-wmt14-en-fr.sh", ["--orig", "--bpe-codes", "--test-only", "--out"]),
    (multi30k, "prepare-multi30k.sh", ["--raw", "--vocab-size", "--out"]),
])
def test_help(capsys, module, script, flags):
    code, stdout, _ = run_cli(capsys, module, "--help")
    assert code == 0 and stdout.startswith(f"usage: {script}")
    assert all(f in stdout for f in flags)
    wrapper = (ROOT / "scripts" / script).read_text()
    assert 'source "$(dirname "${BASH_SOURCE[0]}")/lib/python.sh"' in wrapper
    assert '"$PYTHON" -m un_tools.data.' + module.__name__.rsplit(".", 1)[1] in wrapper


def test_iwslt_full_pipeline_on_small_training_file(data, tmp_path, capsys):
    orig = tmp_path / "orig" / "de-en"  # layout of the unpacked archive
    orig.mkdir(parents=True)
    for l in ("de", "en"):
        (orig / f"IWSLT14.TED.dev2010.de-en.{l}.xml").symlink_to(ORIG / f"IWSLT14.TED.dev2010.de-en.{l}.xml")
    de = common.read_lines(DATA / "multi30k" / "raw" / "train.de.gz")[:461]
    en = list(de)  # same text on both sides: every ratio is about 1 ...
    de[5], en[5] = "viel zu " * 100, "far too"  # ... except here: removed by the ratio rule
    header = {"de": ["<url>http://x</url>", "<talkid>1</talkid>", "<title>Ein Titel</title>"],
              "en": ["<url>http://x</url>", "<talkid>1</talkid>", "<title>A title</title>"]}
    for l, lines in (("de", de), ("en", en)):
        common.write_lines(orig / f"train.tags.de-en.{l}", header[l] + lines)
    out = tmp_path / "out"
    code, stdout, err = run_cli(capsys, iwslt14, "--orig", tmp_path / "orig", "--test-sets", "IWSLT14.TED.dev2010",
                                "--out", out)
    assert code == 0, err
    tok_de = common.read_lines(out / "tmp" / "train.tags.de-en.tok.de")
    assert len(tok_de) == 462 and tok_de[0] == "Ein Titel"  # <url>, <talkid> lines dropped, tags stripped
    kept = common.read_lines(out / "tmp" / "train.tags.de-en.de")
    assert len(kept) == 461 and kept[0] == "ein titel"  # one pair cleaned away, lowercased
    valid, train = (common.read_lines(out / "tmp" / f"{s}.de") for s in ("valid", "train"))
    assert valid == kept[22::23] and len(train) == 461 - 20
    assert (out / "code").exists() and len(common.read_lines(out / "train.en")) == 441
    assert (out / "bin" / "train.de-en.de.bin").exists() and (out / "bin" / "test.de-en.en.idx").exists()
    assert "entries in the joined fairseq dictionary" in stdout

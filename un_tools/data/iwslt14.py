"""IWSLT14 German-English: fairseq's ``examples/translation/prepare-iwslt14.sh`` in Python.

Steps (same files as the recipe, ``OUT/tmp`` holding the intermediate ones):

1. test: from each XML file keep the lines with ``<seg id``, strip the tags and the
   spaces next to them, turn ``’`` into ``'``; Moses-tokenise, lowercase; concatenate
   dev2010, TEDX.dev2012, tst2010, tst2011, tst2012 (6,750 lines) into ``tmp/test.L``;
2. train (not with ``--test-only``): ``train.tags.de-en.L`` without the ``<url>``,
   ``<talkid>``, ``<keywords>`` lines and without the title/description tags;
   tokenise; clean-corpus-n (1-175 tokens, ratio 1.5); lowercase; every 23rd line is
   ``tmp/valid.L``, the rest ``tmp/train.L``;
3. BPE: learn 10,000 joint merges on ``tmp/train.de + tmp/train.en`` (``OUT/code``)
   unless ``--bpe-codes`` is given; apply to every split -> ``OUT/{train,valid,test}.L``;
4. ``fairseq-preprocess --joined-dictionary`` -> ``OUT/bin`` (not with ``--test-only``).

The archive comes from fairseq's mirror (``URL``) unless ``--orig`` names a local copy; a
download, or an archive given with ``--orig``, is checked before use (a gzip tar holding every
file of :func:`members`): on any failure one line says how to fetch it by hand, exit status 2, and
no new output folder is left behind.

Usage: ``python -m un_tools.data.iwslt14 [--orig DIR|ARCHIVE] [--bpe-codes FILE] [--test-only] --out DIR``
"""

import argparse
import re
from pathlib import Path

from un_tools.data import common
from un_tools.data.common import PrepError, exists, log, read_lines, write_lines
from un_tools.data.moses import MosesTokenizer, clean_corpus, lowercase

# fairseq's mirror (examples/translation/prepare-iwslt14.sh); the WIT3 original
# (wit3.fbk.eu/archive/2014-01/texts/de/en/de-en.tgz) answers 404 or an HTML page
URL = "http://dl.fbaipublicfiles.com/fairseq/data/iwslt14/de-en.tgz"
MD5 = "10936dfdf616504ddbd844e91b94ef4a"  # published by a third party, not by fairseq: a warning only
SRC, TGT, PAIR = "de", "en", "de-en"
TEST_SETS = ["IWSLT14.TED.dev2010", "IWSLT14.TEDX.dev2012", "IWSLT14.TED.tst2010",
             "IWSLT14.TED.tst2011", "IWSLT14.TED.tst2012"]


def members(test_sets=TEST_SETS):
    """What the archive must hold: the training text and the dev/test XML files, under de-en/."""
    return [f"{PAIR}/train.tags.{PAIR}.{l}" for l in (SRC, TGT)] + [
        f"{PAIR}/{s}.{PAIR}.{l}.xml" for s in test_sets for l in (SRC, TGT)]


def by_hand(url):
    """The end of every download error: how to fetch the archive yourself."""
    return (f"fetch it by hand (curl -fLO {url}) and pass --orig de-en.tgz, "
            "or unpack it (tar xzf de-en.tgz) and pass --orig de-en")
BPE_TOKENS = 10000
VALID_EVERY = 23

# GNU sed's \s (C.UTF-8 / en_US.UTF-8 locale): ASCII whitespace plus the Unicode
# spaces glibc's iswspace() knows (not U+00A0, U+2007, U+202F).
_SED_SPACE = "[ \t\n\r\f\v\u1680\u2000-\u2006\u2008-\u200a\u2028\u2029\u205f\u3000]"
_SEG_OPEN = re.compile(r'<seg id="[0-9]*">' + _SED_SPACE + "*")
_SEG_CLOSE = re.compile(_SED_SPACE + r"*</seg>" + _SED_SPACE + "*")


def xml_segments(path):
    """``grep '<seg id' | sed 's/<seg id="[0-9]*">\\s*//g' | sed 's/\\s*<\\/seg>\\s*//g' | sed "s/’/'/g"``"""
    lines = [line for line in read_lines(path) if "<seg id" in line]
    return [_SEG_CLOSE.sub("", _SEG_OPEN.sub("", line)).replace("\u2019", "'") for line in lines]


def train_text(path):
    """The recipe's grep -v / sed filter of ``train.tags.de-en.L``."""
    out = []
    for line in read_lines(path):
        if "<url>" in line or "<talkid>" in line or "<keywords>" in line:
            continue
        for tag in ("<title>", "</title>", "<description>", "</description>"):
            line = line.replace(tag, "")
        out.append(line)
    return out


def find_orig(orig):
    """The folder holding the IWSLT14 files: ``DIR/de-en`` (unpacked archive) or ``DIR``."""
    orig = Path(orig)
    if not orig.is_dir():
        raise PrepError(f"--orig: no such directory: {orig}")
    return orig / PAIR if (orig / PAIR).is_dir() else orig


def prepare(out, orig=None, bpe_codes=None, test_only=False, workers=2, test_sets=TEST_SETS, url=URL):
    """Run the recipe into ``out``; return the list of written text files."""
    out = Path(out)
    tmp = out / "tmp"
    if orig is None or Path(orig).is_file():  # download and/or verify the archive, then unpack it
        name = Path(orig).name if orig is not None else "de-en.tgz"
        if not (tmp / "orig" / f".{name}.extracted").exists():  # else unpacked by an earlier run
            with common.removed_on_error(tmp / "orig"):
                archive = Path(orig) if orig is not None else common.download(url, tmp / name, by_hand(url))
                if orig is None:
                    common.md5_note(archive, MD5)
                common.unpack(archive, tmp / "orig", members(test_sets), by_hand(url), downloaded=orig is None)
        orig = tmp / "orig"
    orig = find_orig(orig)
    xmls = {(s, l): orig / f"{s}.{PAIR}.{l}.xml" for s in test_sets for l in (SRC, TGT)}
    trains = {l: orig / f"train.tags.{PAIR}.{l}" for l in (SRC, TGT)}
    common.require(list(xmls.values()) + ([] if test_only else list(trains.values())),
                   hint=f"(the full {URL.rsplit('/', 1)[1]} has them; without --orig it is downloaded; "
                        "--test-only needs only the XML dev/test files)")

    log("pre-processing valid/test data...")
    for l in (SRC, TGT):
        tok = MosesTokenizer(l)
        for s in test_sets:
            f = tmp / f"{s}.{PAIR}.{l}"
            if not exists(f):
                write_lines(f, [lowercase(tok(x)) for x in xml_segments(xmls[s, l])])
        if not exists(tmp / f"test.{l}"):
            write_lines(tmp / f"test.{l}", [x for s in test_sets for x in read_lines(tmp / f"{s}.{PAIR}.{l}")])

    splits = ["test"]
    if not test_only:
        splits = ["train", "valid", "test"]
        log("pre-processing train data...")
        for l in (SRC, TGT):
            f = tmp / f"train.tags.{PAIR}.tok.{l}"
            if not exists(f):
                tok = MosesTokenizer(l)
                write_lines(f, [tok(x) for x in train_text(trains[l])])
        if not exists(*(tmp / f"train.tags.{PAIR}.{l}" for l in (SRC, TGT))):
            pairs = clean_corpus(read_lines(tmp / f"train.tags.{PAIR}.tok.{SRC}"),
                                 read_lines(tmp / f"train.tags.{PAIR}.tok.{TGT}"), 1, 175, 1.5)
            write_lines(tmp / f"train.tags.{PAIR}.{SRC}", [lowercase(f) for f, _ in pairs])
            write_lines(tmp / f"train.tags.{PAIR}.{TGT}", [lowercase(e) for _, e in pairs])
        log("creating train, valid, test...")
        for l in (SRC, TGT):
            common.split_valid(tmp / f"train.tags.{PAIR}.{l}", tmp, l, VALID_EVERY)
        if bpe_codes is None:
            bpe_codes = common.learned_codes(out, tmp, SRC, TGT, BPE_TOKENS)

    if bpe_codes is None:
        log("no --bpe-codes given with --test-only: BPE skipped, tokenised test set in tmp/")
        return [tmp / f"test.{l}" for l in (SRC, TGT)]
    segment = common.bpe_segmenter(bpe_codes)
    written = []
    for l in (SRC, TGT):
        for split in splits:
            f = out / f"{split}.{l}"
            if not exists(f):
                log(f"apply BPE to {split}.{l}...")
                write_lines(f, [segment(x) for x in read_lines(tmp / f"{split}.{l}")])
            written.append(f)
    if not test_only:
        common.fairseq_preprocess(out, SRC, TGT, splits, workers)
    return written


def main(argv=None):
    p = argparse.ArgumentParser(
        prog="prepare-iwslt14.sh",
        description="IWSLT14 De-En as fairseq's examples/translation/prepare-iwslt14.sh, in Python "
                    "(Moses tokenizer/lowercase/clean-corpus ports, subword-nmt BPE, fairseq-preprocess).")
    p.add_argument("--orig", help="a local copy of the archive: de-en.tgz itself, or unpacked (its de-en/ folder, "
                                  "or a folder holding the files); default: download --url")
    p.add_argument("--url", default=URL, help=f"where to download the archive from (default: fairseq's mirror {URL})")
    p.add_argument("--bpe-codes", help="apply these subword-nmt codes (a local copy of the canonical 10k "
                                       "codes, bpe10k.code) instead of learning 10k merges")
    p.add_argument("--test-only", action="store_true",
                   help="only build the test set (no training file needed; no binarization)")
    p.add_argument("--workers", type=int, default=2, help="fairseq-preprocess workers (default 2)")
    p.add_argument("--test-sets", nargs="+", default=TEST_SETS, help=argparse.SUPPRESS)
    p.add_argument("--out", required=True, help="output folder")
    a = p.parse_args(argv)
    files = prepare(a.out, a.orig, a.bpe_codes, a.test_only, a.workers, a.test_sets, a.url)
    codes = a.bpe_codes or (Path(a.out) / "code")
    vocab = None
    dict_file = Path(a.out) / "bin" / f"dict.{SRC}.txt"
    if dict_file.exists():
        vocab = f"{len(read_lines(dict_file))} entries in the joined fairseq dictionary (+4 specials)"
    elif Path(codes).exists():
        vocab = f"{len(read_lines(codes)) - 1} BPE merges in {codes}"
    common.summary("IWSLT14 de-en", files, vocab)


if __name__ == "__main__":
    common.run_main(main)

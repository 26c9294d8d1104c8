"""WMT14 English-French: fairseq's ``examples/translation/prepare-wmt14en2fr.sh`` in Python.

Steps (as the recipe; intermediate files in ``OUT/tmp``):

1. train (not with ``--test-only``): each corpus below, per side, through
   normalize-punctuation, remove-non-printing-char and ``tokenizer.perl -a`` (aggressive
   hyphen splitting), concatenated into ``tmp/train.tags.en-fr.tok.L``; every 1333rd line
   is ``tmp/valid.L``, the rest ``tmp/train.L`` (no lowercasing);
2. test: newstest2014 ``<seg id`` lines (``-src.en`` / ``-ref.fr``), tags stripped,
   ``’`` -> ``'``, ``tokenizer.perl -a`` -> ``tmp/test.L`` (3,003 lines);
3. BPE: 40,000 joint merges learnt on train (``OUT/code``) unless ``--bpe-codes``;
   applied to all splits; train and valid then cleaned (1-250 tokens, ratio 1.5);
4. ``fairseq-preprocess --joined-dictionary`` -> ``OUT/bin`` (not with ``--test-only``).

Usage: ``python -m un_tools.data.wmt14 [--orig DIR] [--bpe-codes FILE] [--test-only] --out DIR``
"""

import argparse
from pathlib import Path

from un_tools.data import common
from un_tools.data.common import PrepError, exists, log, read_lines, write_lines
from un_tools.data.iwslt14 import xml_segments
from un_tools.data.moses import MosesPunctNormalizer, MosesTokenizer, clean_corpus, remove_non_printing

SRC, TGT, PAIR = "en", "fr", "en-fr"
BPE_TOKENS = 40000
VALID_EVERY = 1333
URLS = [
    "http://statmt.org/wmt13/training-parallel-europarl-v7.tgz",
    "http://statmt.org/wmt13/training-parallel-commoncrawl.tgz",
    "http://statmt.org/wmt13/training-parallel-un.tgz",
    "http://statmt.org/wmt14/training-parallel-nc-v9.tgz",
    "http://statmt.org/wmt10/training-giga-fren.tar",
    "http://statmt.org/wmt14/test-full.tgz",
]
# a path each archive must hold (the training corpora below and newstest2014)
MEMBERS = {
    "training-parallel-europarl-v7.tgz": "training/europarl-v7.fr-en.en",
    "training-parallel-commoncrawl.tgz": "commoncrawl.fr-en.en",
    "training-parallel-un.tgz": "un/undoc.2000.fr-en.en",
    "training-parallel-nc-v9.tgz": "training/news-commentary-v9.fr-en.en",
    "training-giga-fren.tar": "giga-fren.release2.fixed.en.gz",
    "test-full.tgz": "test-full/newstest2014-fren-src.en.sgm",
}
CORPORA = ["training/europarl-v7.fr-en", "commoncrawl.fr-en", "un/undoc.2000.fr-en",
           "training/news-commentary-v9.fr-en", "giga-fren.release2.fixed"]


def test_file(orig, lang):
    """newstest2014 SGML of ``lang`` (source for en, reference for fr), in DIR/test-full or DIR."""
    name = f"newstest2014-fren-{'src' if lang == SRC else 'ref'}.{lang}.sgm"
    return orig / "test-full" / name if (orig / "test-full" / name).exists() else orig / name


def corpus_file(orig, corpus, lang):
    """A training corpus side; giga-fren may still be gzipped."""
    path = orig / f"{corpus}.{lang}"
    gz = Path(f"{path}.gz")
    return gz if not path.exists() and gz.exists() else path


def prepare(out, orig=None, bpe_codes=None, test_only=False, workers=2):
    """Run the recipe into ``out``; return the list of written text files."""
    out = Path(out)
    tmp = out / "tmp"
    if orig is None:  # the recipe's downloads (only the test archive with --test-only)
        orig = tmp / "orig"
        for url in URLS[-1:] if test_only else URLS:
            name = url.rsplit("/", 1)[1]
            hint = (f"fetch it by hand (curl -fLO {url}), unpack it with the recipe's other archives "
                    "into one folder and pass --orig FOLDER")
            if (orig / f".{name}.extracted").exists():
                continue
            with common.removed_on_error(orig):
                common.unpack(common.download(url, tmp / name, hint), orig, [MEMBERS[name]], hint,
                              downloaded=True)
    orig = Path(orig)
    if not orig.is_dir():
        raise PrepError(f"--orig: no such directory: {orig}")
    needed = [test_file(orig, l) for l in (SRC, TGT)]
    if not test_only:
        needed += [corpus_file(orig, c, l) for c in CORPORA for l in (SRC, TGT)]
    common.require(needed, hint="(the recipe's archives: " + ", ".join(u.rsplit("/", 1)[1] for u in URLS)
                   + "; without --orig they are downloaded; --test-only needs only newstest2014)")

    log("pre-processing test data...")
    for l in (SRC, TGT):
        if not exists(tmp / f"test.{l}"):
            tok = MosesTokenizer(l, aggressive_dash_splits=True)
            write_lines(tmp / f"test.{l}", [tok(x) for x in xml_segments(test_file(orig, l))])

    splits = ["test"]
    if not test_only:
        splits = ["train", "valid", "test"]
        log("pre-processing train data...")
        for l in (SRC, TGT):
            f = tmp / f"train.tags.{PAIR}.tok.{l}"
            if not exists(f):
                norm, tok = MosesPunctNormalizer(l), MosesTokenizer(l, aggressive_dash_splits=True)
                write_lines(f, [tok(remove_non_printing(norm(x)))
                                for c in CORPORA for x in read_lines(corpus_file(orig, c, l))])
            common.split_valid(f, tmp, l, VALID_EVERY)
        if bpe_codes is None:
            bpe_codes = common.learned_codes(out, tmp, SRC, TGT, BPE_TOKENS)

    if bpe_codes is None:
        log("no --bpe-codes given with --test-only: BPE skipped, tokenised test set in tmp/")
        return [tmp / f"test.{l}" for l in (SRC, TGT)]
    segment = common.bpe_segmenter(bpe_codes)
    for split in splits:
        for l in (SRC, TGT):
            if not exists(tmp / f"bpe.{split}.{l}"):
                write_lines(tmp / f"bpe.{split}.{l}", [segment(x) for x in read_lines(tmp / f"{split}.{l}")])
    for split in splits:
        files = [out / f"{split}.{l}" for l in (SRC, TGT)]
        if exists(*files):
            continue
        pairs = list(zip(*(read_lines(tmp / f"bpe.{split}.{l}") for l in (SRC, TGT))))
        if split != "test":
            pairs = clean_corpus([f for f, _ in pairs], [e for _, e in pairs], 1, 250, 1.5)
        write_lines(files[0], [f for f, _ in pairs])
        write_lines(files[1], [e for _, e in pairs])
    if not test_only:
        common.fairseq_preprocess(out, SRC, TGT, splits, workers)
    return [out / f"{s}.{l}" for s in splits for l in (SRC, TGT)]


def main(argv=None):
    p = argparse.ArgumentParser(
        prog="prepare-wmt14-en-fr.sh",
        description="WMT14 En-Fr as fairseq's examples/translation/prepare-wmt14en2fr.sh, in Python.")
    p.add_argument("--orig", help="folder with the unpacked archives (training/, commoncrawl.fr-en.*, un/, "
                                  "giga-fren.release2.fixed.*, test-full/ or the newstest2014 .sgm files); "
                                  "default: download them")
    p.add_argument("--bpe-codes", help="apply these subword-nmt codes instead of learning 40k merges")
    p.add_argument("--test-only", action="store_true", help="only build newstest2014 (no training data needed)")
    p.add_argument("--workers", type=int, default=2, help="fairseq-preprocess workers (default 2)")
    p.add_argument("--out", required=True, help="output folder")
    a = p.parse_args(argv)
    files = prepare(a.out, a.orig, a.bpe_codes, a.test_only, a.workers)
    dict_file = Path(a.out) / "bin" / f"dict.{SRC}.txt"
    codes = Path(a.bpe_codes or Path(a.out) / "code")
    vocab = (f"{len(read_lines(dict_file))} entries in the joined fairseq dictionary (+4 specials)"
             if dict_file.exists() else f"{len(read_lines(codes)) - 1} BPE merges in {codes}"
             if codes.exists() else None)
    common.summary("WMT14 en-fr", files, vocab)


if __name__ == "__main__":
    common.run_main(main)

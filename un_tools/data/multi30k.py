"""Multi30k task 1 German-English, the small real corpus for CPU runs.

Steps:

1. read ``train``/``val``/``test_2016_flickr`` ``.{de,en}.gz`` from ``--raw DIR``
   (default: ``../shared/data/multi30k/raw`` when present, else the dataset's GitHub
   raw files, downloaded into ``OUT/raw``);
2. lowercase, normalize-punctuation, Moses-tokenise -- the dataset authors' own
   ``scripts/task1-tokenize.sh`` pipeline (Moses 3a0631a, Dec 2017: no split of the
   period after a sentence-final abbreviation) -> ``OUT/tok/{train,valid,test}.L``;
   identical to their ``data/task1/tok/*.lc.norm.tok.*`` files;
3. joint sentencepiece BPE (``--vocab-size``, default 8000) learnt on train de+en,
   applied to every split -> ``OUT/{train,valid,test}.L`` (space-separated pieces);
4. ``fairseq-preprocess --joined-dictionary`` de->en -> ``OUT/bin``.

Usage: ``python -m un_tools.data.multi30k [--raw DIR] [--vocab-size N] --out DIR``
"""

import argparse
import os
import tempfile
from pathlib import Path

from un_atomic import atomic_path

from un_tools.data import common
from un_tools.data.common import PrepError, exists, log, read_lines, write_lines
from un_tools.data.moses import MosesPunctNormalizer, MosesTokenizer, lowercase

SRC, TGT = "de", "en"
SPLITS = {"train": "train", "valid": "val", "test": "test_2016_flickr"}
URL = "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw/{name}"
DEFAULT_RAW = common.SHARED_DATA / "multi30k" / "raw"


def tokenize_lines(lines, lang):
    """``lowercase.perl | normalize-punctuation.perl -l L | tokenizer.perl -l L`` (Moses Dec 2017)."""
    norm, tok = MosesPunctNormalizer(lang), MosesTokenizer(lang, split_final_period=False)
    return [tok(norm(lowercase(x))) for x in lines]


def raw_files(raw, out):
    """Map (split, lang) -> raw .gz file, downloading them when no local folder is used."""
    if raw is None and DEFAULT_RAW.is_dir():
        raw = DEFAULT_RAW
    names = {(s, l): f"{name}.{l}.gz" for s, name in SPLITS.items() for l in (SRC, TGT)}
    if raw is None:
        raw = Path(out) / "raw"
        hint = (f"fetch {', '.join(names.values())} by hand from {URL.format(name='')} "
                "into one folder and pass --raw FOLDER")
        with common.removed_on_error(raw):
            for name in names.values():
                if not (raw / name).exists():
                    common.check_gzip(common.download(URL.format(name=name), raw / name, hint), hint,
                                      downloaded=True)
    raw = Path(raw)
    if not raw.is_dir():
        raise PrepError(f"--raw: no such directory: {raw}")
    files = {k: raw / v for k, v in names.items()}
    common.require(files.values())
    return files


def train_sentencepiece(lines, model_prefix, vocab_size):
    """Joint BPE model on ``lines`` (identity normalisation: the text is already normalised)."""
    import sentencepiece as spm

    model_prefix = Path(model_prefix)
    model_prefix.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=model_prefix.parent, prefix=f".{model_prefix.name}.") as work:
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(lines), model_prefix=f"{work}/m", vocab_size=vocab_size,
                model_type="bpe", character_coverage=1.0, normalization_rule_name="identity",
                num_threads=2, minloglevel=2, input_sentence_size=0, shuffle_input_sentence=False)
        except RuntimeError as e:
            raise PrepError(f"sentencepiece training failed (try another --vocab-size): {e}") from e
        for ext in (".vocab", ".model"):  # .model last: its presence means "done"
            with atomic_path(f"{model_prefix}{ext}") as tmp:
                os.replace(f"{work}/m{ext}", tmp)


def prepare(out, raw=None, vocab_size=8000, workers=2):
    """Run the pipeline into ``out``; return the list of written BPE'd files."""
    out = Path(out)
    files = raw_files(raw, out)
    log("tokenising...")
    for split in SPLITS:
        for l in (SRC, TGT):
            f = out / "tok" / f"{split}.{l}"
            if not exists(f):
                write_lines(f, tokenize_lines(read_lines(files[split, l]), l))
    model = out / f"spm{vocab_size}"
    if not exists(f"{model}.model"):
        log(f"learning a joint sentencepiece BPE model, vocabulary {vocab_size}...")
        train_sentencepiece(read_lines(out / "tok" / f"train.{SRC}") + read_lines(out / "tok" / f"train.{TGT}"),
                            model, vocab_size)
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=f"{model}.model")
    written = []
    for split in SPLITS:
        for l in (SRC, TGT):
            f = out / f"{split}.{l}"
            if not exists(f):
                write_lines(f, [" ".join(sp.encode(x, out_type=str)) for x in read_lines(out / "tok" / f"{split}.{l}")])
            written.append(f)
    common.fairseq_preprocess(out, SRC, TGT, list(SPLITS), workers)
    return written


def main(argv=None):
    p = argparse.ArgumentParser(
        prog="prepare-multi30k.sh",
        description="Multi30k task 1 De-En: Moses lowercase + normalize-punctuation + tokenizer, joint "
                    "sentencepiece BPE, fairseq-preprocess --joined-dictionary into OUT/bin.")
    p.add_argument("--raw", help="a local copy of the raw corpus: a folder with "
                                 "{train,val,test_2016_flickr}.{de,en}.gz (default: the project's data folder "
                                 "beside the checkout when present, else download from github.com/multi30k/dataset)")
    p.add_argument("--vocab-size", type=int, default=8000, help="joint sentencepiece BPE vocabulary (default 8000)")
    p.add_argument("--workers", type=int, default=2, help="fairseq-preprocess workers (default 2)")
    p.add_argument("--out", required=True, help="output folder")
    a = p.parse_args(argv)
    files = prepare(a.out, a.raw, a.vocab_size, a.workers)
    dict_file = Path(a.out) / "bin" / f"dict.{SRC}.txt"
    common.summary("Multi30k de-en", files,
                   f"{a.vocab_size} sentencepiece pieces; {len(read_lines(dict_file))} entries in the joined "
                   "fairseq dictionary (+4 specials)")


if __name__ == "__main__":
    common.run_main(main)

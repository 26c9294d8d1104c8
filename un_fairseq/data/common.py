"""Shared helpers of the data-preparation pipelines.

Every output file is written atomically (temporary file in the same folder, then
``os.replace``), so an existing output is always complete and a re-run skips it.
"""

import gzip
import os
import shutil
import subprocess
import sys
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

from un_tools.atomic import atomic_path

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


class PrepError(Exception):
    """A user-facing failure (missing input, no network, ...): printed without a traceback."""


def log(msg):
    print(msg, flush=True)


def read_lines(path):
    """Lines of a UTF-8 file (``.gz`` too), split on ``\\n`` only, like Perl and sed."""
    path = Path(path)
    if not path.is_file():
        raise PrepError(f"missing input file: {path}")
    data = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
    lines = data.decode("utf-8").split("\n")
    return lines[:-1] if lines and lines[-1] == "" else lines


def write_lines(path, lines):
    """Write ``lines`` (newline-terminated) atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as f:
        for line in lines:
            f.write(line + "\n")


def exists(*paths):
    """True when every path exists (outputs are atomic, so existing means complete)."""
    return all(Path(p).exists() for p in paths)


def require(paths, hint=""):
    """Raise a PrepError naming every missing file among ``paths``."""
    missing = [str(p) for p in paths if not Path(p).is_file()]
    if missing:
        raise PrepError("missing input file(s):\n  " + "\n  ".join(missing) + (f"\n{hint}" if hint else ""))


def download(url, dest):
    """Download ``url`` to ``dest`` (atomically); skip when ``dest`` exists."""
    dest = Path(dest)
    if dest.exists():
        log(f"{dest} exists, skipping download")
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part")
    log(f"downloading {url} ...")
    try:
        with urllib.request.urlopen(url, timeout=60) as r, open(tmp, "wb") as f:
            shutil.copyfileobj(r, f)
        os.replace(tmp, dest)
    except (urllib.error.URLError, OSError) as e:
        tmp.unlink(missing_ok=True)
        raise PrepError(
            f"could not download {url}: {e}\n"
            "(no network?) Download and unpack it yourself and pass the folder with --orig DIR."
        ) from e
    return dest


def extract(archive, dest):
    """Unpack a .tgz/.tar archive into ``dest`` (once)."""
    stamp = Path(dest) / f".{Path(archive).name}.extracted"
    if not stamp.exists():
        log(f"extracting {archive} ...")
        with tarfile.open(archive) as t:
            t.extractall(dest, filter="data")
        stamp.touch()


def learn_bpe(lines, codes_path, num_symbols):
    """``subword-nmt learn-bpe -s NUM < lines > codes`` (defaults of learn_bpe.py)."""
    from subword_nmt.learn_bpe import learn_bpe as _learn

    with atomic_path(codes_path) as tmp, open(tmp, "w", encoding="utf-8") as out:
        _learn([line + "\n" for line in lines], out, num_symbols)


def split_valid(lines_path, tmp, lang, every):
    """The recipes' split: every ``every``-th line of ``lines_path`` to ``tmp/valid.LANG``,
    the rest to ``tmp/train.LANG`` (skipped when both exist)."""
    if exists(tmp / f"valid.{lang}", tmp / f"train.{lang}"):
        return
    lines = read_lines(lines_path)
    write_lines(tmp / f"valid.{lang}", [x for i, x in enumerate(lines, 1) if i % every == 0])
    write_lines(tmp / f"train.{lang}", [x for i, x in enumerate(lines, 1) if i % every != 0])


def learned_codes(out, tmp, src, tgt, num_symbols):
    """``out/code``: joint BPE codes learnt on ``tmp/train.{src,tgt}`` unless already there."""
    codes = out / "code"
    if not exists(codes):
        log(f"learning {num_symbols} BPE merges on tmp/train.{src} + tmp/train.{tgt}...")
        learn_bpe(read_lines(tmp / f"train.{src}") + read_lines(tmp / f"train.{tgt}"), codes, num_symbols)
    return codes


def bpe_segmenter(codes_path):
    """A function line -> BPE'd line, as ``subword-nmt apply-bpe -c CODES``."""
    from subword_nmt.apply_bpe import BPE

    require([codes_path])
    with open(codes_path, encoding="utf-8") as f:
        bpe = BPE(f)

    def segment(line):
        out = bpe.process_line(line + "\n")  # apply_bpe.py sees the newline too
        return out[:-1] if out.endswith("\n") else out

    return segment


def fairseq_preprocess(out_dir, src, tgt, splits, workers=2, extra=()):
    """Binarize ``out_dir/{split}.{src,tgt}`` with fairseq-preprocess (joined dictionary)
    into ``out_dir/bin``, via a temporary folder renamed at the end."""
    out_dir = Path(out_dir)
    dest = out_dir / "bin"
    if (dest / f"dict.{src}.txt").exists():
        log(f"{dest} exists, skipping fairseq-preprocess")
        return dest
    tmp = out_dir / ".bin.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = [sys.executable, "-m", "fairseq_cli.preprocess", "--source-lang", src, "--target-lang", tgt,
           "--joined-dictionary", "--workers", str(workers), "--destdir", str(tmp), *extra]
    for split, flag in (("train", "--trainpref"), ("valid", "--validpref"), ("test", "--testpref")):
        if split in splits:
            cmd += [flag, str(out_dir / split)]
    log("running " + " ".join(cmd[2:]))
    res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if res.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise PrepError(f"fairseq-preprocess failed:\n{res.stdout[-3000:]}")
    os.replace(tmp, dest)
    return dest


def summary(title, files, vocab=None):
    """Print lines and tokens of each output file, and the vocabulary size."""
    log(f"== {title} ==")
    for path in files:
        lines = read_lines(path)
        log(f"{str(path):60s} {len(lines):9,d} lines {sum(len(x.split()) for x in lines):11,d} tokens")
    if vocab is not None:
        log(f"vocabulary: {vocab}")


def run_main(main):
    """Run a CLI ``main``; a PrepError becomes ``error: ...`` on stderr and exit status 2."""
    try:
        main()
    except PrepError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)

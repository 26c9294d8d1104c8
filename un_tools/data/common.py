"""Shared helpers of the data-preparation pipelines.

Standard library only at import time (sacremoses, subword-nmt and sentencepiece are imported
where they are used; fairseq runs as a subprocess), so preparing data never imports fairseq
or torch. Every output file is written atomically (:mod:`un_atomic`), so an existing
output is always complete and a re-run skips it; a download is verified before it is used.
"""

import gzip
import hashlib
import http.client
import os
import shutil
import subprocess
import sys
import tarfile
import urllib.error
import urllib.request
import zlib
from contextlib import contextmanager
from pathlib import Path

from un_atomic import atomic_dir, atomic_path

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
        raise PrepError("missing input file(s): " + ", ".join(missing) + (f" {hint}" if hint else ""))


def _is_html(path):
    """True when ``path`` starts like an HTML page (what a dead download link often answers)."""
    with open(path, "rb") as f:
        head = f.read(512).lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html")) or (head.startswith(b"<") and b"<html" in head)


def download(url, dest, by_hand):
    """Download ``url`` to ``dest`` (atomically: ``dest`` exists only when complete); skip when
    ``dest`` exists. Any failure (no network, an HTTP error, an HTML page instead of the file, a
    truncated transfer) raises a one-line PrepError that ends with ``by_hand``: how to fetch
    the file yourself and which flag to pass it with."""
    dest = Path(dest)
    if dest.exists():
        log(f"{dest} exists, skipping download")
        return dest
    log(f"downloading {url} ...")
    try:
        with atomic_path(dest) as tmp:
            with urllib.request.urlopen(url, timeout=60) as r, open(tmp, "wb") as f:
                if r.headers.get_content_type() == "text/html":
                    raise PrepError("the server sent an HTML page, not the file")
                total, done, shown = int(r.headers.get("Content-Length") or 0), 0, 0
                while chunk := r.read(1 << 20):
                    f.write(chunk)
                    done += len(chunk)
                    if done - shown >= 100 << 20:
                        shown = done
                        log(f"  {done >> 20} MiB" + (f" of {total >> 20} MiB" if total else ""))
            if total and done != total:
                raise PrepError(f"the transfer stopped after {done:,d} of {total:,d} bytes")
            if _is_html(tmp):
                raise PrepError("the server sent an HTML page, not the file")
    except PrepError as e:
        raise PrepError(f"could not download {url}: {e}; {by_hand}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        raise PrepError(f"could not download {url}: {reason}; {by_hand}") from None
    return dest


def unpack(archive, dest, members, by_hand, downloaded=False):
    """Verify and unpack a tar archive (gzip-compressed when named ``.tgz``/``.tar.gz``) into
    ``dest``, once: it is extracted into a temporary folder inside ``dest``, and only when it
    reads to its end and holds every path of ``members`` are its entries moved into ``dest``.
    A failure raises a one-line PrepError ending with ``by_hand``; an archive that this run
    ``downloaded`` is then removed, so that the next run fetches it again."""
    archive, dest = Path(archive), Path(dest)
    stamp = dest / f".{archive.name}.extracted"
    if stamp.exists():
        return
    log(f"verifying and extracting {archive} ...")
    work = dest / f".{archive.name}.extracting"
    mode = "r:gz" if archive.name.endswith((".tgz", ".tar.gz")) else "r:*"
    try:
        if not archive.is_file():
            raise PrepError(f"{archive}: no such file")
        if _is_html(archive):
            raise PrepError(f"{archive} is an HTML page, not the archive")
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        try:
            with tarfile.open(archive, mode) as t:
                t.extractall(work, filter="data")
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
            raise PrepError(f"{archive} is not a complete {'gzip ' if mode == 'r:gz' else ''}tar archive ({e})")
        missing = [m for m in members if not (work / m).exists()]
        if missing:
            raise PrepError(f"{archive} is not the expected archive: it lacks {', '.join(missing)}")
        for child in work.iterdir():
            target = dest / child.name
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(child, target)
        stamp.touch()
    except PrepError as e:
        if downloaded:
            archive.unlink(missing_ok=True)
        raise PrepError(f"{e}; {by_hand}") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)


def check_gzip(path, by_hand, downloaded=False):
    """Read a ``.gz`` file to its end: a PrepError (ending with ``by_hand``) when it is an HTML
    page or a truncated or corrupt gzip stream; a file this run ``downloaded`` is then removed."""
    path = Path(path)
    try:
        if _is_html(path):
            raise PrepError(f"{path} is an HTML page, not a gzip file")
        try:
            with gzip.open(path) as f:
                while f.read(1 << 20):
                    pass
        except (EOFError, zlib.error, gzip.BadGzipFile) as e:
            raise PrepError(f"{path} is not a complete gzip file ({e})")
    except PrepError as e:
        if downloaded:
            path.unlink(missing_ok=True)
        raise PrepError(f"{e}; {by_hand}") from None


def md5_note(path, expected):
    """Warn (never fail) when the MD5 of ``path`` differs from a published but unconfirmed one;
    the archive's contents are what :func:`unpack` checks."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    if digest.hexdigest() != expected:
        print(f"warning: {path} has MD5 {digest.hexdigest()}, not the published {expected} (a value "
              "not confirmed by the data's authors); its contents are checked instead", file=sys.stderr)


@contextmanager
def removed_on_error(path):
    """Remove the folders that lead to ``path`` and that this block created, if it fails: a
    failed download leaves no new, half-filled output folder behind."""
    path = Path(path).absolute()
    top = None
    if not path.exists():
        top = path
        while not top.parent.exists():
            top = top.parent
    try:
        yield
    except BaseException:
        if top is not None:
            shutil.rmtree(top, ignore_errors=True)
        raise


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
    into ``out_dir/bin``, via a temporary folder renamed at the end (:func:`atomic_dir`)."""
    out_dir = Path(out_dir)
    dest = out_dir / "bin"
    if (dest / f"dict.{src}.txt").exists():
        log(f"{dest} exists, skipping fairseq-preprocess")
        return dest
    with atomic_dir(dest) as tmp:
        cmd = [sys.executable, "-m", "fairseq_cli.preprocess", "--source-lang", src, "--target-lang", tgt,
               "--joined-dictionary", "--workers", str(workers), "--destdir", str(tmp), *extra]
        for split, flag in (("train", "--trainpref"), ("valid", "--validpref"), ("test", "--testpref")):
            if split in splits:
                cmd += [flag, str(out_dir / split)]
        log("running " + " ".join(cmd[2:]))
        res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if res.returncode != 0:
            raise PrepError(f"fairseq-preprocess failed:\n{res.stdout[-3000:]}")
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
    """Run a CLI ``main``; a PrepError becomes one ``error: ...`` line on stderr and exit status 2."""
    try:
        main()
    except PrepError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)

"""A tiny translation corpus made by the tests, and helpers that run fairseq's real CLIs.

The corpus is a toy task (reverse the sentence and map each word ``aN`` to ``bN``), so a few
updates of a tiny model already move the loss; it is binarized once per session.
"""

import functools
import importlib.metadata
import logging
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path
from typing import List

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

TINY_MODEL = [
    "--arch", "transformer_un", "--share-all-embeddings",
    "--encoder-layers", "2", "--decoder-layers", "2",
    "--encoder-embed-dim", "32", "--decoder-embed-dim", "32",
    "--encoder-ffn-embed-dim", "64", "--decoder-ffn-embed-dim", "64",
    "--encoder-attention-heads", "4", "--decoder-attention-heads", "4",
]
TINY_TRAINING = [
    "--optimizer", "adam", "--adam-betas", "(0.9, 0.98)", "--lr", "1e-3",
    "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "4",
    "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1",
    "--dropout", "0.1", "--max-tokens", "300", "--seed", "3", "--cpu",
    "--no-progress-bar", "--log-interval", "1", "--num-workers", "0",
    "--un-warmup", "2", "--un-window", "2", "--mabn-warmup", "2", "--mabn-window", "2",
    "--pn-warmup", "2", "--disable-validation",
]


def call_cli(main, argv, capsys=None) -> str:
    """Run a fairseq console script's entry point (``fairseq_cli.X.cli_main``) in this
    process, as the console script would, and return what it printed to stdout. Saves the
    few seconds of interpreter start-up that a subprocess costs. Pass ``--num-workers 0``:
    a data-loader worker left behind costs 5 s when the garbage collector shuts it down."""
    saved = sys.argv
    sys.argv = [main.__module__] + [str(a) for a in argv]
    try:
        main()
    finally:
        sys.argv = saved
    return capsys.readouterr().out if capsys is not None else ""


def write_toy_corpus(folder: Path, seed: int = 0) -> None:
    """``{train,valid,test}.{src,tgt}``: 400 / 40 / 40 sentence pairs of 3-12 words."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, size in (("train", 400), ("valid", 40), ("test", 40)):
        src, tgt = [], []
        for _ in range(size):
            words = [rng.randrange(24) for _ in range(rng.randint(3, 12))]
            src.append(" ".join(f"a{w}" for w in words))
            tgt.append(" ".join(f"b{w}" for w in reversed(words)))
        (folder / f"{split}.src").write_text("\n".join(src) + "\n")
        (folder / f"{split}.tgt").write_text("\n".join(tgt) + "\n")


#: console scripts that ``run`` starts as a fork of the test process (their entry point in a
#: child that already holds torch and fairseq: the 3-5 s of imports a new interpreter spends are
#: the largest part of a tiny run). ``un-translate`` stays a new interpreter: its runtime must
#: load without torch. The reproduction drivers and tests/test_install.py start fresh
#: interpreters, so the cold start of each command is still tested.
FORKED = ("fairseq-train", "fairseq-generate", "fairseq-interactive", "fairseq-preprocess",
          "fairseq-validate", "un-fuse", "un-export", "un-average-checkpoints")
LOG_FORMAT = "%(asctime)s | %(levelname)s | %(name)s | %(message)s"  # fairseq_cli's


@functools.lru_cache(maxsize=None)
def _entry_point(name: str):
    (ep,) = [ep for ep in importlib.metadata.entry_points(group="console_scripts") if ep.name == name]
    return ep.load()


def _forked(cmd: List[str], env: dict, timeout: float, input: str = None) -> subprocess.CompletedProcess:
    """``cmd`` as its console script's entry point in a child of this process: its own
    ``sys.argv``, environment, working directory and standard streams (files), its exit status
    from ``SystemExit``; one torch thread (a fork may not enter OpenMP's pool of the parent)."""
    main = _entry_point(cmd[0])
    with tempfile.TemporaryDirectory() as tmp:
        paths = [Path(tmp) / name for name in ("stdin", "stdout", "stderr")]
        paths[0].write_text(input or "")
        for path in paths[1:]:
            path.touch()
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            code = 1
            try:
                for fd, path in enumerate(paths):
                    os.dup2(os.open(path, os.O_RDONLY if fd == 0 else os.O_WRONLY), fd)
                sys.stdin = open(0, closefd=False)
                sys.stdout, sys.stderr = (open(fd, "w", buffering=1, closefd=False) for fd in (1, 2))
                os.environ.clear()
                os.environ.update(env)
                os.chdir(REPO)
                warnings.simplefilter("ignore")
                logging.basicConfig(format=LOG_FORMAT, datefmt="%Y-%m-%d %H:%M:%S", level=logging.INFO,
                                    stream=sys.stdout, force=True)
                import torch
                torch.set_num_threads(1)
                sys.argv = list(cmd)
                sys.exit(main())  # what the console script's wrapper does
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
                if exc.code is not None and not isinstance(exc.code, int):
                    print(exc.code, file=sys.stderr)
            except BaseException:
                traceback.print_exc()
            finally:
                for stream in (sys.stdout, sys.stderr):
                    stream.flush()
                os._exit(code)
        deadline = time.monotonic() + timeout
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise subprocess.TimeoutExpired(cmd, timeout, paths[1].read_text(), paths[2].read_text())
            time.sleep(0.02)
        return subprocess.CompletedProcess(cmd, os.waitstatus_to_exitcode(status),
                                           paths[1].read_text(errors="replace"), paths[2].read_text(errors="replace"))


def run(cmd: List[str], check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    """Run a console script of this environment (600 s at most unless ``timeout`` says
    otherwise), the scripts in ``FORKED`` as a fork of this process; on failure show its output."""
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    kwargs.setdefault("timeout", 600)
    cmd = [str(c) for c in cmd]
    if cmd[0] in FORKED:
        proc = _forked(cmd, env, **kwargs)
    else:
        proc = subprocess.run([str(BIN / cmd[0])] + cmd[1:], cwd=REPO, env=env,
                              capture_output=True, text=True, **kwargs)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, cmd))} failed with {proc.returncode}\n"
            f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-4000:]}"
        )
    return proc


def preprocess(text_dir: Path, dest: Path) -> Path:
    run(["fairseq-preprocess", "--source-lang", "src", "--target-lang", "tgt",
         "--trainpref", text_dir / "train", "--validpref", text_dir / "valid",
         "--testpref", text_dir / "test", "--destdir", dest, "--joined-dictionary",
         "--workers", "1"])
    return dest


def train(data: Path, save_dir: Path, *extra: str, check: bool = True) -> subprocess.CompletedProcess:
    return run(["fairseq-train", data, "--user-dir", "un_fairseq", "--save-dir", save_dir,
                *TINY_MODEL, *TINY_TRAINING, *extra], check=check)


def generate(data: Path, checkpoint: Path, *extra: str) -> subprocess.CompletedProcess:
    return run(["fairseq-generate", data, "--user-dir", "un_fairseq", "--path", checkpoint,
                "--beam", "5", "--batch-size", "16", "--cpu", "--max-len-b", "16", "--num-workers", "0", *extra])

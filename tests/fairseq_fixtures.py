"""A tiny translation corpus made by the tests, and helpers that run fairseq's real CLIs.

The corpus is a toy task (reverse the sentence and map each word ``aN`` to ``bN``), so a few
updates of a tiny model already move the loss; it is binarized once per session.
"""

import os
import random
import subprocess
import sys
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
    few seconds of interpreter start-up that a subprocess costs."""
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


def run(cmd: List[str], check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    """Run a console script of this environment (600 s at most unless ``timeout`` says
    otherwise); on failure show its output."""
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    kwargs.setdefault("timeout", 600)
    proc = subprocess.run(
        [str(BIN / cmd[0])] + [str(c) for c in cmd[1:]], cwd=REPO, env=env,
        capture_output=True, text=True, **kwargs,
    )
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
                "--beam", "5", "--batch-size", "16", "--cpu", "--max-len-b", "16", *extra])

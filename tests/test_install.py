"""A user's install: the wheel that ``pip install .`` builds, installed beside fairseq (a regular
site-packages, not the editable one the tests otherwise use), makes ``--user-dir un_fairseq``
work from any directory. fairseq resolves the name relative to the current directory and then
next to its own package, so the plugin has to sit in the same folder as fairseq."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import fairseq

from fairseq_fixtures import REPO, TINY_MODEL, TINY_TRAINING

BIN = Path(sys.executable).parent
PIP_TIMEOUT = 600
TRAIN_TIMEOUT = 600


def _run(cmd, cwd, env=None, timeout=PIP_TIMEOUT) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def test_regular_install_finds_user_dir_from_any_directory(toy_data, tmp_path):
    wheels, site, elsewhere = tmp_path / "wheels", tmp_path / "site-packages", tmp_path / "elsewhere"
    elsewhere.mkdir()
    # build from a copy of the checkout's files (tracked and not ignored), as a fresh clone
    # would: an in-tree build would leave build/ in the checkout and package its stale files
    source = tmp_path / "source"
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, capture_output=True, check=True, timeout=60).stdout
    for name in filter(None, listed.decode().split("\0")):
        if (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
          "-w", wheels, source], cwd=tmp_path)
    (wheel,) = wheels.glob("un_fairseq-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for package in ("un_fairseq/__init__.py", "un_tools/__init__.py", "un_translate/__init__.py", "un_atomic.py"):
        assert package in names, package
    # the base install is what --user-dir un_fairseq needs; the tools' dependencies are extras
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    base = " ".join(line for line in metadata.splitlines() if line.startswith("Requires-Dist:") and "extra ==" not in line)
    assert "ve-fairseq" in base and not any(tool in base for tool in ("matplotlib", "sacremoses", "subword-nmt")), base
    assert not any(n.startswith("tests/") for n in names)
    _run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q",
          "--target", site, wheel], cwd=tmp_path)
    # the installed plugin lies beside fairseq, as in a site-packages that `pip install .` fills
    # (a copy, not a link: fairseq resolves `..` from its own folder's real path)
    shutil.copytree(Path(fairseq.__file__).parent, site / "fairseq",
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = dict(os.environ, PYTHONPATH=str(site), PYTHONWARNINGS="ignore")

    where = _run([sys.executable, "-c", "import un_fairseq; print(un_fairseq.__file__)"],
                 cwd=elsewhere, env=env)
    assert Path(where.stdout.strip()).is_relative_to(site), where.stdout

    save = tmp_path / "ckpt"
    _run([BIN / "fairseq-train", toy_data, "--user-dir", "un_fairseq", "--save-dir", save,
          *TINY_MODEL, *TINY_TRAINING, "--max-update", "2", "--no-epoch-checkpoints"],
         cwd=elsewhere, env=env, timeout=TRAIN_TIMEOUT)
    assert (save / "checkpoint_last.pt").is_file()
    assert not list(elsewhere.iterdir()), "training wrote into the working directory"

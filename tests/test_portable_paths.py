"""Committed files name no machine: records store paths relative to the repository or to their
run folder (``un_tools.reproduce.portable``), and no record, table, doc or config holds an
absolute path of the machine it was written on."""

import re
import subprocess
from pathlib import Path

from fairseq_fixtures import REPO
from un_tools.reproduce.portable import portable_command, portable_path

# an absolute path into a home, scratch or build folder, as a word of its own
ABSOLUTE = re.compile(r"""(^|[\s"'`(=])/(work|tmp|root|home|Users|mnt|scratch)/""")


def test_paths_become_relative_to_the_run_the_checkout_or_its_parent(tmp_path):
    repo, run = tmp_path / "checkout", tmp_path / "runs" / "un" / "seed1"
    assert portable_path(str(run / "checkpoints"), [repo], run) == "RUN/checkpoints"
    assert portable_path(str(repo / "work" / "bin"), [repo], run) == "work/bin"
    assert portable_path(str(repo / ".." / "shared" / "x.gz"), [repo], run) == "../shared/x.gz"
    assert portable_path("relative/path", [repo], run) == "relative/path"
    data = tmp_path / "corpora" / "bin"
    assert portable_path(str(data), [repo], run, data) == "DATA"
    assert portable_path(str(data / "dict.de.txt"), [repo], run, data) == "DATA/dict.de.txt"
    outside = "/opt/elsewhere/file"
    assert portable_path(outside, [repo], run) == outside
    cmd = (f"{repo}/.venv/bin/python3 -m fairseq_cli.train {repo}/work/bin --save-dir "
           f"{run}/checkpoints --adam-betas '(0.9, 0.98)'")
    assert portable_command(cmd, [repo], run) == (
        "python -m fairseq_cli.train work/bin --save-dir RUN/checkpoints --adam-betas '(0.9, 0.98)'")


def test_no_committed_file_names_a_machine_path():
    files = subprocess.run(["git", "ls-files", "results", "docs", "configs", "benchmarks",
                            "README.md"], cwd=REPO, capture_output=True, text=True, check=True,
                           timeout=60).stdout.split()
    checked = [f for f in files if Path(f).suffix in (".json", ".md", ".csv", ".toml", ".sh", ".txt")]
    assert checked, "git ls-files found nothing to check"
    found = []
    for name in checked:
        for number, line in enumerate((REPO / name).read_text(errors="replace").splitlines(), 1):
            if ABSOLUTE.search(line):
                found.append(f"{name}:{number}: {line.strip()[:120]}")
    assert not found, "absolute machine paths:\n" + "\n".join(found[:20])

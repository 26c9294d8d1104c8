"""Fixtures shared by the test files."""

import pytest

from fairseq_fixtures import preprocess, write_toy_corpus


@pytest.fixture(scope="session")
def toy_data(tmp_path_factory):
    """The toy corpus of ``fairseq_fixtures``, binarized once for the whole session (read-only:
    tests write their checkpoints and outputs elsewhere)."""
    root = tmp_path_factory.mktemp("toy")
    write_toy_corpus(root / "text")
    return preprocess(root / "text", root / "bin")

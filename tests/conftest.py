"""Fixtures shared by the test files."""

import importlib.util

import pytest
import torch

from fairseq_fixtures import preprocess, write_toy_corpus


@pytest.fixture(scope="session")
def toy_data(tmp_path_factory):
    """The toy corpus of ``fairseq_fixtures``, binarized once for the whole session (read-only:
    tests write their checkpoints and outputs elsewhere)."""
    root = tmp_path_factory.mktemp("toy")
    write_toy_corpus(root / "text")
    return preprocess(root / "text", root / "bin")


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models on a shared 2-core machine: extra intra-op threads only spin and wait.
    A module asks for it with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def pytest_addoption(parser):
    """pytest.ini's ``timeout`` belongs to pytest-timeout (the test extra); without it the
    suite still runs, without the limit and without an unknown-option warning."""
    if importlib.util.find_spec("pytest_timeout") is None:
        parser.addini("timeout", "per-test limit in seconds (needs pytest-timeout)")

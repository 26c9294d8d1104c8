"""Fixtures shared by the test files, and the ``--device`` option.

``--device cuda`` (or ``UN_TEST_DEVICE=cuda``) runs the tests that take the ``device`` fixture
(the normalizers against the float64 reference, in float32, fp16 and bf16) on that device and
skips the rest, which are CPU-only; the default is ``cpu``, where every test runs.
"""

import importlib.util
import os

# One OpenMP/MKL thread for the tests and every process they start, unless the caller chose:
# the models are tiny, and two pytest workers with two threads each on two cores oversubscribe
# them, where OpenMP's spinning threads slow each other down several-fold. Set before torch loads.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import pytest  # noqa: E402
import torch  # noqa: E402

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
    """``--device``; and pytest.ini's ``timeout`` belongs to pytest-timeout (the test extra):
    without it the suite still runs, without the limit and without an unknown-option warning."""
    if importlib.util.find_spec("pytest_timeout") is None:
        parser.addini("timeout", "per-test limit in seconds (needs pytest-timeout)")
    parser.addoption("--device", default=os.environ.get("UN_TEST_DEVICE", "cpu"),
                     help="torch device of the tests that take the `device` fixture, e.g. cuda, "
                          "cuda:1 (default: $UN_TEST_DEVICE, else cpu); other tests are skipped "
                          "on a device other than cpu")


def _device(config) -> torch.device:
    name = config.getoption("--device")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise pytest.UsageError(f"--device {name!r} is not a torch device (e.g. cpu, cuda, cuda:1): {err}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise pytest.UsageError(f"--device {name!r}: torch {torch.__version__} sees no CUDA device")
    if device.type not in ("cpu", "cuda"):
        raise pytest.UsageError(f"--device {name!r}: allowed are cpu and cuda[:N]")
    return device


def pytest_configure(config):
    config.un_test_device = _device(config)


def pytest_collection_modifyitems(config, items):
    if config.un_test_device.type == "cpu":
        return
    skip = pytest.mark.skip(reason=f"CPU-only test (--device {config.un_test_device} runs the "
                                   f"tests that take the `device` fixture)")
    for item in items:
        if "device" not in getattr(item, "fixturenames", ()):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def device(pytestconfig) -> torch.device:
    """The torch device of ``--device`` / ``UN_TEST_DEVICE`` (default cpu)."""
    return pytestconfig.un_test_device


def cpu_features() -> str:
    """The CPU and the x86 features ONNX Runtime picks its integer kernels by (from
    ``/proc/cpuinfo``; "unknown" elsewhere): int8 results are compared across such hosts."""
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read()
    except OSError:
        return "unknown"
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")
    return f"{model}; " + ", ".join(f"{f} {'yes' if f in flags else 'no'}" for f in wanted)


def pytest_report_header(config):
    return f"cpu: {cpu_features()}"


def pytest_terminal_summary(terminalreporter):
    """The CPU line again at the end, where ``-q`` (scripts/test.sh) shows it too."""
    terminalreporter.write_line(f"cpu: {cpu_features()}")

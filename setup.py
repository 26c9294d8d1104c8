"""un-fairseq: Unified Normalization for fairseq's pre-norm Transformer.

How to install: README.md, "Install". The base install is what ``--user-dir un_fairseq``
needs; the tools' dependencies are extras.
"""

import re
from pathlib import Path

from setuptools import find_packages, setup

#: un-translate's oldest working onnxruntime, stated once (un_translate/manifest.py)
MIN_ONNXRUNTIME = re.search(r'^MIN_ONNXRUNTIME = "([0-9.]+)"', (Path(__file__).parent / "un_translate" / "manifest.py")
                            .read_text(encoding="utf-8"), re.M).group(1)
EXPORT = ["onnx>=1.17", f"onnxruntime>={MIN_ONNXRUNTIME}", "onnxscript>=0.3"]
REPRO = ["sacremoses", "subword-nmt", "matplotlib"]

setup(
    name="un-fairseq",
    version="0.1.0",
    description="Unified Normalization (Yang et al., ACM MM 2022) as a fairseq plugin",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11,<3.13",  # what ve-fairseq 0.12.3 is packaged for
    packages=find_packages(include=["un_fairseq", "un_fairseq.*", "un_tools", "un_tools.*",
                                    "un_translate", "un_translate.*"]),
    py_modules=["un_atomic"],  # atomic file output (standard library only), for the plugin and the tools
    install_requires=[
        "torch>=2.6",  # installed first; no CUDA build is pinned here
        "ve-fairseq==0.12.3",  # fairseq's main branch packaged for Python 3.11/3.12
        "sacrebleu>=2.0",
        "sentencepiece",
        "numpy",
    ],
    extras_require={
        # the tools beside the plugin: data preparation (un_tools/data: Moses tokenisation, BPE),
        # reproduction and its figures (un_tools/reproduce); scripts/setup.sh installs it
        "repro": REPRO,
        # un-export (ONNX graphs; onnxscript is what torch's dynamo exporter needs) and
        # un-translate (needs only numpy and onnxruntime at run time)
        "export": EXPORT,
        # the deployment benchmark's CTranslate2 rows only (un_tools/benchmarks/deploy.py); never
        # needed to export or translate
        "ctranslate2": ["ctranslate2>=4.5"],
        # mosestokenizer ships the real Moses perl scripts; pytest-xdist runs the suite on 2 cores;
        # pytest-timeout fails a test that hangs (pytest.ini sets the limit) instead of blocking CI
        "test": ["pytest>=7", "pytest-xdist>=3", "pytest-timeout>=2", "mosestokenizer==1.2.1", *EXPORT, *REPRO],
    },
    entry_points={
        "console_scripts": [
            "un-fuse=un_fairseq.fuse:main",
            "un-average-checkpoints=un_fairseq.average_checkpoints:main",
            "un-export=un_fairseq.export.cli:main",
            "un-translate=un_translate.cli:main",
        ]
    },
)

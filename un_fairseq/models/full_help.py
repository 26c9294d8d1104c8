"""``--help`` that lists the model's, task's and criterion's flags, ours included.

fairseq parses the command line twice (``fairseq.options.parse_args_and_arch``): a first
``parse_known_args`` learns ``--arch``, ``--task``, ``--criterion``..., then their flags are
added and a second parse reads everything. Its parser has ``-h/--help``, so with ``--help`` the
first parse prints the help and exits before any of those flags exist:
``fairseq-train DATA --user-dir un_fairseq --arch transformer_un --help`` showed neither
fairseq's Transformer flags nor ``--norm-type``. :func:`install` wraps that function (the
narrowest hook: the parser is built and parsed inside it, nothing else is changed) so that
the first parse runs without the help flag; the second one then prints the full help.
"""

import argparse
import sys
from typing import List, Optional

from fairseq import options

HELP_FLAGS = ("-h", "--help")


def _without_help(argv: List[str]) -> List[str]:
    return [a for a in argv if a not in HELP_FLAGS]


def install() -> None:
    """Wrap ``fairseq.options.parse_args_and_arch`` once (idempotent)."""
    original = options.parse_args_and_arch
    if getattr(original, "_un_full_help", False):
        return

    def parse_args_and_arch(parser: argparse.ArgumentParser, input_args: Optional[List[str]] = None,
                            *args, **kwargs):
        argv = list(sys.argv[1:] if input_args is None else input_args)
        if not any(a in HELP_FLAGS for a in argv):
            return original(parser, input_args, *args, **kwargs)
        first_parse = parser.parse_known_args
        calls = []

        def parse_known_args(known_args=None, namespace=None):
            calls.append(1)
            if len(calls) == 1:  # fairseq's first parse: learn --arch etc., no help yet
                return first_parse(_without_help(argv), namespace)
            return first_parse(known_args, namespace)

        parser.parse_known_args = parse_known_args
        try:
            return original(parser, argv, *args, **kwargs)
        finally:
            del parser.parse_known_args

    parse_args_and_arch._un_full_help = True
    options.parse_args_and_arch = parse_args_and_arch

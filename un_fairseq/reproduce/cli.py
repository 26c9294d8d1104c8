"""Entry point of ``scripts/{train,evaluate,reproduce-table*}.sh``.

Run as a file (``python un_fairseq/reproduce/cli.py COMMAND ARGS``), not with ``-m``: the
package's ``__init__`` imports fairseq to register the model (seconds of start-up), which these
drivers do not need: fairseq runs in the ``fairseq-*`` processes they start, with ``--user-dir``.
"""

import importlib
import sys
import types
from pathlib import Path

COMMANDS = {
    "train": "train", "evaluate": "evaluate", "table1": "sweep", "table9": "sweep",
    "table10": "sweep", "tables": "tables", "plots": "plots", "compare": "compare",
}


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        print(f"usage: cli.py {{{','.join(COMMANDS)}}} [ARGS]", file=sys.stderr)
        return 2
    command = sys.argv[1]
    if "un_fairseq" not in sys.modules:
        package = types.ModuleType("un_fairseq")
        package.__path__ = [str(Path(__file__).resolve().parents[1])]
        sys.modules["un_fairseq"] = package
    module = importlib.import_module(f"un_fairseq.reproduce.{COMMANDS[command]}")
    args = sys.argv[2:]
    if COMMANDS[command] == "sweep":
        return module.main(command, args)
    return module.main(args)


if __name__ == "__main__":
    sys.exit(main())

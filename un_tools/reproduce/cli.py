"""Entry point of ``scripts/{train,evaluate,reproduce-table*}.sh``:
``python -m un_tools.reproduce.cli COMMAND ARGS``.

Nothing here imports fairseq or torch at start-up (``un_fairseq``'s ``__init__`` imports
fairseq to register the model, seconds of start-up these drivers do not need): fairseq runs in
the ``fairseq-*`` processes they start, with ``--user-dir un_fairseq``.
"""

import importlib
import sys

COMMANDS = {
    "train": "train", "evaluate": "evaluate", "table1": "sweep", "table9": "sweep",
    "table10": "sweep", "tables": "tables", "plots": "plots", "compare": "compare",
    "heldout": "heldout", "fit": "fit", "rivals": "rivals", "calibration": "calibration",
}


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        print(f"usage: python -m un_tools.reproduce.cli {{{','.join(COMMANDS)}}} [ARGS]", file=sys.stderr)
        return 2
    command = sys.argv[1]
    module = importlib.import_module(f"un_tools.reproduce.{COMMANDS[command]}")
    args = sys.argv[2:]
    if COMMANDS[command] == "sweep":
        return module.main(command, args)
    return module.main(args)


if __name__ == "__main__":
    sys.exit(main())

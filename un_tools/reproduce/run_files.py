"""Names of the files in a run folder (``scripts/train.sh --out``) that more than one tool reads."""


def eval_file(subset: str = "test", model: str = "") -> str:
    """``eval.json``: the test-set evaluation of the averaged checkpoints, the one the tables and
    run records read. Any other evaluation (another ``subset``, or a given checkpoint whose file
    stem is ``model``) is ``eval-SUBSET-MODEL.json`` (each part only when it applies), so it can
    never replace that one."""
    parts = ([] if subset == "test" else [subset]) + ([model] if model else [])
    return "-".join(["eval", *parts]) + ".json"


LOCK_FILE = "driver.lock"  # the pid of the driver working in the folder; see lock.py

"""Experiment profiles and dataset settings, read from the bash files in ``configs/``.

A profile (``configs/NAME.sh``) defines bash arrays of fairseq flags; a dataset file
(``configs/dataset-NAME.sh``) defines how its output is scored. Both are read by sourcing them
in bash and printing the variables NUL-separated, so bash and Python see the same values.
"""

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Union

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO / "configs"

PROFILE_ARRAYS = ("MODEL_FLAGS", "TRAIN_FLAGS", "NORM_FLAGS", "VALID_FLAGS", "LOG_FLAGS",
                  "GEN_FLAGS", "SEEDS")
PROFILE_SCALARS = ("DESCRIPTION", "DATASET", "AVG_CHECKPOINTS", "EXPLODE_RATIO")
DATASET_ARRAYS = ()
DATASET_SCALARS = ("DESCRIPTION", "SRC", "TGT", "REMOVE_BPE", "LOWERCASE", "SACREBLEU_REF",
                   "DATA_DIR")

_DUMP = r"""
set -e
source "$1" >/dev/null
shift
for __name in "$@"; do
  printf '%s\0' "@@VAR@@" "$__name"
  if declare -p "$__name" >/dev/null 2>&1; then
    if [[ "$(declare -p "$__name")" == "declare -a"* ]]; then
      printf '%s\0' "@@ARRAY@@"
      eval 'for __item in "${'"$__name"'[@]}"; do printf "%s\0" "$__item"; done'
    else
      printf '%s\0' "@@SCALAR@@"
      printf '%s\0' "${!__name}"
    fi
  else
    printf '%s\0' "@@UNSET@@"
  fi
done
"""


class ConfigError(ValueError):
    """A missing or malformed config file (the message names it)."""


def read_bash_vars(path: Path, names: List[str]) -> Dict[str, Union[str, List[str], None]]:
    """Source ``path`` in bash and return the variables ``names`` (arrays as lists, unset as None)."""
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    proc = subprocess.run(["bash", "-c", _DUMP, "dump", str(path), *names],
                          capture_output=True)
    if proc.returncode != 0:
        raise ConfigError(f"sourcing {path} failed: {proc.stderr.decode(errors='replace').strip()}")
    items = proc.stdout.decode().split("\0")[:-1]
    out: Dict[str, Union[str, List[str], None]] = {}
    i = 0
    while i < len(items):
        assert items[i] == "@@VAR@@", items[i]
        name, kind = items[i + 1], items[i + 2]
        i += 3
        values = []
        while i < len(items) and items[i] != "@@VAR@@":
            values.append(items[i])
            i += 1
        if kind == "@@ARRAY@@":
            out[name] = values
        elif kind == "@@SCALAR@@":
            out[name] = values[0] if values else ""
        else:
            out[name] = None
    return out


def available(prefix: str = "") -> List[str]:
    """Names of the profiles (``prefix=''``) or datasets (``prefix='dataset-'``) in configs/."""
    names = []
    for p in sorted(CONFIG_DIR.glob(f"{prefix}*.sh")):
        name = p.stem[len(prefix):]
        if prefix or not name.startswith("dataset-"):
            names.append(name)
    return names


def _path_of(name: str, prefix: str) -> Path:
    path = Path(name)
    if path.suffix == ".sh" and path.is_file():
        return path
    path = CONFIG_DIR / f"{prefix}{name}.sh"
    if not path.is_file():
        kind = "dataset" if prefix else "profile"
        raise ConfigError(f"unknown {kind} {name!r}: no {path}; available: "
                          f"{', '.join(available(prefix)) or 'none'}")
    return path


@dataclass
class Profile:
    name: str
    path: Path
    description: str
    dataset: str
    model_flags: List[str]
    train_flags: List[str]
    norm_flags: List[str]
    valid_flags: List[str]
    log_flags: List[str]
    gen_flags: List[str]
    seeds: List[int]
    avg_checkpoints: int
    explode_ratio: float

    def training_flags(self) -> List[str]:
        return [*self.model_flags, *self.train_flags, *self.norm_flags, *self.valid_flags,
                *self.log_flags]


@dataclass
class Dataset:
    name: str
    path: Path
    description: str
    src: str
    tgt: str
    remove_bpe: str  # '' (no BPE), 'sentencepiece' or '@@ ' (subword-nmt)
    lowercase: bool
    sacrebleu_ref: str  # raw reference of the test set ('' = detokenise fairseq's T- lines)
    data_dir: str  # default binarized folder ('' = must be given)
    extra: Dict[str, str] = field(default_factory=dict)


def load_profile(name: str) -> Profile:
    path = _path_of(name, "")
    v = read_bash_vars(path, list(PROFILE_ARRAYS + PROFILE_SCALARS))
    for key in ("MODEL_FLAGS", "TRAIN_FLAGS", "SEEDS"):
        if not v.get(key):
            raise ConfigError(f"{path} must define a non-empty array {key}")
    try:
        seeds = [int(s) for s in v["SEEDS"]]
    except ValueError:
        raise ConfigError(f"{path}: SEEDS must be whole numbers, got {v['SEEDS']}")
    try:
        avg = int(v.get("AVG_CHECKPOINTS") or 10)
        ratio = float(v.get("EXPLODE_RATIO") or 2.0)
    except ValueError as err:
        raise ConfigError(f"{path}: AVG_CHECKPOINTS / EXPLODE_RATIO: {err}")
    return Profile(
        name=path.stem, path=path, description=v.get("DESCRIPTION") or "",
        dataset=v.get("DATASET") or "",
        model_flags=v["MODEL_FLAGS"], train_flags=v["TRAIN_FLAGS"],
        norm_flags=v.get("NORM_FLAGS") or [], valid_flags=v.get("VALID_FLAGS") or [],
        log_flags=v.get("LOG_FLAGS") or [], gen_flags=v.get("GEN_FLAGS") or ["--beam", "5"],
        seeds=seeds, avg_checkpoints=avg, explode_ratio=ratio,
    )


def load_dataset(name: str) -> Dataset:
    path = _path_of(name, "dataset-")
    v = read_bash_vars(path, list(DATASET_ARRAYS + DATASET_SCALARS))
    for key in ("SRC", "TGT"):
        if not v.get(key):
            raise ConfigError(f"{path} must define {key}")
    ref = v.get("SACREBLEU_REF") or ""
    data_dir = v.get("DATA_DIR") or ""
    return Dataset(
        name=path.stem[len("dataset-"):], path=path, description=v.get("DESCRIPTION") or "",
        src=v["SRC"], tgt=v["TGT"], remove_bpe=v.get("REMOVE_BPE") or "",
        lowercase=(v.get("LOWERCASE") or "0") not in ("0", "", "false", "no"),
        sacrebleu_ref=str(REPO / ref) if ref and not Path(ref).is_absolute() else ref,
        data_dir=str(REPO / data_dir) if data_dir and not Path(data_dir).is_absolute() else data_dir,
    )


def flag_value(flags: List[str], name: str, default=None):
    """The value of ``--name VALUE`` (or ``--name=VALUE``) in a flag list; the last one wins."""
    value = default
    for i, flag in enumerate(flags):
        if flag == name and i + 1 < len(flags):
            value = flags[i + 1]
        elif flag.startswith(name + "="):
            value = flag.split("=", 1)[1]
    return value

"""Experiment profiles and dataset settings, read from the TOML files in ``configs/``.

A profile (``configs/NAME.toml``) holds the run's settings and, under ``[flags]``, lists of
fairseq flags (``model``, ``train``, ``norm``, ``valid``, ``log``, ``gen``); a dataset file
(``configs/dataset-NAME.toml``) says how its output is scored. ``extends = "OTHER"`` starts from
another profile: the keys given replace OTHER's, and the lists under ``[append]`` are appended to
OTHER's flags. Read with the standard library's ``tomllib`` (format: docs/reproduce.md).
"""

import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO / "configs"
SUFFIX = ".toml"

FLAG_GROUPS = ("model", "train", "norm", "valid", "log", "gen")
PROFILE_KEYS = {"extends": str, "description": str, "dataset": str, "avg_checkpoints": int,
                "seeds": list, "explode_ratio": (int, float), "flags": dict, "append": dict}
DATASET_KEYS = {"description": str, "src": str, "tgt": str, "remove_bpe": str, "lowercase": bool,
                "sacrebleu_ref": str, "data_dir": str}


class ConfigError(ValueError):
    """A missing or malformed config file (the message names it)."""


def read_toml(path: Path, keys: Dict[str, type]) -> dict:
    """The top-level table of ``path``, after checking that it names only ``keys``, each with
    its type."""
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}")
    for key, value in data.items():
        if key not in keys:
            raise ConfigError(f"{path}: unknown key {key!r}; allowed: {', '.join(keys)}")
        if not isinstance(value, keys[key]) or (keys[key] is int and isinstance(value, bool)):
            raise ConfigError(f"{path}: {key} = {value!r} has the wrong type")
    return data


def _flag_tables(path: Path, data: dict) -> None:
    for table in ("flags", "append"):
        for group, flags in data.get(table, {}).items():
            if group not in FLAG_GROUPS:
                raise ConfigError(f"{path}: unknown [{table}] list {group!r}; allowed: {', '.join(FLAG_GROUPS)}")
            if not isinstance(flags, list) or not all(isinstance(x, str) for x in flags):
                raise ConfigError(f"{path}: [{table}] {group} must be a list of strings")


def available(prefix: str = "") -> List[str]:
    """Names of the profiles (``prefix=''``) or datasets (``prefix='dataset-'``) in configs/."""
    names = []
    for p in sorted(CONFIG_DIR.glob(f"{prefix}*{SUFFIX}")):
        name = p.stem[len(prefix):]
        if prefix or not name.startswith("dataset-"):
            names.append(name)
    return names


def _path_of(name: str, prefix: str) -> Path:
    path = Path(name)
    if path.suffix == SUFFIX and path.is_file():
        return path
    path = CONFIG_DIR / f"{prefix}{name}{SUFFIX}"
    if not path.is_file():
        kind = "dataset" if prefix else "profile"
        raise ConfigError(f"unknown {kind} {name!r}: no {path}; available: "
                          f"{', '.join(available(prefix)) or 'none'}")
    return path


def _profile_table(path: Path, seen=()) -> dict:
    """The profile's settings with ``extends`` resolved: ``{key: value, 'flags': {group: list}}``."""
    data = read_toml(path, PROFILE_KEYS)
    _flag_tables(path, data)
    base = {"flags": {}}
    if "extends" in data:
        try:
            parent = _path_of(data["extends"], "")
        except ConfigError as err:
            raise ConfigError(f"{path}: extends: {err}") from None
        if parent.resolve() in seen:
            raise ConfigError(f"{path}: extends {data['extends']!r} in a cycle")
        base = _profile_table(parent, (*seen, path.resolve()))
    out = {**base, **{k: v for k, v in data.items() if k not in ("extends", "flags", "append")}}
    out["flags"] = {**base["flags"], **data.get("flags", {})}
    for group, flags in data.get("append", {}).items():
        out["flags"][group] = [*out["flags"].get(group, []), *flags]
    return out


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
    v = _profile_table(path.resolve())
    flags = v["flags"]
    for group in ("model", "train"):
        if not flags.get(group):
            raise ConfigError(f"{path} must give a non-empty [flags] {group}")
    seeds = v.get("seeds")
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ConfigError(f"{path}: seeds must be a non-empty list of whole numbers, got {seeds!r}")
    return Profile(
        name=path.stem, path=path, description=v.get("description", ""),
        dataset=v.get("dataset", ""),
        model_flags=flags["model"], train_flags=flags["train"],
        norm_flags=flags.get("norm", []), valid_flags=flags.get("valid", []),
        log_flags=flags.get("log", []), gen_flags=flags.get("gen", ["--beam", "5"]),
        seeds=list(seeds), avg_checkpoints=v.get("avg_checkpoints", 10),
        explode_ratio=float(v.get("explode_ratio", 2.0)),
    )


def load_dataset(name: str) -> Dataset:
    path = _path_of(name, "dataset-")
    v = read_toml(path, DATASET_KEYS)
    for key in ("src", "tgt"):
        if not v.get(key):
            raise ConfigError(f"{path} must give {key}")
    ref = v.get("sacrebleu_ref", "")
    data_dir = v.get("data_dir", "")
    return Dataset(
        name=path.stem[len("dataset-"):], path=path, description=v.get("description", ""),
        src=v["src"], tgt=v["tgt"], remove_bpe=v.get("remove_bpe", ""),
        lowercase=v.get("lowercase", False),
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


def main(argv=None) -> int:
    """``python -m un_tools.reproduce.config PROFILE [KEY]``: print a profile's settings (or one
    of them), as fairseq will see them, so that bash scripts read the same files."""
    import argparse
    import json
    from dataclasses import asdict

    p = argparse.ArgumentParser(prog="python -m un_tools.reproduce.config", description=main.__doc__)
    p.add_argument("profile", help=f"configs/PROFILE.toml ({', '.join(available())}) or a path")
    p.add_argument("key", nargs="?", help="one setting, e.g. description or train_flags")
    args = p.parse_args(argv)
    try:
        settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(load_profile(args.profile)).items()}
    except ConfigError as err:
        print(f"config: error: {err}", file=sys.stderr)
        return 2
    if args.key is None:
        print(json.dumps(settings, indent=1))
    elif args.key not in settings:
        print(f"config: error: no setting {args.key!r}; settings: {', '.join(settings)}", file=sys.stderr)
        return 2
    else:
        value = settings[args.key]
        print(value if isinstance(value, str) else json.dumps(value))
    return 0


if __name__ == "__main__":
    sys.exit(main())

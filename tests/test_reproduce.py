"""The reproduction pipeline (configs/, scripts/train.sh, evaluate.sh, reproduce-table*.sh,
un_tools/reproduce): table aggregation on synthetic run folders, divergence detection on
synthetic fairseq logs, FAIL marking with a stand-in for fairseq-train, every script's --help and
errors, and one real smoke sweep through fairseq on the toy corpus (then its resume)."""

import json
import os
import shlex
import subprocess
import sys
import textwrap

import pytest

from fairseq_fixtures import REPO
from un_tools.reproduce import config, device, evaluate, heldout, logs, tables, train
from un_tools.reproduce.portable import portable_command

SCRIPTS = ["train.sh", "evaluate.sh", "reproduce-table1.sh", "reproduce-table9.sh", "reproduce-table10.sh"]
ENV = dict(os.environ, PYTHON=sys.executable, PYTHONWARNINGS="ignore")


def script(name, *args, check=False, timeout=300):
    proc = subprocess.run(["bash", str(REPO / "scripts" / name), *map(str, args)], cwd=REPO, env=ENV,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{name} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


# ---------------------------------------------------------------- names and configs


def test_table1_covers_every_norm_and_the_drivers_load_neither_fairseq_nor_torch():
    from un_fairseq.modules import registry

    assert tables.table1_order() == registry.norm_types()
    probe = ("import sys, un_tools.reproduce.cli as c, importlib\n"
             "for m in set(c.COMMANDS.values()): importlib.import_module('un_tools.reproduce.' + m)\n"
             "print(sorted(n for n in ('fairseq', 'torch') if n in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]"


def test_iwslt14_profile_is_the_authors_recipe():
    p = config.load_profile("iwslt14")
    flags = p.training_flags()
    v = lambda name: config.flag_value(flags, name)  # noqa: E731
    assert v("--arch") == "transformer_un_iwslt_de_en" and "--share-all-embeddings" in flags
    assert v("--adam-betas") == "(0.9, 0.98)" and v("--optimizer") == "adam"
    assert float(v("--lr")) == 7e-4 and v("--lr-scheduler") == "inverse_sqrt"
    assert v("--warmup-updates") == "6000" and float(v("--warmup-init-lr")) == 1e-7
    assert v("--max-update") == "100000"
    assert float(v("--dropout")) == 0.3 and float(v("--attention-dropout")) == 0.1
    assert float(v("--activation-dropout")) == 0.1 and float(v("--weight-decay")) == 1e-4
    assert float(v("--label-smoothing")) == 0.1 and v("--max-tokens") == "4096"
    assert v("--un-window") == "4" and v("--un-warmup") == "4000"
    assert v("--pn-warmup") is None  # defaults to --warmup-updates in norm_args
    assert p.seeds == [1, 2, 3, 4, 5] and p.avg_checkpoints == 10
    assert config.flag_value(p.gen_flags, "--beam") == "5"


def test_every_config_loads():
    for name in config.available():
        p = config.load_profile(name)
        assert p.model_flags and p.train_flags and p.seeds, name
        assert config.load_dataset(p.dataset).name == p.dataset, name
    assert set(config.available("dataset-")) == {"iwslt14", "wmt14", "multi30k", "toy"}
    for name in config.available("dataset-"):
        d = config.load_dataset(name)
        assert d.src and d.tgt
    assert config.load_dataset("multi30k").remove_bpe == "sentencepiece"
    assert config.load_dataset("iwslt14").remove_bpe == "@@ "
    assert config.load_dataset("multi30k").lowercase and not config.load_dataset("wmt14").lowercase
    with pytest.raises(config.ConfigError, match="unknown profile 'nope'"):
        config.load_profile("nope")


def test_the_demo_extends_multi30k_and_fairseq_sees_its_own_schedule():
    demo, base = config.load_profile("demo"), config.load_profile("multi30k")
    assert demo.model_flags == base.model_flags and demo.dataset == "multi30k"
    assert demo.valid_flags == [] and base.valid_flags  # replaced
    assert demo.seeds == [1] and demo.avg_checkpoints == 2 and demo.explode_ratio == base.explode_ratio
    flags = demo.training_flags()  # appended: fairseq keeps the last value of a repeated flag
    assert config.flag_value(flags, "--lr") == "2e-3" and config.flag_value(flags, "--max-epoch") == "4"
    assert config.flag_value(flags, "--warmup-updates") == "200"
    assert config.flag_value(flags, "--un-warmup") == "135" and config.flag_value(flags, "--mabn-warmup") == "135"
    assert config.flag_value(flags, "--un-window") == "4" and config.flag_value(flags, "--dropout") == "0.3"


@pytest.mark.parametrize("text,message", [
    ('description = "x"\nseed = [1]\n', "unknown key 'seed'"),
    ('seeds = "1 2"\n', "seeds = '1 2' has the wrong type"),
    ('seeds = [1]\n[flags]\nmodel = ["--arch", "transformer_un"]\n', "non-empty [flags] train"),
    ('seeds = [1]\n[flags]\nmodel = ["--arch"]\ntrain = ["--lr", 1e-3]\n', "[flags] train must be a list of strings"),
    ('seeds = [1]\n[flags]\nmodels = ["--arch"]\n', "unknown [flags] list 'models'"),
    ('seeds = [1\n', "not valid TOML"),
    ('extends = "nope"\n', "unknown profile 'nope'"),
])
def test_a_malformed_profile_is_one_error_naming_the_file(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(config.ConfigError) as err:
        config.load_profile(str(path))
    assert message in str(err.value) and str(path) in str(err.value)


def test_one_device_decision_reaches_every_fairseq_command(monkeypatch, tmp_path):
    import torch

    def flags(gpu_files, cuda):
        device.device_flags.cache_clear()
        monkeypatch.setattr(device, "_gpu_device_files", lambda: gpu_files)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        return device.device_flags()

    try:
        assert flags(False, True) == ["--cpu"]  # no device file: torch is not asked
        assert flags(True, False) == ["--cpu"]
        assert flags(True, True) == []  # a GPU: fairseq uses it
        profile, dataset = config.load_profile("smoke"), config.load_dataset("toy")
        for given in ([], ["--cpu"]):
            monkeypatch.setattr(train, "device_flags", lambda: given)
            monkeypatch.setattr(evaluate, "device_flags", lambda: given)
            cmd = train.build_command(profile, dataset, "un", 1, tmp_path, tmp_path, ["--max-update", "2"])
            assert cmd[-3 - len(given):] == ["--no-progress-bar", *given, "--max-update", "2"]
            gen = evaluate.generate_command(tmp_path, tmp_path / "avg.pt", "test", profile.gen_flags, dataset)
            assert gen.count("--cpu") == len(given)
        assert heldout.device_flags is device.device_flags
    finally:
        device.device_flags.cache_clear()


# ---------------------------------------------------------------- divergence on synthetic logs


def jline(kind, **stats):
    return f"2026-01-01 00:00:00 | INFO | {kind} | " + json.dumps({k: str(v) for k, v in stats.items()})


def test_divergence_detection_on_synthetic_logs():
    healthy = "\n".join(jline("train_inner", loss=l, num_updates=u)
                        for u, l in [(10, 13.5), (20, 11.0), (30, 8.0), (40, 6.1), (50, 6.4)])
    assert logs.divergence(healthy) is None
    nan = healthy + "\n" + jline("train_inner", loss="nan", num_updates=60)
    assert "non-finite training loss (nan) at update 60" == logs.divergence(nan)
    inf = healthy + "\n" + jline("train_inner", loss="inf", num_updates=60)
    assert "non-finite" in logs.divergence(inf)
    exploded = healthy + "\n" + jline("train_inner", loss=12.5, num_updates=60)
    reason = logs.divergence(exploded)
    assert "exploded to 12.5 at update 60" in reason and "lowest before: 6.1" in reason
    assert logs.divergence(exploded, explode_ratio=2.5) is None  # 12.5 < 2.5 x 6.1
    crash = healthy + "\nTraceback (most recent call last):\nFloatingPointError: gradients are Nan/Inf\n"
    assert "FloatingPointError" in logs.divergence(crash)
    # fairseq's 'simple' log format
    simple = ("2026-01-01 | INFO | train_inner | epoch 001:     10 / 130 loss=7.5, nll_loss=7.1, num_updates=10\n"
              "2026-01-01 | INFO | train_inner | epoch 001:     20 / 130 loss=16.2, nll_loss=16, num_updates=20\n")
    assert "exploded to 16.2 at update 20" in logs.divergence(simple)


def test_curves_read_valid_bleu_and_keep_the_last_value_of_a_resumed_update():
    text = "\n".join([
        jline("train_inner", loss=9.0, num_updates=10),
        jline("valid", epoch=1, valid_loss=8.0, valid_bleu=3.5, valid_num_updates=10),
        jline("train_inner", loss=7.0, num_updates=20),
        "### resumed",
        jline("train_inner", loss=6.5, num_updates=20),
    ])
    c = logs.curves(text)
    assert c == {"train_loss": [(10, 9.0), (20, 6.5)], "valid_loss": [(10, 8.0)], "valid_bleu": [(10, 3.5)]}


# ---------------------------------------------------------------- tables from synthetic run folders


def make_run(root, variant, seed, status, bleu=None, sacre=None):
    folder = root / variant / f"seed{seed}"
    folder.mkdir(parents=True)
    (folder / "train.json").write_text(json.dumps(
        {"status": status, "reason": "training loss exploded" if status == "FAIL" else None}))
    if bleu is not None:
        (folder / "eval.json").write_text(json.dumps(
            {"bleu": bleu, "sacrebleu": sacre, "sacrebleu_signature": "nrefs:1|case:lc|tok:13a"}))


def test_table1_aggregation_with_fail_and_pending_runs(tmp_path):
    for seed, b in zip((1, 2, 3), (30.0, 31.0, 32.0)):
        make_run(tmp_path, "layer", seed, "done", b, b - 1)
    for seed in (1, 2, 3):
        make_run(tmp_path, "batch", seed, "FAIL")
    make_run(tmp_path, "un", 1, "FAIL")
    make_run(tmp_path, "un", 2, "done", 31.5, 30.0)
    make_run(tmp_path, "un", 3, "done", 32.5, 31.0)
    make_run(tmp_path, "power", 1, "done", 29.0, 28.0)
    make_run(tmp_path, "power", 2, "running")  # interrupted: neither counted nor failed
    text = tables.build("1", tmp_path, [1, 2, 3], ["layer", "batch", "power", "un", "rms"])
    rows = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines() if line.startswith("| ")}
    assert rows["Method"] == "| Method | Offline | BLEU (tok.) | Δ vs LN | sacreBLEU | runs |"
    assert rows["LN"] == "| LN | ✗ | 31.00 ± 1.00 | 0.00 | 30.00 ± 1.00 | 3 ok |"
    assert rows["BN"] == "| BN | ✓ | FAIL | FAIL | FAIL | 0 ok, 3 FAIL |"
    assert rows["UN"] == ("| UN | ✓ | 32.00 ± 0.71 (1/3 FAIL) | +1.00 | 30.50 ± 0.71 (1/3 FAIL) "
                          "| 2 ok, 1 FAIL |")
    assert rows["PN"] == ("| PN | ✗ | 29.00 ± – (2/3 pending) | -2.00 | 28.00 ± – (2/3 pending) "
                          "| 1 ok, 2 pending |")
    assert rows["RMSNorm"] == "| RMSNorm | ✗ | – | – | – | 0 ok, 3 pending |"
    # rows in the paper's order whatever order was asked, failures listed under the table
    order = [line.split(" | ")[0].lstrip("| ") for line in text.splitlines() if line.startswith("| ")][1:]
    assert order == ["LN", "RMSNorm", "BN", "PN", "UN"]
    assert text.count("FAIL: batch seed") == 3 and "FAIL: un seed 1: training loss exploded" in text
    assert "sacreBLEU signature: `nrefs:1|case:lc|tok:13a`" in text


def test_table1_from_committed_records_alone(tmp_path):
    """Records rebuild the table on a machine without the run folders; the extra UN row
    (padding counted) comes after UN; a record wins over its run folder."""
    from un_tools.reproduce import records

    runs, recs = tmp_path / "runs", tmp_path / "records"
    variants = {v.key: v for v in tables.table1_variants(["layer", "un", "un-count-padding", "none", "un-no-bp"])}
    assert variants["un-count-padding"].norm == "un"
    assert variants["un-count-padding"].flags == ["--un-count-padding"]
    assert variants["un-no-bp"].flags == ["--un-no-bp-sma", "--un-no-bp-ema"]  # Table 9's run
    assert variants["un-no-bp"].columns == {"Offline": "✓"}
    assert [v.key for v in tables.in_table_order(variants.values())] == [
        "layer", "none", "un", "un-count-padding", "un-no-bp"]
    assert variants["none"].label == "NoNorm"
    for key, seed, status, bleu in (("layer", 1, "done", 36.0), ("layer", 2, "done", 37.0),
                                    ("un", 1, "done", 35.0), ("un-count-padding", 1, "FAIL", None)):
        make_run(runs, key, seed, status, bleu, None if bleu is None else bleu - 1)
        v = variants[key]
        assert records.make_record(runs / key / f"seed{seed}", key, v.label, v.flags, seed) is not None
        records.write_record(recs, records.make_record(runs / key / f"seed{seed}", key, v.label, v.flags, seed))
    make_run(runs, "none", 1, "running")  # unfinished: no record
    assert records.make_record(runs / "none" / "seed1", "none", "NoNorm", [], 1) is None
    rec = json.loads((recs / "un-count-padding-seed1.json").read_text())
    assert rec["status"] == "FAIL" and rec["flags"] == ["--un-count-padding"] and rec["bleu"] is None
    from_folders = tables.build("1", runs, [1, 2], ["none", "un-count-padding", "un", "layer"])
    from_records = tables.build("1", None, [1, 2], ["none", "un-count-padding", "un", "layer"], records=recs)
    assert from_records.replace("pending", "") == from_folders.replace("pending", "")
    order = [line.split(" | ")[0].lstrip("| ") for line in from_records.splitlines() if line.startswith("| ")]
    assert order == ["Method", "LN", "NoNorm", "UN", "UN, padding counted (release)"]
    assert "| LN | ✗ | 36.50 ± 0.71 | 0.00 | 35.50 ± 0.71 | 2 ok |" in from_records
    assert "| UN | ✓ | 35.00 ± – (1/2 pending) | -1.50 |" in from_records
    # a record wins over what the run folder says
    rec = json.loads((recs / "un-seed1.json").read_text())
    rec["bleu"] = 34.0
    (recs / "un-seed1.json").write_text(json.dumps(rec))
    assert "| UN | ✓ | 34.00 ± –" in tables.build("1", runs, [1], ["un"], records=recs)
    # a third seed recorded for one row joins that row only; the others stay at the seeds asked for
    make_run(runs, "layer", 3, "done", 38.0, 37.0)
    v = variants["layer"]
    records.write_record(recs, records.make_record(runs / "layer" / "seed3", "layer", v.label, v.flags, 3))
    make_run(runs, "layer", 4, "done", 30.0, 29.0)  # a run folder without a record is not a record
    assert records.recorded_seeds(recs, "layer") == [1, 2, 3] and records.recorded_seeds(recs, "un") == [1]
    assert records.recorded_seeds(tmp_path / "absent", "layer") == []
    three = tables.build("1", None, [1, 2], ["layer", "un"], records=recs)
    assert "| LN | ✗ | 37.00 ± 1.00 | 0.00 | 36.00 ± 1.00 | 3 ok |" in three
    assert "| UN | ✓ | 34.00 ± – (1/2 pending) | -3.00 |" in three


def test_the_committed_tables_and_the_readme_headline_follow_the_committed_records():
    """results/multi30k-table1.md against its records, recomputed here (mean and sample std of the
    done runs of each row); results/multi30k-rivals.md's test BLEU is Table 1's for the same row;
    and the README's headline table is the rivals table, line for line: a record committed without
    rebuilding the tables, or a table not pasted into the README, fails."""
    import statistics

    table = (REPO / "results" / "multi30k-table1.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| Method")]
    records = [json.loads(p.read_text()) for p in sorted((REPO / "results" / "multi30k").glob("*-seed*.json"))]
    assert records and rows
    labels = []
    for row in rows:
        label, _offline, bleu, _delta, sacre, runs = (cell.strip() for cell in row.strip("|").split("|"))
        labels.append(label)
        done = [r for r in records if r["label"] == label and r["status"] == "done"]
        assert runs.startswith(f"{len(done)} ok"), row
        for cell, key in ((bleu, "bleu"), (sacre, "sacrebleu")):
            values = [r[key] for r in done]
            if len(values) >= 2:
                assert cell.startswith(f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"), row
            elif values:
                assert cell.startswith(f"{values[0]:.2f} ± –"), row
    assert {r["label"] for r in records} <= set(labels)
    bleu_of = dict(zip(labels, (row.strip("|").split("|")[2].strip() for row in rows)))
    rivals = (REPO / "results" / "multi30k-rivals.md").read_text()
    rival_rows = [line for line in rivals.splitlines() if line.startswith("| ") and not line.startswith("| model")]
    assert len(rival_rows) == 5
    for row in rival_rows:
        label, test_bleu, runs = (cell.strip() for cell in row.strip("|").split("|")[:3])
        assert bleu_of[label].startswith(test_bleu), row
        assert runs == str(len([r for r in records if r["label"] == label and r["status"] == "done"])), row
    readme = (REPO / "README.md").read_text()
    headline = readme.split("\n## Results", 1)[1].split("\n## ", 1)[0]
    assert [line for line in headline.splitlines() if line.startswith("|")] == \
        [line for line in rivals.splitlines() if line.startswith("|")]


def test_the_committed_records_ran_the_flags_their_profile_gives_today():
    """Each run record's fairseq-train command holds, after ``--norm-type NORM``, exactly the
    flags that configs/ gives its profile and dataset now, then the record's own extra flags:
    the table reproduces from the configs."""
    import shlex

    paths = sorted((REPO / "results" / "multi30k").glob("*-seed*.json"))
    assert paths
    for path in paths:
        rec = json.loads(path.read_text())
        profile, dataset = config.load_profile(rec["profile"]), config.load_dataset(rec["dataset"])
        cmd = shlex.split(rec["command"])
        start, end = cmd.index("--norm-type"), cmd.index("--log-format")
        assert cmd[start + 1] == rec["norm"] and config.flag_value(cmd, "--seed") == str(rec["seed"]), path
        assert cmd[start + 2:end] == [*profile.model_flags, *profile.train_flags, *profile.norm_flags,
                                      *train.valid_bleu_flags(profile, dataset), *profile.log_flags], path
        assert cmd[end:end + 4] == ["--log-format", "json", "--no-progress-bar", "--cpu"], path
        assert cmd[end + 4:] == rec["flags"], path


def test_fit_table_averages_each_epochs_training_losses(tmp_path, capsys):
    """Epoch e's cell is the mean of the losses logged after validation e-1 and up to validation
    e, averaged over the seeds; a run folder is a row of its own and stops where it stopped."""
    from un_tools.reproduce import fit

    def record(seed, train, valid, bleu=(), variant="un"):
        return {"variant": variant, "seed": seed, "status": "done",
                "curves": {"train_loss": train, "valid_loss": valid, "valid_bleu": list(bleu)}}
    records = tmp_path / "records"
    records.mkdir()
    (records / "un-seed1.json").write_text(json.dumps(record(1, [[1, 9.0], [2, 7.0], [3, 4.0]], [[2, 6.5], [3, 3.5]],
                                                             [[2, 10.0], [3, 20.0]])))
    (records / "un-seed2.json").write_text(json.dumps(record(2, [[1, 5.0], [2, 5.0], [3, 2.0]], [[2, 4.5], [3, 1.5]],
                                                             [[3, 30.0]])))
    (records / "un-seed3.json").write_text(json.dumps({**record(3, [[1, 1.0]], [[1, 1.0]]), "status": "FAIL"}))
    run = tmp_path / "probe"
    run.mkdir()
    (run / "train.log").write_text(
        '2026-01-01 00:00:00 | INFO | train_inner | {"epoch": 1, "loss": "8.0", "num_updates": "1"}\n'
        '2026-01-01 00:00:00 | INFO | valid | {"epoch": 1, "valid_loss": "7.5", "valid_num_updates": "2"}\n')
    assert fit.main(["--records", str(records), "--run", f"probe={run}", "--epochs", "1,2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2] == "| un | 2 | 6.500 | 3.000 | 2.500 |"  # (8+6)/2, (4+2)/2; valid (3.5+1.5)/2
    assert lines[3] == "| probe | 1 | 8.000 | – | – |"
    assert fit.main(["--records", str(records), "--seeds", "2", "--epochs", "2"]) == 0
    assert capsys.readouterr().out.splitlines()[2] == "| un | 1 | 2.000 | 1.500 |"
    assert fit.main(["--records", str(records), "--epochs", "0"]) == 2
    assert "--epochs '0'" in capsys.readouterr().err
    assert fit.main(["--run", str(run)]) == 2

    # the epoch-end validation BLEU of each epoch (a seed without one there is left out of the
    # mean), and the difference to another row, per epoch
    (records / "layer-seed1.json").write_text(json.dumps(record(1, [[1, 8.0], [3, 3.5]], [[2, 6.0], [3, 3.0]],
                                                                [[2, 11.0], [3, 26.0]], variant="layer")))
    assert fit.main(["--records", str(records), "--metric", "valid_bleu", "--epochs", "1,2"]) == 0
    assert capsys.readouterr().out.splitlines()[2] == "| layer | 1 | 11.00 | 26.00 |"
    assert fit.main(["--records", str(records), "--metric", "valid_bleu", "--against", "layer", "--epochs", "1,2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[2:] == ["| layer | 1 | +0.00 | +0.00 |", "| un | 2 | -1.00 | -1.00 |"]  # 10-11, (20+30)/2-26
    assert fit.main(["--records", str(records), "--against", "layer", "--epochs", "2"]) == 0
    assert capsys.readouterr().out.splitlines()[3] == "| un | 2 | -0.500 | -0.500 |"  # train (4+2)/2-3.5, valid (3.5+1.5)/2-3
    assert fit.main(["--records", str(records), "--against", "ln"]) == 2
    assert "--against 'ln'" in capsys.readouterr().err


def test_rivals_table_from_records_heldout_and_benchmarks(tmp_path, capsys):
    """Each cell from its source: test BLEU over the records' seeds, valid BLEU over the
    held-out seeds, the training step's change, speed over eager LN's at the same batch (one
    thread); a model no source covers is all dashes."""
    from un_tools.reproduce import rivals

    records = tmp_path / "records"
    records.mkdir()
    for seed, bleu in ((1, 40.0), (2, 41.0)):
        (records / f"dyt-seed{seed}.json").write_text(json.dumps(
            {"variant": "dyt", "seed": seed, "status": "done", "bleu": bleu, "sacrebleu": bleu}))
    heldout = {"models": {"dyt-seed1": {"valid_bleu_lenpen_1.0": {"bleu": 39.5}},
                          "dyt-seed2": {"valid_bleu_lenpen_1.0": {"bleu": 40.5}},
                          "layer-seed1": {"valid_bleu_lenpen_2.2": {"bleu": 50.0}}}}
    training = {"command": ["scripts/benchmark_training.py"], "training_step": [
        {"variant": "LN", "vs_ln_pct": 0.0}, {"variant": "DyT", "vs_ln_pct": 4.25}]}
    speed = [("fairseq eager LN", 1, 1, 10.0), ("fairseq eager LN", 1, 16, 40.0), ("ORT fp32 DyT folded", 1, 1, 25.0),
             ("ORT fp32 DyT folded", 1, 16, 60.0), ("ORT int8 DyT folded", 1, 16, 100.0),
             ("ORT int8 DyT folded", 2, 1, 999.0)]
    deploy = {"speed": [{"variant": v, "threads": t, "batch_size": b, "sentences_per_s": x} for v, t, b, x in speed]}
    paths = {}
    for name, content in (("heldout", heldout), ("training", training), ("deploy", deploy)):
        paths[name] = tmp_path / f"{name}.json"
        paths[name].write_text(json.dumps(content))
    assert rivals.main(["--records", str(records), *(f"--{k}={v}" for k, v in paths.items())]) == 0
    rows = {line.split(" | ")[0].strip("| "): line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")}
    assert rows["DyT"] == ("| DyT | 40.50 ± 0.71 | 2 | 40.00 ± 0.71 | +4.2% | 2.50x | 1.50x | – | 2.50x "
                           "| an elementwise op per norm |")
    assert rows["UN"].count("–") == 7 and rows["UN"].endswith("| nothing |")
    assert rows["LN"].split(" | ")[3:5] == ["–", "+0.0%"]  # valid BLEU at another lenpen is not this column
    assert rivals.main([f"--deploy={paths['deploy']}"]) == 0
    assert "No speed cells for LN, UN, Derf, NoNorm: `--deploy` has no ONNX Runtime row" in capsys.readouterr().out
    assert rivals.main(["--deploy", str(tmp_path / "missing.json")]) == 2
    assert "--deploy" in capsys.readouterr().err


def test_table9_figure_draws_a_failed_run_as_a_curve_that_stops(tmp_path):
    """Tables 9 and 10 plot the validation loss beside the training loss; a FAIL run is drawn
    (and written to the CSV) up to where it stopped."""
    pytest.importorskip("matplotlib")
    from un_tools.reproduce import plots

    records = tmp_path / "records"
    records.mkdir()
    un, no_bp = tables.table9_variants()[0].key, tables.table9_variants()[4].key
    for key, status, n in ((un, "done", 4), (no_bp, "FAIL", 2)):
        curves = {"train_loss": [[u, 10.0 - u] for u in range(1, n + 1)],
                  "valid_loss": [[u, 9.0 - u] for u in range(1, n + 1)], "valid_bleu": []}
        (records / f"{key}-seed1.json").write_text(json.dumps({"variant": key, "seed": 1, "status": status,
                                                              "curves": curves}))
    out = tmp_path / "table9.png"
    assert plots.main(["--table", "9", "--records", str(records), "--seed", "1", "--out", str(out)]) == 0
    assert out.stat().st_size > 0
    rows = out.with_suffix(".csv").read_text().splitlines()
    assert sum(r.startswith(f"{no_bp},1,valid_loss,") for r in rows) == 2
    assert sum(r.startswith(f"{un},1,valid_loss,") for r in rows) == 4


def test_calibration_against_a_float64_recomputation(toy_data, tmp_path):
    """nll and entropy equal a float64 recomputation from the model's logits; an untrained
    LayerNorm (weight 1, bias 0) scales every token to RMS 1, so its final_rms_cv is ~0."""
    import torch

    from toy_models import build, save_checkpoint
    from un_tools.reproduce import calibration

    args, task, model = build(toy_data, "--norm-type", "layer")
    ckpt = save_checkpoint(args, model, tmp_path / "ln.pt")
    got = calibration.measure(ckpt, str(toy_data), "valid", 30, temperatures=(0.5, 1.0))
    task.load_dataset("valid")
    dataset = task.dataset("valid")
    batch = dataset.collater([dataset[i] for i in range(30)])
    model.eval()
    with torch.no_grad():
        logits = model(**batch["net_input"])[0].double()
    lprobs = torch.log_softmax(logits, -1)
    real = batch["target"].ne(task.target_dictionary.pad())
    nll = -lprobs.gather(-1, batch["target"].unsqueeze(-1)).squeeze(-1)[real]
    entropy = torch.distributions.Categorical(logits=logits[real]).entropy()
    assert got["tokens"] == int(real.sum())
    assert got["nll"] == pytest.approx(nll.mean().item(), rel=1e-5)
    assert got["entropy"] == pytest.approx(entropy.mean().item(), rel=1e-5)
    assert got["by_temperature"]["1.0"]["nll"] == pytest.approx(got["nll"], rel=1e-6)
    sharp = torch.log_softmax(logits[real] / 0.5, -1)
    assert got["by_temperature"]["0.5"]["nll"] == pytest.approx(
        -sharp.gather(-1, batch["target"][real].unsqueeze(-1)).mean().item(), rel=1e-5)
    assert got["final_rms"] == pytest.approx(1.0, abs=1e-3) and got["final_rms_cv"] < 1e-3
    assert got["input_rms_cv"] > 1e-2  # the residual stream itself is not normalised
    assert calibration.main([str(tmp_path / "missing.pt"), "--data", str(toy_data)]) == 2


def test_table9_and_table10_rows_and_reference(tmp_path):
    t9 = {v.key: v for v in tables.table9_variants()}
    assert t9["un"].flags == [] and t9["un-no-fp-gm"].flags == ["--un-no-fp-gm"]
    assert t9["un-no-bp-am"].flags == ["--un-no-bp-sma"] and t9["un-no-bp-alpha"].flags == ["--un-no-bp-ema"]
    assert t9["un-none"].flags == ["--un-no-fp-gm", "--un-no-bp-sma", "--un-no-bp-ema"]
    t10 = tables.table10_variants()
    assert [v.key for v in t10] == ["un", "un-m0.8", "un-m0.7", "un-m0.6"]
    assert t10[1].flags == ["--un-momentum", "0.8"]
    make_run(tmp_path, "un", 1, "done", 34.0)
    make_run(tmp_path, "un-m0.8", 1, "done", 33.5)
    text = tables.build("10", tmp_path, [1])
    assert "| UN, α = 0.8 | 0.8 | 33.50 ± – | -0.50 |" in text
    text9 = tables.build("9", tmp_path, [1], ["un", "un-no-fp-gm"])
    assert "| Method | FP GM | BP AM | BP α | BLEU (tok.) | Δ vs UN |" in text9
    assert "| UN w/o FP GM | ✗ | ✓ | ✓ | – | – |" in text9
    with pytest.raises(ValueError, match="unknown norm"):
        tables.table1_variants(["layer", "ln"])


# ---------------------------------------------------------------- evaluation parsing


def test_parse_generate_and_references(tmp_path):
    out = textwrap.dedent("""\
        S-1\tein hund
        T-1\ta dog
        H-1\t-0.3\ta dog
        D-1\t-0.3\ta dog
        S-0\tzwei katzen
        T-0\ttwo cats .
        H-0\t-0.2\ttwo cats
        Generate test with beam=5: BLEU4 = 41.23, 80.0/50.0/33.3/25.0 (BP=0.8, ratio=0.8, syslen=4, reflen=5)
        """)
    bleu, line, hyps, refs = evaluate.parse_generate(out)
    assert bleu == 41.23 and line.startswith("Generate test with beam=5: BLEU4 = 41.23")
    assert hyps == ["two cats", "a dog"] and refs == ["two cats .", "a dog"]
    sgm = tmp_path / "ref.sgm"
    sgm.write_text('<refset>\n<doc>\n<seg id="1">L&apos;homme est là.</seg>\n<seg id="2">Oui</seg>\n</doc>\n')
    assert evaluate.read_reference(sgm) == ["L'homme est là.", "Oui"]
    hyp = ["two black cats are sitting on the wall .", "a dog runs , and it jumps ."]
    ref = ["Two black cats are sitting on the wall.", "A dog runs, and it jumps."]
    score, sig = evaluate.sacrebleu_score(hyp, ref, "en", True, raw_reference=True)
    assert score == 100.0 and "case:lc" in sig  # detokenised and lowercased: identical
    score, sig = evaluate.sacrebleu_score(hyp, ref, "en", False, raw_reference=True)
    assert score < 100.0 and "case:mixed" in sig


def test_compare_fused_with_unfused_generate_outputs(tmp_path, capsys):
    """The demo's last step: both BLEUs, identical hypotheses, fairseq-generate's own timing,
    example translations; exit 1 when folding changed the BLEU, 2 on a truncated output."""
    from un_tools.reproduce import compare

    def output(hyp0, seconds, bleu):
        return textwrap.dedent(f"""\
            S-1\tein hund
            T-1\ta dog
            H-1\t-0.3\ta dog
            S-0\tzwei katzen
            T-0\ttwo cats .
            H-0\t-0.2\t{hyp0}
            2026-01-01 | INFO | fairseq_cli.generate | Translated 2 sentences (9 tokens) in {seconds}s (0.50 sentences/s, 2.25 tokens/s)
            Generate test with beam=5: BLEU4 = {bleu}, 80.0/50.0/33.3/25.0 (BP=0.8, ratio=0.8, syslen=4, reflen=5)
            """)

    unfused, fused = tmp_path / "u.txt", tmp_path / "f.txt"
    unfused.write_text(output("two cats", 4.0, 41.23))
    fused.write_text(output("two cats", 3.0, 41.23))
    assert compare.parse_speed(unfused.read_text()) == dict(sentences=2, tokens=9, seconds=4.0,
                                                            sentences_per_s=0.5)
    assert compare.compare(unfused, fused, examples=2) == 0
    out = capsys.readouterr().out
    assert "identical hypotheses: 2 / 2" in out and "takes 0.75x the time" in out
    assert "source:      zwei katzen" in out and "UN (fused): two cats" in out
    fused.write_text(output("two dogs", 3.0, 30.0))
    assert compare.compare(unfused, fused) == 1
    assert "identical hypotheses: 1 / 2" in capsys.readouterr().out
    fused.write_text("S-0\tzwei katzen\n")  # cut short: no BLEU line
    assert compare.main(["--unfused", str(unfused), "--fused", str(fused)]) == 2
    assert "no BLEU4 line" in capsys.readouterr().err


# ---------------------------------------------------------------- FAIL marking, with a stand-in fairseq-train


FAKE_TRAIN = """
import json, sys, time
losses = {losses}
for i, loss in enumerate(losses):
    print("x | INFO | train_inner | " + json.dumps({{"loss": str(loss), "num_updates": str(10 * (i + 1))}}), flush=True)
{tail}
"""


def fake_fairseq(monkeypatch, tmp_path, losses, tail="time.sleep(0)"):
    fake = tmp_path / "fake_train.py"
    fake.write_text(FAKE_TRAIN.format(losses=losses, tail=tail))
    monkeypatch.setattr(train, "fairseq_command", lambda name: [sys.executable, str(fake)])
    data = tmp_path / "bin"
    data.mkdir(exist_ok=True)
    (data / "dict.src.txt").write_text("a 1\n")
    (data / "train.src-tgt.src.bin").write_text("")
    return data


def test_training_is_stopped_and_marked_fail_when_the_loss_explodes(monkeypatch, tmp_path):
    # after the explosion the fake would sleep 60 s: the monitor must stop it at once
    data = fake_fairseq(monkeypatch, tmp_path, [12.0, 8.0, 5.0, 11.0, 9.0], tail="time.sleep(60)")
    profile, dataset = config.load_profile("smoke"), config.load_dataset("toy")
    out = tmp_path / "run"
    state = train.run_training(profile, dataset, "batch", 1, data, out, quiet=True)
    assert state["status"] == "FAIL" and "exploded to 11 at update 40" in state["reason"]
    assert state["returncode"] == -15  # stopped by SIGTERM, not left to sleep its 60 s and exit 0
    assert json.loads((out / "train.json").read_text())["status"] == "FAIL"
    # a FAIL run is final: not trained again
    monkeypatch.setattr(train, "fairseq_command", lambda name: pytest.fail("retrained a FAIL run"))
    assert train.run_training(profile, dataset, "batch", 1, data, out, quiet=True)["status"] == "FAIL"
    # --force (--retry-failed) starts over: no old checkpoint to resume from, the old log kept
    (out / "checkpoints").mkdir()
    (out / "checkpoints" / "checkpoint_last.pt").write_text("diverged")
    fake_fairseq(monkeypatch, tmp_path, [12.0, 8.0, 5.0])
    state = train.run_training(profile, dataset, "batch", 1, data, out, force=True, quiet=True)
    assert state["status"] == "done" and not (out / "checkpoints" / "checkpoint_last.pt").exists()
    previous = (out / "train.log.previous").read_text()
    assert previous.count("### ") == 1 and '"loss": "11.0"' in previous
    assert (out / "train.log").read_text().count("### ") == 1


def test_fairseq_nan_exit_is_fail_but_other_crashes_are_errors(monkeypatch, tmp_path):
    profile, dataset = config.load_profile("smoke"), config.load_dataset("toy")
    data = fake_fairseq(monkeypatch, tmp_path, [9.0, 7.0],
                        tail="print('FloatingPointError: gradients are Nan/Inf'); sys.exit(1)")
    state = train.run_training(profile, dataset, "un", 1, data, tmp_path / "nan", quiet=True)
    assert state["status"] == "FAIL" and "FloatingPointError" in state["reason"]
    fake_fairseq(monkeypatch, tmp_path, [9.0], tail="print('error: unrecognized arguments'); sys.exit(2)")
    state = train.run_training(profile, dataset, "un", 1, data, tmp_path / "crash", quiet=True)
    assert state["status"] == "error" and "status 2" in state["reason"]
    fake_fairseq(monkeypatch, tmp_path, [9.0, 7.0, 6.0])
    state = train.run_training(profile, dataset, "un", 1, data, tmp_path / "crash", quiet=True)
    assert state["status"] == "done" and state["num_updates"] == 30 and state["last_train_loss"] == 6.0


def test_a_run_killed_outright_keeps_its_wall_time_and_resume_adds_to_it(monkeypatch, tmp_path):
    # the wrapper is killed with SIGKILL (no handler runs), as when the machine is taken away
    data = fake_fairseq(monkeypatch, tmp_path, [])
    out = tmp_path / "run"
    killer = tmp_path / "killed_train.py"
    killer.write_text(textwrap.dedent(f"""
        import json, os, signal, time
        for i in range(3):
            time.sleep(0.4)
            print("x | INFO | train_inner | " + json.dumps({{"loss": "9.0", "num_updates": str(10 * (i + 1))}}), flush=True)
        deadline = time.time() + 60  # until the wrapper has recorded the last line, however slow
        while time.time() < deadline:
            try:
                if json.load(open({str(out / "train.json")!r})).get("num_updates") == 30:
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        os.kill(os.getppid(), signal.SIGKILL)
    """))
    wrapper = textwrap.dedent(f"""
        import sys
        from un_tools.reproduce import config, train
        train.fairseq_command = lambda name: [sys.executable, {str(killer)!r}]
        train.run_training(config.load_profile("smoke"), config.load_dataset("toy"), "un", 1,
                           {str(data)!r}, {str(out)!r}, quiet=True)
    """)
    proc = subprocess.run([sys.executable, "-c", wrapper], cwd=REPO, env=ENV, timeout=120)
    assert proc.returncode == -9
    killed = json.loads((out / "train.json").read_text())
    assert killed["status"] == "running" and killed["num_updates"] == 30
    assert killed["wall_s"] > 0  # recorded while it ran, before the kill
    fake_fairseq(monkeypatch, tmp_path, [8.0, 7.0])
    state = train.run_training(config.load_profile("smoke"), config.load_dataset("toy"), "un", 1,
                               data, out, quiet=True)
    assert state["status"] == "done" and state["wall_s"] >= killed["wall_s"]
    assert (out / "train.log").read_text().count("### ") == 2


# ---------------------------------------------------------------- the scripts


def test_every_script_has_help():
    expected = {
        "train.sh": ["--profile", "--norm", "--seed", "--data", "--out", "--dataset", "--force"],
        "evaluate.sh": ["--run", "--num-checkpoints", "--sacrebleu-ref", "--subset", "--checkpoint"],
        "reproduce-table1.sh": ["--scale", "--dataset", "--norms", "--seeds", "--figure", "--runs"],
        "reproduce-table9.sh": ["--scale", "--variants", "--seeds"],
        "reproduce-table10.sh": ["--scale", "--momenta", "--seeds"],
    }
    for name in SCRIPTS:
        proc = script(name, "--help")
        assert proc.returncode == 0, (name, proc.stderr)
        for flag in expected[name]:
            assert flag in proc.stdout, (name, flag)


def test_help_texts_name_what_configs_holds():
    """--help reads configs/, not a hand-written copy: every profile, every dataset, and the
    demo's schedule as configs/demo.toml describes it."""
    def flat(text):
        return " ".join(text.split())
    profiles = sorted(p.stem for p in (REPO / "configs").glob("*.toml") if not p.stem.startswith("dataset-"))
    datasets = sorted(p.stem[len("dataset-"):] for p in (REPO / "configs").glob("dataset-*.toml"))
    assert "demo" in profiles and "multi30k" in datasets
    assert f"configs/PROFILE.toml ({', '.join(profiles)})" in flat(script("train.sh", "--help", check=True).stdout)
    assert f"configs/dataset-NAME.toml: {', '.join(datasets)}." in flat(
        script("reproduce-table1.sh", "--help", check=True).stdout)
    demo = script("demo.sh", "--help", check=True).stdout
    assert "--norm-type NAME" in demo
    assert flat(config.load_profile("demo").description) in flat(demo)


def test_scripts_name_missing_inputs_and_bad_values(tmp_path):
    proc = script("train.sh", "--profile", "smoke", "--norm", "un", "--seed", "1",
                  "--data", tmp_path / "nowhere", "--out", tmp_path / "run")
    assert proc.returncode == 2 and f"data folder not found: {tmp_path / 'nowhere'}" in proc.stderr
    proc = script("train.sh", "--profile", "smoke", "--norm", "ln", "--seed", "1", "--out", tmp_path)
    assert proc.returncode != 0 and "'ln' is not one of" in proc.stderr
    proc = script("train.sh", "--profile", "tiny", "--norm", "un", "--seed", "1", "--out", tmp_path)
    assert proc.returncode == 2 and "unknown profile 'tiny'" in proc.stderr
    proc = script("reproduce-table1.sh", "--scale", "full", "--dataset", "multi30k")
    assert proc.returncode != 0 and "no profile for --dataset multi30k" in proc.stderr
    proc = script("reproduce-table1.sh", "--scale", "huge")
    assert proc.returncode != 0 and "invalid choice: 'huge'" in proc.stderr
    proc = script("evaluate.sh", "--run", tmp_path / "none", "--profile", "smoke", "--dataset", "toy",
                  "--data", tmp_path)
    assert proc.returncode == 2 and "run folder not found" in proc.stderr


def test_smoke_sweep_then_resume(toy_data, tmp_path):
    runs, table, figure = tmp_path / "runs", tmp_path / "t1.md", tmp_path / "f1.png"
    args = ["--scale", "smoke", "--dataset", "toy", "--data", toy_data, "--runs", runs, "--norms", "un",
            "--output", table, "--figure", figure]
    first = script("reproduce-table1.sh", *args, check=True)
    assert "[1/1] UN (un) seed 1" in first.stdout and "done, 1 updates" in first.stdout
    run = runs / "un" / "seed1"
    state = json.loads((run / "train.json").read_text())
    assert state["status"] == "done" and state["num_updates"] == 1
    ev = json.loads((run / "eval.json").read_text())
    assert ev["num_checkpoints"] == 1 and ev["sentences"] == 40 and 0 <= ev["bleu"] <= 100
    text = table.read_text()
    assert f"| UN | ✓ | {ev['bleu']:.2f} ± – | – | {ev['sacrebleu']:.2f} ± – | 1 ok |" in text
    assert figure.exists() and figure.with_suffix(".csv").read_text().count("un,1,train_loss,1,") == 1
    assert json.loads(table.with_name("t1-runs.json").read_text())[0]["status"] == "ok"
    ckpt_mtime = (run / "checkpoints" / "checkpoint_last.pt").stat().st_mtime
    # the re-run resumes: nothing is trained or evaluated again
    second = script("reproduce-table1.sh", *args, check=True)
    assert "already done (finished), not retrained" in second.stdout
    assert "already evaluated" in second.stdout
    assert (run / "checkpoints" / "checkpoint_last.pt").stat().st_mtime == ckpt_mtime
    assert (run / "train.log").read_text().count("### ") == 1
    assert table.read_text() == text
    # with --records, the finished run is recorded (curves, commit, command) and then skipped
    recs = tmp_path / "records"
    third = script("reproduce-table1.sh", *args, "--records", recs, check=True)
    record = json.loads((recs / "un-seed1.json").read_text())
    assert f"recorded in {recs / 'un-seed1.json'}" in third.stdout
    assert record["bleu"] == ev["bleu"] and record["seed"] == 1 and record["num_updates"] == 1
    assert record["command"] == portable_command(state["command"], [REPO], run, state["data"])
    assert "--norm-type un" in record["command"] and "--save-dir RUN/checkpoints" in record["command"]
    assert not [w for w in shlex.split(record["command"]) if os.path.isabs(w)], record["command"]
    assert record["commit"] == state["commit"] and record["curves"]["train_loss"][0][0] == 1
    fourth = script("reproduce-table1.sh", *args, "--records", recs, check=True)
    assert "recorded (done, BLEU" in fourth.stdout and "already done" not in fourth.stdout
    assert f"| UN | ✓ | {ev['bleu']:.2f} ± – |" in table.read_text()


@pytest.fixture(scope="module")
def smoke_layer_run(toy_data, tmp_path_factory):
    """A smoke-profile LN run on the toy corpus, trained once for the evaluation tests."""
    runs = tmp_path_factory.mktemp("smoke") / "runs"
    script("reproduce-table1.sh", "--scale", "smoke", "--dataset", "toy", "--data", toy_data, "--runs", runs,
           "--norms", "layer", "--output", runs.parent / "t.md", check=True)
    return runs / "layer" / "seed1"


def test_missing_default_reference_falls_back_to_fairseq_references(toy_data, smoke_layer_run, tmp_path, capsys):
    """Where ../shared is absent, the dataset's default sacreBLEU reference is missing: the
    evaluation says so and scores against fairseq's detokenised T- lines instead."""
    import dataclasses

    from un_tools.reproduce import config, evaluate

    dataset = dataclasses.replace(config.load_dataset("toy"), sacrebleu_ref=str(tmp_path / "absent.en.gz"))
    result = evaluate.evaluate_run(smoke_layer_run, toy_data, dataset, ["--beam", "2"], 1, force=True)
    assert "is missing: scoring against fairseq's detokenised T- lines" in capsys.readouterr().out
    assert result["sacrebleu_reference"] == "detokenised fairseq T- lines" and result["sentences"] == 40


def test_evaluation_translates_every_sentence_of_a_test_set_of_any_size(smoke_layer_run, tmp_path):
    """fairseq's default --required-batch-size-multiple 8 drops the last batch when its size is
    not a multiple of 8 (fairseq #5036): with batches of at most 16, a 43-sentence test set
    would be scored on 40 sentences (batches of 16, 16 and 8; the 3 longest dropped). The
    evaluation translates all 43 and checks the count."""
    from fairseq_fixtures import preprocess, write_toy_corpus
    from un_tools.reproduce import config, evaluate

    text = tmp_path / "text"
    write_toy_corpus(text)  # the same train split, so the same dictionary as the run's
    lines = {side: (text / f"test.{side}").read_text().splitlines() for side in ("src", "tgt")}
    for side in lines:
        (text / f"test.{side}").write_text("\n".join(lines[side] + lines[side][:3]) + "\n")
    data = preprocess(text, tmp_path / "bin")
    assert evaluate.subset_size(data, "test", "src", "tgt") == 43
    result = evaluate.evaluate_run(smoke_layer_run, data, config.load_dataset("toy"),
                                   ["--beam", "2", "--batch-size", "16"], 1, force=True, quiet=True)
    assert result["sentences"] == 43
    with pytest.raises(FileNotFoundError, match="no binarized 'dev' subset"):
        evaluate.subset_size(data, "dev", "src", "tgt")


def test_a_given_checkpoint_or_subset_is_evaluated_beside_the_runs_own_evaluation(toy_data, smoke_layer_run, tmp_path):
    """--checkpoint (the demo's fused model) skips the averaging and translates with the same
    flags: given the averaged model itself it reproduces the averaged evaluation's hypotheses and
    BLEU. Neither it nor another --subset replaces the run's eval.json and generate-test.txt."""
    from un_tools.reproduce import config, evaluate

    dataset, flags = config.load_dataset("toy"), config.load_profile("smoke").gen_flags
    averaged = evaluate.evaluate_run(smoke_layer_run, toy_data, dataset, flags, 1, force=True, quiet=True)
    own = {name: (smoke_layer_run / name).read_bytes() for name in ("eval.json", "generate-test.txt")}
    given = evaluate.evaluate_run(smoke_layer_run, toy_data, dataset, flags, 1, quiet=True,
                                  checkpoint=smoke_layer_run / "avg.pt")
    assert given["checkpoints"] == ["avg.pt"] and given["sentences"] == averaged["sentences"] == 40
    assert given["bleu"] == averaged["bleu"] and given["sacrebleu"] == averaged["sacrebleu"]
    hyps = [evaluate.parse_generate((smoke_layer_run / name).read_text())[2]
            for name in ("generate-test.txt", "generate-test-avg.txt")]
    assert hyps[0] == hyps[1]
    assert (smoke_layer_run / "eval-avg.json").exists()
    assert {name: (smoke_layer_run / name).read_bytes() for name in own} == own
    # another subset of the averaged model never replaces eval.json, which the tables and records read
    proc = script("evaluate.sh", "--run", smoke_layer_run, "--data", toy_data, "--subset", "valid", check=True)
    assert (smoke_layer_run / "eval-valid.json").exists() and (smoke_layer_run / "generate-valid.txt").exists()
    assert {name: (smoke_layer_run / name).read_bytes() for name in own} == own
    assert tables.read_run(smoke_layer_run, "layer", 1).bleu == averaged["bleu"]
    proc = script("evaluate.sh", "--run", smoke_layer_run, "--data", toy_data, "--checkpoint", tmp_path / "fused.pt")
    assert proc.returncode == 2 and f"--checkpoint {tmp_path / 'fused.pt'}: no such file" in proc.stderr
    valid = evaluate.evaluate_run(smoke_layer_run, toy_data, dataset, flags, 1, subset="valid", quiet=True,
                                  checkpoint=smoke_layer_run / "avg.pt")
    assert valid["subset"] == "valid" and valid["sentences"] == 40
    assert json.loads((smoke_layer_run / "eval-valid-avg.json").read_text())["bleu"] == valid["bleu"]
    truncated = tmp_path / "truncated.pt"  # the given file is what fairseq loads: a broken one fails
    truncated.write_bytes((smoke_layer_run / "avg.pt").read_bytes()[:4096])
    with pytest.raises(RuntimeError, match="failed with status"):
        evaluate.evaluate_run(smoke_layer_run, toy_data, dataset, flags, 1, quiet=True, checkpoint=truncated)
    assert not (smoke_layer_run / "eval-truncated.json").exists()


def test_heldout_entry_of_an_evaluated_run(toy_data, smoke_layer_run, tmp_path):
    """The held-out tool's valid nll is the mean of the per-token log2-probabilities that
    fairseq-generate --score-reference prints for the references (an independent path through
    fairseq); its BLEU at lenpen 1 is what scripts/evaluate.sh reports for each subset; the
    grid's best length penalty on valid is also applied to test; the entry is merged into the
    file without touching its other content, and a failure writes nothing."""
    from un_tools.reproduce import config, evaluate, heldout

    dataset, flags = config.load_dataset("toy"), config.load_profile("smoke").gen_flags
    # forced: an earlier test of this module may have left an evaluation with other flags (beam 2)
    evaluate.evaluate_run(smoke_layer_run, toy_data, dataset, flags, 1, quiet=True, force=True)
    out = tmp_path / "heldout.json"
    out.write_text('{\n "what": "kept",\n "models": {\n  "layer-seed1": {\n   "note": "kept"\n  }\n }\n}\n')
    proc = subprocess.run([sys.executable, "-m", "un_tools.reproduce.cli", "heldout", "--run", smoke_layer_run,
                           "--out", out, "--lenpens", "0.6,1.0", "--data", toy_data],
                          cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert doc["what"] == "kept" and out.read_text() == json.dumps(doc, indent=1, ensure_ascii=False) + "\n"
    entry = doc["models"]["layer-seed1"]
    assert entry["note"] == "kept"
    scored = subprocess.run(
        [*train.fairseq_command("fairseq-generate"), str(toy_data), "--user-dir", str(REPO / "un_fairseq"),
         "--path", str(smoke_layer_run / "avg.pt"), "--gen-subset", "valid", "--score-reference",
         "--batch-size", "7", "--required-batch-size-multiple", "1", "--cpu"],
        cwd=REPO, env=ENV, capture_output=True, text=True, check=True, timeout=300).stdout
    logprobs = [float(v) for line in scored.splitlines() if line.startswith("P-") for v in line.split("\t")[1].split()]
    assert len(logprobs) > 40
    assert entry["valid_nll"] == pytest.approx(-sum(logprobs) / len(logprobs), abs=2e-3)
    for subset in ("valid", "test"):
        assert entry[f"{subset}_label_smoothed_loss"] > entry[f"{subset}_nll"] > 0
        own = evaluate.evaluate_run(smoke_layer_run, toy_data, dataset, flags, 1, subset=subset, quiet=True)
        assert entry[f"{subset}_bleu_lenpen_1.0"]["bleu"] == own["bleu"]
        assert f"BLEU4 = {own['bleu']:.2f}, {entry[f'{subset}_bleu_lenpen_1.0']['precisions']} " in own["bleu_line"]
    best = entry["best_lenpen_on_valid"]
    assert best in (0.6, 1.0) and f"test_bleu_lenpen_{best:.1f}" in entry
    assert entry[f"valid_bleu_lenpen_{best:.1f}"]["bleu"] == max(entry["valid_bleu_lenpen_0.6"]["bleu"],
                                                                  entry["valid_bleu_lenpen_1.0"]["bleu"])
    before = out.read_bytes()
    (smoke_layer_run / "avg.pt").rename(smoke_layer_run / "avg.pt.bak")
    try:
        proc = subprocess.run([sys.executable, "-m", "un_tools.reproduce.cli", "heldout", "--run", smoke_layer_run,
                               "--out", out, "--data", toy_data], cwd=REPO, env=ENV, capture_output=True, text=True,
                              timeout=300)
    finally:
        (smoke_layer_run / "avg.pt.bak").rename(smoke_layer_run / "avg.pt")
    assert proc.returncode == 2 and "avg.pt not found: run scripts/evaluate.sh" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "un_tools.reproduce.cli", "heldout", "--run", smoke_layer_run,
                           "--out", out, "--lenpens", "1,x"], cwd=REPO, env=ENV, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and "--lenpens must be comma-separated numbers, got '1,x'" in proc.stderr
    assert out.read_bytes() == before

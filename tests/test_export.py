"""`harness export` as a user runs it: it rebuilds a results directory from a study and
never writes over another sweep, nor creates a storage while reading one."""

import shutil

import pandas as pd
import yaml
from conftest import run_cli, small_config

from harness.parse import parse_config
from harness.sweep import SweepOptions, run_sweep


def sweep(out, **config):
    raw = small_config(search={"space": {"lr": [0.01], "batch_size": [32],
                                         "optimizer": ["sgd", "adam"]}}, **config)
    run_sweep(parse_config(raw), SweepOptions(out=out, progress=False))
    return out


def export(tmp_path, db, out, study="tiny"):
    return run_cli("export", "--storage", f"sqlite:///{db}", "--study", study, "--out",
                   str(out), cwd=tmp_path)


def snapshot(directory):
    return {p.relative_to(directory): p.read_bytes() for p in directory.rglob("*")
            if p.is_file()}


def test_the_exported_config_is_the_sweeps_own(tmp_path):
    done = sweep(tmp_path / "done", logging={"tensorboard": False, "visdom": False})
    result = export(tmp_path, done / "study.db", tmp_path / "exported")
    assert result.returncode == 0, result.stderr
    exported = yaml.safe_load((tmp_path / "exported" / "config.yaml").read_text())
    assert exported == yaml.safe_load((done / "config.yaml").read_text())
    assert exported["train"]["device"] == "cpu" and exported["logging"]["tensorboard"] is False
    trials = pd.read_csv(tmp_path / "exported" / "trials.csv")
    pd.testing.assert_frame_equal(trials, pd.read_csv(done / "trials.csv"))
    # Without the sweep's config.yaml at hand (the database copied elsewhere), the
    # device is the one every trial ran on, not the default.
    (tmp_path / "copy").mkdir()
    shutil.copy(done / "study.db", tmp_path / "copy" / "study.db")
    assert export(tmp_path, tmp_path / "copy" / "study.db", tmp_path / "again").returncode == 0
    again = yaml.safe_load((tmp_path / "again" / "config.yaml").read_text())
    assert again["train"]["device"] == "cpu"
    # Exporting into the sweep's own directory rebuilds it in place.
    assert export(tmp_path, done / "study.db", done).returncode == 0


def test_a_directory_that_holds_another_sweep_is_refused(tmp_path):
    ours = sweep(tmp_path / "ours")
    theirs = sweep(tmp_path / "theirs", name="theirs")
    same_name = sweep(tmp_path / "same-name")  # another sweep called tiny, its own study.db
    for other in (theirs, same_name):
        before = snapshot(other)
        result = export(tmp_path, ours / "study.db", other)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert result.stderr.startswith(f"harness: --out: {other} holds ")
        assert len(result.stderr.strip().splitlines()) == 1
        assert snapshot(other) == before
    # A config.yaml of another study, without a database (a worker of a shared study).
    (theirs / "study.db").unlink()
    result = export(tmp_path, ours / "study.db", theirs)
    assert result.returncode == 2 and "is not 'tiny''s" in result.stderr


def test_a_missing_database_is_bad_input_and_is_not_created(tmp_path):
    missing = tmp_path / "nowhere" / "study.db"
    missing.parent.mkdir()
    result = export(tmp_path, missing, tmp_path / "out")
    assert result.returncode == 2
    assert result.stderr == f"harness: --storage: {missing} does not exist; give the study.db " \
                            "of a sweep, e.g. sqlite:///results/lenet-grid/study.db\n"
    assert not missing.exists() and not (tmp_path / "out").exists()

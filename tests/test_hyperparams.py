"""The table of hyperparameters is the one place that names them."""

import ast
from pathlib import Path

import pytest
import torch

from harness.errors import ConfigError
from harness.hyperparams import HYPERPARAMS, NAMES, OPTIMIZERS, build_optimizer, run_name
from harness.parse import parse_config
from harness.reporting.directory import TRIAL_COLUMNS

PACKAGE = Path(__file__).resolve().parent.parent / "harness"
TABLE = PACKAGE / "hyperparams.py"


def literals(path: Path) -> set[str]:
    """Every string constant in a module's code (docstrings and f-string parts too)."""
    return {node.value for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Constant) and isinstance(node.value, str)}


def test_only_the_table_spells_the_hyperparameters_names():
    named = {str(path.relative_to(PACKAGE)): sorted(literals(path) & set(NAMES))
             for path in PACKAGE.rglob("*.py") if path != TABLE}
    assert {path: names for path, names in named.items() if names} == {}
    assert set(NAMES) <= literals(TABLE)


def test_the_check_sees_a_name_spelled_elsewhere(tmp_path):
    (tmp_path / "m.py").write_text('def f(params):\n    return params["lr"]\n')
    assert literals(tmp_path / "m.py") & set(NAMES) == {"lr"}


def test_trials_csv_has_a_column_per_row_of_the_table_in_its_order():
    at = TRIAL_COLUMNS.index(NAMES[0])
    assert TRIAL_COLUMNS[at:at + len(NAMES)] == list(NAMES)


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_each_optimizer_gets_the_values_it_uses_and_torch_s_defaults_for_the_rest(optimizer):
    values = {h.name: h.default for h in HYPERPARAMS} | {
        "optimizer": optimizer, "lr": 0.123, "momentum": 0.45, "weight_decay": 0.01}
    built = build_optimizer([torch.zeros(2, requires_grad=True)], values)
    spec = OPTIMIZERS[optimizer]
    cls = getattr(torch.optim, spec.torch_name)
    plain = cls([torch.zeros(2, requires_grad=True)])  # torch's own defaults
    assert isinstance(built, cls)
    for name in ("lr", "momentum", "weight_decay"):
        if name in plain.defaults:
            want = values[name] if name in spec.uses else plain.defaults[name]
            assert built.defaults[name] == want, name


def test_the_table_validates_train_values_and_names_the_allowed_ones(write_config):
    raw = {"name": "t", "train": {"optimizer": "lion", "batch_size": 0, "momentum": 1.0}}
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    lines = caught.value.lines
    assert any(line.startswith("train.optimizer:") and "sgd, adam, adamw, rmsprop" in line
               for line in lines)
    assert any(line.startswith("train.batch_size:") and "an integer >= 1" in line
               for line in lines)
    assert any(line.startswith("train.momentum:") and "[0, 1)" in line for line in lines)


def test_run_names_show_the_core_always_and_the_others_when_searched():
    values = {"optimizer": "sgd", "lr": 0.05, "batch_size": 32, "momentum": 0.5,
              "weight_decay": 0.0}
    assert run_name(3, values, 1, []) == "0003-sgd-lr0.05-bs32-s1"
    assert run_name(3, values, 1, ["momentum"]) == "0003-sgd-lr0.05-bs32-m0.5-s1"

import pytest
import yaml
from conftest import small_config

from harness.config import ConfigError, Range, dump_config, load_config, parse_config


def error_of(raw) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_defaults_are_filled_and_resolved():
    config = parse_config({"name": "x"})
    assert config.data.dataset == "mnist"
    assert config.train.epochs == 5
    assert config.search.seeds == (0,)  # train.seed when search.seeds is absent
    assert config.objective.metric == "val_acc"  # chosen on validation, not on test
    assert config.objective.direction == "maximize"
    assert (config.data.val_fraction, config.data.split_seed) == (0.1, 0)
    for metric, direction in (("test_loss", "minimize"), ("val_loss", "minimize"),
                              ("test_acc", "maximize"), ("train_loss", "minimize")):
        assert parse_config({"name": "x", "objective": {"metric": metric}}
                            ).objective.direction == direction


@pytest.mark.parametrize("metric", ["val_acc", "val_loss"])
def test_a_validation_objective_needs_a_validation_split(metric):
    message = error_of(small_config(data={"val_fraction": 0}, objective={"metric": metric}))
    assert message.startswith(f"objective.metric: {metric} needs a validation split")
    assert "data.val_fraction is 0" in message and "set data.val_fraction" in message
    # Without validation, the other metrics are allowed; so is selecting on test.
    for other in ("test_acc", "test_loss", "train_loss"):
        parse_config(small_config(data={"val_fraction": 0}, objective={"metric": other}))


def test_round_trip_through_yaml():
    config = parse_config(small_config(search={"method": "optuna", "space": {
        "lr": {"low": 1e-4, "high": 0.1, "log": True}, "optimizer": ["sgd"]}}))
    again = parse_config(yaml.safe_load(dump_config(config)))
    assert again == config
    assert config.search.space["lr"] == Range(1e-4, 0.1, True)


def test_unknown_key_suggests_the_closest():
    raw = small_config()
    raw["search"]["space"]["optimzer"] = raw["search"]["space"].pop("optimizer")
    message = error_of(raw)
    assert "search.space.optimzer: unknown key" in message
    assert "did you mean 'optimizer'" in message
    assert "did you mean 'epochs'" in error_of(small_config(train={"epoch": 3}))
    assert "did you mean 'search'" in error_of({"name": "x", "serach": {}})


@pytest.mark.parametrize("section, field, value, expected", [
    ("search", "space", {"lr": [-1]}, "search.space.lr[0]: -1.0 is not valid; use a number > 0"),
    ("search", "space", {"lr": [0]}, "search.space.lr[0]"),
    ("search", "space", {"batch_size": [0]}, "search.space.batch_size[0]: 0"),
    ("search", "space", {"batch_size": [32.5]}, "search.space.batch_size[0]"),
    ("search", "space", {"lr": []}, "search.space.lr: the list of values is empty"),
    ("search", "space", {"optimizer": ["adamm"]}, "search.space.optimizer[0]: 'adamm'"),
    ("search", "space", {"lr": [0.1, 0.1]}, "repeats a value"),
    ("search", "method", "bayes", "search.method: 'bayes' is not valid"),
    ("search", "space", {"lr": {"low": 0.1, "high": 1}}, "needs search.method: optuna"),
    ("search", "seeds", [1, 1], "search.seeds"),
    ("search", "n_trials", 5, "search.n_trials: only used by method optuna"),
    ("train", "epochs", 0, "train.epochs: 0 is too small"),
    ("train", "epochs", "many", "train.epochs: expected an integer, got 'many'"),
    ("train", "device", "gpu", "train.device: 'gpu' is not a device"),
    ("train", "lr", -0.5, "train.lr"),
    ("data", "dataset", "mnist5k", "data.dataset: 'mnist5k' is not valid; did you mean 'mnist-5k'"),
    ("data", "train_size", 0, "data.train_size: 0 is too small"),
    ("data", "val_fraction", 1, "data.val_fraction: 1.0 is not valid; use a number in [0, 1)"),
    ("data", "val_fraction", -0.1, "data.val_fraction: -0.1 is not valid"),
    ("data", "val_fraction", "some", "data.val_fraction: expected a number"),
    ("data", "split_seed", 0.5, "data.split_seed: expected an integer"),
    ("objective", "metric", "accuracy", "objective.metric: 'accuracy'"),
])
def test_bad_values_name_the_field(section, field, value, expected):
    raw = small_config()
    raw[section] = {**raw.get(section, {}), field: value}
    assert expected in error_of(raw)


def test_optuna_ranges_are_checked():
    def optuna_space(space):
        return small_config(search={"method": "optuna", "space": space})
    assert "low (0.1) must be smaller" in error_of(optuna_space({"lr": {"low": 0.1, "high": 0.01}}))
    assert "a log range needs low > 0" in error_of(
        optuna_space({"momentum": {"low": 0, "high": 0.9, "log": True}}))
    assert "optimizer takes a list" in error_of(optuna_space({"optimizer": {"low": 1, "high": 2}}))
    assert "search.sampler" in error_of(small_config(search={"method": "optuna",
                                                             "sampler": "cmaes"}))


def test_scientific_notation_without_a_dot_is_a_number():
    # YAML 1.1 reads 1e-3 as a string; users write it anyway.
    config = parse_config(yaml.safe_load("name: x\nsearch: {space: {lr: [1e-3, 3e-2]}}"))
    assert config.search.space["lr"] == (0.001, 0.03)


@pytest.mark.parametrize("name", ["../../x", "a/b", ".hidden", "", "x y"])
def test_names_cannot_escape_the_results_directory(name):
    assert "name:" in error_of({"name": name})


def test_top_level_must_be_a_mapping():
    assert "must be a mapping" in error_of(["name", "x"])
    assert "name: missing" in error_of({"train": {}})


def test_load_config_reports_file_problems(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nsearch: {space: [\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: YAML syntax error at line \d+"):
        load_config(bad)
    lr = tmp_path / "lr.yaml"
    lr.write_text("name: x\nsearch: {space: {lr: [-1]}}\n")
    with pytest.raises(ConfigError, match=r"lr.yaml: search.space.lr\[0\]"):
        load_config(lr)

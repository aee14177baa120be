import contextlib
import io

import pytest
import yaml
from conftest import small_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.cli import main
from harness.config import Range, dump_config
from harness.errors import ConfigError
from harness.parse import load_config, parse_config


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


@pytest.mark.parametrize(("metric", "direction"), [("val_loss", "maximize"),
                                                   ("test_acc", "minimize")])
def test_a_direction_against_the_metrics_own_is_refused(metric, direction):
    """It would choose each trial's worst epoch as its best."""
    message = error_of(small_config(objective={"metric": metric, "direction": direction}))
    assert message.startswith(f"objective.direction: {direction} contradicts {metric}")
    assert "leave direction out" in message


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


# ------------------------------------------------------------ every problem at once


def problems_of(raw) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    assert str(info.value).splitlines() == info.value.lines
    return info.value.lines


def test_every_mistake_is_reported_at_once_field_path_first():
    raw = small_config(train={"epochs": 0, "device": "gpu", "momentum": 1.5},
                       data={"dataset": "mnist5k"}, objective={"metric": "accuracy"})
    raw["search"]["space"]["lr"] = [-1, 0.1, 0]
    raw["search"]["space"]["optimzer"] = ["sgd"]
    lines = problems_of(raw)
    assert sorted(line.split(":")[0] for line in lines) == sorted([
        "train.epochs", "train.device", "train.momentum", "data.dataset",
        "objective.metric", "search.space.lr[0]", "search.space.lr[2]",
        "search.space.optimzer"])
    # Each line is the message the same mistake gives alone.
    assert "search.space.lr[0]: -1.0 is not valid; use a number > 0" in lines
    assert "train.epochs: 0 is too small; use an integer >= 1" in lines


def test_a_mistake_is_not_reported_again_as_its_consequences():
    # A wrong type keeps the field's default for the later checks; those that depend
    # on the field are skipped rather than reporting a consequence.
    raw = small_config(search={"method": 5, "n_trials": 3, "space": {
        "lr": {"low": 0.001, "high": 0.1}}})
    assert problems_of(raw) == ["search.method: expected a string, got 5"]
    assert problems_of({"name": 7, "train": {"epochs": "x"}}) == [
        "name: expected a string, got 7", "train.epochs: expected an integer, got 'x'"]
    assert problems_of(small_config(data={"dataset": "mnist5k"}, train={"batch_size": 9000},
                                    search={"space": {"lr": [0.1]}})) == [
        "data.dataset: 'mnist5k' is not valid; did you mean 'mnist-5k'? use one of "
        "mnist, mnist-5k, synthetic"]


def test_at_most_20_lines_the_last_saying_how_many_more():
    raw = small_config()
    raw["search"]["space"]["lr"] = [-float(i) for i in range(1, 31)]
    lines = problems_of(raw)
    assert len(lines) == 20
    assert lines[:19] == [f"search.space.lr[{i}]: {-float(i + 1)} is not valid; use a number > 0"
                          for i in range(19)]
    assert lines[19].startswith("... and 11 more problems")


def test_a_missing_range_end_is_a_problem_not_a_crash():
    raw = small_config(search={"method": "optuna", "space": {"lr": {"low": 0.1}}})
    assert problems_of(raw) == ["search.space.lr.high: missing; add high: <value>"]


@pytest.mark.parametrize("space, expected", [
    ({"lr": [float("inf")]}, "search.space.lr[0]: inf is not a finite number; use a number > 0"),
    ({"lr": [1e400]}, "search.space.lr[0]: inf is not a finite number"),
    ({"lr": ["1e400"]}, "search.space.lr[0]: inf is not a finite number"),
    ({"lr": [float("nan")]}, "search.space.lr[0]: nan is not a finite number"),
    ({"weight_decay": [float("inf")]}, "search.space.weight_decay[0]: inf is not a finite"),
    ({"momentum": [-0.5]}, "search.space.momentum[0]: -0.5 is not valid; use a number in [0, 1)"),
    ({"weight_decay": [-1]}, "search.space.weight_decay[0]: -1.0 is not valid; use a number >= 0"),
])
def test_non_finite_and_negative_values_are_refused(space, expected):
    raw = small_config()
    raw["search"]["space"].update(space)
    assert any(line.startswith(expected) for line in problems_of(raw))


@pytest.mark.parametrize("section, value, expected", [
    ("train", {"lr": float("inf")}, "train.lr: inf is not a finite number"),
    ("train", {"momentum": float("nan")}, "train.momentum: nan is not a finite number"),
    ("train", {"weight_decay": -0.1}, "train.weight_decay: -0.1 is not valid"),
    ("train", {"diverge_above": 0}, "train.diverge_above: 0.0 is not valid; use a number > 0"),
    ("train", {"diverge_above": float("inf")}, "train.diverge_above: inf is not a finite"),
])
def test_non_finite_and_negative_train_values_are_refused(section, value, expected):
    assert any(line.startswith(expected) for line in problems_of(small_config(**{section: value})))


@pytest.mark.parametrize("rng, expected", [
    ({"low": 0.1, "high": 0.01}, "search.space.lr: low (0.1) must be smaller than high (0.01)"),
    ({"low": 0.1, "high": 0.1}, "search.space.lr: low (0.1) must be smaller than high (0.1)"),
    ({"low": float("-inf"), "high": 0.1}, "search.space.lr.low: -inf is not a finite number"),
    ({"low": 0.01, "high": float("nan")}, "search.space.lr.high: nan is not a finite number"),
])
def test_inverted_and_non_finite_ranges_are_refused(rng, expected):
    lines = problems_of(small_config(search={"method": "optuna", "space": {"lr": rng}}))
    assert len(lines) == 1 and lines[0].startswith(expected)


def test_a_batch_larger_than_the_training_split_is_refused():
    # synthetic: 2,000 training digits, 200 of them held out for validation (the default
    # val_fraction 0.1), the rest cut to train_size 256 by small_config.
    raw = small_config(search={"space": {"batch_size": [32, 256, 512]}})
    assert problems_of(raw) == [
        "search.space.batch_size[2]: 512 is larger than the training split (256 samples of "
        "synthetic); use at most 256, or a larger data.train_size"]
    raw = small_config(data={"train_size": None}, train={"batch_size": 4096},
                       search={"space": {"lr": [0.1]}})
    assert problems_of(raw) == [
        "train.batch_size: 4096 is larger than the training split (1800 samples of "
        "synthetic); use at most 1800"]
    raw = small_config(search={"method": "optuna", "space": {
        "batch_size": {"low": 16, "high": 1024, "log": True}}})
    assert problems_of(raw)[0].startswith("search.space.batch_size.high: 1024 is larger")
    parse_config(small_config(search={"space": {"batch_size": [256]}}))  # equal is fine


def test_train_diverge_above_defaults_to_100():
    assert parse_config({"name": "x"}).train.diverge_above == 100.0
    assert parse_config({"name": "x", "train": {"diverge_above": 1e6}}).train.diverge_above == 1e6


# ------------------------------------------------------------ the file itself


def test_a_key_given_twice_is_refused_with_its_lines(tmp_path):
    path = tmp_path / "twice.yaml"
    path.write_text("name: x\nsearch:\n  space:\n    lr: [0.1]\n    lr: [0.01]\n"
                    "train: {epochs: 2, epochs: 3}\nname: y\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.lines == [  # in the order of the second mentions
        f"{path}: search.space.lr: given twice (lines 4 and 5); YAML would keep only the last, "
        "so keep one",
        f"{path}: train.epochs: given twice (line 6, columns 9 and 20); YAML would keep only "
        "the last, so keep one",
        f"{path}: name: given twice (lines 1 and 7); YAML would keep only the last, so keep one"]
    # Anchors and merge keys are not duplicates.
    path.write_text("name: x\nbase: &b {epochs: 2}\n")
    with pytest.raises(ConfigError, match="base: unknown key"):
        load_config(path)
    path.write_text("name: x\ntrain: &t {epochs: 2}\nsearch: {seeds: [0]}\n")
    assert load_config(path).train.epochs == 2


@pytest.mark.parametrize("content, expected", [
    (b"name: caf\xe9\n", "not UTF-8 text (byte 0xe9 at line 1); save the file as UTF-8"),
    (b"# r\xe9sum\xe9\nname: x\n", "not UTF-8 text (byte 0xe9 at line 1)"),
    (b"name: x\ntrain:\n  device: \xff\xfe\n", "not UTF-8 text (byte 0xff at line 3)"),
    (b"\x7fELF\x02\x01\x01\x00\x00\x00", "a binary file, not a YAML config"),
    (b"name: x\x07\n", "YAML cannot hold the character '\\x07'"),
])
def test_a_file_that_is_not_utf8_text_is_one_line(tmp_path, content, expected):
    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert len(info.value.lines) == 1
    assert info.value.lines[0].startswith(f"{path}: {expected}")


# ------------------------------------------------------------ property-based

CHECKS = settings(max_examples=150, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def sweep_errors(tmp_path, content: bytes) -> list[str]:
    """`harness sweep` on a file holding `content`: exit 2, nothing written, and the
    stderr lines, each `harness: <file>: ...` with the file prefix removed."""
    path = tmp_path / "config.yaml"
    path.write_bytes(content)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["sweep", str(path), "--out", str(tmp_path / "out")])
    assert code == 2 and "Traceback" not in err.getvalue()
    assert not (tmp_path / "out").exists()
    lines = err.getvalue().strip().splitlines()
    assert all(line.startswith(f"harness: {path}: ") for line in lines), lines
    return [line.removeprefix(f"harness: {path}: ") for line in lines]


def put(raw: dict, path: str, value) -> None:
    """Set raw[a][b][c] = value for path a.b.c, making the sections on the way."""
    *sections, key = path.split(".")
    for section in sections:
        if not isinstance(raw.get(section), dict):
            raw[section] = {}
        raw = raw[section]
    raw[key] = value


# One mistake each, in fields that do not depend on one another: field path -> value.
MISTAKES = {
    "name": "../x", "model": "resnet", "train.epochs": 0, "train.seed": "s",
    "train.device": "gpu", "train.lr": -1, "train.optimizer": "adamm", "train.momentum": 1.5,
    "train.weight_decay": -1, "train.eval_batch_size": 0, "train.amp": "yes",
    "train.channels_last": 3, "train.diverge_above": 0, "train.epoch": 3,
    "data.dataset": "mnist5k", "data.root": 5, "data.train_size": 0, "data.test_size": 0,
    "data.sise": 1, "objective.metric": "acc", "objective.direction": "up",
    "search.method": "bayes", "search.seeds": [1, 1], "search.space.optimzer": ["sgd"],
    "logging.tensorboard.log_every": -1, "logging.visdom.port": "p",
}


@CHECKS
@given(chosen=st.sets(st.sampled_from(sorted(MISTAKES)), min_size=1))
def test_several_mistakes_are_each_one_line_field_path_first(tmp_path_factory, chosen):
    raw = small_config()
    for path in chosen:
        put(raw, path, MISTAKES[path])
    lines = sweep_errors(tmp_path_factory.mktemp("c"), yaml.safe_dump(raw).encode())
    named = [line.split(": ")[0] for line in lines]
    if len(chosen) <= 20:
        assert sorted(named) == sorted(chosen)
    else:  # at most 20 lines: 19 problems, then how many more
        assert len(lines) == 20 and set(named[:19]) <= chosen
        assert lines[19] == f"... and {len(chosen) - 19} more problems; fix these and run " \
                            "again to see the rest"


NUMBER_FIELDS = ["train.lr", "train.momentum", "train.weight_decay", "train.diverge_above",
                 "search.space.lr", "search.space.momentum", "search.space.weight_decay"]


@CHECKS
@given(field=st.sampled_from(NUMBER_FIELDS), value=st.sampled_from(
    [".inf", "-.inf", ".nan", "1.0e+400", "-1.0e+999", "1e400"]))
def test_a_non_finite_number_is_refused_wherever_a_number_goes(tmp_path_factory, field, value):
    raw = small_config()
    put(raw, field, "NUMBER")
    text = yaml.safe_dump(raw).replace("NUMBER", value)
    lines = sweep_errors(tmp_path_factory.mktemp("c"), text.encode())
    where = field + ("[0]" if field.startswith("search.space") else "")
    assert len(lines) == 1 and lines[0].startswith(f"{where}: "), lines
    assert "is not a finite number" in lines[0] or "is not valid" in lines[0]


@CHECKS
@given(key=st.sampled_from(["lr", "momentum", "weight_decay"]),
       ends=st.tuples(st.floats(0.001, 0.9), st.floats(0.001, 0.9)), log=st.booleans())
def test_an_inverted_range_is_refused(tmp_path_factory, key, ends, log):
    low, high = max(ends), min(ends)  # low >= high
    raw = small_config(search={"method": "optuna", "space": {
        key: {"low": low, "high": high, "log": log}}})
    lines = sweep_errors(tmp_path_factory.mktemp("c"), yaml.safe_dump(raw).encode())
    assert lines == [f"search.space.{key}: low ({low}) must be smaller than high ({high})"]


def key_lines(lines: list[str]) -> list[tuple[int, str]]:
    """(index, field path) of every `key:` line of block-style YAML."""
    found, stack = [], []
    for i, line in enumerate(lines):
        stripped = line.lstrip()
        if stripped.startswith("- ") or ":" not in stripped:
            continue
        indent = len(line) - len(stripped)
        stack = [(d, k) for d, k in stack if d < indent]
        stack.append((indent, stripped.split(":")[0]))
        found.append((i, ".".join(k for _, k in stack)))
    return found


@CHECKS
@given(data=st.data())
def test_a_key_given_twice_is_one_line_naming_it_and_both_lines(tmp_path_factory, data):
    lines = yaml.safe_dump(small_config(train={"epochs": 2, "lr": 0.1}),
                           sort_keys=False).splitlines()
    index, path = data.draw(st.sampled_from(key_lines(lines)))
    # The copy goes right after the original: the first now holds nothing, the second
    # keeps the value, so the config is otherwise valid.
    text = "\n".join(lines[:index + 1] + [lines[index]] + lines[index + 1:]) + "\n"
    errors = sweep_errors(tmp_path_factory.mktemp("c"), text.encode())
    assert errors == [f"{path}: given twice (lines {index + 1} and {index + 2}); YAML would "
                      "keep only the last, so keep one"]


def not_utf8(content: bytes) -> bool:
    try:
        content.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


@CHECKS
@given(content=st.one_of(
    st.binary(min_size=1, max_size=200).filter(lambda b: b"\0" in b or not_utf8(b)),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), min_size=1,
            max_size=20).map(lambda t: f"name: x\n# {t}\n".encode("latin-1")).filter(not_utf8)))
def test_a_file_that_is_not_utf8_text_exits_2_with_one_line(tmp_path_factory, content):
    lines = sweep_errors(tmp_path_factory.mktemp("c"), content)
    assert len(lines) == 1
    if b"\0" in content:
        assert lines[0].startswith("a binary file, not a YAML config")
    else:
        assert lines[0].startswith("not UTF-8 text (byte 0x")
        if content.startswith(b"name: x\n# "):  # Latin-1: the comment holds the accent
            assert "at line 2)" in lines[0]


def test_a_validation_metric_without_a_split_does_not_hide_other_problems():
    raw = small_config(data={"val_fraction": 0}, train={"batch_size": 4096},
                       search={"space": {"lr": [0.1]}})
    lines = problems_of(raw)
    assert [line.split(":")[0] for line in lines] == ["objective.metric", "train.batch_size"]


def test_momentum_searched_with_an_optimizer_that_ignores_it_is_refused():
    # adam would run once per momentum value with identical results: duplicate trials.
    def space(**values):
        return small_config(search={"space": {"lr": [0.01], **values}})
    message = error_of(space(optimizer=["sgd", "adam", "rmsprop"], momentum=[0.0, 0.9]))
    assert message == (
        "search.space.momentum: only sgd uses momentum, but search.space.optimizer has "
        "adam, rmsprop, which would run the same trial once per momentum value; search "
        "momentum in a sweep of its own with optimizer: [sgd], or give momentum one value")
    alone = small_config(train={"optimizer": "adamw"},
                         search={"method": "optuna", "space": {"momentum": {
                             "low": 0.5, "high": 0.9}}})
    assert "but train.optimizer is adamw" in error_of(alone)
    # What makes no duplicates is accepted: sgd alone, or one momentum value for all.
    parse_config(space(optimizer=["sgd"], momentum=[0.0, 0.9]))
    parse_config(space(optimizer=["sgd", "adam"], momentum=[0.5]))


@pytest.mark.parametrize(("value", "expected"), [
    ("auto", "auto"), ("off", "off"), (False, "off"), (1, 1), (32, 32)])
def test_train_population_is_auto_off_or_a_count(value, expected):
    config = parse_config({"name": "x", "train": {"population": value}})
    assert config.train.population == expected
    assert parse_config(yaml.safe_load(dump_config(config))) == config


def test_train_population_defaults_to_auto_and_does_not_decide_the_results():
    from harness.config import identity

    assert parse_config({"name": "x"}).train.population == "auto"
    assert identity(parse_config({"name": "x", "train": {"population": 4}})) == identity(
        parse_config({"name": "x"}))


@pytest.mark.parametrize("value", [0, -1, True, "many", 2.5, None])
def test_a_bad_train_population_is_one_line(value):
    with pytest.raises(ConfigError) as err:
        parse_config({"name": "x", "train": {"population": value}})
    assert err.value.lines == [
        f"train.population: {value!r} is not valid; use auto, off or the number of trials "
        "to train together (an integer >= 1)"]


def test_a_name_too_long_is_refused_for_its_length():
    assert error_of({"name": "x" * 300}) == (
        "name: 300 characters is too long; use at most 100 (it names the results directory "
        "and the study)")
    assert parse_config({"name": "x" * 100}).name == "x" * 100


@pytest.mark.parametrize("data, expected", [
    ({"dataset": "synthetic", "train_size": 100000},
     "data.train_size: 100000 is more than the 1800 training samples left after the "
     "validation split of synthetic; use at most 1800, or leave it out for all"),
    ({"dataset": "mnist-5k", "test_size": 5000},
     "data.test_size: 5000 is more than the 1000 test samples of mnist-5k; use at most "
     "1000, or leave it out for all"),
])
def test_sizes_beyond_the_data_set_are_refused_not_capped(data, expected):
    assert error_of({"name": "x", "data": data}) == expected

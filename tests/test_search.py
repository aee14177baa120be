import socket
import subprocess
import time

import optuna
import pytest
from conftest import small_config
from optuna.trial import TrialState

from harness.hyperparams import run_name
from harness.parse import parse_config
from harness.study.claims import DEAD
from harness.study.owner import is_dead_here, this_process
from harness.study.search import grid_points, make_search, total_points
from harness.study.storage import open_storage, open_study


def new_search(raw):
    config = parse_config(raw)
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(study_name=config.name, storage=storage,
                                direction=config.objective.direction)
    return config, make_search(config, study, storage)


def one(search):
    """The next point alone, or None."""
    claims = search.next_points(1)
    return claims[0] if claims else None


def run_all(search, state=TrialState.COMPLETE):
    claims = []
    while (claim := one(search)) is not None:
        claims.append(claim)
        claim.trial.set_user_attr("error", "" if state == TrialState.COMPLETE else "boom")
        search.study.tell(claim.trial, 0.5 if state == TrialState.COMPLETE else None,
                          state=state)
    return claims


def test_grid_points_cover_every_combination_and_seed_in_order():
    config = parse_config(small_config(search={"seeds": [0, 1]}))
    points = grid_points(config)
    assert len(points) == 2 * 1 * 2 * 2 == total_points(config)
    assert [(p.index, p.seed) for p in points[:4]] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert points[0].params == {"lr": 0.01, "batch_size": 32, "optimizer": "sgd"}
    assert len({p.key for p in points}) == len(points)


def test_a_grid_is_claimed_exactly_once_per_point():
    config, search = new_search(small_config(search={"seeds": [0, 1]}))
    claims = run_all(search)
    assert len(claims) == 8
    runs = [c.spec.run for c in claims]
    assert runs[0] == "0000-sgd-lr0.01-bs32-s0" and runs[1] == "0000-sgd-lr0.01-bs32-s1"
    assert len(set(runs)) == 8
    # Unsearched hyperparameters come from train:.
    assert claims[0].spec.params["momentum"] == config.train.momentum
    assert one(search) is None


def test_a_grid_search_sees_what_other_processes_did_since_it_last_looked():
    """Two processes on one grid: one sees the other's claim running, and when that one
    is interrupted later, its point is due again for both."""
    _, first = new_search(small_config())
    second = make_search(first.config, first.study, first.storage)
    second.owner = "another-machine:1:1"  # as if another process: its trials are its own
    a = one(first)
    b = one(second)  # a is RUNNING: b is the next point
    assert b.spec.run != a.spec.run
    a.trial.set_user_attr("error", "interrupted")
    first.study.tell(a.trial, state=TrialState.FAIL)
    again = one(second)
    assert again.spec.run == a.spec.run  # seen running before, interrupted since
    for claim in (b, again):
        claim.trial.set_user_attr("error", "")
        first.study.tell(claim.trial, 0.5)
    rest = run_all(second)
    assert len(rest) == 2 and one(first) is None  # the first search agrees: all done
    assert {c.spec.run for c in rest} | {a.spec.run, b.spec.run} == {
        t.user_attrs["run"] for t in first.study.trials}


def test_a_completed_trial_whose_worker_died_before_telling_runs_again():
    """The result's `error` ("") is written, then the worker dies before it tells the
    study; the heartbeat check fails the trial: its point runs again."""
    _, search = new_search(small_config())
    claim = one(search)
    claim.trial.set_user_attr("error", "")
    search.storage.set_trial_state_values(claim.trial_id, TrialState.FAIL)
    claims = run_all(search)
    assert claim.spec.run in {c.spec.run for c in claims} and len(claims) == 4


def test_failed_and_pruned_points_are_results_not_reruns():
    _, search = new_search(small_config())
    assert len(run_all(search, TrialState.FAIL)) == 4
    assert one(search) is None


def test_an_interrupted_trial_is_claimed_again():
    _, search = new_search(small_config())
    first = one(search)
    first.trial.set_user_attr("error", "interrupted")
    search.study.tell(first.trial, state=TrialState.FAIL)
    again = one(search)
    assert again.spec.run == first.spec.run and again.spec.number != first.spec.number


def dead_owner() -> str:
    process = subprocess.Popen(["true"])
    process.wait()
    return f"{socket.gethostname()}:{process.pid}:1"


def test_a_trial_left_running_by_a_dead_process_runs_again():
    _, search = new_search(small_config())
    orphan = one(search)
    orphan.trial.set_user_attr("owner", dead_owner())
    retry = one(search)  # the dead process's point comes first
    assert retry.spec.run == orphan.spec.run
    rest = run_all(search)  # the retry is owned by this live process: left alone
    trials = {t.number: t for t in search.study.get_trials()}
    assert trials[orphan.spec.number].state == TrialState.FAIL
    assert trials[orphan.spec.number].user_attrs["error"] == DEAD
    assert trials[retry.spec.number].state == TrialState.RUNNING
    assert [c.spec.run for c in rest] == [
        "0001-adam-lr0.01-bs32-s0", "0002-sgd-lr0.05-bs32-s0", "0003-adam-lr0.05-bs32-s0"]


def test_a_trial_failed_by_the_heartbeat_check_runs_again(tmp_path):
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path}/h.db", heartbeat_interval=1,
                                         grace_period=1)
    config = parse_config(small_config())
    study = optuna.create_study(study_name=config.name, storage=storage)
    search = make_search(config, study, storage)
    lost = one(search)
    lost.trial.set_user_attr("owner", "a-machine-far-away:1:1")  # not ours to judge by pid
    storage.record_heartbeat(lost.trial_id)
    time.sleep(2.5)  # no heartbeat for longer than the grace period
    retry = one(search)
    assert retry.spec.run == lost.spec.run
    assert study.trials[lost.spec.number].state == TrialState.FAIL


def test_owner_liveness():
    assert not is_dead_here(this_process())
    assert is_dead_here(dead_owner())
    assert not is_dead_here("another-host:1:1")  # other machines: left to heartbeats


@pytest.mark.parametrize("sampler", ["tpe", "random"])
def test_optuna_method_samples_n_trials_configurations_once_per_seed(sampler):
    raw = small_config(search={"method": "optuna", "n_trials": 5, "sampler": sampler,
                               "seeds": [0, 1], "space": {
                                   "lr": {"low": 1e-4, "high": 0.1, "log": True},
                                   "batch_size": {"low": 16, "high": 256, "log": True},
                                   "optimizer": ["sgd", "adam"]}})
    _, search = new_search(raw)
    claims = run_all(search)
    assert len(claims) == 10
    by_index = {}
    for claim in claims:
        by_index.setdefault(claim.trial.user_attrs["index"], []).append(claim.spec)
    assert len(by_index) == 5
    for specs in by_index.values():
        assert sorted(s.seed for s in specs) == [0, 1]
        assert specs[0].params == specs[1].params
        assert 1e-4 <= specs[0].params["lr"] <= 0.1
        assert isinstance(specs[0].params["batch_size"], int)


def claim_all(searches, n):
    """Claims taken in turn by `searches` (processes on one study), each told COMPLETE."""
    params = []
    for i in range(n):
        claim = one(searches[i % len(searches)])
        params.append(tuple(sorted(claim.trial.params.items())))
        claim.trial.set_user_attr("error", "")
        searches[0].study.tell(claim.trial, 0.5)
    return params


@pytest.mark.parametrize("sampler", ["tpe", "random"])
def test_processes_that_open_a_study_together_draw_different_points(tmp_path, sampler):
    """Started at the same moment, two processes open the study before either claims:
    each claim seeds the sampler by its trial number, so they never draw alike, and one
    process alone draws the same points every time."""
    config = parse_config(small_config(search={
        "method": "optuna", "n_trials": 6, "sampler": sampler,
        "space": {"lr": {"low": 1e-4, "high": 0.1, "log": True}, "optimizer": ["sgd"]}}))
    with open_storage(f"sqlite:///{tmp_path}/study.db") as storage:
        together = [make_search(config, open_study(config, storage), storage) for _ in range(2)]
        params = claim_all(together, 6)
    assert len(set(params)) == 6
    alone = []
    for name in ("a", "b"):
        with open_storage(f"sqlite:///{tmp_path}/{name}.db") as storage:
            alone.append(claim_all([make_search(config, open_study(config, storage), storage)], 6))
    assert alone[0] == alone[1]


def test_run_names_are_readable_and_sortable():
    params = {"optimizer": "adam", "lr": 0.01, "batch_size": 64, "momentum": 0.9,
              "weight_decay": 1e-4}
    assert run_name(7, params, 0, {"lr"}) == "0007-adam-lr0.01-bs64-s0"
    assert run_name(12, params, 3, {"weight_decay"}) == "0012-adam-lr0.01-bs64-wd0.0001-s3"


def test_next_points_claims_up_to_k_of_a_grid_sharing_the_first_ones_key():
    """A population takes k points at once; with a key, all share the first one's (they
    can train together), and the points left over come in later calls, none twice."""
    _, search = new_search(small_config(search={"seeds": [0, 1]}))  # 2 lrs x 2 opt x 2 seeds

    def optimizer(params):
        return params["optimizer"]

    first = search.next_points(8, optimizer)
    assert len(first) == 4 and {c.spec.params["optimizer"] for c in first} == {"sgd"}
    rest = search.next_points(8, optimizer)
    assert len(rest) == 4 and {c.spec.params["optimizer"] for c in rest} == {"adam"}
    runs = [c.spec.run for c in first + rest]
    assert len(set(runs)) == 8
    assert search.next_points(8, optimizer) == []
    assert search.running == []  # its own running trials are nobody else's


def test_next_points_of_the_optuna_method_are_the_samplers_whatever_the_key():
    raw = small_config(search={"method": "optuna", "n_trials": 3, "sampler": "random",
                               "space": {"lr": {"low": 1e-4, "high": 0.1, "log": True}}})
    _, search = new_search(raw)
    claims = search.next_points(5, lambda params: params["lr"])
    assert len(claims) == 3  # n_trials configurations, each once
    assert len({c.spec.params["lr"] for c in claims}) == 3


def running_elsewhere(search):
    """Every point done but the last, which another process has claimed and runs."""
    for _ in range(3):  # of the grid's 4 points
        claim = one(search)
        claim.trial.set_user_attr("error", "")
        search.study.tell(claim.trial, 0.5)
    elsewhere = make_search(search.config, search.study, search.storage)
    elsewhere.owner = "another-machine:1:1"
    last = one(elsewhere)
    return last.trial, last


def test_ctrl_c_while_waiting_for_other_processes_returns_at_once(monkeypatch):
    from harness import stop

    _, search = new_search(small_config())
    running_elsewhere(search)
    monkeypatch.setattr("harness.study.claims.time.sleep", lambda s: stop.request())
    try:
        assert search.claim(1) == []  # one look, then it honours the request
    finally:
        stop.reset()


def test_a_trial_this_process_left_running_in_an_earlier_sweep_runs_again():
    """An earlier sweep in this process ended in an error with its claim still RUNNING:
    a new search retires it (its process is alive, but nobody runs it) and reruns it."""
    _, search = new_search(small_config())
    left = one(search)
    again = make_search(search.config, search.study, search.storage)
    claims = run_all(again)
    assert len(claims) == 4 and left.spec.run in {c.spec.run for c in claims}
    assert search.study.trials[left.trial.number].user_attrs["error"] == DEAD


def test_an_error_part_way_through_k_claims_gives_back_the_ones_made(monkeypatch):
    from harness.study.claims import GIVEN_BACK, Search

    _, search = new_search(small_config())
    real, calls = Search._claim, []

    def fails_second(self, fits):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("database is gone")
        return real(self, fits)

    monkeypatch.setattr(Search, "_claim", fails_second)
    with pytest.raises(RuntimeError):
        search.next_points(3)
    monkeypatch.undo()
    [given] = search.study.get_trials(deepcopy=False)
    assert given.state == TrialState.FAIL and given.user_attrs["error"] == GIVEN_BACK
    claims = run_all(search)
    assert len(claims) == 4 and given.user_attrs["run"] in {c.spec.run for c in claims}


def test_claim_waits_for_a_trial_running_elsewhere_and_runs_it_when_its_process_dies(
        monkeypatch):
    """Nothing is left but another process's trial: wait, and when that process dies
    its point is claimed here, so the sweep does not end with it unfinished."""
    _, search = new_search(small_config())
    other, last = running_elsewhere(search)
    looks = []

    def dies(seconds):  # as the heartbeat check fails a silent trial: no error
        looks.append(seconds)
        search.storage.set_trial_state_values(other._trial_id, TrialState.FAIL)

    monkeypatch.setattr("harness.study.claims.time.sleep", dies)
    [again] = search.claim(1)
    assert len(looks) == 1
    assert again.spec.run == last.spec.run and again.trial.number > other.number


def small_discrete_optuna(sampler="tpe", n_trials=6, seeds=(0,)):
    return small_config(search={"method": "optuna", "n_trials": n_trials, "sampler": sampler,
                                "seeds": list(seeds), "space": {
                                    "lr": [0.01, 0.1], "batch_size": [32],
                                    "optimizer": ["sgd"]}})


@pytest.mark.parametrize("sampler", ["tpe", "random"])
def test_a_proposed_configuration_that_ran_is_told_its_result_and_not_trained_again(sampler):
    _, search = new_search(small_discrete_optuna(sampler, seeds=(0, 1)))
    claims = run_all(search)
    # Two configurations x two seeds, each trained once, whatever the sampler proposed.
    points = {(c.spec.params["lr"], c.spec.seed) for c in claims}
    assert len(claims) == 4 and len(points) == 4
    trials = search.study.get_trials()
    repeats = [t for t in trials if "repeat_of" in t.user_attrs]
    for trial in repeats:  # told the first seed's result, so the sampler learns from it
        assert "point" not in trial.user_attrs
        assert trial.state == TrialState.COMPLETE and trial.value == 0.5
    assert search.news == ["all 2 configurations x 2 seeds of the space have run; "
                           "n_trials 6 cannot be reached"]
    assert one(search) is None


def test_a_sampler_that_keeps_proposing_what_ran_is_given_a_configuration_that_has_not():
    raw = small_config(search={"method": "optuna", "n_trials": 5, "sampler": "tpe",
                               "space": {"lr": [0.001, 0.003, 0.01, 0.03, 0.1],
                                         "batch_size": [32], "optimizer": ["sgd"]}})
    _, search = new_search(raw)
    claims = []
    while (claim := one(search)) is not None:
        claims.append(claim)
        claim.trial.set_user_attr("error", "")
        # The first configuration is far better: TPE comes back to it again and again.
        search.study.tell(claim.trial, 0.9 if len(claims) == 1 else 0.1)
    assert sorted(c.spec.params["lr"] for c in claims) == [0.001, 0.003, 0.01, 0.03, 0.1]
    repeats = [t for t in search.study.get_trials() if "repeat_of" in t.user_attrs]
    assert len(repeats) < 5 * 10  # each configuration's last repeats end in an unvisited one

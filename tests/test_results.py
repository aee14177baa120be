"""trials.csv against history.csv and the checkpoints of a real small sweep: the best
epoch is chosen on the objective alone, and test is read at that epoch."""

import pandas as pd
import pytest
import torch
from conftest import small_config

from harness.data import load_dataset
from harness.models import build_model
from harness.parse import parse_config
from harness.sweep import SweepOptions, run_sweep
from harness.train import evaluate


@pytest.mark.parametrize("metric", ["val_acc", "val_loss"])
def test_every_trial_is_read_at_the_epoch_its_objective_chose(tmp_path, metric):
    raw = small_config(train={"epochs": 4}, objective={"metric": metric},
                       search={"space": {"lr": [0.03, 0.3], "optimizer": ["sgd", "adam"]}})
    config = parse_config(raw)
    trials = run_sweep(config, SweepOptions(out=tmp_path, progress=False)).trials
    history = pd.read_csv(tmp_path / "history.csv")
    assert len(trials) == 4
    data = load_dataset(config.data, torch.device("cpu"))
    # adam at lr 0.3 may diverge (a train loss above train.diverge_above): such a trial
    # has no chosen epoch; every trial that completed is checked.
    done = trials[trials.state == "COMPLETE"]
    assert len(done) >= 3
    not_last = 0
    for row in done.itertuples():
        epochs = history[history.run == row.run].set_index("epoch")
        objective = epochs[metric]
        chosen = objective.idxmax() if metric == "val_acc" else objective.idxmin()
        assert row.best_epoch == chosen
        assert row.value == objective[chosen]
        at_best = epochs.loc[chosen]
        for column in ("val_acc", "val_loss", "test_acc", "test_loss"):
            assert getattr(row, column) == at_best[column]
        assert row.final_test_acc == epochs["test_acc"].iloc[-1]
        not_last += chosen != epochs.index.max()
        # The checkpoint holds the chosen epoch's weights: evaluated on the test split,
        # it gives the test accuracy reported for that epoch.
        model = build_model(config.model)
        model.load_state_dict(torch.load(tmp_path / "checkpoints" / f"{row.run}.pt",
                                         weights_only=True))
        loss, acc = evaluate(model, data.x_test, data.y_test, config.train.eval_batch_size)
        assert acc == row.test_acc
        assert loss == pytest.approx(row.test_loss, rel=1e-6)
    # Some trial's best epoch is not its last, so "the last epoch" would fail this test.
    assert not_last >= 1

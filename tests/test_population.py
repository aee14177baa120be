import dataclasses
import functools
import math

import pytest
import torch

from harness.hyperparams import build_optimizer
from harness.lenet import LeNet
from harness.train import evaluate, train_epoch
from harness.trainers.fused_optim import FUSED_OPTIMIZERS
from harness.trainers.population import Member, PopulationTrainer
from harness.trainers.stacked import CONVS, StackedLeNet

# Rounding differences between a grouped and a plain convolution grow over training;
# float64 keeps them far below the tolerance, so a real difference shows.
F64 = torch.float64
BATCH, EPOCHS, TOLERANCE = 32, 2, 1e-4
SGD_MEMBERS = (Member(0, 0.05, 0.9, 0.0), Member(1, 0.01, 0.5, 1e-3),
               Member(2, 0.1, 0.0, 0.0), Member(3, 0.02, 0.9, 0.1))


def members_for(optimizer):
    """Mixed lr, momentum, weight decay and seeds; adaptive optimizers at smaller lr."""
    scale = 1 if optimizer == "sgd" else 1 / 20
    return tuple(Member(m.seed, m.lr * scale, m.momentum, m.weight_decay)
                 for m in SGD_MEMBERS)


@functools.cache
def digits(dtype=F64):
    """Learnable MNIST-shaped data: a noisy template per class; train, val, test."""
    rng = torch.Generator().manual_seed(123)
    templates = torch.randn(10, 1, 28, 28, generator=rng)

    def split(n):
        y = torch.randint(0, 10, (n,), generator=rng)
        return (templates[y] + 0.8 * torch.randn(n, 1, 28, 28, generator=rng)).to(dtype), y
    return split(192), split(64), split(64)


def one_at_a_time(optimizer, member, dtype=F64, epochs=EPOCHS):
    """The sequential path: harness.train with build_optimizer, seeded as trials are."""
    (x, y), val, test = digits(dtype)
    torch.manual_seed(member.seed)
    model = LeNet().to(dtype)
    opt = build_optimizer(model.parameters(), member.values(optimizer))
    generator = torch.Generator().manual_seed(member.seed)
    history = []
    for _ in range(epochs):
        train_loss = train_epoch(model, opt, x, y, BATCH, generator).loss
        (val_loss, val_acc), (test_loss, test_acc) = (evaluate(model, *val, 1000),
                                                      evaluate(model, *test, 1000))
        history.append({"train_loss": train_loss, "val_loss": val_loss, "val_acc": val_acc,
                        "test_loss": test_loss, "test_acc": test_acc})
    return history


@functools.cache
def reference(optimizer):
    return [one_at_a_time(optimizer, m) for m in members_for(optimizer)]


def fused(trainer, dtype=F64, epochs=EPOCHS):
    """Per member, per epoch, the same numbers as one_at_a_time."""
    (x, y), val, test = digits(dtype)
    histories = [[] for _ in range(trainer.k)]
    for _ in range(epochs):
        stats = trainer.epoch(x, y)
        v, t = trainer.evaluate(*val), trainer.evaluate(*test)
        for k, history in enumerate(histories):
            history.append({"train_loss": stats.train_loss[k], "val_loss": v.loss[k],
                            "val_acc": v.acc[k], "test_loss": t.loss[k], "test_acc": t.acc[k]})
    return histories


def best_epoch(history):
    """The epoch a trial book selects: the first with the highest validation accuracy."""
    accs = [h["val_acc"] for h in history]
    return accs.index(max(accs)) + 1


def assert_same_history(got, want, tolerance=TOLERANCE):
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        for name in ("train_loss", "val_loss", "test_loss"):
            assert g[name] == pytest.approx(w[name], rel=tolerance), name
        for name in ("val_acc", "test_acc"):
            assert g[name] == pytest.approx(w[name], abs=1e-9), name


@pytest.mark.parametrize("conv", CONVS)
@pytest.mark.parametrize("optimizer", list(FUSED_OPTIMIZERS))
def test_population_of_four_equals_its_trials_run_one_at_a_time(optimizer, conv):
    members = members_for(optimizer)
    trainer = PopulationTrainer(members, optimizer, BATCH, "cpu", conv=conv, dtype=F64)
    histories = fused(trainer)
    want = reference(optimizer)
    for got, expected in zip(histories, want, strict=True):
        assert_same_history(got, expected)
        assert best_epoch(got) == best_epoch(expected)
    _, _, (x_test, y_test) = digits()
    for k, state in enumerate(trainer.state_dicts(range(len(members)))):
        model = LeNet()
        model.load_state_dict(state)  # a plain LeNet checkpoint
        loss, acc = evaluate(model.to(F64), x_test, y_test, 1000)
        assert acc == histories[k][-1]["test_acc"] == want[k][-1]["test_acc"]
        assert loss == pytest.approx(histories[k][-1]["test_loss"], rel=1e-6)


def test_a_diverging_member_is_masked_and_the_others_train_as_without_it():
    """In float32, the real path: the diverging member's loss overflows in epoch 1."""
    f32 = torch.float32
    diverger = Member(seed=7, lr=1e4, momentum=0.9)
    assert not math.isfinite(one_at_a_time("sgd", diverger, f32, epochs=1)[0]["train_loss"])
    with_it = PopulationTrainer([SGD_MEMBERS[0], diverger, *SGD_MEMBERS[1:]], "sgd", BATCH,
                                "cpu")
    without = PopulationTrainer(SGD_MEMBERS, "sgd", BATCH, "cpu")
    (x, y), val, _ = digits(f32)
    first = with_it.epoch(x, y)
    assert first.diverged == [False, True, False, False, False]
    assert first.active == [True, False, True, True, True]
    assert not math.isfinite(first.train_loss[1])
    frozen = with_it.state_dicts([1])[0]
    assert all(torch.isfinite(t).all() for t in frozen.values())
    second = with_it.epoch(x, y)
    assert math.isnan(second.train_loss[1]) and second.diverged == [False] * 5
    assert all(torch.equal(frozen[n], t) for n, t in with_it.state_dicts([1])[0].items())
    others = [0, 2, 3, 4]
    for stats in (first, second):
        assert [stats.train_loss[k] for k in others] == pytest.approx(
            without.epoch(x, y).train_loss, rel=1e-6)
    got, want = with_it.evaluate(*val), without.evaluate(*val)
    assert [got.loss[k] for k in others] == pytest.approx(want.loss, rel=1e-6)
    assert [got.acc[k] for k in others] == want.acc
    torch.testing.assert_close(with_it.net.flat[others], without.net.flat)


def test_a_stopped_member_keeps_its_weights_and_the_others_go_on():
    (x, y), _, _ = digits()
    trainer = PopulationTrainer(SGD_MEMBERS, "sgd", BATCH, "cpu", dtype=F64)
    trainer.epoch(x, y)
    trainer.stop([2])
    before = trainer.state_dicts([2])[0]
    stats = trainer.epoch(x, y)
    assert stats.active == [True, True, False, True] and stats.diverged == [False] * 4
    assert math.isnan(stats.train_loss[2])
    assert all(torch.equal(before[n], t) for n, t in trainer.state_dicts([2])[0].items())
    for k in (0, 1, 3):
        assert stats.train_loss[k] == pytest.approx(reference("sgd")[k][1]["train_loss"],
                                                    rel=TOLERANCE)


@pytest.mark.parametrize("optimizer", list(FUSED_OPTIMIZERS))
def test_on_the_cpu_a_float32_population_trains_exactly_as_its_trials_alone(optimizer):
    """On the CPU each member goes through LeNet's own forward and its own loss: its
    weights and losses are bit for bit those of its trial run alone, however chaotic
    its optimizer."""
    assert_trains_exactly_as_alone(optimizer)


def test_bit_for_bit_holds_with_two_threads_too():
    """The tests run torch on one thread (conftest.py); a user's torch has a thread per
    CPU, and splits each layer's work between them."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert_trains_exactly_as_alone("adam")
    finally:
        torch.set_num_threads(before)


def assert_trains_exactly_as_alone(optimizer):
    members = [dataclasses.replace(m, lr=m.lr * 4) for m in members_for(optimizer)]
    trainer = PopulationTrainer(members, optimizer, BATCH, "cpu")
    assert trainer.net.conv == "loop"
    (x, y), _, (x_test, y_test) = digits(torch.float32)
    epochs = [trainer.epoch(x, y, log_every=2) for _ in range(EPOCHS)]
    tested = trainer.evaluate(x_test, y_test, 48)  # chunks of 48: a last, partial one
    for k, member in enumerate(members):
        torch.manual_seed(member.seed)
        model = LeNet()
        opt = build_optimizer(model.parameters(), member.values(optimizer))
        generator = torch.Generator().manual_seed(member.seed)
        alone = [train_epoch(model, opt, x, y, BATCH, generator, log_every=2)
                 for _ in range(EPOCHS)]
        state = trainer.state_dicts([k])[0]
        for name, value in model.state_dict().items():
            assert torch.equal(state[name], value), (member, name)
        for got, want in zip(epochs, alone, strict=True):
            assert got.train_loss[k] == want.loss
            # every other step's loss, as TensorBoard's train/loss_step shows it
            assert got.step_losses[k] == want.step_losses
        assert (tested.loss[k], tested.acc[k]) == evaluate(model, x_test, y_test, 48)


def test_a_population_of_one_in_float32_equals_the_single_trainer():
    member = members_for("adam")[1]
    trainer = PopulationTrainer([member], "adam", BATCH, "cpu")
    assert_same_history(fused(trainer, torch.float32)[0],
                        one_at_a_time("adam", member, torch.float32), tolerance=1e-5)


def test_bf16_autocast_members_follow_their_autocast_trials():
    (x, y), val, _ = digits(torch.float32)
    members = SGD_MEMBERS[1::2]
    trainer = PopulationTrainer(members, "sgd", BATCH, "cpu", amp=True)
    stats, got = trainer.epoch(x, y), trainer.evaluate(*val)
    for k, member in enumerate(members):
        torch.manual_seed(member.seed)
        model = LeNet()
        opt = build_optimizer(model.parameters(), member.values("sgd"))
        generator = torch.Generator().manual_seed(member.seed)
        want = train_epoch(model, opt, x, y, BATCH, generator, amp=True)
        val_loss, _ = evaluate(model, *val, 1000, amp=True)
        assert stats.train_loss[k] == pytest.approx(want.loss, rel=1e-3)
        assert got.loss[k] == pytest.approx(val_loss, rel=1e-3)


def test_max_batches_cuts_every_members_epoch_short_as_train_epoch_does():
    (x, y), _, _ = digits()
    trainer = PopulationTrainer(SGD_MEMBERS[:2], "sgd", BATCH, "cpu", dtype=F64)
    stats = trainer.epoch(x, y, max_batches=2)
    assert stats.seen == 2 * BATCH
    for k, member in enumerate(SGD_MEMBERS[:2]):
        torch.manual_seed(member.seed)
        model = LeNet().to(F64)
        opt = build_optimizer(model.parameters(), member.values("sgd"))
        want = train_epoch(model, opt, x, y, BATCH, torch.Generator().manual_seed(member.seed),
                           max_batches=2)
        assert stats.train_loss[k] == pytest.approx(want.loss, rel=1e-6)


def test_bad_arguments_are_refused_with_the_choices():
    with pytest.raises(ValueError, match="conv 'dense': choose one of grouped, vmap"):
        PopulationTrainer(SGD_MEMBERS, "sgd", BATCH, "cpu", conv="dense")
    with pytest.raises(ValueError, match="cuda_graph needs a CUDA device"):
        PopulationTrainer(SGD_MEMBERS, "sgd", BATCH, "cpu", cuda_graph=True)
    with pytest.raises(ValueError, match="at least one member"):
        PopulationTrainer([], "sgd", BATCH, "cpu")
    with pytest.raises(ValueError, match="buffers"):
        StackedLeNet([torch.nn.BatchNorm2d(3)], torch.device("cpu"))


def test_making_a_population_leaves_the_global_rng_as_it_was():
    state = torch.get_rng_state()
    PopulationTrainer(SGD_MEMBERS, "sgd", BATCH, "cpu")
    assert torch.equal(state, torch.get_rng_state())


def alone_epochs(optimizer, member, x, y, epochs):
    """A member's trial alone in float32: each epoch's (mean loss, step losses) and the
    model at the end."""
    torch.manual_seed(member.seed)
    model = LeNet()
    opt = build_optimizer(model.parameters(), member.values(optimizer))
    generator = torch.Generator().manual_seed(member.seed)
    stats = [train_epoch(model, opt, x, y, BATCH, generator, log_every=2)
             for _ in range(epochs)]
    return [(s.loss, s.step_losses) for s in stats], model


@pytest.mark.parametrize("optimizer", list(FUSED_OPTIMIZERS))
def test_members_that_join_a_running_population_train_exactly_as_their_trials_alone(
        optimizer):
    """Members leave and join between epochs: each population is made again of the
    members that go on (carried over where they were, in another order) and the ones
    that join (as their trials start). On the CPU every member's losses, step losses,
    weights and evaluation are bit for bit those of its trial alone, whenever it
    joined and however many epochs the others had."""
    m = [dataclasses.replace(v, lr=v.lr * 4) for v in members_for(optimizer)]
    (x, y), _, (x_test, y_test) = digits(torch.float32)
    got = {k: [] for k in range(4)}

    def epoch(trainer, ks):
        stats = trainer.epoch(x, y, log_every=2)
        for i, k in enumerate(ks):
            got[k].append((stats.train_loss[i], stats.step_losses[i]))

    first = PopulationTrainer(m[:2], optimizer, BATCH, "cpu")  # m0 and m1 start
    epoch(first, [0, 1])
    left = {0: first.state_dicts([0])[0]}
    # m0 leaves after one epoch; m2 and m3 join m1 (at its epoch 2)
    second = PopulationTrainer([m[1], m[2], m[3]], optimizer, BATCH, "cpu",
                               carried=first.carry([1]))
    epoch(second, [1, 2, 3])
    epoch(second, [1, 2, 3])
    left[2] = second.state_dicts([1])[0]
    # m2 leaves; m3 and m1 go on, in that order
    third = PopulationTrainer([m[3], m[1]], optimizer, BATCH, "cpu",
                              carried=second.carry([2, 0]))
    epoch(third, [3, 1])
    tested = third.evaluate(x_test, y_test, 48)
    left[3], left[1] = third.state_dicts([0, 1])
    for k, epochs in ((0, 1), (1, 4), (2, 2), (3, 3)):
        want, model = alone_epochs(optimizer, m[k], x, y, epochs)
        assert got[k] == want, k
        for name, value in model.state_dict().items():
            assert torch.equal(left[k][name], value), (k, name)
        if k in (3, 1):
            row = [3, 1].index(k)
            assert (tested.loss[row], tested.acc[row]) == evaluate(model, x_test, y_test, 48)


def test_a_population_restarts_its_members_from_where_the_epoch_began():
    """Out of memory part way through an epoch: each half goes on from the epoch's
    start (weights, optimizer state, batch order), not from where the step failed."""
    (x, y), _, _ = digits(torch.float32)
    members = members_for("adam")
    failing, twin = (PopulationTrainer(members, "adam", BATCH, "cpu") for _ in range(2))
    for trainer in (failing, twin):
        trainer.epoch(x, y)
    failing.mark_epoch_start()
    failing.epoch(x, y, max_batches=3)  # the epoch that fails part way
    half = PopulationTrainer([members[k] for k in (2, 0)], "adam", BATCH, "cpu",
                             carried=failing.restart([2, 0]))
    want = PopulationTrainer([members[k] for k in (2, 0)], "adam", BATCH, "cpu",
                             carried=twin.carry([2, 0]))
    assert torch.equal(half.net.flat, want.net.flat)
    for name in half.optimizer.STATE:
        assert torch.equal(getattr(half.optimizer, name), getattr(want.optimizer, name))
    assert half.epoch(x, y).train_loss == want.epoch(x, y).train_loss

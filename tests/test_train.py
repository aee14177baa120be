import pytest
import torch

from harness.config import DataConfig
from harness.data import load_dataset
from harness.lenet import LeNet
from harness.train import evaluate, train_epoch

CPU = torch.device("cpu")


def test_loss_goes_down_on_synthetic_data():
    data = load_dataset(DataConfig(dataset="synthetic", train_size=512, test_size=256), CPU)
    torch.manual_seed(0)
    model = LeNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    generator = torch.Generator().manual_seed(0)
    start_loss, start_acc = evaluate(model, data.x_test, data.y_test, 100)
    losses = [train_epoch(model, optimizer, data.x_train, data.y_train, 32, generator).loss
              for _ in range(3)]
    end_loss, end_acc = evaluate(model, data.x_test, data.y_test, 100)
    assert losses[-1] < losses[0]
    assert end_loss < start_loss and end_acc > max(start_acc, 0.5)


def test_train_epoch_sees_every_sample_once_or_stops_at_max_batches():
    x, y = torch.randn(100, 1, 28, 28), torch.randint(0, 10, (100,))
    model = LeNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    stats = train_epoch(model, optimizer, x, y, 32, torch.Generator().manual_seed(0))
    assert stats.seen == 100 and stats.loss > 0 and stats.step_losses == []
    stats = train_epoch(model, optimizer, x, y, 32, torch.Generator(), max_batches=2)
    assert stats.seen == 64


def test_step_losses_are_sampled_every_log_every_steps():
    x, y = torch.randn(200, 1, 28, 28), torch.randint(0, 10, (200,))
    model = LeNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    stats = train_epoch(model, optimizer, x, y, 10, torch.Generator(), log_every=6)
    assert [step for step, _ in stats.step_losses] == [0, 6, 12, 18]
    assert all(loss > 0 for _, loss in stats.step_losses)


def test_evaluate_counts_correct_predictions_across_batches():
    class Fixed(torch.nn.Module):  # predicts class 3 for every input
        def forward(self, x):
            return torch.nn.functional.one_hot(torch.full((len(x),), 3), 10).float() * 10

    y = torch.tensor([3, 3, 1, 3, 0, 3, 3])
    loss, acc = evaluate(Fixed(), torch.zeros(7, 1, 28, 28), y, batch_size=3)
    assert acc == 5 / 7
    assert loss > 0


def test_a_stop_request_ends_the_epoch_between_two_batches():
    x, y = torch.randn(100, 1, 28, 28), torch.randint(0, 10, (100,))
    model = LeNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    asked, steps, step = [], [], optimizer.step
    optimizer.step = lambda: steps.append(step())

    def after_two_batches() -> bool:  # as a Ctrl-C during the second batch
        asked.append(1)
        return len(asked) > 2

    with pytest.raises(KeyboardInterrupt):
        train_epoch(model, optimizer, x, y, 32, torch.Generator(), should_stop=after_two_batches)
    assert len(asked) == 3 and len(steps) == 2  # asked before each batch; two ran

import pytest
import torch
from conftest import write_idx

from harness.config import DataConfig, train_split_size
from harness.data import MNIST_MEAN, MNIST_STD, DataError, load_dataset

CPU = torch.device("cpu")


def test_synthetic_is_seeded_and_shaped():
    a = load_dataset(DataConfig(dataset="synthetic", train_size=100, test_size=50), CPU)
    b = load_dataset(DataConfig(dataset="synthetic", train_size=100, test_size=50), CPU)
    assert a.x_train.shape == (100, 1, 28, 28) and a.x_train.dtype == torch.float32
    assert a.y_train.dtype == torch.int64 and a.x_test.shape == (50, 1, 28, 28)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)


def test_mnist_reads_idx_files_from_root(tmp_path):
    write_idx(tmp_path, n_train=300, n_test=100)
    data = load_dataset(DataConfig(dataset="mnist", root=str(tmp_path)), CPU)
    assert data.x_train.shape == (300, 1, 28, 28) and data.x_test.shape == (100, 1, 28, 28)
    assert set(data.y_train.tolist()) <= set(range(10))
    # Normalized with MNIST's statistics: a 0 pixel maps to -mean/std.
    assert data.x_train.min().item() == pytest.approx(-MNIST_MEAN / MNIST_STD, abs=1e-5)
    assert data.x_train.max().item() <= (1 - MNIST_MEAN) / MNIST_STD + 1e-5


def test_mnist_train_and_test_sizes_cut_the_splits(tmp_path):
    write_idx(tmp_path)
    data = load_dataset(DataConfig(dataset="mnist", root=str(tmp_path), train_size=64,
                                   test_size=10), CPU)
    assert len(data.x_train) == 64 and len(data.y_test) == 10


def test_mnist_missing_says_where_to_put_the_files(tmp_path):
    with pytest.raises(DataError) as info:
        load_dataset(DataConfig(dataset="mnist", root=str(tmp_path / "none")), CPU)
    message = str(info.value)
    assert str(tmp_path / "none" / "MNIST" / "raw") in message
    assert "train-images-idx3-ubyte" in message and "mnist-5k" in message
    assert "\n" not in message


def test_mnist_5k_is_a_fixed_stratified_split():
    data = load_dataset(DataConfig(dataset="mnist-5k"), CPU)
    assert len(data.x_train) == 4000 and len(data.x_test) == 1000
    assert torch.bincount(data.y_train).tolist() == [400] * 10
    assert torch.bincount(data.y_test).tolist() == [100] * 10
    again = load_dataset(DataConfig(dataset="mnist-5k"), CPU)
    assert torch.equal(data.x_train, again.x_train)
    # Real digits, normalized: the mean and std are close to 0 and 1.
    assert abs(data.x_train.mean().item()) < 0.1
    assert 0.9 < data.x_train.std().item() < 1.1
    # No digit is in both splits.
    train = {row.tobytes() for row in data.x_train.flatten(1).numpy()}
    assert not any(row.tobytes() in train for row in data.x_test.flatten(1).numpy())


def test_mnist_5k_subsets_stay_balanced():
    data = load_dataset(DataConfig(dataset="mnist-5k", train_size=500, test_size=200), CPU)
    assert torch.bincount(data.y_train, minlength=10).min().item() >= 30


@pytest.mark.parametrize("dataset", ["synthetic", "mnist-5k"])
@pytest.mark.parametrize("train_size", [None, 100, 10**6])
def test_the_config_check_knows_the_training_split_size(tmp_path, dataset, train_size):
    # Config validation refuses a batch larger than the training split before loading
    # any data; the size it assumes must be the size the loader gives.
    config = DataConfig(dataset=dataset, root=str(tmp_path), train_size=train_size)
    assert len(load_dataset(config, CPU).x_train) == train_split_size(config)

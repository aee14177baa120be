"""LeNet, the registry of models with their input shapes, and the per-layer summary."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
from torch import nn

from harness.types import IMAGE_SHAPE


class LeNet(nn.Module):
    """LeNet-5 as in the original article: two 5x5 convolutions with 2x2 max-pooling,
    then three fully connected layers, ReLU throughout; 44,426 parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, kernel_size=5)  # 28x28 -> 6x24x24 -> pool 6x12x12
        self.conv2 = nn.Conv2d(6, 16, kernel_size=5)  # -> 16x8x8 -> pool 16x4x4
        self.fc1 = nn.Linear(16 * 4 * 4, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)
        self.pool = nn.MaxPool2d(2)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.relu(self.conv1(x)))
        x = self.pool(self.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = self.relu(self.fc1(x))
        x = self.relu(self.fc2(x))
        return self.fc3(x)


@dataclass(frozen=True)
class Model:
    build: Callable[[], nn.Module]
    input_shape: tuple[int, ...]  # one sample's: channels, height, width


# The models a config may name, each with the input it takes.
MODELS: dict[str, Model] = {"lenet": Model(LeNet, IMAGE_SHAPE)}


def build_model(name: str) -> nn.Module:
    return MODELS[name].build()


def example_input(name: str, device: torch.device | str = "cpu") -> torch.Tensor:
    """One zero sample of the model's input, batched: for tracing and summaries."""
    return torch.zeros(1, *MODELS[name].input_shape, device=device)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def model_summary(model: nn.Module, example: torch.Tensor) -> pd.DataFrame:
    """Per-layer table from torchsummaryX: layer, kernel shape, output shape, params,
    mult-adds; one row per layer that has parameters or changes the shape."""
    from torchsummaryX import summary

    with _pandas2_sum(), contextlib.redirect_stdout(io.StringIO()):
        table = summary(model, example)
    table = table.reset_index().rename(columns={
        "Layer": "layer", "Kernel Shape": "kernel_shape", "Output Shape": "output_shape",
        "Params": "params", "Mult-Adds": "mult_adds"})
    for column in ("params", "mult_adds"):
        table[column] = table[column].fillna(0).astype("int64")
    for column in ("kernel_shape", "output_shape"):
        table[column] = table[column].map(lambda v: "x".join(map(str, v)) if isinstance(
            v, list) else "-")
    return table


def summary_totals(table: pd.DataFrame) -> dict[str, int]:
    """A model summary's totals, as trials.csv reports them."""
    return {"params": int(table["params"].sum()), "mult_adds": int(table["mult_adds"].sum())}


@contextlib.contextmanager
def _pandas2_sum() -> Iterator[None]:
    """torchsummaryX 1.3.0 calls DataFrame.sum() over columns that hold lists, which
    pandas >= 2 refuses (TypeError). For the length of its call, sum treats
    non-numbers as missing, which is what pandas 1 did."""
    original = pd.DataFrame.sum

    def numeric_sum(self: pd.DataFrame, *args: Any, **kwargs: Any) -> Any:
        def numbers(column: pd.Series) -> pd.Series:
            return pd.to_numeric(column.map(
                lambda v: v if isinstance(v, int | float) else float("nan")))
        return original(self.apply(numbers), *args, **kwargs)

    pd.DataFrame.sum = numeric_sum  # type: ignore[method-assign]
    try:
        yield
    finally:
        pd.DataFrame.sum = original  # type: ignore[method-assign]

"""The registry of models, each with its input shape, and the per-layer summary.

Naming and checking a model loads no torch: a config's bad model name is answered at once.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.types import IMAGE_SHAPE

if TYPE_CHECKING:
    import pandas as pd
    import torch
    from torch import nn


@dataclass(frozen=True)
class Model:
    build: Callable[[], nn.Module]
    input_shape: tuple[int, ...]  # one sample's: channels, height, width


def _lenet() -> nn.Module:
    from harness.lenet import LeNet

    return LeNet()


# The models a config may name, each with the input it takes.
MODELS: dict[str, Model] = {"lenet": Model(_lenet, IMAGE_SHAPE)}


def build_model(name: str) -> nn.Module:
    return MODELS[name].build()


def example_input(name: str, device: torch.device | str = "cpu") -> torch.Tensor:
    """One zero sample of the model's input, batched: for tracing and summaries."""
    import torch

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
    import pandas as pd

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

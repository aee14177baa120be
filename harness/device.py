"""The device: which one a config names, and its speed settings, set once per sweep."""

from __future__ import annotations

import torch

from harness.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when present; asking for a device that is absent is bad input."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device: {name!r} but this machine has no CUDA device; use "
                              "--device cpu or auto")
        if (device.index or 0) >= torch.cuda.device_count():
            raise ConfigError(f"device: {name!r} but there are only "
                              f"{torch.cuda.device_count()} CUDA devices")
    return device


def setup_device(device: torch.device) -> None:
    """TF32 matmuls and convolutions, and cuDNN picking its fastest kernels: the usual
    speed settings for training on NVIDIA GPUs. Nothing changes on the CPU."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True

"""Where a command runs: ``auto``, ``cpu`` or ``cuda``, checked against what torch sees."""

from __future__ import annotations

from typing import Literal

import torch

from p2p_core.errors import ConfigError

DeviceName = Literal["auto", "cpu", "cuda"]


def resolve_device(name: str, *, option: str = "--device") -> torch.device:
    """The device ``name`` asks for; ``option`` is how the user gave it, for the error message."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{option} cuda was asked for, but torch sees no CUDA device; use auto or cpu")
    if name not in ("cpu", "cuda"):
        raise ConfigError(f"{option} must be auto, cpu or cuda, got {name!r}")
    return torch.device(name)

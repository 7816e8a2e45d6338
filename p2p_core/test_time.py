"""How a generator behaves at test time: an explicit choice, recorded with every result made with it.

``paper`` keeps dropout on and normalises with the batch's own statistics, as the paper does (its noise z is
the dropout); ``eval`` is PyTorch's eval mode: no dropout, BatchNorm's running statistics.
"""

from __future__ import annotations

from typing import Literal

from torch import nn

from p2p_core.errors import ConfigError

Mode = Literal["paper", "eval"]
MODES: dict[str, str] = {
    "paper": "paper: dropout on and batch statistics at test time, as in the paper",
    "eval": "eval: dropout off and BatchNorm's running statistics (PyTorch eval mode)",
}


def set_mode(generator: nn.Module, mode: Mode) -> None:
    if mode not in MODES:
        raise ConfigError(f"test-time mode must be one of {', '.join(MODES)}, got {mode!r}")
    generator.train(mode == "paper")

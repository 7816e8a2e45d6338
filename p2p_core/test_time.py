"""How a generator behaves at test time: an explicit choice, recorded with every result made with it.

``paper`` keeps dropout on and normalises with the batch's own statistics, as the paper does (its noise z is
the dropout); ``eval`` is PyTorch's eval mode: no dropout, BatchNorm's running statistics.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from p2p_core.errors import ConfigError
from p2p_core.spec import MODES, Mode

if TYPE_CHECKING:
    from torch import nn

__all__ = ["MODES", "Mode", "set_mode"]


def set_mode(generator: nn.Module, mode: Mode) -> None:
    if mode not in MODES:
        raise ConfigError(f"test-time mode must be one of {', '.join(MODES)}, got {mode!r}")
    generator.train(mode == "paper")

"""Building blocks the paper's networks share, for built-in and third-party components alike."""

from __future__ import annotations

from typing import Literal

from torch import nn

Norm = Literal["batch", "instance", "none"]
"""The normalisation options: BatchNorm (the paper), InstanceNorm (BatchNorm at batch size 1, without running
statistics), or none."""


def norm_layer(norm: Norm, channels: int) -> nn.Module:
    """The normalisation layer ``norm`` names, for ``channels`` feature maps."""
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "instance":
        return nn.InstanceNorm2d(channels)
    return nn.Identity()

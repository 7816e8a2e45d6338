"""Hypothesis strategies for component contracts; public so plugin authors can build their own checks.

Tensors are drawn as seeds rather than element by element: contracts are about shapes, ranges and
structure, and a seeded torch draw explores those as well as a slow element-wise one.
"""

from __future__ import annotations

import torch
from hypothesis import strategies as st
from torch import Tensor

CHANNELS = (1, 3, 4)


def channel_counts() -> st.SearchStrategy[int]:
    """Channel counts a component should handle: grayscale, RGB and one more (e.g. RGB + depth)."""
    return st.sampled_from(CHANNELS)


def image_sizes(multiple: int = 1, *, max_factor: int = 3, max_size: int = 128) -> st.SearchStrategy[int]:
    """Side lengths that are multiples of ``multiple`` and at most ``max_size`` (unless one multiple is larger)."""
    top = max(1, min(max_factor, max_size // multiple))
    return st.integers(1, top).map(lambda k: k * multiple)


def batch_sizes(max_batch: int = 2) -> st.SearchStrategy[int]:
    return st.integers(1, max_batch)


def seeded_images(
    *, batch: int, channels: int, height: int, width: int | None = None, seed: int, saturated: bool = False
) -> Tensor:
    """A batch of images in [-1, 1] made from ``seed``; ``saturated`` pushes two thirds of the values to the ends.

    A check that draws the seed (and ``saturated``) instead of the tensor gets a falsifying example of a few
    numbers, which reproduce the tensor, instead of every pixel.
    """
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, channels, height, width or height, generator=generator) * 2 - 1
    return x.mul(3).clamp(-1, 1) if saturated else x


@st.composite
def images(draw: st.DrawFn, *, batch: int, channels: int, height: int, width: int | None = None) -> Tensor:
    """A batch of images in [-1, 1], sometimes saturated at the ends of the range."""
    seed = draw(st.integers(0, 2**31 - 1))
    return seeded_images(batch=batch, channels=channels, height=height, width=width, seed=seed, saturated=draw(st.booleans()))


@st.composite
def translation_shapes(draw: st.DrawFn, *, multiple: int = 16, max_size: int = 64) -> dict[str, int]:
    """Channel counts, batch and a square size (a multiple of ``multiple``) for a generator."""
    return {
        "in_channels": draw(channel_counts()),
        "out_channels": draw(channel_counts()),
        "batch": draw(batch_sizes()),
        "size": draw(image_sizes(multiple, max_size=max_size)),
    }

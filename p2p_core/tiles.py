"""Translating images larger than memory allows: overlapping tiles, blended so that no seam shows.

The generator sees one tile at a time, so its memory (its activations, many times the image's own size) is bounded
by the tile, not the image; the image is still held whole, and the output too, blended a row of tiles at a time
into what the caller keeps (predict: 8-bit pixels). Each tile's output is weighted by a window that is 1 inside and
falls along a raised cosine (half a Hann window) towards 0 over the ``overlap`` pixels at each edge it shares with a
neighbour; the weighted outputs are summed and divided by the summed weights. Where tiles overlap the output passes
smoothly from one to the next, and a tile's edges, where the generator saw padding instead of the image around it,
count least. The window is separable and the tiles form a grid, so the summed weights are the product of one vector
per axis.

In paper mode batch norm normalises each tile by the tile's own statistics, so tiles may differ in tone where a
whole image would not; eval mode has no such effect.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from p2p_core.errors import ConfigError

AUTO_TILE_PIXELS = 2048 * 2048
"""Images with more pixels than this (after ``--resize``) are tiled when ``--tile`` is not given."""
AUTO_TILE = 1024
"""The tile side used then, rounded up to a multiple of the generator's ``size_multiple``."""


def check_tiles(tile: int, overlap: int, *, size_multiple: int) -> None:
    """That ``tile`` x ``tile`` tiles overlapping by ``overlap`` pixels can be translated, else a ConfigError naming
    the value and the fix."""
    if tile < size_multiple or tile % size_multiple:
        below, above = tile // size_multiple * size_multiple, -(-tile // size_multiple) * size_multiple
        choices = f"--tile {below} or {above}" if below else f"--tile {above}"
        raise ConfigError(
            f"--tile {tile} is not a multiple of the generator's size_multiple {size_multiple} (what its input sides must "
            f"divide by): use {choices}"
        )
    if not 0 <= overlap < tile:
        raise ConfigError(f"--overlap {overlap} must be at least 0 and smaller than --tile {tile}: use e.g. --overlap "
                          f"{default_overlap(tile)}")


def default_overlap(tile: int) -> int:
    """An eighth of the tile: the tiles then cost (8/7)^2, about 1.3x the whole image's computation."""
    return tile // 8


def auto_tile(size_multiple: int) -> int:
    """:data:`AUTO_TILE` rounded up to a multiple of ``size_multiple``."""
    return math.ceil(AUTO_TILE / size_multiple) * size_multiple


def translate_tiled(
    run: Callable[[Tensor], Tensor],
    batch: Tensor,
    *,
    tile: int,
    overlap: int,
    finish: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """``run``'s output for ``batch`` (N x C x H x W), computed ``tile`` x ``tile`` pixels at a time, tiles
    overlapping by at least ``overlap`` pixels and blended; ``run`` takes any tile and keeps its size (a
    :class:`p2p_core.backends.Runner`). Sides shorter than the tile are taken whole.

    The output is blended a row of tiles at a time: only the rows a later tile still overlaps are held in float
    beside that row, and each finished band of rows goes through ``finish`` into the output (predict's turns it into
    8-bit pixels, a quarter of float32's size), so that a huge image's output costs what ``finish`` makes of it."""
    check_tiles(tile, overlap, size_multiple=1)
    height, width = batch.shape[-2:]
    rows, columns = _starts(height, tile, overlap), _starts(width, tile, overlap)
    tile_height, tile_width = min(tile, height), min(tile, width)
    row_windows = [_window(tile_height, overlap, rising=i > 0, falling=i < len(rows) - 1) for i in range(len(rows))]
    column_windows = [_window(tile_width, overlap, rising=i > 0, falling=i < len(columns) - 1) for i in range(len(columns))]
    row_sums, column_sums = _summed(row_windows, rows, height), _summed(column_windows, columns, width)
    output, carried = None, None
    for number, (top, row_window) in enumerate(zip(rows, row_windows)):
        strip = None  # this row of tiles, blended across, weighted by its rows' window
        for left, column_window in zip(columns, column_windows):
            piece = run(batch[..., top : top + tile_height, left : left + tile_width])
            if strip is None:
                strip = piece.new_zeros((*piece.shape[:2], tile_height, width))
            weight = (row_window[:, None] * column_window[None, :]).to(piece)
            strip[..., left : left + tile_width] += piece * weight
        assert strip is not None  # at least one tile: both sides are at least 1
        if carried is not None:  # the rows of earlier tiles that reach into this row's
            strip[..., : carried.shape[-2], :] += carried
        # Rows above the next row of tiles get nothing more: they are done.
        end = rows[number + 1] if number + 1 < len(rows) else height
        done = strip[..., : end - top, :] / (row_sums[top:end, None] * column_sums[None, :]).to(strip)
        if finish is not None:
            done = finish(done)
        if output is None:
            output = done.new_empty((*done.shape[:-2], height, width))
        output[..., top:end, :] = done
        carried = strip[..., end - top :, :]
    assert output is not None
    return output


def _starts(size: int, tile: int, overlap: int) -> list[int]:
    """Where tiles begin along a side: every ``tile - overlap`` pixels, the last one flush with the end (so every tile
    is whole, and the last overlap may be larger)."""
    if size <= tile:
        return [0]
    return [*range(0, size - tile, tile - overlap), size - tile]


def _window(length: int, overlap: int, *, rising: bool, falling: bool) -> Tensor:
    """1 inside; a raised cosine, strictly between 0 and 1, over the first (``rising``) and last (``falling``)
    ``overlap`` pixels, the sides a neighbour shares."""
    window = torch.ones(length, dtype=torch.float64)
    span = min(overlap, length)
    if span:
        ramp = 0.5 - 0.5 * torch.cos(torch.pi * torch.arange(1, span + 1, dtype=torch.float64) / (span + 1))
        if rising:
            window[:span] = ramp
        if falling:
            window[-span:] = torch.minimum(window[-span:], ramp.flip(0))
    return window


def _summed(windows: list[Tensor], starts: list[int], size: int) -> Tensor:
    """The windows' sum along a side: what the weighted outputs are divided by there (positive everywhere)."""
    total = torch.zeros(size, dtype=torch.float64)
    for start, window in zip(starts, windows):
        total[start : start + len(window)] += window
    return total

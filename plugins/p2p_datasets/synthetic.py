"""A generated labels -> photo task (like facades) that needs no download.

A: a label map of overlapping rectangles and ellipses, one flat colour per class. B: the same scene
"photographed": each class has its own colour and striped texture, shapes cast a dark outline, and the
whole image is lit by a random gradient. B follows from A up to the lighting, so a model must read the
input's layout (the U-Net's skips help) and invent plausible texture (the GAN term helps).
"""

from __future__ import annotations

import math
import zlib
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from p2p_core.images import PairedJitter
from p2p_core.protocols import Sample

Split = Literal["train", "val", "test"]
Direction = Literal["AtoB", "BtoA"]

# Label colours (A) and photo colours (B) per class; class 0 is the background.
LABEL_COLOURS = torch.tensor(
    [[0.0, 0.0, 0.6], [0.9, 0.1, 0.1], [0.1, 0.8, 0.2], [1.0, 0.8, 0.0], [0.0, 0.8, 0.9], [0.8, 0.2, 0.9]]
)
PHOTO_COLOURS = torch.tensor(
    [[0.75, 0.72, 0.65], [0.55, 0.3, 0.2], [0.25, 0.45, 0.3], [0.85, 0.75, 0.5], [0.3, 0.4, 0.65], [0.6, 0.55, 0.6]]
)
STRIPES = [(0.0, 0.0), (0.15, 0.0), (0.2, math.pi / 2), (0.1, math.pi / 4), (0.25, -math.pi / 4), (0.3, math.pi / 3)]


def render(*, size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """One (label map, photo) pair, 3 x size x size each, in [-1, 1]."""

    def uniform(low: float, high: float) -> float:
        return low + (high - low) * float(torch.rand((), generator=generator))

    ys, xs = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    labels = torch.zeros(size, size, dtype=torch.long)
    for _ in range(int(torch.randint(3, 9, (), generator=generator))):
        cls = int(torch.randint(1, len(LABEL_COLOURS), (), generator=generator))
        cx, cy, half_w, half_h = uniform(0, 1), uniform(0, 1), uniform(0.08, 0.3), uniform(0.08, 0.3)
        if torch.rand((), generator=generator) < 0.5:
            inside = ((xs - cx).abs() < half_w) & ((ys - cy).abs() < half_h)
        else:
            inside = ((xs - cx) / half_w) ** 2 + ((ys - cy) / half_h) ** 2 < 1
        labels[inside] = cls

    label_map = LABEL_COLOURS[labels].permute(2, 0, 1)
    frequency = torch.tensor([f for f, _ in STRIPES])[labels] * size
    angle = torch.tensor([a for _, a in STRIPES])[labels]
    stripes = 0.5 + 0.5 * torch.sin(2 * math.pi * frequency * (xs * torch.cos(angle) + ys * torch.sin(angle)))
    photo = PHOTO_COLOURS[labels].permute(2, 0, 1) * (0.75 + 0.25 * stripes)

    # Borders between classes are dark seams, which the model can only draw where the label map has edges.
    padded = F.pad(labels[None, None].float(), (1, 1, 1, 1), mode="replicate")[0, 0]
    edges = (padded[1:-1, 1:-1] != padded[:-2, 1:-1]) | (padded[1:-1, 1:-1] != padded[1:-1, :-2])
    edges = F.max_pool2d(edges[None].float(), 3, 1, 1)[0] > 0
    photo = torch.where(edges, photo * 0.35, photo)

    light_angle = uniform(0, 2 * math.pi)
    light = 0.8 + 0.35 * ((xs - 0.5) * math.cos(light_angle) + (ys - 0.5) * math.sin(light_angle))
    photo = (photo * light).clamp(0, 1)
    return label_map * 2 - 1, photo * 2 - 1


class SyntheticDataset(Dataset):
    """Deterministic: item i of a split is the same image on every call and every machine."""

    root = None
    in_channels = out_channels = 3

    def __init__(self, *, split: Split, length: int, seed: int, swap: bool, jitter: PairedJitter) -> None:
        self.length = length
        self.split = split
        # A stable per-split offset, so train and val never share a scene.
        self.seed = seed * 1_000_003 + zlib.crc32(split.encode())
        self.swap = swap
        self.jitter = jitter
        self.image_size = jitter.crop_size

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for a synthetic dataset of {self.length}")
        generator = torch.Generator().manual_seed(self.seed + index)
        size = self.jitter.load_size if self.jitter.preprocess == "resize_and_crop" else self.jitter.crop_size
        a, b = render(size=size, generator=generator)
        path = f"synthetic/{self.split}/{index}"
        a, b = self.jitter(a, b, train=self.split == "train", path=path)
        return Sample(b, a, path) if self.swap else Sample(a, b, path)


def synthetic(
    *,
    split: Split = "train",
    length: int = 400,
    seed: int = 0,
    direction: Direction = "AtoB",
    load_size: int = 286,
    crop_size: int = 256,
    flip: bool = True,
) -> SyntheticDataset:
    """Generated labels -> photo pairs (rectangles and ellipses); needs no data. The default dataset."""
    return SyntheticDataset(
        split=split,
        length=length,
        seed=seed,
        swap=direction == "BtoA",
        jitter=PairedJitter(load_size=load_size, crop_size=crop_size, flip=flip),
    )


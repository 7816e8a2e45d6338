"""A generated labels -> photo task (like facades) that needs no download.

A: a label map of overlapping rectangles and ellipses, one flat colour per class. B: the same scene
"photographed": each class has its own colour and striped texture, shapes cast a dark outline, and the
whole image is lit by a random gradient. B follows from A up to the lighting, so a model must read the
input's layout (the U-Net's skips help) and invent plausible texture (the GAN term helps).

Every sample also carries its scene's class map (``Sample.labels``, H x W, jittered with the images), so the
paper's FCN-score can be measured exactly: a segmenter trained on the real photos (B, with the default
direction AtoB) classifies generated ones. The six classes (``CLASSES``, and a dataset's ``classes``), by
how they look in the photo:

| index | name | label colour (A) | photo (B) |
| --- | --- | --- | --- |
| 0 | background | dark blue | light grey-beige, no stripes |
| 1 | brown | red | brown, fine vertical stripes |
| 2 | green | green | dark green, horizontal stripes |
| 3 | sand | yellow | sand yellow, fine diagonal stripes |
| 4 | blue | cyan | grey-blue, diagonal stripes the other way |
| 5 | mauve | violet | grey-mauve, dense slanted stripes |

Since those classes differ in flat colour, a blurry output (what an L1 loss alone draws) keeps what the
scorer needs, and the FCN-score cannot tell texture from blur. The ``texture`` variant isolates texture: the
same scenes, label maps, seams and lighting, but every class has the same photo colour and differs only in
its pattern, whose phase is random per shape, so no model can predict it from the label map and a blur
removes it (``TEXTURE_CLASSES``; periods in pixels of the rendered image):

| index | name | photo (B), all one colour on average |
| --- | --- | --- |
| 0 | plain | no pattern |
| 1 | vertical | vertical stripes, period 4 |
| 2 | horizontal | horizontal stripes, period 6 |
| 3 | checks | a checkerboard of 4-pixel squares |
| 4 | dots | a grid of light and dark dots, period 4 |
| 5 | grain | uniform per-pixel noise |

Every pattern has zero mean over its period and scales the colour by ``1 + 0.35 * pattern``, so each class's
mean RGB colour is the same.
"""

from __future__ import annotations

import math
import zlib
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from p2p_core.errors import did_you_mean
from p2p_core.images import PairedJitter
from p2p_core.protocols import Sample

Split = Literal["train", "val", "test"]
SPLITS = get_args(Split)
Direction = Literal["AtoB", "BtoA"]
Variant = Literal["colour", "texture"]
VARIANTS = get_args(Variant)

CLASSES = ("background", "brown", "green", "sand", "blue", "mauve")
"""The scene classes, in the order of ``Sample.labels``' values (named by their photo colour)."""
# Label colours (A) and photo colours (B) per class; class 0 is the background.
LABEL_COLOURS = torch.tensor(
    [[0.0, 0.0, 0.6], [0.9, 0.1, 0.1], [0.1, 0.8, 0.2], [1.0, 0.8, 0.0], [0.0, 0.8, 0.9], [0.8, 0.2, 0.9]]
)
PHOTO_COLOURS = torch.tensor(
    [[0.75, 0.72, 0.65], [0.55, 0.3, 0.2], [0.25, 0.45, 0.3], [0.85, 0.75, 0.5], [0.3, 0.4, 0.65], [0.6, 0.55, 0.6]]
)
STRIPES = [(0.0, 0.0), (0.15, 0.0), (0.2, math.pi / 2), (0.1, math.pi / 4), (0.25, -math.pi / 4), (0.3, math.pi / 3)]

TEXTURE_CLASSES = ("plain", "vertical", "horizontal", "checks", "dots", "grain")
"""The texture variant's classes, in the order of ``Sample.labels``' values (named by their photo's pattern)."""
TEXTURE_COLOUR = torch.tensor([0.6, 0.55, 0.5])
TEXTURE_CONTRAST = 0.35
PHASE_RANGE = 24.0
"""Pixels; a multiple of every pattern's period, so a uniform offset in it is a uniform phase for each."""
MAX_LENGTH = 10**8
"""Pairs per split at most: fewer than between any two splits' first seeds, so no two splits share a scene."""


def textures(u: Tensor, v: Tensor, *, generator: torch.Generator) -> Tensor:
    """The patterns of TEXTURE_CLASSES at pixel coordinates ``u`` (across) and ``v`` (down): 6 x H x W in [-1, 1]."""
    turn = 2 * math.pi
    return torch.stack([
        torch.zeros_like(u),
        torch.sin(turn * u / 4),
        torch.sin(turn * v / 6),
        torch.sign(torch.sin(turn * u / 8) * torch.sin(turn * v / 8)),
        torch.cos(turn * u / 4) * torch.cos(turn * v / 4),
        torch.rand(u.shape, generator=generator) * 2 - 1,
    ])


def render(*, size: int, generator: torch.Generator, variant: Variant = "colour") -> tuple[Tensor, Tensor, Tensor]:
    """One (label map, photo) pair, 3 x size x size each, in [-1, 1], and its class map (size x size)."""

    def uniform(low: float, high: float) -> float:
        return low + (high - low) * float(torch.rand((), generator=generator))

    ys, xs = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    labels = torch.zeros(size, size, dtype=torch.long)
    shapes = torch.zeros(size, size, dtype=torch.long)  # which shape covers each pixel (0: the background)
    count = int(torch.randint(3, 9, (), generator=generator))
    for shape in range(1, count + 1):
        cls = int(torch.randint(1, len(LABEL_COLOURS), (), generator=generator))
        cx, cy, half_w, half_h = uniform(0, 1), uniform(0, 1), uniform(0.08, 0.3), uniform(0.08, 0.3)
        if torch.rand((), generator=generator) < 0.5:
            inside = ((xs - cx).abs() < half_w) & ((ys - cy).abs() < half_h)
        else:
            inside = ((xs - cx) / half_w) ** 2 + ((ys - cy) / half_h) ** 2 < 1
        labels[inside] = cls
        shapes[inside] = shape

    label_map = LABEL_COLOURS[labels].permute(2, 0, 1)
    if variant == "texture":
        # A random phase per shape: the label map says which pattern, never where its stripes fall.
        offsets = torch.rand(2, count + 1, generator=generator) * PHASE_RANGE
        u = xs * (size - 1) + offsets[0][shapes]
        v = ys * (size - 1) + offsets[1][shapes]
        pattern = textures(u, v, generator=generator).gather(0, labels[None])
        photo = TEXTURE_COLOUR[:, None, None] * (1 + TEXTURE_CONTRAST * pattern)
    else:
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
    return label_map * 2 - 1, photo * 2 - 1, labels


class SyntheticDataset(Dataset):
    """Deterministic: item i of a split is the same image on every call and every machine."""

    root = None
    in_channels = out_channels = 3

    def __init__(
        self, *, split: Split, length: int, seed: int, swap: bool, jitter: PairedJitter, variant: Variant = "colour"
    ) -> None:
        self.length = length
        self.split = split
        self.variant = variant
        self.classes = TEXTURE_CLASSES if variant == "texture" else CLASSES
        # A stable per-split offset, so train and val never share a scene (their offsets are MAX_LENGTH apart or more).
        self.seed = seed * 1_000_003 + zlib.crc32(split.encode())
        self.swap = swap
        self.jitter = jitter
        self.image_size = jitter.crop_size

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for a synthetic dataset of {self.length}")
        # A generator takes seeds below 2**64, where a large seed's offset does not end.
        generator = torch.Generator().manual_seed((self.seed + index) % 2**64)
        size = self.jitter.load_size if self.jitter.preprocess == "resize_and_crop" else self.jitter.crop_size
        a, b, labels = render(size=size, generator=generator, variant=self.variant)
        path = f"synthetic/{self.split}/{index}"
        # The class map travels through the jitter as one channel per class beside B, so it gets the very same
        # crop and flip; where a resize blends classes, each pixel takes the class that covers most of it.
        one_hot = F.one_hot(labels, len(self.classes)).permute(2, 0, 1).float()
        a, b_and_classes = self.jitter(a, torch.cat([b, one_hot]), train=self.split == "train", path=path)
        b, labels = b_and_classes[: b.shape[0]], b_and_classes[b.shape[0] :].argmax(0)
        return Sample(b, a, path, labels) if self.swap else Sample(a, b, path, labels)


def synthetic(
    *,
    split: Split = "train",
    length: int = 400,
    seed: int = 0,
    direction: Direction = "AtoB",
    load_size: int = 286,
    crop_size: int = 256,
    flip: bool = True,
    variant: Variant = "colour",
) -> SyntheticDataset:
    """Generated labels -> photo pairs (rectangles and ellipses); needs no data. The default dataset.

    ``variant`` "colour" gives each class its own colour and stripes; "texture" gives every class the same
    colour and a pattern of its own at a random phase, so that only texture tells the classes apart (the
    FCN-score then sees whether a model draws texture, not only whether it gets the colours right).
    """
    # Any other name would give scenes of their own, silently: a misspelt split validates on no split at all.
    if split not in SPLITS:
        raise ValueError(f"split must be 'train', 'val' or 'test', got {str(split)[:40]!r}{did_you_mean(str(split), SPLITS)}")
    if not 1 <= length <= MAX_LENGTH:
        raise ValueError(f"length (pairs per split) must be from 1 to 10**8, got {str(length)[:40]}")
    if not 0 <= seed < 2**63:  # what torch's generators take
        raise ValueError(f"seed must be from 0 to 2**63 - 1, got {str(seed)[:40]}")
    if variant not in VARIANTS:
        guess = did_you_mean(str(variant), VARIANTS)
        raise ValueError(f"variant must be 'colour' or 'texture', got {str(variant)[:40]!r}{guess}")
    return SyntheticDataset(
        split=split,
        length=length,
        seed=seed,
        swap=direction == "BtoA",
        jitter=PairedJitter(load_size=load_size, crop_size=crop_size, flip=flip),
        variant=variant,
    )


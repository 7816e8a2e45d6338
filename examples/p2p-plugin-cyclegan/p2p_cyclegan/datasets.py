"""Unpaired data: the reference's ``unaligned`` layout, and p2p's synthetic task with its pairs taken apart.

CycleGAN learns from two sets of images, A and B, with no correspondence between them. These datasets still give
``Sample(a, b, path)`` as p2p's paired ones do, so that everything p2p does with data (loaders and their seeding,
validation, ``p2p test`` pages) works unchanged; only a training sample's ``b`` is not its ``a``'s counterpart.
Randomness comes from torch's global generator, which p2p seeds per sample, so a run is reproducible.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from torch import Tensor
from torch.utils.data import Dataset

import p2p_core
from p2p_core.errors import DataError
from p2p_core.images import PairedJitter, Preprocess, list_images, read_image
from p2p_core.protocols import PairedDataset, Sample

Split = Literal["train", "val", "test"]
Direction = Literal["AtoB", "BtoA"]
Channels = Literal[1, 3, 4]
"""Per image: 1 grayscale, 3 RGB, 4 RGBA."""

LAYOUT = "ROOT/trainA, ROOT/trainB (testA, testB; valA, valB) of unrelated images, the reference's layout (--data.root ROOT)"


class UnalignedDataset(Dataset):
    """Two unrelated image sets, ROOT/trainA and ROOT/trainB (the reference's unaligned dataset); any sizes."""

    def __init__(
        self,
        *,
        root: Path,
        split: Split = "train",
        direction: Direction = "AtoB",
        load_size: int = 286,
        crop_size: int = 256,
        preprocess: Preprocess = "resize_and_crop",
        flip: bool = True,
        a_channels: Channels = 3,
        b_channels: Channels = 3,
        serial: bool = False,
    ) -> None:
        if direction not in ("AtoB", "BtoA"):
            raise DataError(f"direction must be 'AtoB' or 'BtoA', got {direction!r}")
        self.root, self.split = Path(root), split
        sides = ("B", "A") if direction == "BtoA" else ("A", "B")
        channels = {"A": a_channels, "B": b_channels}
        self.inputs, self.targets = (self._images(side) for side in sides)
        self.in_channels, self.out_channels = (channels[side] for side in sides)
        self.jitter = PairedJitter(load_size=load_size, crop_size=crop_size, preprocess=preprocess, flip=flip)
        self.image_size = crop_size
        # The reference draws B at random in training (unless --serial_batches) and takes them in order at test time,
        # so that a test page is the same on every run.
        self.random_targets = split == "train" and not serial

    def _images(self, side: str) -> list[Path]:
        folder = self.root / f"{self.split}{side}"
        if not folder.is_dir() and self.split == "val":
            raise DataError(f"{folder} does not exist: the reference's layout has a val split only where valA and valB are")
        if not folder.is_dir() and (self.root / self.split).is_dir():
            raise DataError(
                f"{folder} does not exist, but {self.root / self.split} does: {self.root} holds paired A|B images, "
                "which --data aligned reads"
            )
        return list_images(folder, layout=LAYOUT)

    def __len__(self) -> int:
        return max(len(self.inputs), len(self.targets))

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for an unaligned dataset of {len(self)}")
        source = self.inputs[index % len(self.inputs)]
        chosen = int(torch.randint(len(self.targets), ())) if self.random_targets else index % len(self.targets)
        a = self._jittered(source, self.in_channels)
        return Sample(a, self._jittered(self.targets[chosen], self.out_channels), str(source))

    def _jittered(self, path: Path, channels: int) -> Tensor:
        # A and B are unrelated pictures, so each gets its own crop and flip.
        return self.jitter.single(read_image(path, channels=channels), train=self.split == "train", path=str(path))


class UnpairedSynthetic(Dataset):
    """A paired dataset whose training samples take their B from another sample, drawn at random."""

    root = None

    def __init__(self, *, paired: PairedDataset, shuffle: bool) -> None:
        self.paired, self.shuffle = paired, shuffle
        self.in_channels, self.out_channels, self.image_size = paired.in_channels, paired.out_channels, paired.image_size
        self.classes = getattr(paired, "classes", None)

    def __len__(self) -> int:
        return len(self.paired)

    def __getitem__(self, index: int) -> Sample:
        sample = self.paired[index]
        if not self.shuffle:
            return sample
        other = self.paired[int(torch.randint(len(self.paired), ()))]
        # The class map is the A scene's: what G_AB(a) should show, so the FCN-score of A -> B stays measurable.
        return sample._replace(b=other.b)


def synthetic_unpaired(
    *,
    split: Split = "train",
    length: int = 400,
    seed: int = 0,
    direction: Direction = "AtoB",
    load_size: int = 286,
    crop_size: int = 256,
    flip: bool = True,
    paired_eval: bool = True,
) -> UnpairedSynthetic:
    """p2p's generated labels -> photo task, unpaired: each label map comes with the photo of another scene."""
    paired = p2p_core.create("dataset", "synthetic", split=split, length=length, seed=seed, direction=direction,
                             load_size=load_size, crop_size=crop_size, flip=flip)
    # Held-out splits keep their pairs by default, so `p2p test` scores G(A) against the truth, as the CycleGAN
    # paper scores its unpaired models on Cityscapes' pairs.
    return UnpairedSynthetic(paired=paired, shuffle=split == "train" or not paired_eval)

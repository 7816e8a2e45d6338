"""Datasets read from image files: ``aligned`` (A|B side by side) and ``folders`` (A/ and B/ by file name)."""

from __future__ import annotations

import abc
import logging
from pathlib import Path
from typing import Literal

from torch import Tensor
from torch.utils.data import Dataset

from p2p_core.errors import DataError
from p2p_core.images import PairedJitter, Preprocess, list_images, read_image
from p2p_core.protocols import Sample

logger = logging.getLogger(__name__)

Direction = Literal["AtoB", "BtoA"]
Split = Literal["train", "val", "test"]
Channels = Literal[1, 3, 4]
"""Per image: 1 grayscale, 3 RGB, 4 RGBA."""


class ImagePairs(Dataset, abc.ABC):
    """Pairs of image files, translated from A to B or back, jittered identically.

    Subclasses say where the pairs are (``find_pairs``) and how to read one (``read_pair``); the options,
    the direction, the jitter and skipping bad files are shared.
    """

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
        skip_bad: bool = False,
    ) -> None:
        if direction not in ("AtoB", "BtoA"):
            raise DataError(f"direction must be 'AtoB' or 'BtoA', got {direction!r}")
        self.root = Path(root)
        self.split = split
        self.swap = direction == "BtoA"
        self.a_channels, self.b_channels = a_channels, b_channels
        self.in_channels, self.out_channels = (b_channels, a_channels) if self.swap else (a_channels, b_channels)
        self.jitter = PairedJitter(load_size=load_size, crop_size=crop_size, preprocess=preprocess, flip=flip)
        self.image_size = crop_size
        self.skip_bad = skip_bad
        self.pairs = self.find_pairs()

    @abc.abstractmethod
    def find_pairs(self) -> list[tuple[Path, ...]]:
        """The files of each pair under ``root/split``, in a stable order."""

    @abc.abstractmethod
    def read_pair(self, index: int) -> tuple[Tensor, Tensor, Path]:
        """The A and B images of pair ``index`` at their stored size, and the path to report."""

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> Sample:
        for attempt in range(len(self)):
            try:
                a, b, path = self.read_pair((index + attempt) % len(self))
                a, b = self.jitter(a, b, train=self.split == "train", path=str(path))
            except DataError as error:
                if not self.skip_bad:
                    raise
                logger.warning("skipping a bad pair: %s", error)
                continue
            return Sample(b, a, str(path)) if self.swap else Sample(a, b, str(path))
        raise DataError(f"every pair under {self.root / self.split} is unreadable")


class AlignedDataset(ImagePairs):
    """Standard pix2pix layout: root/{train,val,test}/*.jpg with A|B side by side."""

    def find_pairs(self) -> list[tuple[Path, ...]]:
        layout = "ROOT/{train,val,test}/*.jpg with A|B side by side (--data.root ROOT)"
        return [(path,) for path in list_images(self.root / self.split, layout=layout)]

    def read_pair(self, index: int) -> tuple[Tensor, Tensor, Path]:
        (path,) = self.pairs[index]
        # Decode alpha only when a half keeps it; the other halves drop it again in _channels.
        image = read_image(path, channels=4 if 4 in (self.a_channels, self.b_channels) else 3)
        width = image.shape[-1]
        if width % 2:
            raise DataError(f"{path}: width {width} is odd, so it cannot be split into A|B halves of equal width")
        a, b = image[..., : width // 2], image[..., width // 2 :]
        return _channels(a, self.a_channels), _channels(b, self.b_channels), path


class FoldersDataset(ImagePairs):
    """Two folders root/{split}/A and root/{split}/B whose files pair up by name."""

    def find_pairs(self) -> list[tuple[Path, ...]]:
        layout = "ROOT/{train,val,test}/{A,B}/ with matching file names (--data.root ROOT)"
        a_files = {p.stem: p for p in list_images(self.root / self.split / "A", layout=layout)}
        b_files = {p.stem: p for p in list_images(self.root / self.split / "B", layout=layout)}
        unmatched = sorted(set(a_files) ^ set(b_files))
        if unmatched:
            raise DataError(
                f"{self.root / self.split}: {len(unmatched)} file(s) have no partner in the other folder, "
                f"e.g. {', '.join(unmatched[:5])}; A/ and B/ must hold the same file names"
            )
        return [(a_files[stem], b_files[stem]) for stem in sorted(a_files)]

    def read_pair(self, index: int) -> tuple[Tensor, Tensor, Path]:
        a_path, b_path = self.pairs[index]
        return read_image(a_path, channels=self.a_channels), read_image(b_path, channels=self.b_channels), a_path


def _channels(image: Tensor, channels: int) -> Tensor:
    """One half of an AB image (RGB, or RGBA when some half needs alpha) as ``channels`` channels."""
    if channels == 4:
        return image
    rgb = image[:3]
    if channels == 1:
        # ITU-R 601 luma, the weights PIL uses for "L", so a split AB image matches a grayscale file.
        weights = rgb.new_tensor([0.299, 0.587, 0.114]).view(3, 1, 1)
        return (rgb * weights).sum(0, keepdim=True)
    return rgb


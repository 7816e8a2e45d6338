"""Datasets read from image files: ``aligned`` (A|B side by side) and ``folders`` (A/ and B/ by file name)."""

from __future__ import annotations

import abc
import logging
import warnings
from collections import Counter
from pathlib import Path
from typing import Literal

from torch import Tensor
from torch.utils.data import Dataset

from p2p_core.errors import DataError
from p2p_core.files import pair_by_name
from p2p_core.images import PairedJitter, Preprocess, image_header, list_images, read_image
from p2p_core.protocols import Sample

logger = logging.getLogger(__name__)

Direction = Literal["AtoB", "BtoA"]
Split = Literal["train", "val", "test"]
Channels = Literal[1, 3, 4]
"""Per image: 1 grayscale, 3 RGB, 4 RGBA."""


class ImagePairs(Dataset, abc.ABC):
    """Pairs of image files, translated from A to B or back, jittered identically.

    Subclasses say where the pairs are (``find_pairs``), how large one is (``stored_size``) and how to read
    one (``read_pair``); the options, the direction, the jitter, the size checks and skipping bad files are
    shared.

    Data that may not be what it claims is named in a warning when the dataset is built (from the files'
    headers, without decoding them): pairs of different sizes within the split, sizes of a val or test split
    that the train split does not have, and, under ``resize_and_crop``, which squeezes every image to a
    square, pairs that are far from square (an A|B file without its B half, for instance).
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
        self.preprocess = preprocess
        self.pairs = self.find_pairs(split)
        self._check_sizes()

    @abc.abstractmethod
    def find_pairs(self, split: Split) -> list[tuple[Path, ...]]:
        """The files of each pair under ``root/split``, in a stable order."""

    @abc.abstractmethod
    def stored_size(self, pair: tuple[Path, ...]) -> tuple[int, int]:
        """(height, width) of the A image of ``pair`` as stored, from the file's header."""

    @abc.abstractmethod
    def read_pair(self, index: int) -> tuple[Tensor, Tensor, Path]:
        """The A and B images of pair ``index`` at their stored size, and the path to report."""

    def _check_sizes(self) -> None:
        where = self.root / self.split
        sizes = self._readable_sizes(self.pairs)
        if len(counts := Counter(sizes.values())) > 1:
            message = f"the pairs' A images come in {len(counts)} sizes: {_describe(sizes)}; check that they belong together"
            warnings.warn(f"{where}: {message}", stacklevel=3)
        if self.split != "train" and (self.root / "train").is_dir():
            trained_on = set(self._readable_sizes(self.find_pairs("train")).values())
            if others := {path: size for path, size in sizes.items() if size not in trained_on}:
                warnings.warn(
                    f"{where}: {len(others)} pair(s) have a size the train split does not have "
                    f"({', '.join(f'{w}x{h}' for h, w in sorted(trained_on))}): {_describe(others)}; the model is "
                    f"scored on data shaped unlike what it learnt from",
                    stacklevel=3,
                )
        if self.preprocess == "resize_and_crop":
            squeezed = {path: (h, w) for path, (h, w) in sizes.items() if max(h, w) > 1.1 * min(h, w)}
            if squeezed:
                warnings.warn(
                    f"{where}: {len(squeezed)} pair(s) are far from square, yet resize_and_crop squeezes each image "
                    f"to a square: {_describe(squeezed)}; check that each file holds what the dataset expects, or use "
                    f"--data.preprocess crop or none",
                    stacklevel=3,
                )

    def _readable_sizes(self, pairs: list[tuple[Path, ...]]) -> dict[Path, tuple[int, int]]:
        """Stored sizes of the pairs whose headers read; an unreadable file is reported when it is loaded, where
        --data.skip_bad can skip it."""
        sizes = {}
        for pair in pairs:
            try:
                sizes[pair[0]] = self.stored_size(pair)
            except DataError:
                continue
        return sizes

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

    def find_pairs(self, split: Split) -> list[tuple[Path, ...]]:
        layout = "ROOT/{train,val,test}/*.jpg with A|B side by side (--data.root ROOT)"
        return [(path,) for path in list_images(self.root / split, layout=layout)]

    def stored_size(self, pair: tuple[Path, ...]) -> tuple[int, int]:
        height, width, _ = image_header(pair[0])
        return height, width // 2

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

    def find_pairs(self, split: Split) -> list[tuple[Path, ...]]:
        layout = "ROOT/{train,val,test}/{A,B}/ with matching file names (--data.root ROOT)"
        folders = {half: self.root / split / half for half in ("A", "B")}
        pairs, _ = pair_by_name({half: list_images(folder, layout=layout) for half, folder in folders.items()}, roots=folders)
        return [(pair["A"], pair["B"]) for pair in pairs]

    def stored_size(self, pair: tuple[Path, ...]) -> tuple[int, int]:
        height, width, _ = image_header(pair[0])
        return height, width

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



def _describe(sizes: dict[Path, tuple[int, int]], shown: int = 3) -> str:
    """Sizes (of halves) with how many pairs have each and a file of each, most common first."""
    counts = Counter(sizes.values())
    example = {size: path.name for path, size in reversed(sizes.items())}  # the first file of each size wins
    parts = [f"{count} of {w}x{h} (e.g. {example[h, w]})" for (h, w), count in counts.most_common(shown)]
    return ", ".join(parts) + (f" and {len(counts) - shown} more size(s)" if len(counts) > shown else "")

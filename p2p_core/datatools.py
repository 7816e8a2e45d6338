"""``p2p data``: folders of images -> paired datasets in the AB layout that the ``aligned`` dataset reads.

``combine`` pairs two folders, A/ and B/, by file name; ``edges`` makes edges -> photo pairs from plain
photos, the way edges2shoes and edges2handbags were made. Both write ``OUT/{train,val,test}/NAME.png`` (or
``.jpg``) with A on the left half and B on the right, replace no existing file unless told to, and draw the
train/val split from a seed, so the same inputs and seed give the same dataset, byte for byte.

They never write into their inputs: an OUT that is or holds an input folder is refused, with or without
``--overwrite``. And every input is read before anything in OUT changes: the pairs are written to a hidden
folder inside OUT first and moved into place (a rename each) only once all of them are written, so a bad file,
a full disk or Ctrl+C leaves OUT as it was.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Literal

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from p2p_core.errors import ConfigError, DataError
from p2p_core.files import by_stem, pair_by_name, refuse_overlap
from p2p_core.images import IMAGE_SUFFIXES, center_crop, image_header, list_images, read_image, resize, write_image
from p2p_core.ranges import Fraction, Pixels, Seed, ranged

ImageFormat = Literal["png", "jpg"]
Split = Literal["train", "val", "test"]
Fit = Literal["crop", "stretch"]
SPLITS: tuple[Split, ...] = ("train", "val", "test")

Sigma = ranged(float, 0, 100, low_open=True)
"""Canny's blur in pixels: more than 100 blurs any image the tools make into one colour."""
Threshold = ranged(float, 0, 1000, low_open=True)
Area = ranged(int, 0, 65536**2)


@attrs.frozen(kw_only=True)
class Report:
    """What a data tool wrote, and anything the user should know about what it left out."""

    out: Path
    written: Mapping[str, int]
    """Pairs written per split."""
    notes: tuple[str, ...] = ()

    def __str__(self) -> str:
        counts = ", ".join(f"{count} {split}" for split, count in sorted(self.written.items(), key=lambda i: SPLITS.index(i[0])))
        return "\n".join([*self.notes, f"wrote {counts} pair(s) to {self.out}"])


def combine(
    *,
    a: Path,
    b: Path,
    out: Path,
    split: Split = "train",
    val_fraction: Fraction = 0.0,
    seed: Seed = 0,
    resize_b: bool = False,
    format: ImageFormat = "png",
    overwrite: bool = False,
) -> Report:
    """Pair the images of two folders by file name into A|B images, the layout of the aligned dataset.

    Args:
        a: Folder of input images (A).
        b: Folder of target images (B); B/x.png pairs with A/x.jpg (names match without the extension).
        out: Dataset root; each pair is written to OUT/SPLIT/NAME.FORMAT, A left, B right.
        split: The split folder the pairs go to.
        val_fraction: Put this fraction of the pairs, drawn with --seed, in OUT/val instead.
        seed: Seed of the val draw.
        resize_b: Scale a B image to its A's size. Without it, pairs of different sizes are refused: they
            usually mean a wrong pairing or a cropped file, which scaling would hide.
        format: png (lossless, keeps alpha) or jpg (smaller; quality 95, no alpha).
        overwrite: Replace output files of the same names (in any split folder); otherwise they are an error.
    """
    refuse_overlap(Path(out), {"the input folder --a": Path(a), "the input folder --b": Path(b)}, option="--out")
    pairs, alone = pair_by_name({"--a": list_images(Path(a)), "--b": list_images(Path(b))},
                                roots={"--a": Path(a), "--b": Path(b)}, allow_unmatched=True)
    if not pairs:
        raise DataError(
            f"no file name is in both {a} and {b}; pairs are matched by name without the extension "
            f"(A/cat1.jpg with B/cat1.png)"
        )
    a_files = {pair["--a"].stem: pair["--a"] for pair in pairs}
    b_files = {pair["--b"].stem: pair["--b"] for pair in pairs}
    names = sorted(a_files)
    notes = [f"{len(names_alone)} file(s) only in {folder}, skipped: {_some(names_alone)}"
             for role, names_alone in alone.items() for folder in [{"--a": a, "--b": b}[role]]]
    mismatched, with_alpha = [], set()
    for name in names:
        a_height, a_width, a_alpha = image_header(a_files[name])
        b_height, b_width, b_alpha = image_header(b_files[name])
        if (a_height, a_width) != (b_height, b_width):
            mismatched.append(f"{name} (A {a_width}x{a_height}, B {b_width}x{b_height})")
        if a_alpha or b_alpha:
            with_alpha.add(name)
    if mismatched and not resize_b:
        raise DataError(
            f"{len(mismatched)} pair(s) differ in size: {_some(mismatched)}; pass --resize_b to scale B to A's "
            f"size, or fix the files"
        )
    if mismatched:
        notes.append(f"{len(mismatched)} B image(s) scaled to their A's size: {_some(mismatched)}")
    if with_alpha and format == "jpg":
        raise DataError(
            f"{len(with_alpha)} pair(s) have an alpha channel ({_some(sorted(with_alpha))}), which JPEG cannot "
            f"store; use --format png"
        )

    def pair(name: str) -> Tensor:
        # RGBA only where a file has alpha; grayscale is stored as RGB, and a_channels: 1 reads it back exactly.
        channels = 4 if name in with_alpha else 3
        image_a, image_b = read_image(a_files[name], channels=channels), read_image(b_files[name], channels=channels)
        if image_b.shape[-2:] != image_a.shape[-2:]:
            image_b = resize(image_b, list(image_a.shape[-2:]))
        return torch.cat([image_a, image_b], dim=-1)

    plan = assign_splits(names, split=split, val_fraction=val_fraction, seed=seed)
    return _write(plan, pair, out=Path(out), format=format, overwrite=overwrite, notes=notes)


def edges(
    *,
    photos: Path,
    out: Path,
    size: Pixels = 256,
    fit: Fit = "crop",
    val_fraction: Fraction = 0.1,
    seed: Seed = 0,
    sigma: Sigma = 2.0,
    low_threshold: Threshold = 0.1,
    high_threshold: Threshold = 0.2,
    min_fragment: Area = 10,
    format: ImageFormat = "png",
    overwrite: bool = False,
) -> Report:
    """Make edges -> photo pairs from a folder of photos: A is the photo's edge map, black on white; B the photo.

    Edges come from the Canny detector (kornia.filters.canny): its non-maximum suppression thins them to one
    pixel, then fragments smaller than --min_fragment pixels are removed (see edge_map).

    Args:
        photos: Folder of photos.
        out: Dataset root; pairs go to OUT/train and OUT/val as NAME.FORMAT.
        size: Side of the square A and B images.
        fit: crop: scale the shorter side to --size and cut the centre square; stretch: scale to a square.
        val_fraction: Fraction of the photos, drawn with --seed, that go to OUT/val.
        seed: Seed of the val draw.
        sigma: Gaussian blur before the gradients, in pixels at --size; larger keeps only coarser edges.
        low_threshold: Canny's weak-edge threshold on kornia's gradient magnitude (a black-to-white step
            scores about 1.5 at sigma 2, 2.6 at sigma 1).
        high_threshold: Canny's strong-edge threshold; weak pixels stay only when connected to strong ones.
        min_fragment: Remove 8-connected edge fragments of fewer pixels than this (1 keeps everything).
        format: png (lossless) or jpg (smaller, with compression noise around the lines).
        overwrite: Replace output files of the same names (in any split folder); otherwise they are an error.
    """
    if size < 1:
        raise ConfigError(f"--size must be a positive number of pixels, got {size}")
    if math.ceil(3 * sigma) >= size:  # the blur's kernel reaches that far each way, and must stay inside the image
        raise ConfigError(f"--sigma {sigma} blurs {math.ceil(3 * sigma)} pixels each way, too far for --size {size}; "
                          f"use a --sigma below {(size - 1) / 3:g} or a larger --size")
    _check_edge_options(sigma=sigma, low_threshold=low_threshold, high_threshold=high_threshold, min_fragment=min_fragment)
    refuse_overlap(Path(out), {"the input folder --photos": Path(photos)}, option="--out")
    files = by_stem(list_images(Path(photos)), folder=Path(photos))

    def pair(name: str) -> Tensor:
        photo = fit_square(read_image(files[name], channels=3), size=size, fit=fit)
        drawn = edge_map(photo, sigma=sigma, low_threshold=low_threshold, high_threshold=high_threshold, min_fragment=min_fragment)
        return torch.cat([drawn.expand_as(photo), photo], dim=-1)

    plan = assign_splits(sorted(files), split="train", val_fraction=val_fraction, seed=seed)
    return _write(plan, pair, out=Path(out), format=format, overwrite=overwrite)


def fit_square(image: Tensor, *, size: int, fit: Fit) -> Tensor:
    """``image`` as size x size: the centre square of it scaled (crop), or all of it scaled (stretch)."""
    if fit == "stretch":
        return resize(image, [size, size])
    height, width = image.shape[-2:]
    scale = size / min(height, width)
    scaled = resize(image, [max(size, round(height * scale)), max(size, round(width * scale))])
    return center_crop(scaled, [size, size])


def edge_map(
    photo: Tensor, *, sigma: float = 2.0, low_threshold: float = 0.1, high_threshold: float = 0.2, min_fragment: int = 10
) -> Tensor:
    """The edges of ``photo`` (C x H x W in [-1, 1]) as 1 x H x W: -1 (black) on edges, 1 (white) elsewhere.

    Canny on the grayscale photo in [0, 1] (kornia.filters.canny): a Gaussian blur of ``sigma`` (kernel
    2 * ceil(3 sigma) + 1), Sobel gradients, non-maximum suppression, which thins every edge to one pixel,
    and hysteresis between the thresholds. Then 8-connected fragments of fewer than ``min_fragment`` pixels
    are removed: isolated specks come from texture and noise, not from outlines worth drawing.
    """
    import kornia  # slow to import, and only this tool needs it

    _check_edge_options(sigma=sigma, low_threshold=low_threshold, high_threshold=high_threshold, min_fragment=min_fragment)
    kernel = 2 * math.ceil(3 * sigma) + 1
    unit = photo.add(1).div(2)[None]
    _, found = kornia.filters.canny(unit, low_threshold, high_threshold, kernel_size=kernel, sigma=(sigma, sigma))
    kept = remove_fragments(found[0, 0] > 0, min_pixels=min_fragment)
    return torch.where(kept, -1.0, 1.0)[None]


def remove_fragments(mask: Tensor, *, min_pixels: int) -> Tensor:
    """``mask`` (H x W, bool) without its 8-connected components of fewer than ``min_pixels`` pixels."""
    if min_pixels <= 1:
        return mask
    roots = connected_components(mask)
    sizes = torch.bincount(roots[mask], minlength=mask.numel())
    return mask & (sizes[roots] >= min_pixels)


def connected_components(mask: Tensor) -> Tensor:
    """Labels of the 8-connected components of ``mask`` (H x W, bool): for each pixel of the mask, the flat
    index of its component's last pixel in raster order; other pixels hold their own index.

    Plain label propagation (kornia.contrib.connected_components) needs one round per pixel of the longest
    path through a component, hundreds for an outline. Here, as in Shiloach and Vishkin's algorithm, every
    pixel points at a pixel of its component with an index at least its own; each round, every root adopts
    the largest root found next to any pixel of its tree, then pointers jump to their target's target until
    each points at a root. Rounds stop when no root changes, after a handful.
    """
    height, width = mask.shape
    inside = mask.flatten()
    parent = torch.arange(height * width, device=mask.device)
    while True:
        # max_pool2d has no integer kernel on the CPU; float64 holds every index exactly.
        shown = torch.where(inside, parent, -1).view(1, 1, height, width).double()
        largest_nearby = F.max_pool2d(shown, 3, stride=1, padding=1).flatten().long()
        before = parent.clone()
        parent.scatter_reduce_(0, parent[inside], largest_nearby[inside], reduce="amax")
        while not torch.equal(jumped := parent[parent], parent):
            parent = jumped
        if torch.equal(parent, before):
            return parent.view(height, width)


def assign_splits(names: Sequence[str], *, split: Split, val_fraction: float, seed: int) -> dict[str, Split]:
    """Each name's split: ``split``, except a ``val_fraction`` of them drawn with ``seed``, which go to val.

    A positive fraction moves at least one name and always leaves one, so both folders exist.
    """
    if not 0 <= val_fraction < 1:
        raise ConfigError(f"--val_fraction must be at least 0 and below 1, got {val_fraction}")
    if val_fraction and split == "val":
        raise ConfigError("--val_fraction moves pairs from --split to val, so --split val cannot be combined with it")
    count = len(names)
    moved = min(count - 1, max(1, round(val_fraction * count))) if val_fraction and count > 1 else 0
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed)).tolist()
    chosen = {names[i] for i in order[:moved]}
    return {name: "val" if name in chosen else split for name in names}


def _write(
    plan: Mapping[str, Split],
    pair: Callable[[str], Tensor],
    *,
    out: Path,
    format: ImageFormat,
    overwrite: bool,
    notes: Sequence[str] = (),
) -> Report:
    # A name already written to any split folder counts: after a new draw it could otherwise sit in train
    # and val at once, and a model would be validated on its own training data.
    existing = sorted(
        path
        for folder in (out / split for split in SPLITS)
        if folder.is_dir()
        for path in folder.iterdir()
        if path.stem in plan and path.suffix.lower() in IMAGE_SUFFIXES
    )
    if existing and not overwrite:
        raise DataError(
            f"{len(existing)} output file(s) already exist: {_some([str(p) for p in existing])}; pass --overwrite "
            f"to replace them, or choose another --out"
        )
    created = [folder for folder in (out, *out.parents) if not folder.exists()]  # deepest first
    try:
        out.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".p2p-data-", dir=out))
    except OSError as error:
        raise DataError(f"cannot write to --out {out}: {error.strerror or error}; choose another --out") from None
    try:
        for name in tqdm(list(plan), unit="pair", dynamic_ncols=True, disable=None):
            write_image(pair(name), staging / plan[name] / f"{name}.{format}")
    except BaseException as error:
        shutil.rmtree(staging)
        for folder in created:
            folder.rmdir()
        if isinstance(error, OSError):  # a full disk, say; decoding errors are DataErrors already
            raise DataError(f"cannot write to --out {out}: {error.strerror or error}; nothing was changed there") from None
        raise
    written = {out / split / f"{name}.{format}" for name, split in plan.items()}
    for path in sorted(written):
        path.parent.mkdir(exist_ok=True)
        os.replace(staging / path.relative_to(out), path)
    for path in existing:
        if path not in written:  # the same name in another split or format, replaced by the new pair
            path.unlink()
    shutil.rmtree(staging)
    return Report(out=out, written=Counter(plan.values()), notes=tuple(notes))


def _check_edge_options(*, sigma: float, low_threshold: float, high_threshold: float, min_fragment: int) -> None:
    if not sigma > 0:
        raise ConfigError(f"--sigma must be positive, got {sigma}")
    if min_fragment < 0:
        raise ConfigError(f"--min_fragment must be at least 0 pixels (0 keeps every fragment), got {min_fragment}")
    if not 0 < low_threshold < high_threshold:
        raise ConfigError(
            f"Canny's thresholds must satisfy 0 < --low_threshold < --high_threshold, got {low_threshold} and "
            f"{high_threshold}"
        )


def _some(items: Sequence[str], shown: int = 5) -> str:
    more = f" and {len(items) - shown} more" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more

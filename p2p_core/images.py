"""Reading, writing and jittering images for any dataset plugin: the paper's preprocessing in one place."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

import attrs
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from p2p_core.errors import DataError
from p2p_core.files import write_atomically
from p2p_core.spec import IMAGE_ENCODING, input_classes

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
Preprocess = Literal["resize_and_crop", "crop", "none"]


def list_images(folder: Path, *, layout: str = "") -> list[Path]:
    """Image files directly in ``folder``, in natural order (2.jpg before 10.jpg).

    ``layout`` describes what the folder should look like, for the error when it is missing or empty. Names
    with an image suffix that are not regular files (folders, symlink loops, links to devices such as
    /dev/zero, broken links) are left out, and a warning names them.
    """
    hint = f"; expected {layout}" if layout else ""
    if not folder.is_dir():
        raise DataError(f"data folder {folder} does not exist{hint}")
    named = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
    files = [p for p in named if p.is_file()]  # follows links; False for loops, devices, folders, dangling links
    if skipped := sorted(set(named) - set(files)):
        shown = ", ".join(p.name for p in skipped[:5]) + (f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")
        warnings.warn(
            f"{folder}: skipped {len(skipped)} name(s) with an image suffix that are not regular files (folders, "
            f"symlink loops, broken links or links to devices): {shown}",
            stacklevel=2,
        )
    if not files:
        raise DataError(f"data folder {folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}){hint}")
    return sorted(files, key=lambda p: (len(p.stem), p.stem) if p.stem.isdigit() else (float("inf"), p.stem))


CHANNEL_MODES = {1: "L", 3: "RGB", 4: "RGBA"}
MAX_SIDE = 65536
"""The longest side, in pixels, an image is resized or cropped to (PNG's own limit is larger, memory's smaller)."""
"""Channel counts a file is decoded to, and the PIL mode for each: grayscale, RGB, RGB + alpha."""


def read_image(path: Path, *, channels: int = 3) -> Tensor:
    """Decode an image to channels x H x W floats in [-1, 1]; a broken file raises a DataError naming it.

    1 channel is ITU-R 601 luma, 3 is RGB, 4 is RGBA (a file without alpha reads as opaque, +1).
    """
    with _opened(path) as image:
        return decode(image, channels=channels)


def decode(image: Image.Image, *, channels: int = 3, pixels: bool = False) -> Tensor:
    """An opened image as channels x H x W floats in [-1, 1], converted as :func:`read_image` describes; with
    ``pixels``, as its 8-bit pixels (uint8, a quarter of the memory; :func:`to_signed` makes them the floats).

    Grayscale of more than 8 bits is scaled to 8 (PIL's convert would clip it): 16-bit integers from
    [0, 65535], 32-bit floats from [0, 1], their usual range. A 32-bit image whose pixels fall outside that
    range has no known mapping and raises a ValueError saying so (read_image names the file in a DataError).
    """
    if channels not in CHANNEL_MODES:
        raise DataError(f"channels must be 1 (grayscale), 3 (RGB) or 4 (RGBA), got {channels}")
    if image.mode == "F" or image.mode.startswith("I"):
        image = _to_8_bits(image)
    mode = CHANNEL_MODES[channels]
    # convert() copies even an image already in the mode: a huge one would be held twice.
    decoded = torch.from_numpy(np.array(image if image.mode == mode else image.convert(mode), dtype=np.uint8))
    decoded = decoded.reshape(*decoded.shape[:2], -1).permute(2, 0, 1)
    return decoded if pixels else to_signed(decoded)


LABEL_MODES = ("L", "P", "I", "I;16")
"""PIL modes of class-index images: one class index a pixel (8-bit grey or palette indices, 16- or 32-bit integers)."""


def read_input(path: Path, *, encoding: str = IMAGE_ENCODING, channels: int = 3, pixels: bool = False) -> Tensor:
    """A file as a generator's input, as the model's input encoding says (:func:`decode_input`): what predict and
    a dataset of label maps read; a file that cannot be read so raises a DataError naming it."""
    with _opened(path) as image:
        return decode_input(image, encoding=encoding, channels=channels, pixels=pixels)


def decode_input(image: Image.Image, *, encoding: str = IMAGE_ENCODING, channels: int = 3, pixels: bool = False) -> Tensor:
    """An opened file as a generator's input. ``image`` (the default): its pixels as ``channels`` channels
    (:func:`decode`; with ``pixels``, as 8-bit pixels). ``labels:N``: a class-index image (mode L, P or I: each
    pixel's value, or palette index, is its class) as N one-hot channels (:func:`one_hot`), floats either way;
    another mode, or an index from N up, raises a ValueError saying so (read_input names the file in a DataError)."""
    classes = input_classes(encoding)
    if classes is None:
        return decode(image, channels=channels, pixels=pixels)
    if image.mode not in LABEL_MODES:
        raise ValueError(
            f"it is a {image.mode} image, but {encoding} reads class-index images (one class index a pixel, mode "
            f"{', '.join(LABEL_MODES)}); save the class map as a grey or palette PNG of the indices"
        )
    return one_hot(torch.from_numpy(np.array(image, dtype=np.int64)), classes)


def one_hot(labels: Tensor, classes: int) -> Tensor:
    """An H x W map of class indices as ``classes`` x H x W float32: 1 where a pixel has the channel's class, else 0
    (pix2pixHD's label input); a ValueError for an index outside 0 to ``classes`` - 1."""
    low, high = (int(labels.min()), int(labels.max())) if labels.numel() else (0, 0)
    if low < 0 or high >= classes:
        raise ValueError(
            f"it holds class index {high if high >= classes else low}, but labels:{classes} has {classes} classes "
            f"(indices 0 to {classes - 1}); give every pixel one of those, or train a model on labels:{max(high + 1, classes)}"
        )
    return F.one_hot(labels.long(), classes).permute(2, 0, 1).float()


def _to_8_bits(image: Image.Image) -> Image.Image:
    low, high = image.getextrema()
    floats = image.mode == "F"
    top = 1 if floats else 65535
    if not 0 <= low <= high <= top:  # NaN fails every comparison, so it is refused too
        kind = "32-bit floating-point" if floats else "32-bit integer"
        raise ValueError(
            f"its {kind} pixels range from {low:g} to {high:g}, outside [0, {top}], so they have no known mapping "
            f"to the model's [-1, 1]; rescale them to [0, {top}] or save the image with 8 or 16 bits per channel"
        )
    # + 0.5: convert to "L" truncates, so this rounds to the nearest level.
    return image.point(lambda value: value * (255 / top) + 0.5).convert("L")


def image_header(path: Path) -> tuple[int, int, bool]:
    """(height, width, has_alpha) from the file's header, without decoding the pixels."""
    with _opened(path) as image:
        alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
        return image.height, image.width, alpha


DECODE_ERRORS = (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError)
"""What PIL raises for a file that is not an image it can decode, is damaged, or is too large to decode safely."""


@contextlib.contextmanager
def _opened(path: Path) -> Iterator[Image.Image]:
    # Decoding errors surface inside the caller's block too (PIL decodes lazily), so they are caught here.
    try:
        with Image.open(path) as image:
            yield image
    except DECODE_ERRORS as error:
        raise DataError(f"cannot read image {path}: {error}. Replace or remove the file.") from None


# One image's conversions run in NumPy on the CPU: predict and the data loaders run them in threads beside the
# generator, where torch's intra-op threads oversubscribe the cores (a 256 x 512 conversion took 24 ms with two
# torch threads beside a busy core, 0.4 ms with one). NumPy does the same float32 arithmetic, so the values match.


def to_signed(image: Tensor) -> Tensor:
    """uint8 [0, 255] -> float [-1, 1]."""
    if image.device.type != "cpu":
        return image.float().div_(127.5).sub_(1.0)
    # In place: a huge image (predict's tiles) holds one float copy, not one for each step.
    signed = image.numpy().astype(np.float32)
    signed /= np.float32(127.5)
    signed -= np.float32(1.0)
    return torch.from_numpy(signed)


def to_uint8(image: Tensor) -> Tensor:
    """float [-1, 1] -> uint8 [0, 255], rounding to nearest (ties to even); 8-bit pixels stay as they are."""
    if image.dtype == torch.uint8:
        return image.cpu()
    # One float copy, changed in place: the input is never written to.
    pixels = image.detach().cpu().float().numpy().astype(np.float32)
    pixels += np.float32(1.0)
    pixels *= np.float32(127.5)
    np.rint(pixels, out=pixels)
    np.clip(pixels, 0, 255, out=pixels)
    return torch.from_numpy(pixels.astype(np.uint8))


def write_image(image: Tensor, path: Path) -> None:
    """Save a C x H x W image in [-1, 1] (or of 8-bit pixels) atomically, the format from the suffix (PNG when unknown).

    1 channel is saved as grayscale, 3 as RGB, 4 as RGBA; other counts as :func:`displayable` shows them.
    """
    format = Image.registered_extensions().get(path.suffix.lower(), "PNG")
    if format == "JPEG" and image.shape[-3] == 4:
        raise DataError(f"{path}: JPEG cannot store the alpha channel of a 4-channel image; write it as .png")
    path.parent.mkdir(parents=True, exist_ok=True)
    picture = to_pil(image)
    # The formats that take a quality are the lossy ones, and PIL's defaults for them (JPEG 75, WebP 80, AVIF 75) blur
    # thin lines such as edge maps; 95 keeps them. The lossless formats ignore it.
    write_atomically(path, lambda handle: picture.save(handle, format=format, quality=95), durable=False)


def to_pil(image: Tensor) -> Image.Image:
    """A C x H x W image in [-1, 1] (or of 8-bit pixels) as an 8-bit PIL image, with the modes and channel rule of
    :func:`write_image`."""
    pixels = to_uint8(image if image.shape[-3] in CHANNEL_MODES else displayable(image)).contiguous()
    # A channel at a time: PIL reads each contiguous plane where it lies, where interleaving the channels into
    # H x W x C first would copy a huge image (predict's tiles) once more.
    planes = [Image.fromarray(plane.numpy()) for plane in pixels]
    return planes[0] if len(planes) == 1 else Image.merge(CHANNEL_MODES[len(planes)], planes)


def resize(images: Tensor, size: Sequence[int]) -> Tensor:
    """Float images (... x C x H x W) resized to ``size`` (height, width): bilinear with antialiasing, as
    torchvision's resize does for float tensors (here without importing torchvision, which takes seconds).

    The values stay within the input's range: each output is a weighted mean of inputs, which rounding when
    downscaling can push one float step beyond it (-1.0000001 from an all -1 image), outside [-1, 1]."""
    batch = images.reshape(-1, *images.shape[-3:])
    resized = F.interpolate(batch, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)
    if resized.numel():
        resized = resized.clamp_(batch.min(), batch.max())
    return resized.reshape(*images.shape[:-2], *resized.shape[-2:])


def center_crop(images: Tensor, size: Sequence[int]) -> Tensor:
    """The centred ``size`` (height, width) crop, rounding the offsets as torchvision's center_crop does."""
    height, width = images.shape[-2:]
    top, left = int(round((height - size[0]) / 2.0)), int(round((width - size[1]) / 2.0))
    return images[..., top : top + size[0], left : left + size[1]]


def displayable(image: Tensor) -> Tensor:
    """A C x H x W image as 3 channels: fewer than 3 show the first as grayscale, more are cut to the first 3."""
    if image.shape[-3] < 3:
        return image[..., :1, :, :].expand(*image.shape[:-3], 3, *image.shape[-2:])
    return image[..., :3, :, :]


@attrs.frozen(kw_only=True)
class PairedJitter:
    """The paper's random jitter, identical on both images of a pair (``single`` jitters one image alone).

    ``resize_and_crop``: resize to ``load_size``, then (train) a random ``crop_size`` crop and a coin-flip
    mirror, or (otherwise) a plain resize to ``crop_size``. ``crop``: crop at the native size (centre when
    not training). ``none``: keep the whole image, its sides rounded to a multiple of ``crop_size`` so the
    generator's depth still fits.
    """

    load_size: int = 286
    crop_size: int = 256
    preprocess: Preprocess = "resize_and_crop"
    flip: bool = True

    def __attrs_post_init__(self) -> None:
        if not (1 <= self.crop_size <= MAX_SIDE and 1 <= self.load_size <= MAX_SIDE):
            raise DataError(f"load_size and crop_size must be from 1 to {MAX_SIDE:,} pixels, got {self.load_size} and {self.crop_size}")
        if self.preprocess == "resize_and_crop" and self.load_size < self.crop_size:
            raise DataError(f"load_size {self.load_size} is smaller than crop_size {self.crop_size}; make it >= crop_size")

    def __call__(self, a: Tensor, b: Tensor, *, train: bool, path: str) -> tuple[Tensor, Tensor]:
        if a.shape[-2:] != b.shape[-2:]:
            raise DataError(f"{path}: A is {tuple(a.shape[-2:])} but B is {tuple(b.shape[-2:])}; a pair must align")
        pair = self.single(torch.cat([a, b]), train=train, path=path)  # one tensor: the same steps for both halves
        return pair[: a.shape[0]], pair[a.shape[0] :]

    def single(self, image: Tensor, *, train: bool, path: str) -> Tensor:
        """The jitter of one image, with draws of its own: for unpaired data, where A and B are jittered apart."""
        image = self._geometry(image, train=train, path=path)
        if train and self.flip and torch.rand(()) < 0.5:
            image = image.flip(-1)
        return image

    def _geometry(self, pair: Tensor, *, train: bool, path: str) -> Tensor:
        crop = self.crop_size
        if self.preprocess == "none":
            height, width = (max(1, round(side / crop)) * crop for side in pair.shape[-2:])
            return resize(pair, [height, width]) if (height, width) != pair.shape[-2:] else pair
        if self.preprocess == "resize_and_crop":
            if not train:
                return resize(pair, [crop, crop])
            pair = resize(pair, [self.load_size, self.load_size])
        height, width = pair.shape[-2:]
        if height < crop or width < crop:
            raise DataError(
                f"{path}: image {height}x{width} is smaller than crop_size {crop}; use a smaller crop_size "
                f"or preprocess 'resize_and_crop'"
            )
        if not train:
            return center_crop(pair, [crop, crop])
        top = int(torch.randint(height - crop + 1, ()))
        left = int(torch.randint(width - crop + 1, ()))
        return pair[..., top : top + crop, left : left + crop]

"""Running a trained generator on images of any size and shape.

A fully convolutional generator only needs H and W to be multiples of its ``size_multiple`` (2**depth for
the U-Net). :func:`translate` reflect-pads an image up to the next multiples, runs the generator and crops
the output back, so every image keeps its own size and aspect ratio, images larger than the training crops
included. ``p2p predict``'s torch backend and the checks of ``p2p export`` go through it; :class:`AnySize` is
the same padding and crop as tensor operations, which the ONNX and exported-program files hold.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import attrs
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from torch import Tensor, nn

from p2p_core import checkpoint
from p2p_core.engine import build_generator
from p2p_core.errors import ConfigError
from p2p_core.images import read_image, write_image
from p2p_core.registry import Registry
from p2p_core.test_time import Mode, set_mode

PADDING_MODE = "reflect"
"""How :func:`translate` pads; exports record it for code that runs them without p2p."""


@attrs.frozen(kw_only=True)
class TrainedGenerator:
    """A generator rebuilt from a checkpoint, with what it was built from."""

    module: nn.Module
    components: dict[str, Any]
    """The checkpoint's ``components``: what built the generator, and the dataset and objective it trained on."""
    step: int
    path: Path
    """The checkpoint file (a run folder resolved to its newest)."""

    @property
    def spec(self) -> dict[str, Any]:
        """The ``components.generator`` entry: name, options, channels, training image_size."""
        return self.components["generator"]


def load_generator(
    ckpt: Path, *, mode: Mode, device: torch.device | str = "cpu", registry: Registry | None = None
) -> TrainedGenerator:
    """The generator of a checkpoint file or run folder, in ``mode``, on ``device``."""
    path = checkpoint.resolve(Path(ckpt))
    state = checkpoint.load(path, map_location=device)
    module = build_generator(state["components"]["generator"], registry).to(device)
    module.load_state_dict(state["models"]["generator"])
    set_mode(module, mode)
    return TrainedGenerator(module=module, components=state["components"], step=int(state["step"]), path=path)


def pad_to_multiple(batch: Tensor, multiple: int) -> tuple[Tensor, tuple[slice, slice]]:
    """``batch`` (N x C x H x W) padded by reflection so H and W are multiples of ``multiple``, and the
    (rows, columns) slices that cut the original back out. The padding is split evenly between the two
    sides, so the image stays centred in what the generator sees."""
    height, width = batch.shape[-2:]
    top, left = (-height % multiple) // 2, (-width % multiple) // 2
    bottom, right = -height % multiple - top, -width % multiple - left
    crop = (slice(top, top + height), slice(left, left + width))
    padded = batch
    # A reflection adds at most side - 1 pixels, so a small image is mirrored again until it is big enough.
    # A 1-pixel side cannot be reflected; replicating it is what a reflection would give.
    while left or right or top or bottom:
        rows, columns = padded.shape[-2:]
        step = (min(left, columns - 1), min(right, columns - 1), min(top, rows - 1), min(bottom, rows - 1))
        if not any(step):
            return F.pad(padded, (left, right, top, bottom), mode="replicate"), crop
        padded = F.pad(padded, step, mode=PADDING_MODE)
        left, right, top, bottom = left - step[0], right - step[1], top - step[2], bottom - step[3]
    return padded, crop


def reflect_indices(size: int, padded: int, before: int, device: torch.device) -> Tensor:
    """The source index of each of ``padded`` positions along a side of ``size`` pixels, ``before`` of them
    ahead of the image: :func:`pad_to_multiple`'s padding as a gather, so that a traced graph holds it for
    every size (a loop of pads bakes in how many reflections one size needed).

    Reflecting again and again is periodic with period 2 * (size - 1): fold each position into one period,
    then mirror its second half. A 1-pixel side has period 0; taking it as 1 maps everything to pixel 0,
    the replication :func:`pad_to_multiple` does.
    """
    period = max(2 * (size - 1), 1)
    position = torch.arange(padded, device=device) - before
    # A tensor divisor, not a Python number: ONNX export cannot convert remainder by a symbolic scalar.
    folded = torch.remainder(position, torch.zeros_like(position) + period)
    return (size - 1) - (folded - (size - 1)).abs()


class AnySize(nn.Module):
    """A generator that takes any N x C x H x W (H, W >= 1) and returns N x C' x H x W: :func:`translate`'s
    padding and cropping as tensor operations, so exports hold them and run without p2p."""

    def __init__(self, generator: nn.Module, size_multiple: int) -> None:
        super().__init__()
        self.generator, self.size_multiple = generator, size_multiple
        self.train(generator.training)  # the generator's test-time mode, which exporters read off the top module

    def forward(self, x: Tensor) -> Tensor:
        height, width, multiple = x.shape[-2], x.shape[-1], self.size_multiple
        padded_height, padded_width = (height + multiple - 1) // multiple * multiple, (width + multiple - 1) // multiple * multiple
        top, left = (padded_height - height) // 2, (padded_width - width) // 2
        rows = reflect_indices(height, padded_height, top, x.device)
        columns = reflect_indices(width, padded_width, left, x.device)
        output = self.generator(x.index_select(-2, rows).index_select(-1, columns))
        return output[..., top : top + height, left : left + width]


def translate(
    generator: Callable[[Tensor], Tensor],
    image: Tensor,
    *,
    size_multiple: int | None = None,
    shorter_side: int | None = None,
) -> Tensor:
    """The generator's output for ``image`` (C x H x W or N x C x H x W), at the image's own H x W.

    ``size_multiple`` defaults to the generator's attribute; pass it for loaded exports, which lack it (their
    JSON holds it). ``shorter_side`` first scales the image so its shorter side has that many pixels, e.g.
    the training size, so that content appears at the scale the model learnt; the output is scaled back.
    """
    multiple = size_multiple or getattr(generator, "size_multiple", None)
    if not isinstance(multiple, int) or multiple < 1:
        raise ConfigError(f"size_multiple must be a positive int, got {multiple!r}; pass the one in the export's JSON")
    batch = image if image.dim() == 4 else image[None]
    height, width = batch.shape[-2:]
    if shorter_side is not None:
        batch = TF.resize(batch, list(scaled_size(height, width, shorter_side)), antialias=True)
    padded, (rows, columns) = pad_to_multiple(batch, multiple)
    output = generator(padded)[..., rows, columns]
    if shorter_side is not None:
        output = TF.resize(output, [height, width], antialias=True)
    return output if image.dim() == 4 else output[0]


def scaled_size(height: int, width: int, shorter_side: int | None) -> tuple[int, int]:
    """(H, W) with the shorter side scaled to ``shorter_side`` and the aspect ratio kept; unchanged for None."""
    if shorter_side is None:
        return height, width
    if shorter_side < 1:
        raise ConfigError(f"the shorter side to scale to must be at least 1 pixel, got {shorter_side}")
    scale = shorter_side / min(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


SCALE_TOLERANCE = 2.0
"""How far (as a factor either way) an image's shorter side may be from the training size before
:func:`scale_note` warns."""


def scale_note(height: int, width: int, *, image_size: int, shorter_side: int | None, name: str = "the image") -> str | None:
    """A warning when an image reaches the generator at a scale far from the one it trained at, else None.

    A model trained on 64-pixel crops sees strokes and textures at that scale; run on a 256-pixel image at
    its own size, it draws speckles. The shorter side is compared, since training crops are square.
    """
    height, width = scaled_size(height, width, shorter_side)
    ratio = min(height, width) / image_size
    if 1 / SCALE_TOLERANCE <= ratio <= SCALE_TOLERANCE:
        return None
    at = f"scaled to {height} x {width}" if shorter_side is not None else f"at its own {height} x {width}"
    return (
        f"{name} is translated {at}, {ratio:.2g}x the {image_size}-pixel images the model trained on, so its content "
        f"is at another scale than in training and may come out as speckles or blur; pass --resize {image_size} "
        f"to scale the shorter side to the training size (the output is scaled back)"
    )


def translate_files(
    trained: TrainedGenerator, files: list[Path], output: Path, *, shorter_side: int | None = None, progress: bool = True
) -> float:
    """Translate each file into ``output/STEM.png``; returns the loop's images per second.

    Decoding the next images and encoding the finished ones run in threads beside the generator (PIL and
    zlib release the GIL), a few images ahead and behind, so file handling hides behind the network.
    """
    from tqdm.auto import tqdm

    device = next(trained.module.parameters()).device
    channels = trained.spec["in_channels"]
    ahead = 4
    with ThreadPoolExecutor(max_workers=2) as pool, torch.inference_mode():
        reads = deque(pool.submit(read_image, path, channels=channels) for path in files[:ahead])
        writes: deque = deque()
        start = time.perf_counter()
        for index, path in enumerate(tqdm(files, unit="image", dynamic_ncols=True, disable=not progress)):
            image = reads.popleft().result().to(device)
            if index + ahead < len(files):
                reads.append(pool.submit(read_image, files[index + ahead], channels=channels))
            result = translate(trained.module, image, shorter_side=shorter_side).cpu()
            writes.append(pool.submit(write_image, result, output / f"{path.stem}.png"))
            while len(writes) > ahead:
                writes.popleft().result()
        for write in writes:
            write.result()
        return len(files) / (time.perf_counter() - start)

"""Running a trained generator on images of any size and shape.

A fully convolutional generator only needs H and W to be multiples of its ``size_multiple`` (2**depth for
the U-Net). :func:`translate` reflect-pads an image up to the next multiples, runs the generator and crops
the output back, so every image keeps its own size and aspect ratio, images larger than the training crops
included. ``p2p predict``'s torch backend and the checks of ``p2p export`` go through it; :class:`AnySize` is
the same padding and crop as tensor operations, which the ONNX and exported-program files hold.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from p2p_core import checkpoint, hub
from p2p_core.errors import ConfigError, DataError, PluginError, UnknownComponentError
from p2p_core.images import resize
from p2p_core.interop import locate
from p2p_core.networks import build_network, check_memory
from p2p_core.protocols import GeneratorOutput
from p2p_core.registry import Registry, default_registry
from p2p_core.spec import IMAGE_ENCODING, MAX_MEMORY_GB, Mode, NetworkShape, TrainedSpec
from p2p_core.test_time import set_mode

PADDING_MODE = "reflect"
"""How :func:`translate` pads; exports record it for code that runs them without p2p."""


@attrs.frozen(kw_only=True)
class TrainedGenerator:
    """A generator rebuilt from a checkpoint, with what it was built from."""

    module: nn.Module
    trained: TrainedSpec
    """The checkpoint's spec: the run that trained it and the shapes of its data."""
    step: int
    path: Path
    """The checkpoint file (for a run folder, its newest checkpoint that loads)."""
    direction: str = "AtoB"
    """Which way it translates: AtoB, or BtoA for a method that trained both ways."""
    source: str | None = None
    """What to record as where it came from: ``hf:OWNER/NAME@COMMIT`` for a Hub model; None means ``path``."""
    averaged: bool = False
    """Whether these are the moving average of the trained weights (``--trainer.ema``) the checkpoint holds."""

    @property
    def shape(self) -> NetworkShape:
        """Its kind and channels, as the method built it."""
        return self.trained.networks[self.trained.generator_for(self.direction)]

    @property
    def origin(self) -> str:
        """Where the weights came from, pinned: the Hub commit, or the file."""
        return self.source or str(self.path)

    @property
    def label(self) -> str:
        """:attr:`origin` without this machine's folders, to show or publish: the Hub commit, RUN/step_N.pt for a
        run's checkpoint, else the file's name."""
        path = self.path
        return self.source or (f"{path.parent.parent.name}/{path.name}" if path.parent.name == checkpoint.FOLDER else path.name)

    @property
    def in_channels(self) -> int:
        return self.shape.in_channels

    @property
    def out_channels(self) -> int:
        return self.shape.out_channels

    @property
    def input_encoding(self) -> str:
        """How a file becomes its input (:func:`p2p_core.images.read_input`): the dataset's for AtoB; BtoA reads
        the other side's files, which are images."""
        return self.trained.input_encoding if self.direction == "AtoB" else IMAGE_ENCODING

    @property
    def image_size(self) -> int:
        """The side of the square crops it was trained on."""
        return self.trained.shapes.image_size

    @property
    def name(self) -> str:
        """The generator's registry name."""
        return self.trained.run.generator.name

    @property
    def spec(self) -> dict[str, Any]:
        """Deprecated: the old ``components.generator`` dict; use ``trained``, ``name`` and the channel properties."""
        warnings.warn("TrainedGenerator.spec is deprecated; use .trained, .name, .in_channels, .out_channels, .image_size",
                      DeprecationWarning, stacklevel=2)
        generator = self.trained.run.generator
        return {"name": generator.name, "options": dict(generator.options), "in_channels": self.in_channels,
                "out_channels": self.out_channels, "image_size": self.image_size}


def load_generator(
    ckpt: Path,
    *,
    mode: Mode,
    device: torch.device | str = "cpu",
    registry: Registry | None = None,
    direction: str = "AtoB",
    max_memory_gb: float = MAX_MEMORY_GB,
    ema: bool = True,
) -> TrainedGenerator:
    """The generator of a checkpoint file, a run folder (its newest checkpoint that loads), a safetensors file,
    ``pretrained:NAME`` or ``hf:OWNER/NAME[@REVISION]`` that translates ``direction``, in ``mode``, on ``device``;
    refused if its weights and one image at its training size need over ``max_memory_gb``. Where the checkpoint
    holds a moving average of the generator's weights (``--trainer.ema``), those are used unless ``ema`` is False,
    and stderr says so."""
    loaded = checkpoint.read(locate(ckpt, registry=registry), map_location=device)
    role = check_generator(loaded, registry=registry, direction=direction, ema=ema)
    shape, size = loaded.spec.networks[role], loaded.spec.shapes.image_size
    check_memory(lambda: _build(loaded.spec, role, registry), (1, shape.in_channels, size, size), limit_gb=max_memory_gb,
                 source=str(loaded.path))
    module = _build(loaded.spec, role, registry).to(device)
    weights, averaged = generator_weights(loaded, role, ema=ema)
    module.load_state_dict(weights)
    set_mode(module, mode)
    trained = TrainedGenerator(module=module, trained=loaded.spec, step=int(loaded.state["step"]), path=loaded.path,
                               direction=direction, source=hub.pinned(ckpt, loaded.path), averaged=averaged)
    if averaged:
        print(f"p2p: {trained.label}: using the moving average of the {role}'s weights (--trainer.ema "
              f"{loaded.spec.run.trainer.ema}) that it holds; --no_ema uses the trained ones", file=sys.stderr)
    return trained


def generator_weights(loaded: checkpoint.Checkpoint, role: str, *, ema: bool = True) -> tuple[dict[str, Any], bool]:
    """The weights inference uses for generator ``role``, and whether they are the moving average of the trained ones
    (``--trainer.ema``), which a checkpoint holding one uses unless ``ema`` is False."""
    averaged = loaded.state.get("averaged", {})
    if ema and role in averaged:
        return averaged[role], True
    return loaded.state["models"][role], False


def check_generator(
    loaded: checkpoint.Checkpoint, *, registry: Registry | None = None, direction: str = "AtoB", ema: bool = True
) -> str:
    """That the generator a checkpoint names for ``direction`` is loaded here (else what to install) and that its
    weights fit the network its spec describes, checked without allocating it: what must hold before the network is
    built. Returns that generator's role."""
    role = loaded.spec.generator_for(direction)
    try:
        (registry or default_registry()).get("generator", loaded.spec.run.generator.name)
    except UnknownComponentError as error:
        provider = loaded.spec.providers.get("generator")
        if provider is None:
            raise
        distribution, _, version = provider.rpartition(" ")
        raise PluginError(
            f"{loaded.path} was trained with generator {loaded.spec.run.generator.name!r} from {provider}, which is not "
            f"loaded here: install it (pip install '{distribution}=={version}'), or, if it is installed, let it load "
            f"(p2p -p {distribution} ..., P2P_PLUGINS). {error}"
        ) from None
    _check_shapes(loaded.spec, role, generator_weights(loaded, role, ema=ema)[0], source=loaded.path, registry=registry)
    return role


def _build(trained: TrainedSpec, role: str, registry: Registry | None) -> nn.Module:
    return build_network(trained.run, trained.networks[role], image_size=trained.shapes.image_size, registry=registry, role=role)


def _check_shapes(trained: TrainedSpec, role: str, weights: dict[str, Any], *, source: Path, registry: Registry | None) -> None:
    """Compare the weights with the network the spec describes, built on the meta device (no memory), before
    building it for real: a spec that does not match its weights (ngf=600 beside ngf-8 weights) is a clear error,
    not gigabytes allocated and a traceback."""
    try:
        with torch.device("meta"):
            skeleton = _build(trained, role, registry).state_dict()
    except Exception:  # noqa: BLE001 - a component that cannot be built on meta is checked by load_state_dict alone
        return
    for name, tensor in skeleton.items():
        stored = weights.get(name)
        if stored is None or tuple(stored.shape) != tuple(tensor.shape):
            found = "missing" if stored is None else f"{tuple(stored.shape)}"
            raise DataError(
                f"{source}: the generator its spec describes ({trained.run.generator.name} {dict(trained.run.generator.options)}) "
                f"needs {name} of shape {tuple(tensor.shape)}, but the checkpoint holds {found}; the file is damaged or was edited"
            )
    unexpected = sorted(set(weights) - set(skeleton))
    if unexpected:
        raise DataError(f"{source}: the checkpoint holds generator weights its spec has no place for, e.g. {unexpected[0]}")


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
        output = image_of(self.generator(x.index_select(-2, rows).index_select(-1, columns)))
        return output[..., top : top + height, left : left + width]


def image_of(output: Tensor | GeneratorOutput) -> Tensor:
    """What inference keeps of a generator's output: the image, without the extras that training reads."""
    return GeneratorOutput.of(output).image


def translate(
    generator: Callable[[Tensor], Tensor | GeneratorOutput],
    image: Tensor,
    *,
    size_multiple: int | None = None,
    shorter_side: int | None = None,
) -> Tensor:
    """The generator's image for ``image`` (C x H x W or N x C x H x W), at the image's own H x W.

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
        batch = resize(batch, list(scaled_size(height, width, shorter_side)))
    padded, (rows, columns) = pad_to_multiple(batch, multiple)
    output = image_of(generator(padded))[..., rows, columns]
    if shorter_side is not None:
        output = resize(output, [height, width])
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

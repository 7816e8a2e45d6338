"""Importing models saved by the field's PyTorch reference implementation (Isola, Zhu et al.'s, in PyTorch).

Its ``UnetGenerator``, ``NLayerDiscriminator`` and ``PixelDiscriminator`` compute what p2p's ``unet``,
``patch`` and ``pixel`` compute; only their state dicts are laid out differently. :func:`convert` reads the
architecture off the tensors (their names give the nesting, their shapes the widths and channels, the
presence of norm tensors and biases the norm) and renames them into the p2p module's keys, checking every
name and shape against a module the registry builds on the meta device: what does not map exactly is a DataError
naming the tensor, never a partial load. A file is small, the network it describes need not be: before anything
is built for real, tensors claiming more data than they hold, non-finite or non-real weights, and networks whose
weights and activations for one image exceed ``max_memory_gb`` are refused.

The reference's layout, from its ``models/networks.py``:

- ``UnetGenerator``: blocks nest, each a Sequential called ``model``. The outermost, ``model.model``, holds its
  down-conv at ``.0``, the next block at ``.1`` and its up-conv at ``.3``; each block inside holds its down-conv
  at ``.1``, its norm at ``.2`` and either the next block at ``.3``, its up-conv at ``.5`` and norm at ``.6``, or,
  innermost, its up-conv at ``.3`` and norm at ``.4``. Every block but the outermost returns
  ``cat([its input, its output])``: the skip comes first where p2p's U-Net puts it second, so each up-conv that
  reads a skip has the two halves of its input channels swapped here.
- ``NLayerDiscriminator``: ``model.N``, the same Sequential as p2p's PatchGAN.
- ``PixelDiscriminator``: the same Sequential as p2p's PixelGAN, called ``net``.
- Batch norm has affine parameters and running statistics; the reference's instance norm has neither, so its
  files hold no norm tensors, and its convs have biases (with batch norm only the first and last do).

The reference gives dropout to other decoder blocks than the paper (see the U-Net's ``dropout_placement``),
and a state dict cannot say whether dropout was on at all: converted U-Nets use the reference's placement
and pix2pix's default rate, 0.5.

Other layouts (the reference's ResnetGenerator, say, whose p2p counterpart is a plugin's) come from plugins, through
the ``p2p_import_layouts`` hook: a converter returns a :class:`Converted` for a state dict in its layout, which is
checked here as p2p's own are. They are tried after p2p's own, in the order the plugins loaded.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, Literal

import attrs
import torch
from torch import Tensor, nn

from p2p_core.checkpoint import check_weights
from p2p_core.errors import DataError
from p2p_core.layers import Norm
from p2p_core.networks import check_memory
from p2p_core.registry import Registry, default_registry
from p2p_core.spec import MAX_MEMORY_GB

Role = Literal["generator", "discriminator"]

DATA_PARALLEL_PREFIX = "module."
REFERENCE_DROPOUT = "reference"
"""The U-Net's ``dropout_placement`` that matches the reference."""
OWN_LAYOUTS = ("UnetGenerator", "NLayerDiscriminator", "PixelDiscriminator")
"""The reference's classes whose state dicts p2p converts itself."""
UNUSED_INSTANCE_STATISTICS = frozenset({"running_mean", "running_var"})
"""Before PyTorch 0.4 instance norm kept running statistics; the reference drops them from such files on loading,
since its instance norm does not use them."""
COUNTER = "num_batches_tracked"
"""Batch norm's count of batches, the one integer tensor of the reference's models."""
DISCRIMINATOR_PROBE = 256
"""The side of the image a discriminator's memory is estimated for (it has no training size of its own)."""


@attrs.frozen(kw_only=True)
class Converted:
    """A reference model as a p2p component: what to build and the state dict to load into it.

    What an import layout's converter (the ``p2p_import_layouts`` hook) returns, too.
    """

    role: Role
    name: str
    """The registered name: ``unet``, ``patch`` or ``pixel``, or a plugin's (best qualified, ``DIST:NAME``)."""
    options: dict[str, Any]
    """The factory's options (ngf or ndf, norm, depth or n_layers, ...), without the channels and image size."""
    in_channels: int
    out_channels: int | None
    """Generators only."""
    image_size: int | None
    """Generators only: the training crop side, which the U-Net's depth halves down to 1x1 (256 for the released
    models); a fully convolutional generator takes the size its layout was trained at."""
    state_dict: dict[str, Tensor]

    def build(self, registry: Registry | None = None) -> nn.Module:
        """The p2p module, built through the registry, with the converted weights loaded."""
        module = _create(self, registry)
        module.load_state_dict(self.state_dict, strict=True)
        return module


def load_reference(path: Path, *, registry: Registry | None = None, max_memory_gb: float = MAX_MEMORY_GB) -> Converted:
    """Convert a reference ``.pth`` file: a state dict, or a dict holding one state dict among plain values."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"reference model {path} does not exist")
    try:
        content = _load(path)
    except pickle.UnpicklingError as error:
        reason = str(error).splitlines()[0]
        raise DataError(
            f"refusing to load {path}: it holds objects other than tensors and plain data ({reason}); "
            "save its state_dict() instead of the module"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, IndexError, KeyError) as error:  # an empty or text file too
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise DataError(f"{path} is truncated or not a PyTorch file ({reason}); import the .pth the reference saved") from None
    return convert(_state_dict_in(content, path), source=str(path), registry=registry, max_memory_gb=max_memory_gb)


def _load(path: Path) -> object:
    """The file's content, memory-mapped where its format allows (PyTorch 1.6's zip files): a tensor is then read
    only when used, so the checks below run before a large file is in memory."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # the legacy format, which cannot be mapped; an unreadable file fails again below
        return torch.load(path, map_location="cpu", weights_only=True)


def convert(
    state_dict: Mapping[str, Tensor], *, source: str = "state dict", registry: Registry | None = None,
    max_memory_gb: float = MAX_MEMORY_GB,
) -> Converted:
    """The p2p component that computes what the reference model ``state_dict`` computes.

    Keys saved from DataParallel (``module.`` prefixed) and state dicts older than PyTorch 0.4 (no
    ``num_batches_tracked``; instance norms with running statistics, which are dropped as the reference
    drops them) are accepted. ``source`` names the state dict in error messages. Layouts p2p does not read
    itself are the installed plugins' (``registry``'s, default every installed plugin's). A network whose weights
    and activations for one image at its size need more than ``max_memory_gb`` is refused before it is built.
    """
    check_weights(state_dict, source=source)
    for key, tensor in state_dict.items():
        if not tensor.is_floating_point() and not key.endswith(f".{COUNTER}"):
            raise DataError(f"{source}: tensor {key!r} is {tensor.dtype}; the reference's weights are floating point")
    converted = _converted(dict(state_dict), source, registry)
    size = converted.image_size or DISCRIMINATOR_PROBE
    check_memory(lambda: _create(converted, registry), (1, converted.in_channels, size, size), limit_gb=max_memory_gb, source=source)
    return converted


def _converted(state: dict[str, Tensor], source: str, registry: Registry | None) -> Converted:
    if state and all(key.startswith(DATA_PARALLEL_PREFIX) for key in state):
        state = {key.removeprefix(DATA_PARALLEL_PREFIX): tensor for key, tensor in state.items()}
    if any(key.startswith("model.model.") for key in state):
        return _unet(state, source)
    if state and all(key.startswith("net.") for key in state):
        return _sequential(state, source, name="pixel", prefix="net")
    if state and all(re.fullmatch(r"model\.\d+\.\w+", key) for key in state):
        return _sequential(state, source, name="patch", prefix="model")
    registry = registry or default_registry()
    for converter in registry.import_layouts.values():
        try:
            converted = converter(state)
        except DataError as error:
            raise DataError(f"{source}: {error}") from None
        if converted is not None:
            return _checked(converted, {}, source, registry=registry)
    first = next(iter(state), "(no tensors)")
    known = [*OWN_LAYOUTS, *(f"{name} from {registry.origin('import_layouts', name)}" for name in registry.import_layouts)]
    raise DataError(
        f"{source} is in none of the layouts p2p can import: the state dicts of {', '.join(known)} (its first tensor "
        f"is {first!r}); a plugin can teach p2p another layout through the p2p_import_layouts hook"
    )


@attrs.frozen(kw_only=True)
class _Level:
    """One U-Net level's modules in the reference: its down-conv and up-conv, and their norms if any."""

    down: str
    down_norm: str | None
    up: str
    up_norm: str | None


def _unet(state: dict[str, Tensor], source: str) -> Converted:
    levels = [_Level(down="model.model.0", down_norm=None, up="model.model.3", up_norm=None)]
    block = "model.model.1.model"
    while any(key.startswith(f"{block}.3.model.") for key in state):
        levels.append(_Level(down=f"{block}.1", down_norm=f"{block}.2", up=f"{block}.5", up_norm=f"{block}.6"))
        block = f"{block}.3.model"
    levels.append(_Level(down=f"{block}.1", down_norm=None, up=f"{block}.3", up_norm=f"{block}.4"))

    depth = len(levels)
    origin: dict[str, str] = {}  # p2p module -> reference module
    for level, modules in enumerate(levels):
        decoder = depth - 1 - level
        origin[f"encoder.{level}.1"] = modules.down
        origin[f"decoder.{decoder}.1"] = modules.up
        if modules.down_norm:
            origin[f"encoder.{level}.2"] = modules.down_norm
        if modules.up_norm:
            origin[f"decoder.{decoder}.2"] = modules.up_norm

    first_conv = _conv_weight(state, f"{levels[0].down}.weight", source)
    last_conv = _conv_weight(state, f"{levels[0].up}.weight", source)
    norms = [m.down_norm for m in levels if m.down_norm] + [m.up_norm for m in levels if m.up_norm]
    norm, state = _norm(state, norms, f"{levels[-1].down}.bias", source)
    converted = Converted(
        role="generator",
        name="unet",
        options={"ngf": first_conv.shape[0], "norm": norm, "depth": depth, "dropout_placement": REFERENCE_DROPOUT},
        in_channels=first_conv.shape[1],
        out_channels=last_conv.shape[1],
        image_size=2**depth,
        state_dict=_renamed(state, origin, source),
    )
    # Every up-conv but the innermost reads [skip, upsampled] in the reference, [upsampled, skip] in p2p.
    swapped = {f"decoder.{decoder}.1.weight" for decoder in range(1, depth)}
    return _checked(converted, origin, source, swap_input_halves=swapped)


def _sequential(state: dict[str, Tensor], source: str, *, name: str, prefix: str) -> Converted:
    """The discriminators: one Sequential whose indices p2p's PatchGAN (``model``) shares."""
    origin: dict[str, str] = {}
    for key in state:
        match = re.fullmatch(rf"{prefix}\.(\d+)\.\w+", key)
        if not match:
            raise DataError(f"{source}: unexpected tensor {key!r}: a reference discriminator has only {prefix}.N.* tensors")
        origin[f"model.{match[1]}"] = f"{prefix}.{match[1]}"
    convs = sorted(int(key.split(".")[1]) for key, tensor in state.items() if key.endswith(".weight") and tensor.dim() == 4)
    if len(convs) < 3:
        raise DataError(f"{source}: {len(convs)} convolutions in {prefix}.N; a reference discriminator has at least 3")
    first_conv = state[f"{prefix}.{convs[0]}.weight"]
    norm, state = _norm(state, [f"{prefix}.{index + 1}" for index in convs[1:-1]], f"{prefix}.{convs[1]}.bias", source)
    options: dict[str, Any] = {"ndf": first_conv.shape[0], "norm": norm}
    if name == "patch":
        options["n_layers"] = len(convs) - 2
    converted = Converted(
        role="discriminator",
        name=name,
        options=options,
        in_channels=first_conv.shape[1],
        out_channels=None,
        image_size=None,
        state_dict=_renamed(state, origin, source),
    )
    return _checked(converted, origin, source)


def _norm(
    state: dict[str, Tensor], norms: list[str], inner_bias: str, source: str
) -> tuple[Norm, dict[str, Tensor]]:
    """The norm the ``norms`` modules' tensors tell, and ``state`` without those the reference ignores.

    Batch norm leaves tensors; the reference's instance norm none, but biases on the convs before it.
    """
    held = {key.rpartition(".")[2] for key in state if key.rpartition(".")[0] in norms}
    if inner_bias in state and held <= UNUSED_INSTANCE_STATISTICS:
        return "instance", {key: t for key, t in state.items() if key.rpartition(".")[0] not in norms}
    if held:
        return "batch", state
    raise DataError(
        f"{source} has neither norm tensors nor {inner_bias!r}: the reference's norm 'none', whose convolutions "
        "have no biases; p2p's norm 'none' has biases, so it cannot be imported exactly"
    )


def _renamed(state: Mapping[str, Tensor], origin: Mapping[str, str], source: str) -> dict[str, Tensor]:
    """``state`` under p2p's keys; a tensor outside the mapped modules is an error naming it."""
    target = {reference: p2p for p2p, reference in origin.items()}
    renamed = {}
    for key, tensor in state.items():
        module, _, leaf = key.rpartition(".")
        if module not in target:
            raise DataError(f"{source}: unexpected tensor {key!r}: no module of the reference layout holds it")
        renamed[f"{target[module]}.{leaf}"] = tensor
    return renamed


def _checked(
    converted: Converted,
    origin: Mapping[str, str],
    source: str,
    *,
    swap_input_halves: Collection[str] = (),
    registry: Registry | None = None,
) -> Converted:
    """``converted`` once its state dict matches the module the registry builds (on the meta device: no memory) key
    for key and shape for shape."""

    def reference_name(key: str) -> str:
        module, _, leaf = key.rpartition(".")
        return f"{origin.get(module, module)}.{leaf}"

    with torch.device("meta"):
        expected = _create(converted, registry).state_dict()
    state = dict(converted.state_dict)
    for key, tensor in expected.items():
        # PyTorch before 0.4 kept no count of batches; 0 is what it loads such files with.
        owner, _, leaf = key.rpartition(".")
        if leaf == COUNTER and key not in state and f"{owner}.running_mean" in state:
            state[key] = torch.zeros_like(tensor, device="cpu")
    summary = f"{converted.role} {converted.name!r} with {converted.options}"
    unexpected, missing = sorted(state.keys() - expected.keys()), sorted(expected.keys() - state.keys())
    if unexpected:
        key = unexpected[0]
        raise DataError(f"{source}: unexpected tensor {reference_name(key)!r}: the {summary} it maps to has no {key!r}")
    if missing:
        key = missing[0]
        raise DataError(f"{source}: missing tensor {reference_name(key)!r}, which the {summary} it maps to needs as {key!r}")
    for key, tensor in expected.items():
        if state[key].shape != tensor.shape:
            raise DataError(
                f"{source}: tensor {reference_name(key)!r} has shape {tuple(state[key].shape)}; the {summary} it "
                f"maps to needs {tuple(tensor.shape)}"
            )
    for key in swap_input_halves:
        state[key] = torch.cat(state[key].chunk(2, dim=0)[::-1])
    return attrs.evolve(converted, state_dict=state)


def _create(converted: Converted, registry: Registry | None = None) -> nn.Module:
    channels = {"in_channels": converted.in_channels}
    if converted.role == "generator":
        channels |= {"out_channels": converted.out_channels, "image_size": converted.image_size}
    return (registry or default_registry()).create(converted.role, converted.name, **channels, **converted.options)


def _conv_weight(state: Mapping[str, Tensor], key: str, source: str) -> Tensor:
    if key not in state:
        raise DataError(f"{source}: missing tensor {key!r}, which the reference layout it otherwise follows needs")
    if state[key].dim() != 4:
        raise DataError(f"{source}: tensor {key!r} has shape {tuple(state[key].shape)}; a convolution's weight is 4-d")
    return state[key]


def _is_state_dict(value: object) -> bool:
    return (isinstance(value, Mapping) and bool(value) and all(isinstance(t, Tensor) for t in value.values())
            and all(isinstance(key, str) for key in value))  # a state dict's keys name its tensors


def _state_dict_in(content: object, path: Path) -> Mapping[str, Tensor]:
    if _is_state_dict(content):
        return content
    nested = [key for key, value in content.items() if _is_state_dict(value)] if isinstance(content, Mapping) else []
    if len(nested) == 1:
        return content[nested[0]]
    if nested:
        listing = ", ".join(map(repr, nested))
        raise DataError(f"{path} holds {len(nested)} state dicts ({listing}); save the one to import on its own")
    raise DataError(f"{path} holds no state dict (a dict of tensors), neither at its top level nor one level down")

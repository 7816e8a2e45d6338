"""The networks a spec names, built through the registry, and the paper's initialisation.

Training (:mod:`p2p_core.training`) and inference (:mod:`p2p_core.inference`) both build their networks here, so
a checkpoint always rebuilds exactly what was trained, and loading a model for inference needs nothing of training.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from p2p_core.errors import ConfigError, DataError, PluginError
from p2p_core.images import MAX_SIDE
from p2p_core.objective import Objective
from p2p_core.protocols import DiscriminatorOutput, per_scale
from p2p_core.registry import Registry, default_registry
from p2p_core.spec import NetworkShape, RunSpec, Shapes


def build_network(
    run: RunSpec, shape: NetworkShape, *, image_size: int, registry: Registry | None = None, role: str | None = None
) -> nn.Module:
    """The component ``run`` chose for ``shape.kind`` (every generator role of a method is ``run.generator``, every
    discriminator ``run.disc``, with ``run.roles``' options for ``role`` over the kind's), for ``shape``'s channels
    and the training crops' side ``image_size``."""
    registry = registry or default_registry()
    own = dict(run.roles.get(role, {})) if role is not None else {}
    if shape.kind == "generator":
        return registry.create("generator", run.generator.name, in_channels=shape.in_channels,
                               out_channels=shape.out_channels, image_size=image_size, **{**run.generator.options, **own})
    return registry.create("discriminator", run.disc.name, in_channels=shape.in_channels, **{**run.disc.options, **own})

LARGEST_SUGGESTED_CROP = 2048
"""The largest crop a discriminator too deep for the training crops is tried at, for the fix its error suggests."""


def build_generator(run: RunSpec, shapes: Shapes, registry: Registry | None = None) -> nn.Module:
    """The generator ``run`` names, for ``shapes``' channels and training size."""
    shape = NetworkShape(kind="generator", in_channels=shapes.in_channels, out_channels=shapes.out_channels)
    return build_network(run, shape, image_size=shapes.image_size, registry=registry)


def build_discriminator(run: RunSpec, shapes: Shapes, registry: Registry | None = None) -> nn.Module:
    """The discriminator ``run`` names, seeing ``shapes.disc_in_channels`` channels."""
    shape = NetworkShape(kind="discriminator", in_channels=shapes.disc_in_channels)
    return build_network(run, shape, image_size=shapes.image_size, registry=registry)


def check_discriminator(
    discriminator: nn.Module, objective: Objective | None = None, *, size: int, batch: int, label: str | None = None
) -> None:
    """Refuse, before a run folder exists, a discriminator that cannot train on ``size`` x ``size`` crops in
    batches of ``batch`` with ``objective``'s terms: one without logits at that size, one too deep for it (a
    normalisation over a 1 x 1 map), one whose output breaks the contract or lacks what a term reads.

    D runs dry on a copy (its state and counters untouched) on the meta device, which takes neither memory nor
    compute, or, for a D that reads values (``.item()``) and so cannot run there, on the CPU.
    """
    label = label or (objective.discriminator if objective is not None else "the discriminator")
    declared = declared_min_input_size(discriminator, label)
    if declared is not None and size < declared:
        raise ConfigError(
            f"{label} takes inputs of at least {declared}x{declared} (its min_input_size), but the training crops are "
            f"{size}x{size}; use --data.crop_size {declared} (or larger), or fewer scales or layers in the discriminator"
        )
    if not _has_logits(discriminator, size):  # otherwise a convolution fails mid-step, far from the cause
        smallest = next((side for side in range(size + 1, MAX_SIDE + 1) if _has_logits(discriminator, side)), None)
        larger = f"--data.crop_size {smallest} (or larger)" if smallest else "larger images (--data.crop_size)"
        raise ConfigError(
            f"{label} has no output for {size}x{size} images (receptive field {discriminator.receptive_field}); "
            f"use {larger}, or a smaller receptive field (or fewer scales)"
        )
    # Batch 2 fails wherever any larger batch does, and batch 1 is the stricter case for batch norm.
    batch, channels = min(batch, 2), discriminator.in_channels
    try:
        output = _dry_run(discriminator, (batch, channels, size, size), "meta")
    except Exception:  # noqa: BLE001 - the CPU decides, with D's own error
        output = _dry_run_on_cpu(discriminator, label, batch=batch, size=size)
    checked = DiscriminatorOutput.of(output, source=label)
    if objective is not None:
        objective.check_output(checked)


def declared_min_input_size(discriminator: nn.Module, label: str = "the discriminator") -> int | None:
    """The smallest input side ``discriminator`` declares (``min_input_size``), or None where it declares none; a
    PluginError for a declaration that is not a positive int."""
    value = getattr(discriminator, "min_input_size", None)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise PluginError(
            f"{label} breaks the contract: min_input_size, where a discriminator declares it, is the smallest side "
            f"(a positive int) of the square inputs it takes\n  found: {value!r}\n  fix: declare an int, or leave it "
            "out for p2p to find the smallest size that runs"
        )
    return value


def smallest_input(discriminator: nn.Module, *, batch: int = 1, declared: bool = True) -> int | None:
    """The smallest square side ``discriminator`` takes: its ``min_input_size`` where it declares one (and ``declared``),
    else the smallest side at which it has logits at every scale and runs dry (on the meta device, in its mode) at
    ``batch``; None where no side up to :data:`LARGEST_SUGGESTED_CROP` runs there."""
    own = declared_min_input_size(discriminator) if declared else None
    if own is not None:
        return own

    def works(side: int) -> bool:
        return _has_logits(discriminator, side) and _runs(discriminator, (batch, discriminator.in_channels, side, side))

    # Doubling, then halving the gap: a size that works is followed by larger ones that work.
    works_at = next((side for side in (1, *_doubled(1)) if works(side)), None)
    if works_at is None:
        return None
    largest_failing = works_at // 2
    while works_at - largest_failing > 1:
        middle = (works_at + largest_failing) // 2
        largest_failing, works_at = (largest_failing, middle) if works(middle) else (middle, works_at)
    return works_at


def _has_logits(discriminator: nn.Module, side: int) -> bool:
    return min(per_scale(discriminator.output_size(side))) >= 1


def _dry_run_on_cpu(discriminator: nn.Module, label: str, *, batch: int, size: int) -> Any:
    """D's output where it fails on the meta device: on the CPU, which tells a D that reads values (and so cannot
    run on meta) from one too deep for the size, which fails there too and is a ConfigError with the fix."""
    channels = discriminator.in_channels
    try:
        return _dry_run(discriminator, (batch, channels, size, size), "cpu")
    except Exception as error:
        larger = next((side for side in _doubled(size) if _runs(discriminator, (batch, channels, side, side))), None)
        if larger is None:
            raise  # not about the size: a bug in D, reported with its traceback
        reason = next(iter(str(error).strip().splitlines()), "")
        raise ConfigError(
            f"{label} is too deep for {size}x{size} training crops ({type(error).__name__}: {reason}); use "
            f"--data.crop_size {larger} (the crop doubled until it works), or fewer layers or scales in the discriminator"
        ) from None


def _doubled(size: int) -> list[int]:
    sides = []
    while size * 2 <= LARGEST_SUGGESTED_CROP:
        size *= 2
        sides.append(size)
    return sides


def _runs(module: nn.Module, shape: tuple[int, ...]) -> bool:
    """Whether ``module`` runs on the meta device at ``shape`` (free to try at any size)."""
    try:
        _dry_run(module, shape, "meta")
    except Exception:  # noqa: BLE001 - any failure means this size does not work
        return False
    return True


def _dry_run(module: nn.Module, shape: tuple[int, ...], device: str) -> Any:
    """A copy of ``module`` on ``device``, in its mode, without gradients: its output for zeros of ``shape``."""
    with torch.no_grad():
        return copy.deepcopy(module).to(device)(torch.zeros(shape, device=device))


def check_memory(build: Callable[[], nn.Module], input_shape: tuple[int, ...], *, limit_gb: float, source: str) -> None:
    """Refuse a network whose weights plus the activations of one ``input_shape`` input exceed ``limit_gb``, before
    any of it is allocated: both are measured on the meta device, where a forward pass computes shapes only.

    A file of a few hundred kilobytes can describe a network that needs terabytes (a U-Net 20 levels deep pads
    every image to 2**20 pixels a side); this says so instead of trying to allocate them. A network that cannot
    run on the meta device is measured by its weights alone.
    """
    if not 0 < limit_gb < math.inf:
        raise ConfigError(f"--max_memory_gb must be a positive number of GiB, got {limit_gb}")
    with torch.device("meta"):
        module = build()
    weights = sum(t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers()))
    outputs: list[int] = []

    def record(_module: nn.Module, _inputs: object, output: object) -> None:
        if isinstance(output, Tensor):
            outputs.append(output.numel() * output.element_size())

    handles = [m.register_forward_hook(record) for m in module.modules() if not any(m.children())]
    try:
        with torch.no_grad():
            module.eval()(torch.empty(input_shape, device="meta"))
    except Exception:  # noqa: BLE001 - a plugin's module may not run on meta; its weights are still measured
        outputs.clear()
    finally:
        for handle in handles:
            handle.remove()
    needed = weights + sum(outputs)
    if needed > limit_gb * 2**30:
        raise DataError(
            f"{source} describes a network that needs about {needed / 2**30:,.1f} GiB ({weights / 2**30:,.2f} GiB of "
            f"weights, the rest for one {'x'.join(map(str, input_shape[1:]))} input), over the limit of "
            f"{limit_gb:g} GiB; if you trust it and have the memory, pass --max_memory_gb {needed / 2**30 * 1.1:.0f}"
        )


def init_weights(module: nn.Module, gain: float) -> None:
    """The paper's N(0, 0.02) initialisation; norm scales N(1, 0.02); biases 0.

    A module with ``initialises_itself = True`` keeps its own initialisation, its submodules too. A parametrised
    weight (spectral norm) is initialised where it lives, so that the next forward pass does not recompute it away,
    and its parametrisation then re-estimates its state from the new tensor (spectral norm's singular vectors).
    """
    own = {id(m) for owner in module.modules() if getattr(owner, "initialises_itself", False) for m in owner.modules()}
    for layer in module.modules():
        if id(layer) in own:
            continue
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            weight = _stored_weight(layer)
            if weight is not None:
                nn.init.normal_(weight, 0.0, gain)
                _settle(layer)
        elif isinstance(layer, nn.modules.batchnorm._BatchNorm) and layer.weight is not None:
            nn.init.normal_(layer.weight, 1.0, gain)
        else:
            continue
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)


POWER_ITERATIONS = 15
"""What torch's spectral_norm runs when it is registered, to estimate the singular vectors of the weight it finds."""


def _settle(layer: nn.Module) -> None:
    """Bring a parametrised weight's state up to date with the tensor just written: spectral norm's u and v still
    estimate the singular vectors of the weight it was registered on, so the first training step would normalise
    by a stale norm (the largest singular value 1.1 to 1.3, not 1). Running each parametrisation in training mode
    runs its power iteration; stateless ones compute and forget."""
    if not parametrize.is_parametrized(layer, "weight"):
        return
    value = layer.parametrizations.weight.original
    with torch.no_grad():
        for parametrization in layer.parametrizations.weight:
            training = parametrization.training
            parametrization.train()
            for _ in range(POWER_ITERATIONS):
                output = parametrization(value)
            parametrization.train(training)
            value = output


def _stored_weight(layer: nn.Module) -> Tensor | None:
    """The tensor a layer's weight is: the parametrisation's original where one computes it (spectral_norm), or
    None where a parametrisation splits it in several (weight_norm's magnitude and direction), which keep theirs."""
    if parametrize.is_parametrized(layer, "weight"):
        return getattr(layer.parametrizations.weight, "original", None)
    return layer.weight

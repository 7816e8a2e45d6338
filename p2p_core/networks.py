"""The networks a spec names, built through the registry, and the paper's initialisation.

Training (:mod:`p2p_core.model`) and inference (:mod:`p2p_core.inference`) both build their networks here, so
a checkpoint always rebuilds exactly what was trained, and loading a model for inference needs nothing of training.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from p2p_core.errors import ConfigError, DataError
from p2p_core.registry import Registry, default_registry
from p2p_core.spec import RunSpec, Shapes


def build_generator(run: RunSpec, shapes: Shapes, registry: Registry | None = None) -> nn.Module:
    """The generator ``run`` names, for ``shapes``' channels and training size."""
    registry = registry or default_registry()
    return registry.create(
        "generator",
        run.generator.name,
        in_channels=shapes.in_channels,
        out_channels=shapes.out_channels,
        image_size=shapes.image_size,
        **run.generator.options,
    )


def build_discriminator(run: RunSpec, shapes: Shapes, registry: Registry | None = None) -> nn.Module:
    """The discriminator ``run`` names, seeing ``shapes.disc_in_channels`` channels."""
    registry = registry or default_registry()
    return registry.create("discriminator", run.disc.name, in_channels=shapes.disc_in_channels, **run.disc.options)


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
    weight (spectral norm) is initialised where it lives, so that the next forward pass does not recompute it away.
    """
    own = {id(m) for owner in module.modules() if getattr(owner, "initialises_itself", False) for m in owner.modules()}
    for layer in module.modules():
        if id(layer) in own:
            continue
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            weight = _stored_weight(layer)
            if weight is not None:
                nn.init.normal_(weight, 0.0, gain)
        elif isinstance(layer, nn.modules.batchnorm._BatchNorm) and layer.weight is not None:
            nn.init.normal_(layer.weight, 1.0, gain)
        else:
            continue
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)


def _stored_weight(layer: nn.Module) -> Tensor | None:
    """The tensor a layer's weight is: the parametrisation's original where one computes it (spectral_norm), or
    None where a parametrisation splits it in several (weight_norm's magnitude and direction), which keep theirs."""
    if parametrize.is_parametrized(layer, "weight"):
        return getattr(layer.parametrizations.weight, "original", None)
    return layer.weight

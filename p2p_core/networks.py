"""The networks a spec names, built through the registry, and the paper's initialisation.

Training (:mod:`p2p_core.training`) and inference (:mod:`p2p_core.inference`) both build their networks here, so
a checkpoint always rebuilds exactly what was trained, and loading a model for inference needs nothing of training.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn.utils import parametrize

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


def build_generator(run: RunSpec, shapes: Shapes, registry: Registry | None = None) -> nn.Module:
    """The generator ``run`` names, for ``shapes``' channels and training size."""
    shape = NetworkShape(kind="generator", in_channels=shapes.in_channels, out_channels=shapes.out_channels)
    return build_network(run, shape, image_size=shapes.image_size, registry=registry)


def build_discriminator(run: RunSpec, shapes: Shapes, registry: Registry | None = None) -> nn.Module:
    """The discriminator ``run`` names, seeing ``shapes.disc_in_channels`` channels."""
    shape = NetworkShape(kind="discriminator", in_channels=shapes.disc_in_channels)
    return build_network(run, shape, image_size=shapes.image_size, registry=registry)


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

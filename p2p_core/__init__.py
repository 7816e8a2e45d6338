"""p2p: pix2pix as protocols, a plugin registry and an engine. Components live in plugins.

The registry functions load lazily, so ``import p2p_core`` (and ``p2p --help``) does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from p2p_core.errors import ConfigError, DataError, P2PError, PluginError, UnknownComponentError
from p2p_core.hookspecs import hookimpl
from p2p_core.protocols import Discriminator, DiscriminatorOutput, Generator, GeneratorOutput, InferenceBackend, Loss, Method, PairedDataset, Sample

if TYPE_CHECKING:
    from p2p_core.registry import available, create, default_registry, describe

_REGISTRY_FUNCTIONS = ("available", "create", "default_registry", "describe")


def __getattr__(name: str) -> Any:
    if name in _REGISTRY_FUNCTIONS:
        from p2p_core import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'p2p_core' has no attribute {name!r}")


__all__ = [
    "ConfigError",
    "DataError",
    "Discriminator",
    "DiscriminatorOutput",
    "Generator",
    "GeneratorOutput",
    "InferenceBackend",
    "Loss",
    "Method",
    "P2PError",
    "PairedDataset",
    "PluginError",
    "Sample",
    "UnknownComponentError",
    "available",
    "create",
    "default_registry",
    "describe",
    "hookimpl",
]

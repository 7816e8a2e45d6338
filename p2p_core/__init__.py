"""p2p: pix2pix as protocols, a plugin registry and an engine. Components live in plugins."""

from p2p_core.errors import ConfigError, DataError, P2PError, PluginError, UnknownComponentError
from p2p_core.hookspecs import hookimpl
from p2p_core.protocols import Discriminator, Generator, Loss, PairedDataset, Sample
from p2p_core.registry import available, create, describe, default_registry

__all__ = [
    "ConfigError",
    "DataError",
    "Discriminator",
    "Generator",
    "Loss",
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

"""Deprecated: training moved to :mod:`p2p_core.model` (the pix2pix model and its step) and :mod:`p2p_core.run`
(a run: data, folder, logging, checkpoints); the trainer's options to :mod:`p2p_core.spec`.

Old imports of the names that moved keep working here, with a DeprecationWarning naming the new place.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

_MOVED = {
    "Choice": ("p2p_core.spec", "ComponentSpec"),
    "TrainConfig": ("p2p_core.spec", "TrainConfig"),
    "resolve_device": ("p2p_core.devices", "resolve_device"),
    "init_weights": ("p2p_core.networks", "init_weights"),
    "EpochSampler": ("p2p_core.run", "EpochSampler"),
    "SeededSamples": ("p2p_core.run", "SeededSamples"),
    "StopRequest": ("p2p_core.run", "StopRequest"),
    "rng_state": ("p2p_core.run", "rng_state"),
    "set_rng_state": ("p2p_core.run", "set_rng_state"),
}


def __getattr__(name: str) -> Any:
    if name not in _MOVED:
        raise AttributeError(f"module 'p2p_core.engine' has no attribute {name!r} (training is now p2p_core.model and p2p_core.run)")
    module, new_name = _MOVED[name]
    warnings.warn(f"p2p_core.engine.{name} moved to {module}.{new_name}", DeprecationWarning, stacklevel=2)
    return getattr(importlib.import_module(module), new_name)

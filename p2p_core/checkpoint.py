"""Checkpoints: plain dicts of tensors and primitives, written atomically, read with ``weights_only=True``."""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from p2p_core.errors import DataError

FOLDER = "checkpoints"
BEST = "best.pt"
_NAME = re.compile(r"step_(\d+)\.pt$")


def save(state: dict[str, Any], run_dir: Path, step: int, *, keep: int = 2) -> Path:
    """Write ``checkpoints/step_N.pt`` via a temporary file, fsync and rename; keep the newest ``keep``."""
    path = _write(state, run_dir / FOLDER / f"step_{step:08d}.pt")
    for old in checkpoints(run_dir)[:-keep]:
        old.unlink()
    return path


def save_best(state: dict[str, Any], run_dir: Path) -> Path:
    """Write ``checkpoints/best.pt`` the same way; it is never pruned, nor taken as a run's newest."""
    return _write(state, run_dir / FOLDER / BEST)


def _write(state: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "wb") as handle:
        torch.save(state, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    return path


def checkpoints(run_dir: Path) -> list[Path]:
    """The run's checkpoints, oldest first."""
    folder = run_dir / FOLDER
    found = [p for p in folder.glob("step_*.pt") if _NAME.search(p.name)] if folder.is_dir() else []
    return sorted(found, key=lambda p: int(_NAME.search(p.name).group(1)))


def resolve(path: Path) -> Path:
    """A checkpoint file, or a run folder meaning its newest checkpoint."""
    if path.is_dir():
        found = checkpoints(path)
        if not found:
            raise DataError(f"{path} holds no checkpoints ({FOLDER}/step_*.pt); is it a run folder of `p2p fit`?")
        return found[-1]
    if not path.is_file():
        raise DataError(f"checkpoint {path} does not exist")
    return path


def load(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load without unpickling arbitrary objects; a corrupt or unsafe file raises a DataError naming it."""
    path = resolve(Path(path))
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        raise DataError(f"refusing to load {path}: it is not a plain p2p checkpoint ({error})") from None
    except (RuntimeError, EOFError, OSError) as error:
        raise DataError(f"checkpoint {path} is truncated or corrupt: {error}") from None
    if not isinstance(state, dict) or "generator" not in state.get("models", {}):
        raise DataError(f"{path} is not a p2p checkpoint (no models.generator entry)")
    return state

"""Shareable weights: a generator in a safetensors file whose metadata holds the spec that rebuilds it.

``p2p export --format safetensors`` and ``p2p push`` write such a file; every command that takes ``--ckpt`` reads
it (:func:`p2p_core.checkpoint.read` hands it here). safetensors holds tensors and a table of text, nothing
executable, so a file from a stranger is never unpickled. The table's ``p2p`` entry is JSON with what a
checkpoint holds besides its tensors (format, step, spec, shapes, plugins, providers), the test-time mode it was
written for and where it came from; it is parsed and checked before a single tensor is read, and
:func:`p2p_core.inference.load_generator` then compares the spec with the tensors' shapes on the meta device
before building anything. Tensor names are the generator's ``state_dict`` keys, so plain torch code loads them
with ``safetensors.torch.load_file`` into the same network.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from p2p_core.errors import DataError
from p2p_core.spec import MODES, Mode, TrainedSpec, read_checkpoint

MODEL_FILE = "model.safetensors"
"""The name a model folder (and a Hub repository) gives its weights, as the Hub's libraries do."""
METADATA_KEY = "p2p"


def save(
    path: Path, *, weights: Mapping[str, torch.Tensor], trained: TrainedSpec, step: int, mode: Mode, source: str,
    direction: str = "AtoB",
) -> Path:
    """Write the generator ``weights`` that translates ``direction`` with ``trained`` in the metadata, narrowed to that
    one generator; ``source`` says where they came from (a checkpoint, or ``hf:OWNER/NAME@COMMIT``)."""
    path = Path(path)
    role = trained.generator_for(direction)
    alone = attrs.evolve(trained, networks={role: trained.networks[role]}, directions={direction: role})
    description = {"format": 2, "step": step, **alone.to_dict(), "mode": mode, "source": source}
    # Copies, so that tensors sharing storage (which safetensors refuses) are stored once each.
    tensors = {name: tensor.detach().to("cpu", copy=True).contiguous() for name, tensor in weights.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, path, metadata={"format": "pt", METADATA_KEY: json.dumps(description)})
    return path


def is_safetensors(path: Path) -> bool:
    """Whether ``path`` starts as a safetensors file does, whatever its name: an 8-byte header length, then the
    header's JSON (a checkpoint, a zip archive, has a compression method there)."""
    with open(path, "rb") as handle:
        return handle.read(9)[8:] == b"{"


def description(path: Path) -> dict[str, Any]:
    """The ``p2p`` entry of the file's metadata, checked as a checkpoint's spec is; no tensor is read."""
    try:
        with safe_open(path, framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError) as error:
        raise DataError(f"{path} is not a readable safetensors file ({error})") from None
    text = metadata.get(METADATA_KEY)
    if text is None:
        raise DataError(
            f"{path} holds safetensors weights but no p2p spec (its metadata has no {METADATA_KEY!r} entry), so "
            f"nothing says which generator they belong to; p2p reads files written by `p2p export --format "
            f"safetensors` or `p2p push`"
        )
    try:
        content = json.loads(text)
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: the {METADATA_KEY!r} metadata is not JSON ({error})") from None
    if not isinstance(content, dict):
        raise DataError(f"{path}: the {METADATA_KEY!r} metadata must be a JSON object, got {type(content).__name__}")
    read_checkpoint(content, source=str(path))
    if content.get("mode", "eval") not in MODES:
        raise DataError(f"{path}: mode must be one of {', '.join(MODES)}, got {content.get('mode')!r:.60}")
    return content


def load(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A checkpoint-shaped dict (``models.ROLE`` holds the tensors of its one generator), its spec checked before the
    tensors are read."""
    state = description(path)
    (role,) = set(read_checkpoint(state, source=str(path)).directions.values())
    try:
        state["models"] = {role: load_file(path, device=str(map_location))}
    except (SafetensorError, OSError) as error:
        raise DataError(f"{path} is truncated or damaged ({error})") from None
    return state

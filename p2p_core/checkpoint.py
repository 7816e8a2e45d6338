"""Checkpoints: plain dicts of tensors and primitives, read with ``weights_only=True``.

Each ``step_N.pt`` is written to a temporary file, fsynced and renamed into place, after a ``step_N.sha256``
beside it; so a kill at any moment leaves either the old set or the new one, and a file damaged later is
caught by its checksum. Loading a run folder falls back from a damaged newest checkpoint to the one before.

Wherever a checkpoint is read, a shared ``.safetensors`` file (:mod:`p2p_core.weights`) is read too, or a model
folder holding ``model.safetensors`` as ``p2p push`` writes one: the generator alone, never unpickled.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import shutil
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import attrs
import torch

from p2p_core import weights
from p2p_core.errors import DataError, P2PError
from p2p_core.files import write_atomically
from p2p_core.spec import TrainedSpec, read_checkpoint

FOLDER = "checkpoints"
BEST = "best.pt"
_NAME = re.compile(r"^step_(\d+)\.pt$")


class CheckpointWriteError(P2PError):
    """A checkpoint could not be written (disk full, permissions); the previous one is untouched."""


def save(state: dict[str, Any], run_dir: Path, step: int, *, keep: int = 2) -> Path:
    """Write ``checkpoints/step_N.pt`` atomically with its checksum; keep the newest ``keep``."""
    path = _write(state, path_for(run_dir, step))
    for old in checkpoints(run_dir)[:-keep]:
        old.unlink()
        _checksum_path(old).unlink(missing_ok=True)
    return path


def save_best(state: dict[str, Any], run_dir: Path) -> Path:
    """Write ``checkpoints/best.pt`` the same way; it is never pruned, nor taken as a run's newest."""
    return _write(state, Path(run_dir) / FOLDER / BEST)


def _write(state: dict[str, Any], path: Path) -> Path:
    digest = hashlib.sha256()
    checksum = _checksum_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # A moment with no checksum (the file then loads unverified) beats one with another file's checksum.
        checksum.unlink(missing_ok=True)
        write_atomically(path, lambda handle: torch.save(state, _Hashing(handle, digest)))
        write_atomically(checksum, digest.hexdigest().encode())
    except OSError as error:
        previous = checkpoints(path.parent.parent)
        kept = f"; the previous checkpoint {previous[-1]} is intact" if previous else ""
        raise CheckpointWriteError(f"could not write checkpoint {path}: {error}{kept}") from None
    return path


class _Hashing:
    """A file that hashes what is written through it, so a checkpoint is never held twice in memory."""

    def __init__(self, handle: BinaryIO, digest: Any) -> None:
        self.handle, self.digest = handle, digest

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        return self.handle.write(data)

    def flush(self) -> None:
        self.handle.flush()


def path_for(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / FOLDER / f"step_{step:08d}.pt"


def check_writable(run_dir: Path, needed_bytes: int) -> None:
    """Fail before training, not hours into it, when checkpoints could not be written."""
    existing = Path(run_dir).absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise CheckpointWriteError(f"cannot make run folder {run_dir}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise CheckpointWriteError(f"cannot make run folder {run_dir}: {existing} is not writable; choose another --out_dir")
    free = shutil.disk_usage(existing).free
    if free < needed_bytes:
        raise CheckpointWriteError(
            f"{existing} has {free / 2**20:.0f} MiB free, but two checkpoints of this model need about "
            f"{needed_bytes / 2**20:.0f} MiB; free some space or choose another --out_dir"
        )


def _checksum_path(path: Path) -> Path:
    return path.with_suffix(".sha256")


def checkpoints(run_dir: Path) -> list[Path]:
    """The run's checkpoints, oldest first."""
    folder = Path(run_dir) / FOLDER
    found = [p for p in folder.iterdir() if _NAME.match(p.name)] if folder.is_dir() else []
    return sorted(found, key=lambda p: int(_NAME.match(p.name).group(1)))


def resolve(path: Path) -> Path:
    """A checkpoint file, or a run folder meaning its newest checkpoint, or a model folder its model.safetensors."""
    path = Path(path)
    if path.is_dir():
        found = checkpoints(path)
        if not found and (path / weights.MODEL_FILE).is_file():
            return path / weights.MODEL_FILE
        if not found:
            raise DataError(
                f"{path} holds no checkpoints ({FOLDER}/step_*.pt) and no {weights.MODEL_FILE}; is it a run folder of "
                f"`p2p fit` or a model folder of `p2p push`?"
            )
        return found[-1]
    if not path.is_file():
        raise DataError(f"checkpoint {path} does not exist")
    return path


def guarded(path: Path) -> dict[str, Path]:
    """What an output must stay apart from, for the checkpoint file or run folder ``path``: the checkpoint and,
    in a run folder, the run's checkpoints and config (results may go elsewhere in the run folder)."""
    found = resolve(path)
    files = {"the checkpoint": found}
    if found.parent.name == FOLDER:
        files |= {"the run's checkpoints": found.parent, "the run's config": found.parent.parent / "config.yaml"}
    return files


@attrs.frozen(kw_only=True)
class Checkpoint:
    """A loaded checkpoint: its content, the file it came from, and its typed spec."""

    state: dict[str, Any]
    path: Path
    """The file read: for a run folder, its newest checkpoint that loads."""
    spec: TrainedSpec


def read(path: Path, map_location: str | torch.device = "cpu") -> Checkpoint:
    """A checkpoint file, or a run folder's newest good checkpoint (warning about any damaged newer ones), with
    its spec checked.

    Every command that takes ``--ckpt`` loads through here, so all of them fall back past a damaged file as
    ``p2p fit --resume`` does.
    """
    state, file = _newest_good(Path(path), map_location, _checked)
    return Checkpoint(state=state, path=file, spec=read_checkpoint(state, source=str(file)))


def load(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The content of a checkpoint file, or of a run folder's newest good one (see :func:`read`)."""
    return _newest_good(Path(path), map_location, lambda state, file: None)[0]


def _checked(state: dict[str, Any], path: Path) -> None:
    trained = read_checkpoint(state, source=str(path))
    for direction, role in trained.directions.items():
        if role not in state["models"]:
            raise DataError(f"{path} is not a complete p2p checkpoint: it holds no weights for its {direction} generator ({role!r})")
    step = state.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise DataError(f"{path}: step must be a whole number >= 0, got {step!r:.60}")


def _newest_good(path: Path, map_location: str | torch.device, check: Callable[[dict[str, Any], Path], None]) -> tuple[dict[str, Any], Path]:
    found = checkpoints(path)
    if not found:  # a file, a model folder's model.safetensors, or a clear error
        file = resolve(path)
        state = _load_file(file, map_location)
        check(state, file)
        return state, file
    problems = []
    for candidate in reversed(found):
        try:
            state = _load_file(candidate, map_location)
            check(state, candidate)
        except DataError as error:
            problems.append(str(error))
            continue
        for problem in problems:
            warnings.warn(f"{problem}; using {candidate.name} instead", stacklevel=3)
        return state, candidate
    raise DataError("no usable checkpoint: " + "; ".join(problems))


def check_weights(tensors: Mapping[str, Any], *, source: str) -> None:
    """Refuse weights no trained network has, naming the first such tensor: a tensor that claims more elements than
    its storage holds (a crafted file's zero strides: a few bytes that the first copy would expand to terabytes),
    a complex one, or a floating one holding NaN or infinity (every image it translates comes out blank)."""
    for name, tensor in tensors.items():
        if not isinstance(tensor, torch.Tensor):
            raise DataError(f"{source}: {name!r} is a {type(tensor).__name__}, not a tensor")
        if tensor.numel() * tensor.element_size() > tensor.untyped_storage().nbytes():
            raise DataError(
                f"{source}: tensor {name!r} claims shape {tuple(tensor.shape)} ({tensor.numel():,} elements) over "
                f"{tensor.untyped_storage().nbytes():,} bytes of data; the file was crafted or damaged"
            )
        if tensor.is_complex():
            raise DataError(f"{source}: tensor {name!r} is {tensor.dtype}; network weights are real numbers")
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            bad = "NaN" if tensor.isnan().any() else "infinity"
            raise DataError(f"{source}: tensor {name!r} holds {bad}; the model it comes from diverged or the file is damaged")


def _load_file(path: Path, map_location: str | torch.device) -> dict[str, Any]:
    if weights.is_safetensors(path):
        return weights.load(path, map_location)
    expected = _checksum_path(path)
    if expected.is_file():
        with open(path, "rb") as handle:
            actual = hashlib.file_digest(handle, "sha256").hexdigest()
        if actual != expected.read_text().strip():
            raise DataError(f"checkpoint {path} is corrupt (its checksum does not match {expected.name})")
    else:
        warnings.warn(f"{path} has no {expected.name} beside it, so damage to it cannot be detected", stacklevel=3)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        reason = str(error).splitlines()[0]
        raise DataError(f"refusing to load {path}: it holds objects other than tensors and plain data ({reason})") from None
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise DataError(f"checkpoint {path} is truncated or corrupt: {str(error).splitlines()[0]}") from None
    if not isinstance(state, dict) or not isinstance(state.get("models"), dict) or not state["models"]:
        raise DataError(f"{path} is not a p2p checkpoint (no models entry)")
    return state

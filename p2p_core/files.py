"""File primitives every command shares: one atomic writer, one way to pair files by name.

Checkpoints, images, exports and configs are all written through :func:`write_atomically`, so a crash or a
full disk leaves the old file or the new one, never a mix and never a stray temporary. Datasets, ``p2p data
combine`` and ``p2p evaluate`` all pair files through :func:`pair_by_name`, so one rule decides what a
duplicate or a missing partner is.
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

from p2p_core.errors import DataError


def write_atomically(path: Path, data: bytes | Callable[[BinaryIO], object], *, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` (bytes, or a function writing to the open file) so that a crash leaves
    the old file or the new one, never a mix. ``durable`` also fsyncs the file and its folder, so the new file
    survives a power cut (checkpoints); outputs that can be made again skip that cost."""
    with replacing(Path(path), durable=durable) as temporary, open(temporary, "wb") as handle:
        if callable(data):
            data(handle)
        else:
            handle.write(data)
        handle.flush()
        if durable:
            os.fsync(handle.fileno())


@contextlib.contextmanager
def replacing(path: Path, *, durable: bool = True) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to, renamed over ``path`` when the block ends without an
    error and removed otherwise: for writers that need a file name (exporters), and the heart of
    :func:`write_atomically`. A check inside the block that raises keeps the old ``path``."""
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    if durable:
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # make the rename itself durable
        finally:
            os.close(directory)


def by_stem(files: Sequence[Path], *, folder: Path) -> dict[str, Path]:
    """``files`` keyed by name without extension; two files of one name (``a.jpg``, ``a.png``) are an error."""
    keyed = {path.stem: path for path in files}
    if len(keyed) < len(files):
        twice = sorted(name for name, count in Counter(path.stem for path in files).items() if count > 1)
        raise DataError(
            f"{folder} holds several files named {_some(twice)} (different extensions); files are paired by "
            "name, so keep one of each"
        )
    return keyed


def pair_by_name(
    folders: Mapping[str, Sequence[Path]], *, roots: Mapping[str, Path], allow_unmatched: bool = False
) -> tuple[list[dict[str, Path]], dict[str, list[str]]]:
    """Files of several folders paired by name, in natural order: ``[{"A": a/x.png, "B": b/x.jpg}, ...]``, and
    per role the names that have no partner.

    ``folders`` maps a role (what the user calls each folder, e.g. ``--pred``) to its files, ``roots`` the role
    to the folder, for messages. A name twice in one folder is always an error; a name missing from another
    folder is one unless ``allow_unmatched``.
    """
    keyed = {role: by_stem(files, folder=roots[role]) for role, files in folders.items()}
    common = set.intersection(*(set(files) for files in keyed.values()))
    alone = {role: sorted(set(files) - common, key=natural_key) for role, files in keyed.items()}
    unmatched = sorted({name for names in alone.values() for name in names})
    if unmatched and not allow_unmatched:
        where = " and ".join(f"{role} {roots[role]}" for role in keyed)
        raise DataError(
            f"{len(unmatched)} file(s) have no partner, e.g. {_some(unmatched)}; {where} must hold the same file names"
        )
    pairs = [{role: files[name] for role, files in keyed.items()} for name in sorted(common, key=natural_key)]
    return pairs, {role: names for role, names in alone.items() if names}


def natural_key(name: str) -> tuple[float, str]:
    """Numbers in numeric order (2 before 10), other names after them in text order."""
    return (len(name), name) if name.isdigit() else (float("inf"), name)


def _some(items: Sequence[str], shown: int = 5) -> str:
    more = f" and {len(items) - shown} more" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more

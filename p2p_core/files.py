"""File primitives every command shares: one atomic writer, one lock, one way to pair files by name.

Checkpoints, images, exports and configs are all written through :func:`write_atomically`, so a crash or a
full disk leaves the old file or the new one, never a mix and never a stray temporary. Run folders and cache
entries that several processes could write at once are held with :func:`locked`. Datasets, ``p2p data
combine`` and ``p2p evaluate`` all pair files through :func:`pair_by_name`, so one rule decides what a
duplicate or a missing partner is.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

from p2p_core.errors import ConfigError, DataError, P2PError


class LockedError(P2PError):
    """Another process holds the lock of a folder or file this one would write."""


def write_atomically(path: Path, data: bytes | Callable[[BinaryIO], object], *, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` (bytes, or a function writing to the open file) so that a crash leaves
    the old file or the new one, never a mix. ``durable`` also fsyncs the file and its folder, so the new file
    survives a power cut (checkpoints); outputs that can be made again skip that cost."""
    with replacing(Path(path), durable=durable) as temporary, open(temporary, "wb", opener=_not_through_links) as handle:
        if callable(data):
            data(handle)
        else:
            handle.write(data)
        handle.flush()
        if durable:
            os.fsync(handle.fileno())


@contextlib.contextmanager
def replacing(path: Path, *, durable: bool = True) -> Iterator[Path]:
    """A new, empty temporary file beside ``path`` to write to, renamed over ``path`` when the block ends
    without an error and removed otherwise: for writers that need a file name (exporters), and the heart of
    :func:`write_atomically`. A check inside the block that raises keeps the old ``path``.

    The temporary's name is unique (:data:`TEMPORARY`) and it is created exclusively, never through a link, so
    a file planted under a predictable name cannot redirect the write, and concurrent writers of one path
    never share a temporary."""
    temporary = new_temporary(Path(path))
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


TEMPORARY = re.compile(r"\..+\.[0-9a-f]{16}\.tmp")
"""The names of :func:`replacing`'s temporaries: ``.NAME.<16 hex digits>.tmp``."""


def new_temporary(path: Path, *, suffix: str = ".tmp") -> Path:
    """A new empty file beside ``path``, ``.NAME.<16 hex digits>SUFFIX``, made exclusively and readable as the
    umask allows (not mkstemp's 0600: it becomes a file others may read)."""
    while True:
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}{suffix}")
        try:
            os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666))
        except FileExistsError:
            continue
        return temporary


def _not_through_links(name: str, flags: int) -> int:
    return os.open(name, flags | os.O_NOFOLLOW, 0o666)


def remove_temporaries(folder: Path) -> None:
    """Remove the temporaries :func:`replacing` left in ``folder`` when a process was killed mid-write; only
    for a folder no other process writes to (one whose lock is held)."""
    for stale in Path(folder).glob(".*.tmp"):
        if TEMPORARY.fullmatch(stale.name):
            stale.unlink(missing_ok=True)


@contextlib.contextmanager
def locked(path: Path, *, what: str, wait: bool = False) -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` (made if missing) for the block; the file names the holder's PID.

    Another process holding it is an error naming ``what`` and the holder's PID, or with ``wait`` is waited
    for. The operating system releases the lock when its holder exits, even when it is killed, so a lock is
    never stale; the file stays behind, empty of meaning.
    """
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            holder = os.pread(descriptor, 32, 0).decode(errors="replace").strip() or "unknown"
            raise LockedError(f"{what} is in use by process {holder} ({path} is locked); wait for it to finish, "
                              "or stop that process") from None
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(descriptor)


def check_name(name: str, *, option: str) -> str:
    """``name`` if it can name one file or folder inside another (a run folder in ``--out_dir``), else a
    ConfigError: no separators, no ``..``, no control characters (newlines), at most 255 bytes."""
    size = len(os.fsencode(name))
    problem = None
    if not name or "/" in name or os.sep in name or name in (".", ".."):
        problem = "is not a single name (no /, no ..): it names a folder inside the output folder"
    elif any(ord(character) < 32 or ord(character) == 127 for character in name):
        problem = "holds control characters (a newline?)"
    elif size > 255:
        problem = f"is {size} bytes long, more than a file name may be (255)"
    if problem:
        raise ConfigError(f"{option} {name[:80]!r} {problem}; choose a plain name such as 'facades-l1'")
    return name


def refuse_overlap(output: Path, inputs: Mapping[str, Path], *, option: str) -> None:
    """Refuse an ``output`` that is one of ``inputs`` (what each is -> its path), sits inside one or holds one:
    writing there, with ``--overwrite`` or not, could replace or delete what the command reads."""
    # Resolved, so that a symlink or a "ds/../ds" cannot hide the overlap.
    where = Path(output).resolve()
    for what, path in inputs.items():
        real = Path(path).resolve()
        relation = "is" if where == real else "is inside" if real in where.parents else "holds" if where in real.parents else None
        if relation:
            resolved = f" (through links: {where}, {real})" if (where, real) != (Path(output).absolute(), Path(path).absolute()) else ""
            raise DataError(
                f"{option} {output} {relation} {what} {path}{resolved}; choose an {option} apart from it, so that it "
                "is never overwritten"
            )


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

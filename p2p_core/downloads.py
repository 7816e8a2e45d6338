"""``p2p data download`` and ``p2p pretrained``: the pix2pix authors' datasets and released generators.

Everything fetched goes through a cache, ``$P2P_CACHE`` (default ``~/.cache/p2p``): archives in
``datasets/``, generators in ``pretrained/``. A file appears there under its own name only once all of it has
arrived (it is written to a hidden ``.part`` file, checked against the announced length, then renamed), so an
interrupted transfer never looks complete and the next run simply starts again. A dataset is unpacked into a
hidden folder next to its destination, with tarfile's ``data`` filter, and renamed into place with a completion
marker inside, so a failed unpacking leaves nothing behind and a finished one is never fetched or unpacked again.

Mirrors and air-gapped copies: ``url=`` (``--url``), or ``$P2P_DATASETS_URL`` / ``$P2P_PRETRAINED_URL``, replace the
authors' server by another base (http(s)://, file:// or a plain folder) that holds the same file names.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import posixpath
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any, Literal, TypeVar

import attrs
from tqdm.auto import tqdm

from p2p_core.errors import DataError, UnknownComponentError
from p2p_core.files import new_temporary
from p2p_core.test_time import Mode

COMPLETE = ".p2p-download-complete"
"""Marker file in a dataset folder that ``download_dataset`` finished."""
TIMEOUT_S = 60
CHUNK = 1 << 20


@attrs.frozen(kw_only=True)
class DatasetEntry:
    """A dataset ``p2p data download`` knows: an archive holding NAME/{train,val,test}/*.jpg of A|B pairs."""

    name: str
    url: str | None
    """The archive; None where it cannot be downloaded (see licence_note)."""
    description: str
    recipes: tuple[str, ...] = ()
    """Names of the recipes that train on it (`p2p fit --config NAME`); they read datasets/NAME."""
    licence_note: str | None = None
    """Set where the licence forbids fetching it for the user: how to get and prepare it instead."""


@attrs.frozen(kw_only=True)
class PretrainedEntry:
    """A released generator ``p2p pretrained download`` knows, and how to use it."""

    name: str
    url: str
    description: str
    translation: str
    """What it maps, e.g. ``labels -> photo``."""
    dataset: str
    """The dataset it was trained on (a DatasetEntry name)."""
    direction: Literal["AtoB", "BtoA"]
    """Which half of that dataset's A|B images is its input."""
    in_channels: int = 3
    out_channels: int = 3
    recommended_mode: Mode = "paper"
    """The p2p ``--mode`` that reproduces how its authors ran it at test time."""
    image_size: int = 256
    parameters: int | None = None
    """Number of parameters, for a converter to check it read the whole network."""


@attrs.frozen(kw_only=True)
class DownloadedFile:
    """A file in the cache, the URL it is fetched from (on a cache hit: would be), and its SHA-256 (hex)."""

    path: Path
    url: str
    sha256: str

    def __str__(self) -> str:
        return f"{self.path}\nsha256 {self.sha256}"


MODE_NOTE = (
    "mode: the authors' test.py leaves the generator in train mode (dropout on, batch statistics) unless --eval "
    "is given, so their results are p2p's --mode paper; --mode eval matches their --eval."
)


def cache_dir() -> Path:
    """Where downloads are kept: ``$P2P_CACHE``, or ``~/.cache/p2p``."""
    return Path(os.environ.get("P2P_CACHE") or "~/.cache/p2p").expanduser()


def download_dataset(
    *, name: str, to: Path = Path("datasets"), url: str | None = None, entries: Mapping[str, DatasetEntry] | None = None
) -> Path:
    """Download one of the pix2pix authors' datasets and unpack it to TO/NAME, the folder its recipes read.

    Args:
        name: The dataset: facades, maps, edges2shoes, edges2handbags, night2day (cityscapes says how to get it).
        to: Folder the dataset folder goes in; the recipes expect datasets/NAME relative to where you run p2p.
        url: Base URL of a mirror holding NAME.tar.gz (http(s)://, file:// or a folder); default
            $P2P_DATASETS_URL, then the authors' server.
        entries: The catalogue to look NAME up in; default every plugin's (the built-in p2p_reference's and others').
    """
    entry = _lookup(name, _catalogue("dataset_downloads") if entries is None else entries, kind="dataset to download",
                    hint=". Make others from your own images with `p2p data combine` or `p2p data edges`.")
    if entry.licence_note or entry.url is None:
        raise DataError(f"{entry.name}: {entry.licence_note or 'the catalogue gives no URL for it'}")
    target = Path(to) / entry.name
    if (target / COMPLETE).is_file():
        return target
    if target.exists():
        raise DataError(
            f"{target} exists but was not made by a finished `p2p data download` (no {COMPLETE} in it); "
            f"move it away or pass another --to"
        )
    archive = cache_dir() / "datasets" / _file_name(entry.url)
    if not archive.is_file():
        source = _source(entry.url, url, env="P2P_DATASETS_URL")
        _fetch(source, archive, hint=f"pass --url BASE (or set P2P_DATASETS_URL) to a mirror holding {archive.name}")
    _unpack(archive, folder=entry.name, target=target)
    return target


def download_pretrained(
    *, name: str, url: str | None = None, entries: Mapping[str, PretrainedEntry] | None = None
) -> DownloadedFile:
    """Download one of the pix2pix authors' released generators (.pth) into the cache, unconverted.

    Args:
        name: The generator, as `p2p pretrained list` shows them.
        url: Base URL of a mirror holding NAME.pth (http(s)://, file:// or a folder); default
            $P2P_PRETRAINED_URL, then the authors' server.
        entries: The catalogue to look NAME up in; default every plugin's (the built-in p2p_reference's and others').
    """
    entry = _lookup(name, _catalogue("pretrained") if entries is None else entries, kind="pretrained generator",
                    hint=". `p2p pretrained list` shows them with what they translate.")
    path = cache_dir() / "pretrained" / f"{entry.name}.pth"
    source = _source(entry.url, url, env="P2P_PRETRAINED_URL")
    if path.is_file():
        with path.open("rb") as file:
            return DownloadedFile(path=path, url=source, sha256=hashlib.file_digest(file, "sha256").hexdigest())
    sha256 = _fetch(source, path, hint=f"pass --url BASE (or set P2P_PRETRAINED_URL) to a mirror holding {path.name}")
    return DownloadedFile(path=path, url=source, sha256=sha256)


_Entry = TypeVar("_Entry", DatasetEntry, PretrainedEntry)


def _catalogue(kind: str) -> Mapping[str, Any]:
    """What the installed plugins contribute through ``p2p_dataset_downloads`` or ``p2p_pretrained``."""
    from p2p_core.registry import default_registry

    return getattr(default_registry(), kind)


def _lookup(name: str, entries: Mapping[str, _Entry], *, kind: str, hint: str) -> _Entry:
    if name not in entries:
        raise UnknownComponentError(kind, name, entries, hint=hint)
    return entries[name]


def _file_name(url: str) -> str:
    return posixpath.basename(urllib.parse.urlsplit(url).path)


def _source(default: str, base: str | None, *, env: str) -> str:
    """``default``, or the file of the same name under the base URL given as an argument or in ``env``."""
    base = base or os.environ.get(env)
    if not base:
        return default
    if "://" not in base:  # a plain folder is a mirror too
        base = Path(base).resolve().as_uri()
    return f"{base.rstrip('/')}/{_file_name(default)}"


def _fetch(url: str, dest: Path, *, hint: str) -> str:
    """Download ``url`` to ``dest`` with a progress bar; return its SHA-256. ``dest`` appears only when complete."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part, digest = new_temporary(dest, suffix=".part"), hashlib.sha256()
    try:
        try:
            with open(part, "wb") as file, urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
                expected = response.headers.get("Content-Length")
                total = int(expected) if expected else None
                with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=dest.name) as bar:
                    while chunk := response.read(CHUNK):
                        file.write(chunk)
                        digest.update(chunk)
                        bar.update(len(chunk))
                received = file.tell()
        except urllib.error.HTTPError as error:
            raise DataError(f"{url} answered HTTP {error.code} {error.reason}; {hint}") from None
        except (OSError, http.client.HTTPException) as error:
            raise DataError(f"downloading {url} failed ({error}); run the command again, or {hint}") from None
        # http.client ends a body that stops short without an error, so only the length tells (this check is why
        # this is not torch.hub.download_url_to_file, which keeps such a file as if it were whole).
        if total is not None and received != total:
            raise DataError(f"the download of {url} stopped after {received} of {total} bytes; run the command again")
        os.replace(part, dest)
    finally:
        part.unlink(missing_ok=True)
    return digest.hexdigest()


def _unpack(archive: Path, *, folder: str, target: Path) -> None:
    """Unpack ``folder``/ of ``archive`` to ``target``, all or nothing; a bad archive is removed from the cache."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}.") as scratch:
        try:
            with tarfile.open(archive) as tar:
                members = tqdm(tar, desc=f"unpacking {archive.name}", unit=" files")
                tar.extractall(scratch, members=members, filter=_safe_member)
        except tarfile.SpecialFileError as error:
            raise _discard(archive, f"holds {error.tarinfo.name!r}, a device or fifo, which has no place in a dataset") from None
        except tarfile.FilterError as error:
            raise _discard(archive, f"holds {error.tarinfo.name!r}, which would land outside the dataset folder") from None
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as error:
            raise _discard(archive, f"is truncated or damaged ({error})") from None
        unpacked = Path(scratch) / folder
        if not (unpacked / "train").is_dir():
            raise _discard(archive, f"does not hold {folder}/train/, so it is not the {folder} dataset")
        (unpacked / COMPLETE).write_text(f"unpacked from {archive}\n")
        unpacked.rename(target)


def _safe_member(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo:
    # The data filter refuses "..", links out and device files, but only strips a leading "/"; refuse that too.
    if PurePosixPath(member.name).is_absolute():
        raise tarfile.AbsolutePathError(member)
    return tarfile.data_filter(member, path)


def _discard(archive: Path, problem: str) -> DataError:
    archive.unlink(missing_ok=True)
    return DataError(
        f"{archive} {problem}; nothing was unpacked, and the archive was removed from the cache so that the "
        f"next run downloads it afresh"
    )

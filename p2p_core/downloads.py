"""``p2p data download`` and ``p2p pretrained``: the pix2pix authors' datasets and released generators.

Everything fetched goes through a cache, ``$P2P_CACHE`` (default ``~/.cache/p2p``): archives in
``datasets/``, generators in ``pretrained/``, each in a folder of its own URL (a mirror's file never stands in
for the authors'). A file appears there under its own name only once all of it has arrived (it is written to a
hidden ``.part`` file, checked against the announced length and the expected SHA-256, then renamed), so an
interrupted transfer never looks complete and the next run simply starts again. A dataset (a ``.tar.gz`` or a
``.zip``) is unpacked into a hidden folder next to its destination, with tarfile's ``data`` filter or the same
refusals for a zip's members, and renamed into place with a completion
marker inside, so a failed unpacking leaves nothing behind and a finished one is never fetched or unpacked again.
Scratch a killed run left (``.part`` files, hidden unpacking folders) is removed by the next run of the same
download, which holds a lock for it: a second one at the same time waits.

Verification follows pip's ``--require-hashes``: every file must match a SHA-256 known before it is fetched, the
catalogue entry's ``sha256`` or the user's ``sha256=`` (``--sha256``), which wins. An entry without one is refused
unless the user passes ``--sha256``, or ``trust_unpinned`` (``--trust_unpinned``): trust on first use, which prints
the hash it saw and records it beside the file. Every later use re-hashes the cached file against the hash it was
accepted with, so a file swapped in the cache is refused, and removed so that the next run fetches it afresh.

What a download may take is bounded (:class:`Limits`, options that raise each): the bytes fetched, the bytes,
members and expansion ratio of what an archive unpacks, the free space (checked against the announced length
and against each member's declared size before it is written) and the time the whole transfer may take.

Mirrors and air-gapped copies: ``url=`` (``--url``), or ``$P2P_DATASETS_URL`` / ``$P2P_PRETRAINED_URL``, replace the
authors' server by another base (http(s)://, file:// or a plain folder) that holds the same file names.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import http.client
import json
import math
import os
import posixpath
import re
import shutil
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any, Literal, TypeVar

import attrs
import filelock
from tqdm.auto import tqdm

from p2p_core.errors import ConfigError, DataError, UnknownComponentError
from p2p_core.files import new_temporary
from p2p_core.test_time import Mode

COMPLETE = ".p2p-download-complete"
"""Marker file in a dataset folder that ``download_dataset`` finished."""
TIMEOUT_S = 60
"""Seconds a connection may stay silent; :attr:`Limits.deadline_s` bounds the whole transfer."""
CHUNK = 1 << 20
Verified = Literal["catalogue", "--sha256", "first use"]
"""What a cached file's hash was checked against when it was fetched: the entry's pin, the user's, or nothing."""


@attrs.frozen(kw_only=True)
class Limits:
    """What one download may take; each has the option that raises it. The defaults hold the largest of the
    authors' datasets (edges2handbags: 8.6 GB, 139k images) and refuse what only a crafted archive needs."""

    max_bytes: int = 16 * 2**30
    """The file fetched, and all an archive unpacks (``--max_gb``)."""
    max_files: int = 150_000
    """Members of an archive (``--max_files``)."""
    max_ratio: float = 20.0
    """Bytes unpacked per byte of archive; images hardly compress, a bomb does (``--max_ratio``)."""
    deadline_s: float = 6 * 3600.0
    """Seconds the whole transfer may take, however steadily bytes trickle in (``--deadline_min``)."""

    def __attrs_post_init__(self) -> None:
        for name, option, value in [("max_bytes", "--max_gb", self.max_bytes), ("max_files", "--max_files", self.max_files),
                                    ("max_ratio", "--max_ratio", self.max_ratio), ("deadline_s", "--deadline_min", self.deadline_s)]:
            if not 0 < value < math.inf:
                raise ConfigError(f"{option} must be a positive number, got {value}")

    @classmethod
    def from_options(
        cls, *, max_gb: float, deadline_min: float, max_files: int | None = None, max_ratio: float | None = None
    ) -> Limits:
        """The limits the command-line options give, in their units; archive limits left out keep their defaults."""
        if not 0 < max_gb * 2**30 < math.inf or not 0 < deadline_min * 60 < math.inf:
            raise ConfigError(f"--max_gb and --deadline_min must be positive numbers, got {max_gb} and {deadline_min}")
        archives = {"max_files": max_files, "max_ratio": max_ratio}
        return cls(max_bytes=round(max_gb * 2**30), deadline_s=deadline_min * 60,
                   **{name: value for name, value in archives.items() if value is not None})


@attrs.frozen(kw_only=True)
class DatasetEntry:
    """A dataset ``p2p data download`` knows: an archive holding NAME/{train,val,test}/*.jpg of A|B pairs, or the
    folders ``holds`` names."""

    name: str
    url: str | None
    """The archive, ``.tar.gz`` or ``.zip``; None where it cannot be downloaded (see licence_note). Its dataset folder
    is named as the archive is (``facades/`` in ``facades.zip``), and unpacked to NAME."""
    description: str
    recipes: tuple[str, ...] = ()
    """Names of the recipes that train on it (`p2p fit --config NAME`); they read datasets/NAME."""
    licence_note: str | None = None
    """Set where the licence forbids fetching it for the user: how to get and prepare it instead."""
    holds: tuple[str, ...] = ("train",)
    """Folders its dataset folder holds (``trainA``, ``trainB`` for an unpaired one): an archive without them is
    refused as not this dataset."""
    sha256: str | None = None
    """The archive's SHA-256 (hex); without it a download needs the user's ``--sha256`` or ``--trust_unpinned``."""
    size: int | None = None
    """The archive's size in bytes, checked against what the server announces before anything is fetched."""


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
    dataset_reader: str = "aligned"
    """The registered dataset that reads that dataset once downloaded (given ``root``, ``direction``, ``load_size``
    and ``crop_size``): what ``p2p test`` of the imported generator reads."""
    in_channels: int = 3
    out_channels: int = 3
    recommended_mode: Mode = "paper"
    """The p2p ``--mode`` that reproduces how its authors ran it at test time."""
    image_size: int = 256
    parameters: int | None = None
    """Number of parameters, for a converter to check it read the whole network."""
    sha256: str | None = None
    """The file's SHA-256 (hex); without it a download needs the user's ``--sha256`` or ``--trust_unpinned``."""
    size: int | None = None
    """The file's size in bytes, checked against what the server announces before anything is fetched."""


@attrs.frozen(kw_only=True)
class DownloadedFile:
    """A file in the cache, the URL it is fetched from (on a cache hit: would be), and its SHA-256 (hex)."""

    path: Path
    url: str
    sha256: str
    verified: Verified = "catalogue"
    """What the hash was checked against when the file was fetched."""

    def __str__(self) -> str:
        return f"{self.path}\nsha256 {self.sha256}"


MODE_NOTE = (
    "mode: the authors' test.py leaves the generator in train mode (dropout on, batch statistics) unless --eval "
    "is given, so their results are p2p's --mode paper; --mode eval matches their --eval."
)


def cache_dir() -> Path:
    """Where downloads are kept: ``$P2P_CACHE``, or ``~/.cache/p2p``."""
    return Path(os.environ.get("P2P_CACHE") or "~/.cache/p2p").expanduser()


@contextlib.contextmanager
def cache_in(folder: Path) -> Iterator[None]:
    """:func:`cache_dir` is ``folder`` meanwhile: what is built for a throwaway checkpoint (its ONNX export) stays
    out of the user's cache."""
    saved = os.environ.get("P2P_CACHE")
    os.environ["P2P_CACHE"] = str(folder)
    try:
        yield
    finally:
        if saved is None:
            del os.environ["P2P_CACHE"]
        else:
            os.environ["P2P_CACHE"] = saved


def download_dataset(
    *,
    name: str,
    to: Path = Path("datasets"),
    url: str | None = None,
    entries: Mapping[str, DatasetEntry] | None = None,
    sha256: str | None = None,
    trust_unpinned: bool = False,
    limits: Limits = Limits(),
) -> Path:
    """Download one of the pix2pix authors' datasets and unpack it to TO/NAME, the folder its recipes read.

    Args:
        name: The dataset: facades, maps, edges2shoes, edges2handbags, night2day (cityscapes says how to get it).
        to: Folder the dataset folder goes in; the recipes expect datasets/NAME relative to where you run p2p.
        url: Base URL of a mirror holding NAME.tar.gz, or the archive a plugin's entry names (http(s)://, file:// or
            a folder); default $P2P_DATASETS_URL, then the authors' server.
        entries: The catalogue to look NAME up in; default every plugin's (the built-in p2p_reference's and others').
        sha256: The archive's SHA-256; required where the entry pins none, and wins over the entry's.
        trust_unpinned: Accept an archive no SHA-256 is known for, recording (and printing) the one it has.
        limits: What the download and the unpacking may take.
    """
    entry = _lookup(name, _catalogue("dataset_downloads") if entries is None else entries, kind="dataset to download",
                    hint=". Make others from your own images with `p2p data combine` or `p2p data edges`.")
    if entry.licence_note or entry.url is None:
        raise DataError(f"{entry.name}: {entry.licence_note or 'the catalogue gives no URL for it'}")
    target = Path(to) / entry.name
    if _finished(target):
        return target
    source = _source(entry.url, url, env="P2P_DATASETS_URL")
    hint = f"pass --url BASE (or set P2P_DATASETS_URL) to a mirror holding {_file_name(entry.url)}"
    downloaded = _cached(source, "datasets", entry, sha256=sha256, trust_unpinned=trust_unpinned, limits=limits, hint=hint)
    with locked(str(target.absolute()), f"unpacking into {target}"):
        if not _finished(target):  # another run may have unpacked it while this one waited
            _unpack(downloaded.path, folder=_archive_stem(_file_name(entry.url)), target=target, limits=limits, holds=entry.holds)
    return target


def _finished(target: Path) -> bool:
    """Whether ``target`` holds a finished download; an error if it holds anything else."""
    if (target / COMPLETE).is_file():
        return True
    if target.exists():
        raise DataError(
            f"{target} exists but was not made by a finished `p2p data download` (no {COMPLETE} in it); "
            f"move it away or pass another --to"
        )
    return False


def download_pretrained(
    *,
    name: str,
    url: str | None = None,
    entries: Mapping[str, PretrainedEntry] | None = None,
    sha256: str | None = None,
    trust_unpinned: bool = False,
    limits: Limits = Limits(),
) -> DownloadedFile:
    """Download one of the pix2pix authors' released generators (.pth) into the cache, unconverted.

    Args:
        name: The generator, as `p2p pretrained list` shows them.
        url: Base URL of a mirror holding NAME.pth (http(s)://, file:// or a folder); default
            $P2P_PRETRAINED_URL, then the authors' server.
        entries: The catalogue to look NAME up in; default every plugin's (the built-in p2p_reference's and others').
        sha256: The file's SHA-256; required where the entry pins none, and wins over the entry's.
        trust_unpinned: Accept a file no SHA-256 is known for, recording (and printing) the one it has.
        limits: What the download may take.
    """
    entry = _lookup(name, _catalogue("pretrained") if entries is None else entries, kind="pretrained generator",
                    hint=". `p2p pretrained list` shows them with what they translate.")
    source = _source(entry.url, url, env="P2P_PRETRAINED_URL")
    hint = f"set P2P_PRETRAINED_URL to a mirror holding {entry.name}.pth"
    return _cached(source, "pretrained", entry, sha256=sha256, trust_unpinned=trust_unpinned, limits=limits, hint=hint)


@contextlib.contextmanager
def locked(key: str, doing: str) -> Iterator[None]:
    """Hold the lock of ``key`` (a URL, a folder) in the cache; a second process doing the same waits for the first."""
    folder = cache_dir() / "locks"
    _make_folder(folder)
    lock = filelock.FileLock(folder / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.lock")
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        print(f"p2p: another p2p is {doing}; waiting for it to finish", file=sys.stderr, flush=True)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(f"cannot make {folder} ({error.strerror or error}); set P2P_CACHE to a writable folder") from None


def _cached(
    url: str, kind: str, entry: DatasetEntry | PretrainedEntry, *, sha256: str | None, trust_unpinned: bool, limits: Limits, hint: str
) -> DownloadedFile:
    """``url`` from the cache (re-hashed against the hash it was accepted with) or fetched into it and verified."""
    if sha256 is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", sha256):
        raise ConfigError(f"--sha256 must be 64 hexadecimal digits, got {sha256[:80]!r}")
    expected, verified = (sha256.lower(), "--sha256") if sha256 else (entry.sha256, "catalogue")
    folder = cache_dir() / kind / hashlib.sha256(url.encode()).hexdigest()[:16]
    path = folder / _file_name(url)
    record = _record_of(path)
    with locked(url, f"downloading {url}"):
        found = _reuse(path, record, expected=expected, explicit=sha256 is not None)
        if found is not None:
            return DownloadedFile(path=path, url=url, sha256=found["sha256"], verified=found["verified"])
        if expected is None and not trust_unpinned:
            raise DataError(
                f"{entry.name}: the catalogue pins no SHA-256 for {url}, so what arrives could not be verified; pass "
                f"--sha256 HASH (published by whoever made the file), or --trust_unpinned to accept the file as it comes "
                f"and record its hash for later uses (as pip's --require-hashes, p2p fetches nothing it cannot check)"
            )
        _make_folder(folder)
        for stale in folder.glob(f".{path.name}.*.part"):  # left by a killed run: the lock says none is in progress
            stale.unlink(missing_ok=True)
        actual = _fetch(url, path, hint=hint, limits=limits, size=entry.size, sha256=expected, record=record,
                        verified="first use" if expected is None else verified)
    if expected is None:
        print(f"p2p: trusted on first use: {url} has sha256 {actual}; it is recorded in {record}, and pinned from now "
              f"on (pass --sha256 {actual} to check it elsewhere)", file=sys.stderr, flush=True)
    return DownloadedFile(path=path, url=url, sha256=actual, verified="first use" if expected is None else verified)


def _reuse(path: Path, record: Path, *, expected: str | None, explicit: bool) -> dict[str, Any] | None:
    """What ``record`` says of the cached ``path`` if it is the file wanted; None where it must be fetched."""
    try:
        accepted = json.loads(record.read_text())
        accepted_sha256, verified = str(accepted["sha256"]), accepted["verified"]
    except (OSError, ValueError, KeyError, TypeError):
        return None  # never fetched, or killed before its record was written: fetched afresh
    if not path.is_file():
        return None
    with path.open("rb") as file:
        actual = hashlib.file_digest(file, "sha256").hexdigest()
    if actual != accepted_sha256:
        path.unlink(missing_ok=True)
        record.unlink(missing_ok=True)
        raise DataError(
            f"the cached {path} has SHA-256 {actual}, not the {accepted_sha256} it was accepted with: it was changed "
            f"after it was downloaded; it was removed, so the next run fetches it afresh"
        )
    if explicit and actual != expected:
        return None  # the user asks for another file than the one cached
    if explicit and verified != "--sha256":  # vouched for now: the record says so for later uses
        verified = "--sha256"
        record.write_text(json.dumps({**accepted, "verified": verified}) + "\n")
    if not explicit and expected is not None and verified != "--sha256" and actual != expected:
        return None  # the catalogue pins another file now; one the user vouched for stays theirs
    return {"sha256": actual, "verified": verified}


_Entry = TypeVar("_Entry", DatasetEntry, PretrainedEntry)
T = TypeVar("T")


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


def _archive_stem(name: str) -> str:
    """``facades`` of ``facades.tar.gz`` or ``facades.zip``."""
    return next((name.removesuffix(suffix) for suffix in (".tar.gz", ".tgz", ".zip") if name.endswith(suffix)), name)


def _source(default: str, base: str | None, *, env: str) -> str:
    """``default``, or the file of the same name under the base URL given as an argument or in ``env``."""
    base = base or os.environ.get(env)
    if not base:
        return default
    if "://" not in base:  # a plain folder is a mirror too
        base = Path(base).resolve().as_uri()
    return f"{base.rstrip('/')}/{_file_name(default)}"


class _HttpRedirects(urllib.request.HTTPRedirectHandler):
    """urllib's redirects, to http(s) only: it would follow one to ftp://, which has no lengths to check."""

    def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> Any:
        if urllib.parse.urlsplit(newurl).scheme not in ("http", "https"):
            raise DataError(f"{req.full_url} redirects to {newurl[:200]!r}; p2p follows redirects to http(s) URLs only")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _fetch(
    url: str, dest: Path, *, hint: str, limits: Limits, size: int | None, sha256: str | None, record: Path, verified: Verified
) -> str:
    """Download ``url`` to ``dest`` with a progress bar, within ``limits``, checked against ``size`` and ``sha256``
    where known; return its SHA-256. ``record`` then says what it was accepted as; ``dest`` appears only when complete."""
    try:  # a new name, never through a link, readable as the umask allows (it becomes the cached file)
        part = new_temporary(dest, suffix=".part")
    except OSError as error:
        raise DataError(f"cannot write in {dest.parent} ({_reason(error)}); set P2P_CACHE to a writable folder") from None
    digest = hashlib.sha256()
    deadline = time.monotonic() + limits.deadline_s
    opener = urllib.request.build_opener(_HttpRedirects)
    try:
        try:
            with open(part, "wb") as file, opener.open(url, timeout=TIMEOUT_S) as response:
                total = _announced_length(response.headers.get("Content-Length"), url)
                if total is not None:
                    _check_size(total, url, limits=limits, size=size, folder=dest.parent)
                with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=dest.name) as bar:
                    # read1 returns what one read of the socket brings, so the deadline is checked however slowly
                    # bytes trickle in (read(CHUNK) waits for all of a chunk).
                    while chunk := response.read1(CHUNK):
                        file.write(chunk)
                        digest.update(chunk)
                        bar.update(len(chunk))
                        _check_size(file.tell(), url, limits=limits, size=size, folder=None, received=True)
                        if time.monotonic() > deadline:
                            raise DataError(
                                f"downloading {url} took over {limits.deadline_s / 60:g} minutes ({file.tell():,} bytes "
                                f"arrived); pass a larger --deadline_min, or {hint}"
                            )
                received = file.tell()
        except urllib.error.HTTPError as error:
            raise DataError(f"{url} answered HTTP {error.code} {error.reason}; {hint}") from None
        except (OSError, http.client.HTTPException) as error:
            raise DataError(f"downloading {url} failed ({_reason(error)}); run the command again, or {hint}") from None
        # http.client ends a body that stops short without an error, so only the length tells (this check is why
        # this is not torch.hub.download_url_to_file, which keeps such a file as if it were whole).
        if total is not None and received != total:
            raise DataError(f"the download of {url} stopped after {received} of {total} bytes; run the command again")
        if size is not None and received != size:
            raise DataError(f"{url} sent {received:,} bytes; the catalogue says the file has {size:,}; {hint}")
        actual = digest.hexdigest()
        if sha256 is not None and actual != sha256:
            raise DataError(
                f"{url} sent a file with SHA-256 {actual}, not the expected {sha256}: it is another file than the one "
                f"wanted (or was tampered with); nothing was kept. If you trust it, pass --sha256 {actual}"
            )
        try:
            record.write_text(json.dumps({"url": url, "sha256": actual, "verified": verified}) + "\n")
            os.replace(part, dest)
        except OSError as error:
            raise DataError(f"cannot write {dest} ({_reason(error)}); free some space or set P2P_CACHE elsewhere") from None
    finally:
        part.unlink(missing_ok=True)
    return actual


def _announced_length(value: str | None, url: str) -> int | None:
    if value is None:
        return None
    if not re.fullmatch(r"[0-9]{1,20}", value.strip()):
        raise DataError(f"{url} announced a Content-Length of {value[:40]!r}, which is not a number of bytes; use another mirror")
    return int(value)


def _check_size(length: int, url: str, *, limits: Limits, size: int | None, folder: Path | None, received: bool = False) -> None:
    """Refuse a file over the limit or the catalogue's size, or (``folder`` given) larger than the free space there."""
    what = f"{url} {'sent over' if received else 'announces'} {length:,} bytes"
    if length > limits.max_bytes:
        raise DataError(f"{what}, over the limit of {limits.max_bytes:,} (--max_gb {limits.max_bytes / 2**30:g}); pass a larger --max_gb if you expect it")
    if size is not None and length > size:
        raise DataError(f"{what}; the catalogue says the file has {size:,}; it is another file, or use another mirror")
    if folder is not None and length > (free := shutil.disk_usage(folder).free):
        raise DataError(f"{what}, but {folder} has {free:,} bytes free; free some space or set P2P_CACHE to another disk")


def _reason(error: BaseException) -> str:
    return (error.strerror if isinstance(error, OSError) and error.strerror else str(error))[:200]


def _unpack(archive: Path, *, folder: str, target: Path, limits: Limits, holds: tuple[str, ...] = ("train",)) -> None:
    """Unpack ``folder``/ of ``archive`` to ``target`` within ``limits``, all or nothing; a bad archive is removed from
    the cache (one over a limit stays: a larger limit unpacks it without fetching it again)."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(f"cannot make {target.parent} ({_reason(error)}); pass another --to") from None
    scratch_name = re.compile(re.escape(f".{target.name}.") + r"[a-z0-9_]{8}")
    for stale in target.parent.iterdir():  # unpacking folders of killed runs: the lock says none is in progress
        if scratch_name.fullmatch(stale.name) and stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}.") as scratch:
        try:
            free = shutil.disk_usage(scratch).free
            if archive.suffix == ".zip":
                _unzip(archive, scratch, limits=limits, free=free)
            else:
                with tarfile.open(archive) as tar:
                    members = tqdm(_bounded(tar, lambda member: member.size, archive=archive, limits=limits, free=free),
                                   desc=f"unpacking {archive.name}", unit=" files")
                    tar.extractall(scratch, members=members, filter=_safe_member)
        except _UnwritableName as error:
            raise _discard(archive, f"holds a member named {error.tarinfo.name[:100]!r}..., {error}") from None
        except tarfile.SpecialFileError as error:
            raise _discard(archive, f"holds {error.tarinfo.name!r}, a device or fifo, which has no place in a dataset") from None
        except tarfile.FilterError as error:
            raise _discard(archive, f"holds {error.tarinfo.name[:200]!r}, which would land outside the dataset folder") from None
        except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, gzip.BadGzipFile) as error:
            raise _discard(archive, f"is truncated or damaged ({error})") from None
        except OSError as error:
            if error.errno in (errno.ENOSPC, errno.EDQUOT):
                raise DataError(f"the disk filled up while unpacking {archive} into {target.parent}; nothing was kept; "
                                "free some space or pass another --to") from None
            raise _discard(archive, f"could not be unpacked: {_reason(error)} ({str(error.filename)[:200]})") from None
        unpacked = Path(scratch) / folder
        for held in holds:
            if not (unpacked / held).is_dir():
                raise _discard(archive, f"does not hold {folder}/{held}/, so it is not the {folder} dataset")
        (unpacked / COMPLETE).write_text(f"unpacked from {archive}\n")
        unpacked.rename(target)


def _unzip(archive: Path, scratch: str, *, limits: Limits, free: int) -> None:
    """Extract a zip within ``limits``, refused as tar's ``data`` filter refuses a tar if a name is absolute, climbs
    out, or is longer or deeper than a file system takes.

    ZipFile.extract would quietly rewrite such names instead; it writes a link as a plain file holding its target.
    """
    with zipfile.ZipFile(archive) as bundle:
        members = list(_bounded(bundle.infolist(), lambda member: member.file_size, archive=archive, limits=limits, free=free))
        for member in members:
            name = PurePosixPath(member.filename.replace("\\", "/"))
            if name.is_absolute() or ".." in name.parts or ":" in member.filename:
                raise _discard(archive, f"holds {member.filename[:200]!r}, which would land outside the dataset folder")
            if len(name.parts) > MAX_DEPTH or any(len(part.encode()) > MAX_NAME_BYTES for part in name.parts):
                raise _discard(archive, f"holds a member named {member.filename[:100]!r}..., deeper or longer than a file system takes")
        for member in tqdm(members, desc=f"unpacking {archive.name}", unit=" files"):
            bundle.extract(member, scratch)


def _bounded(members: Iterable[T], size_of: Callable[[T], int], *, archive: Path, limits: Limits, free: int) -> Iterator[T]:
    """The archive's members, refused as soon as their number or declared sizes pass a limit or the free space:
    checked on each header, before that member is written."""
    ratio_bytes = limits.max_ratio * archive.stat().st_size
    total = 0
    for count, member in enumerate(members, start=1):
        total += size_of(member)
        if count > limits.max_files:
            raise DataError(f"{archive} holds over {limits.max_files:,} members; nothing was kept; pass a larger --max_files if you expect it")
        if total > limits.max_bytes:
            raise DataError(f"{archive} unpacks to over {limits.max_bytes:,} bytes; nothing was kept; pass a larger --max_gb if you expect it")
        if total > ratio_bytes:
            raise DataError(f"{archive} unpacks to over {limits.max_ratio:g} times its own size ({total:,} bytes from "
                            f"{archive.stat().st_size:,}), as only a crafted archive does; nothing was kept; pass a larger "
                            "--max_ratio if you expect it")
        if total > free:
            raise DataError(f"{archive} unpacks to over {total:,} bytes, but the folder it goes to has {free:,} free; "
                            "nothing was kept; free some space or pass another --to")
        yield member


class _UnwritableName(tarfile.FilterError):
    """A member name no file system takes: a component over 255 bytes, or folders nested deeper than any dataset
    (and than ``os.makedirs`` can recurse)."""

    def __init__(self, member: tarfile.TarInfo, problem: str) -> None:
        super().__init__(problem)
        self.tarinfo = member


MAX_NAME_BYTES = 255
MAX_DEPTH = 64


def _safe_member(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo:
    # The data filter refuses "..", links out and device files, but only strips a leading "/"; refuse that too.
    name = PurePosixPath(member.name)
    if name.is_absolute():
        raise tarfile.AbsolutePathError(member)
    if len(name.parts) > MAX_DEPTH:
        raise _UnwritableName(member, f"{len(name.parts)} folders deep, deeper than {MAX_DEPTH}")
    if any(len(part.encode()) > MAX_NAME_BYTES for part in name.parts):
        raise _UnwritableName(member, f"whose names are limited to {MAX_NAME_BYTES} bytes a folder or file")
    return tarfile.data_filter(member, path)


def _record_of(path: Path) -> Path:
    """Where the hash a cached file was accepted with, and how it was checked, is kept."""
    return path.with_name(f"{path.name}.json")


def _discard(archive: Path, problem: str) -> DataError:
    archive.unlink(missing_ok=True)
    _record_of(archive).unlink(missing_ok=True)
    return DataError(
        f"{archive} {problem}; nothing was unpacked, and the archive was removed from the cache so that the "
        f"next run downloads it afresh"
    )

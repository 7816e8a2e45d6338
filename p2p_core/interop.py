"""Models trained by other programs, as p2p run folders: ``p2p import`` and ``--ckpt pretrained:NAME``; and where
``--ckpt`` finds a model (:func:`locate`), ``hf:OWNER/NAME`` (:mod:`p2p_core.hub`) included.

A state dict of the field's PyTorch reference implementation becomes a folder like the
ones ``p2p fit`` leaves: ``config.yaml`` and ``checkpoints/step_00000000.pt`` (format 2) holding the converted
weights and where they came from (file, URL, SHA-256). So ``predict``, ``test``, ``export``, ``demo`` and
``fit --resume`` accept it as they accept any run, and ``fit --init_from`` fine-tunes from it. The conversion
itself (architecture inferred from the tensors, every key and shape checked) is :mod:`p2p_core.reference`.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
from pathlib import Path

import torch

from p2p_core import checkpoint, hub
from p2p_core.config import dump_yaml
from p2p_core.downloads import DownloadedFile, Limits, PretrainedEntry, cache_dir, download_pretrained, locked
from p2p_core.errors import DataError, UnknownComponentError
from p2p_core.files import write_atomically
from p2p_core.networks import build_generator
from p2p_core.reference import Converted, load_reference
from p2p_core.registry import Registry, default_registry
from p2p_core.spec import MAX_MEMORY_GB, ComponentSpec, RunSpec, Shapes, TrainedSpec

PRETRAINED = "pretrained:"
"""``--ckpt pretrained:NAME``: a released generator, downloaded and imported into the cache on first use."""


def import_reference(
    *,
    generator: Path,
    out: Path,
    discriminator: Path | None = None,
    data: ComponentSpec | None = None,
    source_url: str | None = None,
    registry: Registry | None = None,
    max_memory_gb: float = MAX_MEMORY_GB,
) -> Path:
    """Write the run folder ``out`` from a reference generator (and discriminator) state dict; returns it. Networks
    whose weights and one image need more than ``max_memory_gb`` are refused before they are built."""
    registry = registry or default_registry()
    out = Path(out)
    if out.exists():
        raise DataError(f"{out} already exists; choose another --out (an import never overwrites)")
    checkpoint.check_writable(out, needed_bytes=0)  # a file on the way, or a read-only folder: say so before converting
    g = _converted(generator, "generator", registry, max_memory_gb)
    d = _converted(discriminator, "discriminator", registry, max_memory_gb) if discriminator is not None else None
    shapes = Shapes(in_channels=g.in_channels, out_channels=g.out_channels, image_size=g.image_size,
                    disc_in_channels=d.in_channels if d else None)
    if d is not None and d.in_channels not in (g.out_channels, g.in_channels + g.out_channels):
        raise DataError(
            f"discriminator {discriminator} sees {d.in_channels} channels, but generator {generator} maps "
            f"{g.in_channels} to {g.out_channels}: it would see {g.out_channels} (unconditional) or "
            f"{g.in_channels + g.out_channels} (conditional); were they trained together?"
        )
    conditional = d is None or d.in_channels == g.in_channels + g.out_channels
    run = RunSpec(
        generator=ComponentSpec(g.name, g.options),
        disc=ComponentSpec(d.name, d.options) if d else ComponentSpec(registry.default("discriminator")),
        data=data or ComponentSpec("aligned"),
        loss="cgan+l1" if conditional else "gan+l1",
    )
    trained = TrainedSpec(run=run, shapes=shapes, plugins={p.distribution: p.version for p in registry.plugins if not p.error},
                          providers=registry.providers(run), adversarial=d is not None)
    for converted in filter(None, (g, d)):
        converted.build(registry)  # the spec rebuilds exactly these weights, or this fails before anything is written
    state = {
        "format": 2,
        "step": 0,
        "models": {"generator": g.state_dict, **({"discriminator": d.state_dict} if d else {})},
        "optimizers": {},
        **trained.to_dict(),
        "source": {
            "generator": _provenance(generator, source_url),
            **({"discriminator": _provenance(discriminator, None)} if discriminator is not None else {}),
        },
    }
    checkpoint.save(state, out, 0)
    config = run.to_dict() | {"out_dir": str(out.parent), "name": out.name}
    write_atomically(out / "config.yaml", dump_yaml(config).encode())
    return out


def locate(
    ckpt: Path | str,
    *,
    registry: Registry | None = None,
    sha256: str | None = None,
    trust_unpinned: bool = False,
    limits: Limits = Limits(),
) -> Path:
    """What ``--ckpt`` names: a checkpoint, run folder or safetensors file as given; for ``hf:OWNER/NAME[@REVISION]``
    the model's safetensors file, fetched into the Hub cache; for ``pretrained:NAME`` the run folder of that
    released generator, downloaded (verified: see :mod:`p2p_core.downloads`, whose ``sha256``, ``trust_unpinned`` and
    ``limits`` these are) and imported into the cache the first time (again if the file changed). An imported network
    that is not the catalogue's (parameters, channels, image size) is refused unless the user vouched for the file
    with their own ``sha256``."""
    text = str(ckpt)
    if hub.is_reference(text):
        return hub.download(text)
    if not text.startswith(PRETRAINED):
        return Path(ckpt)
    registry = registry or default_registry()
    name = text.removeprefix(PRETRAINED)
    entries = registry.pretrained
    if name not in entries:
        raise UnknownComponentError("pretrained model", name, entries, hint=". `p2p pretrained list` shows them.")
    folder = cache_dir() / "pretrained" / name
    with locked(text, f"importing {text}"):
        downloaded = download_pretrained(name=name, entries=entries, sha256=sha256, trust_unpinned=trust_unpinned, limits=limits)
        if folder.is_dir() and _imported_sha256(folder) == downloaded.sha256:
            return folder
        scratch = re.compile(re.escape(f".{name}-") + r"[a-z0-9_]{8}")
        for stale in folder.parent.iterdir():  # staging folders of killed imports: the lock says none is in progress
            if scratch.fullmatch(stale.name) and stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=folder.parent)) / name
        try:
            import_reference(generator=downloaded.path, out=staging, data=dataset_of(entries[name]),
                             source_url=downloaded.url, registry=registry)
            if downloaded.verified != "--sha256":
                _check_architecture(staging, entries[name], downloaded, registry)
            shutil.rmtree(folder, ignore_errors=True)
            staging.rename(folder)
        finally:
            shutil.rmtree(staging.parent, ignore_errors=True)
    return folder


def _check_architecture(run: Path, entry: PretrainedEntry, downloaded: DownloadedFile, registry: Registry) -> None:
    """Refuse an imported generator that is not the network the catalogue describes (a file that hashes as expected
    but was pinned wrongly, or trusted on first use from a mirror that serves another model)."""
    spec = checkpoint.read(run).spec
    with torch.device("meta"):
        parameters = sum(p.numel() for p in build_generator(spec.run, spec.shapes, registry).parameters())
    shapes = spec.shapes
    found = (parameters, shapes.in_channels, shapes.out_channels, shapes.image_size)
    wanted = (entry.parameters or parameters, entry.in_channels, entry.out_channels, entry.image_size)
    if found != wanted:
        def describe(parameters: int, in_channels: int, out_channels: int, size: int) -> str:
            return f"{parameters:,} parameters, {in_channels} -> {out_channels} channels, {size} px"

        raise DataError(
            f"{downloaded.url} holds a generator of {describe(*found)}, but the catalogue's {entry.name} has "
            f"{describe(*wanted)}: it is another model; nothing was imported. If you trust this file, pass "
            f"--sha256 {downloaded.sha256} to `p2p pretrained download {entry.name}`"
        )


def dataset_of(entry: PretrainedEntry) -> ComponentSpec:
    """The dataset a released generator was trained on, as ``p2p data download`` unpacks it: what ``p2p test`` reads."""
    return ComponentSpec(entry.dataset_reader, {"root": f"datasets/{entry.dataset}", "direction": entry.direction,
                                     "load_size": round(entry.image_size * 286 / 256), "crop_size": entry.image_size})


def _converted(path: Path, role: str, registry: Registry, max_memory_gb: float) -> Converted:
    converted = load_reference(path, registry=registry, max_memory_gb=max_memory_gb)
    if converted.role != role:
        hint = " pass it with --disc" if converted.role == "discriminator" else " pass it as the generator"
        raise DataError(f"{path} holds a {converted.role} ({converted.name}), not a {role};{hint}")
    return converted


def _provenance(path: Path, url: str | None) -> dict[str, str | None]:
    with open(path, "rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").hexdigest()
    return {"file": str(Path(path).resolve()), "url": url, "sha256": digest}


def _imported_sha256(folder: Path) -> str | None:
    try:
        return checkpoint.read(folder).state.get("source", {}).get("generator", {}).get("sha256")
    except DataError:
        return None

"""Models trained by other programs, as p2p run folders: ``p2p import`` and ``--ckpt pretrained:NAME``.

A state dict of the field's PyTorch reference (junyanz/pytorch-CycleGAN-and-pix2pix) becomes a folder like the
ones ``p2p fit`` leaves: ``config.yaml`` and ``checkpoints/step_00000000.pt`` (format 2) holding the converted
weights and where they came from (file, URL, SHA-256). So ``predict``, ``test``, ``export``, ``demo`` and
``fit --resume`` accept it as they accept any run, and ``fit --init_from`` fine-tunes from it. The conversion
itself (architecture inferred from the tensors, every key and shape checked) is :mod:`p2p_core.reference`.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path

from p2p_core import checkpoint
from p2p_core.config import dump_yaml
from p2p_core.downloads import PretrainedEntry, cache_dir, download_pretrained
from p2p_core.errors import DataError, UnknownComponentError
from p2p_core.files import write_atomically
from p2p_core.reference import Converted, load_reference
from p2p_core.registry import Registry, default_registry
from p2p_core.spec import ComponentSpec, RunSpec, Shapes, TrainedSpec

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
) -> Path:
    """Write the run folder ``out`` from a reference generator (and discriminator) state dict; returns it."""
    registry = registry or default_registry()
    out = Path(out)
    if out.exists():
        raise DataError(f"{out} already exists; choose another --out (an import never overwrites)")
    checkpoint.check_writable(out, needed_bytes=0)  # a file on the way, or a read-only folder: say so before converting
    g = _converted(generator, "generator")
    d = _converted(discriminator, "discriminator") if discriminator is not None else None
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


def locate(ckpt: Path | str, *, registry: Registry | None = None) -> Path:
    """What ``--ckpt`` names: a checkpoint or run folder as given, or for ``pretrained:NAME`` the run folder of that
    released generator, downloaded and imported into the cache the first time (again if the file changed)."""
    text = str(ckpt)
    if not text.startswith(PRETRAINED):
        return Path(ckpt)
    registry = registry or default_registry()
    name = text.removeprefix(PRETRAINED)
    entries = registry.pretrained
    if name not in entries:
        raise UnknownComponentError("pretrained model", name, entries, hint=". `p2p pretrained list` shows them.")
    downloaded = download_pretrained(name=name, entries=entries)
    folder = cache_dir() / "pretrained" / name
    if folder.is_dir() and _imported_sha256(folder) == downloaded.sha256:
        return folder
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=folder.parent)) / name
    try:
        import_reference(generator=downloaded.path, out=staging, data=dataset_of(entries[name]),
                         source_url=downloaded.url, registry=registry)
        shutil.rmtree(folder, ignore_errors=True)
        staging.rename(folder)
    finally:
        shutil.rmtree(staging.parent, ignore_errors=True)
    return folder


def dataset_of(entry: PretrainedEntry) -> ComponentSpec:
    """The dataset a released generator was trained on, as ``p2p data download`` unpacks it: what ``p2p test`` reads."""
    return ComponentSpec("aligned", {"root": f"datasets/{entry.dataset}", "direction": entry.direction,
                                     "load_size": round(entry.image_size * 286 / 256), "crop_size": entry.image_size})


def _converted(path: Path, role: str) -> Converted:
    converted = load_reference(path)
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

"""What runs a trained generator at inference: a backend, a component kind plugins register (``p2p_backends``).

p2p's own are plugins like any other's (``p2p_backends``): ``torch`` (eager, autocast for lower precisions) and
``onnxruntime`` (an ONNX export of the checkpoint that p2p builds once and caches, :func:`cached_onnx`, which any
ONNX-based backend can share). `p2p list backends` shows each with the devices, precisions and modes it runs. Every
backend takes an N x C x H x W batch of any H x W and returns :func:`p2p_core.inference.translate`'s output at the
same size, within :data:`TOLERANCE` of it for its precision (the kit checks it: ``check_backend_matches_translate``).

``--backend auto`` takes, of the backends that can run the mode and precision asked for on the device, the one
that prefers the device most (its ``auto_priority``): onnxruntime on the CPU in eval mode at float32, when it is
installed (1.14x eager PyTorch on the same decoded images on this project's 2-core CPU on a quiet machine,
``benchmarks/README.md``), else torch. It never changes the precision: ``--precision bfloat16`` on the CPU takes
torch, the backend that runs it there.

Paper mode (dropout on, batch statistics) runs on the torch backend only: an ONNX graph draws dropout from
onnxruntime's own generator, which torch's seed does not reach, so ``--seed`` could not make results
repeatable; PyTorch's dropout follows ``torch.manual_seed``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import attrs
import torch
from torch import Tensor

from p2p_core.devices import native_precision_note
from p2p_core.downloads import cache_dir
from p2p_core.errors import ConfigError
from p2p_core.files import locked, replacing
from p2p_core.inference import TrainedGenerator, load_generator, translate
from p2p_core.protocols import InferenceBackend
from p2p_core.registry import Registry, default_registry
from p2p_core.spec import Precision, canonical_precision

Backend = str
"""A registered backend's name (`p2p list backends`), or ``auto``."""
PRECISIONS: tuple[Precision, ...] = ("float32", "bfloat16", "float16")
TOLERANCE: dict[str, float] = {"float32": 1e-4, "float16": 2 / 127.5, "bfloat16": 4 / 127.5}
"""How far (largest absolute difference, outputs in [-1, 1]) a backend may be from :func:`translate` in float32 on
the kit's small generator: float32 up to summation order; float16 (11 significant bits) by 2 8-bit levels, bfloat16
(8) by 4. p2p's torch backend differs there by 0.0003 in float16 and 0.003 in bfloat16."""
CACHE_VERSION = 1
"""Part of every cached export's name: raise it when what an export holds changes, so old ones are rebuilt."""


@attrs.frozen(kw_only=True)
class Runner:
    """A generator ready to translate batches: ``runner(batch)`` for N x C x H x W of any H x W, on any device."""

    backend: str
    """The registered name of the backend that runs it."""
    description: str
    """What runs, e.g. ``onnxruntime (CPUExecutionProvider, 2 threads)``."""
    run: Callable[[Tensor], Tensor]

    def __call__(self, batch: Tensor) -> Tensor:
        return self.run(batch)

    def translate(self, image: Tensor, *, shorter_side: int | None = None) -> Tensor:
        """:func:`p2p_core.inference.translate` through this backend: C x H x W or N x C x H x W, any size."""
        return translate(self.run, image, size_multiple=1, shorter_side=shorter_side)  # the runner pads itself


def choose(
    backend: Backend, *, mode: str, device: torch.device, precision: str = "float32", registry: Registry | None = None
) -> str:
    """The backend ``auto`` stands for, or the one asked for once it is known to run ``mode`` in ``precision`` on
    ``device`` here: its registered name."""
    registry = registry or default_registry()
    precision = _checked_precision(precision)
    if backend != "auto":
        name = registry.get("backend", backend).name
        problem = _problem(registry, name, mode=mode, device=device, precision=precision)
        if problem:
            raise ConfigError(f"--backend {backend} {problem}")
        return name
    runnable, reasons = [], []
    for component in registry.components("backend"):
        problem = _problem(registry, component.name, mode=mode, device=device, precision=precision)
        if problem:
            reasons.append(f"{component.name} {problem}")
        else:
            runnable.append((-registry.create("backend", component.name).auto_priority.get(device.type, 0), component.name))
    if not runnable:
        raise ConfigError(f"no backend runs {mode} mode in {precision} on {device.type}: {'; '.join(reasons)}")
    return min(runnable)[1]  # the highest priority; between equals, the first name


def open_backend(
    trained: TrainedGenerator,
    *,
    backend: Backend = "auto",
    device: torch.device | None = None,
    precision: str = "float32",
    registry: Registry | None = None,
) -> Runner:
    """A :class:`Runner` for ``trained`` (in the mode it was loaded in) on ``device`` (default: its own), in
    ``precision``; warns where the device runs that precision emulated."""
    registry = registry or default_registry()
    device = device or next(trained.module.parameters()).device
    precision = _checked_precision(precision)
    mode = "paper" if trained.module.training else "eval"
    name = choose(backend, mode=mode, device=device, precision=precision, registry=registry)
    if note := native_precision_note(precision, device):
        warnings.warn(f"--precision {precision}: {note}", stacklevel=2)
    runner = registry.create("backend", name).open(trained, device=device, precision=precision)
    return attrs.evolve(runner, backend=name)


def supported(backend: InferenceBackend) -> str:
    """What a backend runs, as `p2p list backends` shows it: ``cpu: float32, bfloat16; cuda: float32, float16``."""
    return "; ".join(f"{device}: {', '.join(precisions)}" for device, precisions in backend.supports.items())


def _checked_precision(precision: str) -> str:
    canonical = canonical_precision(precision)
    if canonical not in PRECISIONS:
        raise ConfigError(f"--precision must be {', '.join(PRECISIONS)}, got {precision!r}")
    return canonical


def _problem(registry: Registry, name: str, *, mode: str, device: torch.device, precision: str) -> str | None:
    """Why backend ``name`` cannot run ``mode`` in ``precision`` on ``device`` here, with what can; or None."""
    backends = {component.name: registry.create("backend", component.name) for component in registry.components("backend")}
    backend = backends.pop(name)
    able = [other for other, b in backends.items() if mode in b.modes and precision in b.supports.get(device.type, ())]
    instead = f", or --backend {' / '.join(able)}, which can" if able else ""
    if device.type not in backend.supports:
        return f"runs on {' or '.join(backend.supports)}, not {device.type}: use --device {next(iter(backend.supports))}{instead}"
    if mode not in backend.modes:
        return f"runs {' and '.join(backend.modes)} mode only: use --mode {backend.modes[0]}{instead}"
    precisions = backend.supports[device.type]
    if precision not in precisions:
        return f"runs {', '.join(precisions)} on {device.type}, not {precision}: use --precision {precisions[0]}{instead}"
    return backend.problem(device=device)


def cached_onnx(trained: TrainedGenerator, *, precision: Literal["float32", "float16"] = "float32") -> Path:
    """The checkpoint's generator as a checked any-size ONNX file, built on first use and then reused.

    Keyed by the checkpoint file's SHA-256 (a retrained file of the same name gets a new export) and the mode.
    """
    from p2p_core.export import write_checked

    mode = "paper" if trained.module.training else "eval"
    with open(trained.path, "rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").hexdigest()
    weights = "-ema" if trained.averaged else ""  # a checkpoint holding an average holds two generators
    stem = cache_dir() / "onnx" / f"{digest}-{trained.direction}{weights}-{mode}-v{CACHE_VERSION}"
    path = stem.with_name(f"{stem.name}-{precision}.onnx")
    if path.is_file():
        return path
    try:
        stem.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"cannot keep ONNX exports in {stem.parent} ({error.strerror}); point $P2P_CACHE at a "
                          "writable folder, or use --backend torch") from None
    # One process builds an entry; another that wants it meanwhile waits, then takes the file it built.
    with locked(stem.with_name(f"{stem.name}.lock"), what=f"ONNX cache entry {stem}", wait=True):
        if path.is_file():
            return path
        full = stem.with_name(f"{stem.name}-float32.onnx")
        if not full.is_file():
            print(f"p2p: building the ONNX export of {trained.path} for onnxruntime, once: {full}", file=sys.stderr)
            on_cpu = trained if next(trained.module.parameters()).device.type == "cpu" else load_generator(
                trained.path, mode=mode, direction=trained.direction, ema=trained.averaged)
            # The exporter narrates each of its steps on stdout, which belongs to the command's own output.
            with contextlib.redirect_stdout(io.StringIO()):
                write_checked(on_cpu, format="onnx", out=full)
        if precision == "float16":
            import onnx
            from onnxruntime.transformers.float16 import convert_float_to_float16

            # Float32 in and out as every other backend, float16 inside, where the GPU gains from it.
            half = convert_float_to_float16(onnx.load(str(full)), keep_io_types=True)
            with replacing(path, durable=False) as temporary:
                onnx.save(half, str(temporary))
    return path

"""What runs a trained generator at inference: PyTorch, or ONNX Runtime on an export p2p builds and caches.

Both take an N x C x H x W batch of any H x W and return the translation at the same size (the torch backend
through :func:`p2p_core.inference.translate`, the ONNX graph through the padding it holds), and agree within
1e-4 in eval mode. On this project's 2-core CPU onnxruntime runs the U-Net 256 about twice as fast as eager
PyTorch (``benchmarks/README.md``), so ``auto`` takes it on the CPU when it can.

Paper mode (dropout on, batch statistics) runs on the torch backend only: an ONNX graph draws dropout from
onnxruntime's own generator, which torch's seed does not reach, so ``--seed`` could not make results
repeatable; PyTorch's dropout follows ``torch.manual_seed``.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import attrs
import torch
from torch import Tensor

from p2p_core.downloads import cache_dir
from p2p_core.errors import ConfigError
from p2p_core.files import locked, replacing
from p2p_core.inference import TrainedGenerator, load_generator, translate

Backend = Literal["auto", "torch", "onnxruntime"]
Precision = Literal["float32", "float16", "bfloat16"]
BACKEND_HELP = (
    "torch, onnxruntime (an ONNX export of the checkpoint, built once and cached in $P2P_CACHE, default "
    "~/.cache/p2p), or auto: onnxruntime on the CPU in eval mode when it is installed, else torch. "
    "Paper mode runs on torch only (its dropout follows --seed there)."
)
PRECISION_HELP = (
    "float32, or opt in to lower precision on a GPU: float16 (torch autocast, or onnxruntime's CUDA provider) or "
    "bfloat16 (torch autocast only). Outputs then differ from float32 by up to a few 8-bit levels."
)
CACHE_VERSION = 1
"""Part of every cached export's name: raise it when what an export holds changes, so old ones are rebuilt."""


@attrs.frozen(kw_only=True)
class Runner:
    """A generator ready to translate batches: ``runner(batch)`` for N x C x H x W of any H x W, on any device."""

    backend: Literal["torch", "onnxruntime"]
    description: str
    """What runs, e.g. ``onnxruntime (CPUExecutionProvider, 2 threads)``."""
    run: Callable[[Tensor], Tensor]

    def __call__(self, batch: Tensor) -> Tensor:
        return self.run(batch)

    def translate(self, image: Tensor, *, shorter_side: int | None = None) -> Tensor:
        """:func:`p2p_core.inference.translate` through this backend: C x H x W or N x C x H x W, any size."""
        return translate(self.run, image, size_multiple=1, shorter_side=shorter_side)  # the runner pads itself


def choose(backend: Backend, *, mode: str, device: torch.device) -> Literal["torch", "onnxruntime"]:
    """The backend ``auto`` stands for, or the one asked for once it is known to work here."""
    if backend == "torch":
        return "torch"
    problem = _onnxruntime_problem(mode=mode, device=device)
    if backend == "auto":
        return "torch" if problem or device.type != "cpu" else "onnxruntime"
    if backend != "onnxruntime":
        raise ConfigError(f"backend must be auto, torch or onnxruntime, got {backend!r}")
    if problem:
        raise ConfigError(f"--backend onnxruntime {problem}")
    return "onnxruntime"


def open_backend(
    trained: TrainedGenerator, *, backend: Backend = "auto", device: torch.device | None = None, precision: Precision = "float32"
) -> Runner:
    """A :class:`Runner` for ``trained`` (in the mode it was loaded in) on ``device`` (default: its own)."""
    device = device or next(trained.module.parameters()).device
    mode = "paper" if trained.module.training else "eval"
    chosen = choose(backend, mode=mode, device=device)
    if chosen == "torch":
        return _torch_runner(trained, device=device, precision=precision)
    return _onnxruntime_runner(trained, device=device, precision=precision)


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


def _onnxruntime_problem(*, mode: str, device: torch.device) -> str | None:
    """Why the onnxruntime backend cannot run here, or None."""
    if mode != "eval":
        return "runs eval mode only: use --mode eval, or --backend torch for paper mode (dropout follows --seed there)"
    missing = [name for name in ("onnxruntime", "onnx", "onnxscript") if importlib.util.find_spec(name) is None]
    if missing:
        return f"needs {', '.join(missing)}: pip install 'p2p[export]'"
    if device.type == "cuda":
        import onnxruntime

        if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            return "on cuda needs onnxruntime-gpu (the CUDA provider); use --backend torch, or --device cpu"
    elif device.type != "cpu":
        return f"runs on cpu or cuda, not {device.type}"
    return None


def _torch_runner(trained: TrainedGenerator, *, device: torch.device, precision: Precision) -> Runner:
    module = trained.module.to(device)
    autocast = (
        contextlib.nullcontext
        if precision == "float32"
        else lambda: torch.autocast(device.type, dtype=getattr(torch, precision))
    )

    def run(batch: Tensor) -> Tensor:
        with torch.inference_mode(), autocast():
            return translate(module, batch.to(device)).float()

    return Runner(backend="torch", description=f"torch ({device}, {precision})", run=run)


def _onnxruntime_runner(trained: TrainedGenerator, *, device: torch.device, precision: Precision) -> Runner:
    import onnxruntime

    from p2p_core.export import INPUT_NAME, OUTPUT_NAME

    if precision == "bfloat16" or (precision == "float16" and device.type != "cuda"):
        raise ConfigError(
            f"--precision {precision} with --backend onnxruntime needs --device cuda and float16; use --backend torch, "
            "or float32"
        )
    options = onnxruntime.SessionOptions()
    # torch's default thread count is the number of physical cores; hyperthreads only contend for the same units.
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1  # one chain of convolutions: nothing to run side by side
    # Idle pool threads otherwise spin for a while after each run, taking the cores from predict's decoding and
    # encoding threads (and from anything else in the process) between images.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device.type == "cuda" else ["CPUExecutionProvider"]
    session = onnxruntime.InferenceSession(str(cached_onnx(trained, precision=precision)), options, providers=providers)

    def run(batch: Tensor) -> Tensor:
        (output,) = session.run([OUTPUT_NAME], {INPUT_NAME: batch.detach().float().cpu().numpy()})
        return torch.from_numpy(output).to(batch.device)

    where = session.get_providers()[0]
    return Runner(
        backend="onnxruntime",
        description=f"onnxruntime ({where}, {options.intra_op_num_threads} threads, {precision})",
        run=run,
    )

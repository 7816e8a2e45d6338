"""``p2p bench``: how fast one training step and one translation run, for any components and settings.

It times the method's own step (``Training.train_step``) on fixed random batches (no data loading: that is what
``p2p fit`` overlaps with compute), after warm-up steps, and puts the figure in context: FLOPs counted by
``torch.utils.flop_counter`` and the share of a matrix-multiply peak measured on the same device.
"""

from __future__ import annotations

import resource
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import torch
from torch.utils.flop_counter import FlopCounterMode

from p2p_core.devices import resolve_device
from p2p_core.registry import Registry
from p2p_core.protocols import Sample
from p2p_core.spec import RunSpec, Shapes
from p2p_core.training import Training


@attrs.frozen(kw_only=True)
class Result:
    device: str
    batch_size: int
    image_size: int
    precision: str
    train_images_per_s: float
    train_gflop_per_step: float
    train_gflops: float
    inference_images_per_s: float | None
    """The generator alone in torch eager, eval mode, in the trainer's precision (autocast)."""
    inference_backends: dict[str, float] = attrs.field(factory=dict)
    """Images/s of each inference backend that runs the trainer's precision here (``p2p predict --backend``), side by side."""
    matmul_peak_gflops: float
    peak_memory_mib: float
    memory_kind: str

    @property
    def peak_fraction(self) -> float:
        return self.train_gflops / self.matmul_peak_gflops

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self) | {"peak_fraction": self.peak_fraction}

    def text(self) -> str:
        lines = [
            f"device {self.device}, batch {self.batch_size}, {self.image_size}x{self.image_size}, {self.precision}",
            f"train      {self.train_images_per_s:8.3f} images/s   {self.train_gflop_per_step:8.1f} GFLOP/step   "
            f"{self.train_gflops:8.1f} GFLOP/s = {100 * self.peak_fraction:.0f}% of the measured "
            f"{self.matmul_peak_gflops:.0f} GFLOP/s matmul peak",
        ]
        if self.inference_images_per_s is not None:
            lines.append(f"inference  {self.inference_images_per_s:8.3f} images/s (eval mode, inference_mode)")
        for backend, rate in self.inference_backends.items():
            lines.append(f"  --backend {backend:12} {rate:8.3f} images/s (p2p predict's runner, any-size padding included)")
        lines.append(f"peak memory {self.peak_memory_mib:.0f} MiB ({self.memory_kind})")
        return "\n".join(lines)


def run(*, spec: RunSpec, image_size: int, steps: int, warmup: int, inference: bool, registry: Registry) -> Result:
    """Time ``spec``'s model on ``image_size`` RGB batches of the trainer's batch size (no data loading)."""
    train = spec.trainer
    device = resolve_device(train.device, option="--trainer.device")
    shapes = Shapes(in_channels=3, out_channels=3, image_size=image_size)
    model = Training.build(spec, shapes, total_steps=1 + warmup + steps, device=device, registry=registry)
    random = torch.Generator().manual_seed(0)
    x, target = (
        model.to_device(torch.rand(train.batch_size, 3, image_size, image_size, generator=random) * 2 - 1) for _ in range(2)
    )
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    batch = Sample(a=x, b=target, path="")

    def step() -> None:
        model.train_step(batch)

    flops = _count_flops(step)
    train_seconds = _time(step, steps=steps, warmup=warmup, device=device)
    inference_rate, backends = None, {}
    if inference:
        generator_module = model.translator("AtoB").eval()
        with torch.inference_mode(), model.autocast():
            seconds = _time(lambda: generator_module(x), steps=steps, warmup=warmup, device=device)
        inference_rate = train.batch_size / seconds
        backends = _backend_rates(model, x, steps=steps, warmup=warmup, device=device, precision=train.precision, registry=registry)

    if device.type == "cuda":
        peak, kind = torch.cuda.max_memory_allocated(device) / 2**20, "max allocated on the GPU"
    else:
        peak, kind = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "peak RSS of the process"
    rate = train.batch_size / train_seconds
    return Result(
        device=str(device),
        batch_size=train.batch_size,
        image_size=image_size,
        precision=train.precision,
        train_images_per_s=rate,
        train_gflop_per_step=flops / 1e9,
        train_gflops=flops / 1e9 / train_seconds,
        inference_images_per_s=inference_rate,
        inference_backends=backends,
        matmul_peak_gflops=matmul_peak_gflops(device, getattr(torch, train.precision)),
        peak_memory_mib=peak,
        memory_kind=kind,
    )


def _backend_rates(
    model: Training, x: torch.Tensor, *, steps: int, warmup: int, device: torch.device, precision: str, registry: Registry
) -> dict[str, float]:
    """Images/s of each backend that can run ``precision`` here, on the model saved and loaded as ``p2p predict`` would."""
    import tempfile

    from p2p_core import checkpoint
    from p2p_core.backends import choose, open_backend
    from p2p_core.downloads import cache_in
    from p2p_core.errors import ConfigError
    from p2p_core.inference import load_generator

    rates = {}
    with tempfile.TemporaryDirectory() as folder, cache_in(Path(folder)):  # the export of a throwaway checkpoint
        trained = load_generator(checkpoint.save(model.state_dict(), Path(folder), model.step), mode="eval", device=device,
                                 registry=registry)
        for backend in registry.available("backend"):
            try:
                choose(backend, mode="eval", device=device, precision=precision, registry=registry)
            except ConfigError:  # not installed, or not for this device or precision: nothing to compare
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # an emulated precision: the training step has said so already
                runner = open_backend(trained, backend=backend, device=device, precision=precision, registry=registry)
            with torch.inference_mode():
                rates[backend] = x.shape[0] / _time(lambda: runner(x), steps=steps, warmup=warmup, device=device)
    return rates


def _count_flops(step: Callable[[], object]) -> int:
    """FLOPs of one call; compiled graphs count the same as eager ones (the counter sees through them)."""
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def _time(work: Callable[[], object], *, steps: int, warmup: int, device: torch.device) -> float:
    """Seconds per call, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        work()
    _synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        work()
    _synchronize(device)
    return (time.perf_counter() - start) / steps


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak_gflops(device: torch.device, dtype: torch.dtype, seconds: float = 1.0) -> float:
    """GFLOP/s of a large square matrix multiply: what this device can do at best in this precision."""
    n = 4096 if device.type == "cuda" else 1024
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    a @ b
    _synchronize(device)
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        calls += 1
        if device.type == "cuda" and calls % 10 == 0:
            _synchronize(device)
    _synchronize(device)
    return 2 * n**3 * calls / (time.perf_counter() - start) / 1e9


def report(result: Result, *, as_json: bool) -> None:
    import json

    sys.stdout.write((json.dumps(result.as_dict(), indent=2) if as_json else result.text()) + "\n")

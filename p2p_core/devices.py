"""Where a command runs: ``auto``, ``cpu`` or ``cuda``, checked against what torch sees, and what it runs natively."""

from __future__ import annotations

import platform
from typing import Literal

import torch

from p2p_core.errors import ConfigError

DeviceName = Literal["auto", "cpu", "cuda"]


def resolve_device(name: str, *, option: str = "--device") -> torch.device:
    """The device ``name`` asks for; ``option`` is how the user gave it, for the error message."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{option} cuda was asked for, but torch sees no CUDA device; use auto or cpu")
    if name not in ("cpu", "cuda"):
        raise ConfigError(f"{option} must be auto, cpu or cuda, got {name!r}")
    return torch.device(name)


def native_precision_note(precision: str, device: torch.device) -> str | None:
    """Why ``precision`` will run emulated on ``device``, or None: a CPU without bfloat16 (float16) instructions
    runs torch's reduced-precision kernels in software, so they may well be slower than float32, not faster."""
    if device.type != "cpu" or native_on_cpu(precision):
        return None
    instructions = {"bfloat16": "AVX512-BF16 or AMX", "float16": "AVX512-FP16 or AMX-FP16"}[precision]
    return (f"this CPU ({cpu_name()}) has no native {precision} instructions, so {precision} runs emulated and may well "
            f"be slower than float32; use float32 here, or a CPU with {instructions} (or a GPU) for speed")


def native_on_cpu(precision: str) -> bool:
    """Whether this CPU computes in ``precision`` natively: oneDNN's own test, the one that picks its bfloat16 and
    float16 kernels (AVX512-BF16 or AMX; AVX512-FP16 or AMX-FP16)."""
    tests = {"bfloat16": torch.ops.mkldnn._is_mkldnn_bf16_supported, "float16": torch.ops.mkldnn._is_mkldnn_fp16_supported}
    return precision not in tests or bool(tests[precision]())


def cpu_name() -> str:
    """The processor's model name as the OS reports it (Linux's /proc/cpuinfo), else what Python's platform says."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            return next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), platform.processor())
    except OSError:
        return platform.processor() or "unknown"

"""p2p's inference backends, torch and onnxruntime: ``p2p predict|test|demo --backend NAME``.

Built-ins registered through the same ``p2p_backends`` hook a third-party backend uses (see
:class:`p2p_core.InferenceBackend`); the core chooses between them (``--backend auto``) and checks what each
supports before opening it.
"""

from __future__ import annotations

import contextlib
import importlib.util

import torch
from torch import Tensor

import p2p_core
from p2p_core.backends import Runner, cached_onnx
from p2p_core.inference import TrainedGenerator, translate


class TorchBackend:
    """PyTorch eager; float16 and bfloat16 under autocast. Paper mode's dropout follows --seed."""

    supports = {"cpu": ("float32", "bfloat16", "float16"), "cuda": ("float32", "float16", "bfloat16")}
    modes = ("eval", "paper")
    auto_priority = {"cpu": 0, "cuda": 0}

    def problem(self, *, device: torch.device) -> str | None:
        return None

    def open(self, trained: TrainedGenerator, *, device: torch.device, precision: str) -> Runner:
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


class OnnxRuntimeBackend:
    """ONNX Runtime on p2p's cached ONNX export of the checkpoint (pip install 'p2p[export]'); eval mode only."""

    supports = {"cpu": ("float32",), "cuda": ("float32", "float16")}
    # An ONNX graph draws dropout from onnxruntime's own generator, which torch's seed does not reach.
    modes = ("eval",)
    # 1.14x eager PyTorch at float32 on the project's 2-core CPU (benchmarks/README.md); on a GPU torch is the default.
    auto_priority = {"cpu": 10, "cuda": -10}

    def problem(self, *, device: torch.device) -> str | None:
        missing = [name for name in ("onnxruntime", "onnx", "onnxscript") if importlib.util.find_spec(name) is None]
        if missing:
            return f"needs {', '.join(missing)}: pip install 'p2p[export]'"
        if device.type == "cuda":
            import onnxruntime

            if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
                return "on cuda needs onnxruntime-gpu (the CUDA provider); use --backend torch, or --device cpu"
        return None

    def open(self, trained: TrainedGenerator, *, device: torch.device, precision: str) -> Runner:
        import onnxruntime

        from p2p_core.export import INPUT_NAME, OUTPUT_NAME

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


@p2p_core.hookimpl
def p2p_backends() -> dict[str, type]:
    return {"torch": TorchBackend, "onnxruntime": OnnxRuntimeBackend}

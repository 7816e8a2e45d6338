"""``p2p demo``: draw an input in the browser and watch a trained generator translate it.

The web server needs Flask and waitress (the ``demo`` extra). This module only checks for it, so that the CLI can list
and describe the command without Flask, and saying how to install it is the first thing a run without it does.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Literal

from p2p_core.errors import ConfigError
from p2p_core.ranges import Count, Seed, ranged
from p2p_core.registry import Registry
from p2p_core.protocols import Direction
from p2p_core.spec import Mode, Precision

Port = ranged(int, 0, 65535)
Megabytes = ranged(float, 0, 10**6, low_open=True)
ImagePixels = ranged(int, 1, 65536**2)
Seconds = ranged(float, 0, 86400, low_open=True)

INSTALL_HINT = "pip install -e '.[demo]' in a checkout of p2p, or pip install 'p2p[demo]'"


def demo(
    *,
    ckpt: Path,
    host: str = "127.0.0.1",
    port: Port = 7860,
    device: Literal["auto", "cpu", "cuda"] = "auto",
    mode: Mode = "paper",
    seed: Seed = 0,
    max_upload_mb: Megabytes = 20.0,
    max_pixels: ImagePixels = 2048 * 2048,
    max_busy: Count = 4,
    timeout_s: Seconds = 30.0,
    deadline_s: Seconds = 120.0,
    max_connections: Count = 100,
    backend: str = "auto",
    precision: Precision = "float32",
    direction: Direction = "AtoB",
    ema: bool = True,
    registry: Registry | None = None,
) -> None:
    """Serve a page to draw an input and watch the model translate it, and POST /translate for scripts.

    Args:
        ckpt: Checkpoint file, run folder (its newest checkpoint that loads), model.safetensors (or its folder),
            pretrained:NAME, or hf:OWNER/NAME[@REVISION] (a p2p model on the Hugging Face Hub).
        host: Address to listen on. The default serves this machine only; 0.0.0.0 serves the whole network,
            without any authentication.
        port: Port to listen on; 0 picks a free one.
        device: Where the generator runs.
        mode: paper: dropout on and batch statistics at test time, as in the paper; eval: standard eval mode.
        seed: The dropout noise of paper mode is drawn from this seed for every request, so the same drawing
            always gives the same output and a changed output comes from the drawing alone.
        max_upload_mb: Largest upload accepted, in megabytes (10^6 bytes).
        max_pixels: Largest image accepted, in pixels (width x height): the upload itself, and what the
            generator computes after the scaling a request asks for with ?resize=N and the padding to the
            generator's multiple.
        max_busy: Uploads decoded or translated at once; more get a 503 (busy) at once instead of waiting in
            memory.
        timeout_s: Seconds a connection may send nothing, mid-request or idle, before it is closed.
        deadline_s: Seconds a request may take to arrive in full, however steadily it trickles in, before its
            connection is closed.
        max_connections: Connections held open at once (idle ones cost a socket, not a thread); more wait until
            one closes.
        backend: A backend by name (p2p list backends): torch, onnxruntime (eval mode only), a plugin's, or auto:
            onnxruntime on the CPU in eval mode at float32 when it is installed, else torch; auto never changes
            --precision.
        precision: float32 (the default), or bfloat16 / float16 where the backend runs it (p2p list backends; a CPU
            without native bfloat16 emulates it, with a warning).
        direction: AtoB, or BtoA for a model whose method trained both ways (a plugin's unpaired method); pix2pix models translate AtoB.
        ema: Use the moving average of the generator's weights where the checkpoint holds one (trained with
            --trainer.ema); --no_ema uses the trained weights.
    """
    missing = [name for name, module in (("Flask", "flask"), ("waitress", "waitress")) if importlib.util.find_spec(module) is None]
    if missing:
        raise ConfigError(f"p2p demo needs {' and '.join(missing)}, which is not installed: {INSTALL_HINT}")
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port must be between 0 (any free port) and 65535, got {port}")
    if not math.isfinite(max_upload_mb) or max_upload_mb <= 0:
        raise ConfigError(f"--max_upload_mb must be a positive number, got {max_upload_mb}")
    from p2p_core.demo import server

    server.serve(
        ckpt=ckpt,
        host=host,
        port=port,
        device=device,
        mode=mode,
        seed=seed,
        limits=server.Limits(
            max_bytes=round(max_upload_mb * 1_000_000), max_pixels=max_pixels, max_busy=max_busy, timeout_s=timeout_s,
            deadline_s=deadline_s, max_connections=max_connections,
        ),
        backend=backend,
        precision=precision,
        direction=direction,
        ema=ema,
        registry=registry,
    )

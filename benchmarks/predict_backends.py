"""Inference side by side: predict with each backend and batch size, the CLI as installed, and a bare G(x) loop.

    python benchmarks/predict_backends.py                         # CPU: the 155 outlines val images
    python benchmarks/predict_backends.py --device cuda           # GPU: adds float16 / bfloat16 rows
    python benchmarks/predict_backends.py --limit 40 --batch_sizes 1 4

The model is the paper's U-Net 256 (random init; speed does not depend on the weights), saved as a
checkpoint the way ``compare_reference.py`` saves one. Every row translates the same images in eval mode in
this process or a child of it, one after another on the same machine. The bare loop is the floor every
row is compared with: ``G(x)`` under ``inference_mode`` on images decoded and padded beforehand, batch 1.
``predict`` rows time its translation loop (reading and writing in threads included, loading and any
export build excluded; the build is reported on its own).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
OUTLINES = ROOT.parent / "shared" / "data" / "outlines"


def make_checkpoint(folder: Path) -> Path:
    from p2p_core import checkpoint
    from p2p_core.engine import Choice, Trainer, TrainConfig

    trainer = Trainer(generator=Choice("unet", {}), discriminator=Choice("patch70", {}), loss="cgan+l1", loss_options={},
                      data=Choice("synthetic", {"length": 1}), train=TrainConfig(device="cpu", progress=False),
                      run_dir=folder / "run")  # fmt: skip
    return checkpoint.save(trainer.state_dict(), folder / "run", 0)


def bare_loop(ckpt: Path, files: list[Path], device: torch.device) -> float:
    """images/s of G(x), batch 1, on images already decoded and padded to the U-Net's multiple."""
    from p2p_core.images import read_image
    from p2p_core.inference import load_generator, pad_to_multiple

    generator = load_generator(ckpt, mode="eval", device=device).module
    batches = [pad_to_multiple(read_image(path)[None], generator.size_multiple)[0].to(device) for path in files]
    with torch.inference_mode():
        generator(batches[0])  # warm-up: allocations, first-call dispatch
        synchronise(device)
        start = time.perf_counter()
        for batch in batches:
            generator(batch)
        synchronise(device)
    return len(files) / (time.perf_counter() - start)


def installed_cli(ckpt: Path, images: Path, out: Path, device: torch.device) -> float:
    """images/s that `p2p predict --mode eval` as installed reports (its defaults otherwise)."""
    done = subprocess.run([sys.executable, "-m", "p2p_core", "predict", "--ckpt", str(ckpt), "--input", str(images),
                           "--output", str(out), "--mode", "eval", "--device", device.type],
                          check=True, capture_output=True, text=True)  # fmt: skip
    return float(re.findall(r"([\d.]+) images/s", done.stdout)[-1])


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def configurations(device: torch.device, batch_sizes: list[int]) -> list[tuple[str, str, int]]:
    """(backend, precision, batch size) rows for the device: float32 everywhere; on a GPU also the opt-in
    lower precisions each backend supports (onnxruntime only with its CUDA provider)."""
    rows = [(backend, "float32", size) for backend in ("torch", "auto") for size in batch_sizes]
    if device.type == "cuda":
        import onnxruntime

        rows = [(backend, "float32", size) for backend in ("torch",) for size in batch_sizes]
        rows += [("torch", precision, size) for precision in ("float16", "bfloat16") for size in batch_sizes]
        if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            rows += [("onnxruntime", precision, size) for precision in ("float32", "float16") for size in batch_sizes]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, default=OUTLINES / "val")
    parser.add_argument("--limit", type=int, default=None, help="Only the first N images (default: all).")
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    args = parser.parse_args()

    from p2p_core.images import list_images
    from p2p_core.predict import predict

    device = torch.device(args.device)
    files = list_images(args.images)[: args.limit]
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        images = folder / "images"
        images.mkdir()
        for path in files:
            (images / path.name).symlink_to(path.resolve())
        ckpt = make_checkpoint(folder)
        os.environ["P2P_CACHE"] = str(folder / "cache")  # a fresh checkpoint each run: its export is not worth keeping
        rows = [("bare G(x) loop, eager, decoded beforehand", 1, bare_loop(ckpt, files, device))]
        rows.append(("`p2p predict --mode eval` (the CLI as installed)", 1, installed_cli(ckpt, images, folder / "cli", device)))
        for backend, precision, batch_size in configurations(device, args.batch_sizes):
            start = time.perf_counter()
            result = predict(ckpt=ckpt, input=images, output=folder / "out", device=args.device, mode="eval", backend=backend,
                             batch_size=batch_size, precision=precision, overwrite=True, progress=False)  # fmt: skip
            elapsed = time.perf_counter() - start
            print(f"{backend} {precision} batch {batch_size}: {result} ({elapsed:.1f} s with loading and any export build)", file=sys.stderr)
            rows.append((f"`predict --backend {backend}` = {result.backend}", batch_size, result.images_per_second))
    bare, cli = rows[0][2], rows[1][2]
    print(f"\n{len(files)} images from {args.images}, U-Net 256, eval mode, {device}, {torch.get_num_threads()} torch threads\n")
    print("| what | batch | images/s | x bare loop | x CLI as installed |\n| --- | --- | --- | --- | --- |")
    for what, batch_size, rate in rows:
        print(f"| {what} | {batch_size} | {rate:.2f} | {rate / bare:.2f} | {rate / cli:.2f} |")


if __name__ == "__main__":
    main()

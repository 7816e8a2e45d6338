"""Inference side by side: each installed backend in each precision it runs here, alone and through predict,
at each batch size, the CLI as installed, and a bare G(x) loop.

    python benchmarks/predict_backends.py                         # CPU: the 155 outlines val images
    python benchmarks/predict_backends.py --device cuda           # GPU
    python benchmarks/predict_backends.py --limit 40 --rounds 3     # a busy machine: alternate, take medians

The backends and precisions come from the registry (`p2p list backends`): a plugin's backend gets rows too. The
table's heading names the CPU and whether it runs bfloat16 and float16 natively (emulated ones are slow).

The model is the paper's U-Net 256 (random init; speed does not depend on the weights), saved as a
checkpoint the way ``compare_reference.py`` saves one. Every row translates the same images in eval mode in
this process or a child of it, one after another on the same machine, and ``--rounds`` repeats them all,
alternating, and reports each row's median (other jobs on a shared machine come and go). The bare loop is the floor every
row is compared with: ``G(x)`` under ``inference_mode`` on images decoded and padded beforehand, batch 1.
``predict`` rows time its translation loop (reading and writing in threads included, loading and any
export build excluded; the build is reported on its own).
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
OUTLINES = ROOT.parent / "shared" / "data" / "outlines"


def make_checkpoint(folder: Path) -> Path:
    from p2p_core import checkpoint
    from p2p_core.training import Training
    from p2p_core.spec import ComponentSpec, RunSpec, Shapes, TrainConfig

    spec = RunSpec(generator=ComponentSpec("unet"), disc=ComponentSpec("patch70"), data=ComponentSpec("synthetic"),
                   trainer=TrainConfig(device="cpu"))
    model = Training.build(spec, Shapes(in_channels=3, out_channels=3, image_size=256), total_steps=1)
    return checkpoint.save(model.state_dict(), folder / "run", 0)


def bare_loop(ckpt: Path, files: list[Path], device: torch.device) -> Callable[[], float]:
    """Timing G(x), batch 1, on images already decoded and padded to the U-Net's multiple: images/s."""
    from p2p_core.images import read_image
    from p2p_core.inference import load_generator, pad_to_multiple

    generator = load_generator(ckpt, mode="eval", device=device).module
    batches = [pad_to_multiple(read_image(path)[None], generator.size_multiple)[0].to(device) for path in files]

    def rate() -> float:
        with torch.inference_mode():
            return images_per_second(generator, batches, device)

    return rate


def backend_loop(ckpt: Path, files: list[Path], device: torch.device, backend: str, precision: str) -> Callable[[], float]:
    """Timing a backend's runner, batch 1, on the same decoded images (it pads them itself): images/s. Beside
    the bare loop this is the backend alone, without predict's reading and writing."""
    from p2p_core.backends import open_backend
    from p2p_core.images import read_image
    from p2p_core.inference import load_generator

    runner = open_backend(load_generator(ckpt, mode="eval", device=device), backend=backend, device=device, precision=precision)
    images = [read_image(path)[None].to(device) for path in files]

    return lambda: images_per_second(runner, images, device)


def images_per_second(translate: Callable[[torch.Tensor], object], batches: list[torch.Tensor], device: torch.device) -> float:
    """One call per batch of one image, after a warm-up call (allocations, first-call dispatch)."""
    translate(batches[0])
    synchronise(device)
    start = time.perf_counter()
    for batch in batches:
        translate(batch)
    synchronise(device)
    return len(batches) / (time.perf_counter() - start)


def cli(ckpt: Path, images: Path, out: Path, device: torch.device, tree: Path | None = None) -> float:
    """images/s that `p2p predict --mode eval` reports (its defaults otherwise): as installed, or, given a
    checkout of another commit, that commit's code and built-in plugins."""
    env = dict(os.environ)
    if tree is not None:
        # No empty entry: one would put the working directory, this checkout, on the path too.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tree), str(tree / "plugins"), env.get("PYTHONPATH")]))
    shutil.rmtree(out, ignore_errors=True)  # older commits had no --overwrite
    done = subprocess.run([sys.executable, "-m", "p2p_core", "predict", "--ckpt", str(ckpt), "--input", str(images),
                           "--output", str(out), "--mode", "eval", "--device", device.type],
                          check=True, capture_output=True, text=True, env=env)  # fmt: skip
    return float(re.findall(r"([\d.]+) images/s", done.stdout)[-1])


def baseline_commit(tree: Path) -> str:
    return subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def configurations(device: torch.device) -> list[tuple[str, str]]:
    """(backend, precision) of every installed backend in every precision it can run on the device here."""
    from p2p_core.backends import choose
    from p2p_core.errors import ConfigError
    from p2p_core.registry import default_registry

    registry, found = default_registry(), []
    for backend in registry.components("backend"):
        for precision in registry.create("backend", backend.name).supports.get(device.type, ()):
            try:
                choose(backend.name, mode="eval", device=device, precision=precision)
            except ConfigError:  # not installed here, or no provider for the device
                continue
            found.append((backend.name, precision))
    return found


def heading(device: torch.device) -> str:
    """The machine the figures come from: the CPU's name and which lower precisions it runs natively."""
    from p2p_core.devices import cpu_name, native_on_cpu

    native = ", ".join(f"{precision} {'native' if native_on_cpu(precision) else 'emulated'}" for precision in ("bfloat16", "float16"))
    gpu = f", {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""
    return f"CPU {cpu_name()} ({torch.backends.cpu.get_cpu_capability()}; {native}){gpu}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, default=OUTLINES / "val")
    parser.add_argument("--limit", type=int, default=None, help="Only N images, spread over the folder's order (default: all).")
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--rounds", type=int, default=1, help="Run every row this many times, alternating; report medians.")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="Time this checkpoint (a U-Net 256 of any format) instead of a fresh one; e.g. one written "
                             "by an older commit, so that --baseline can read it.")  # fmt: skip
    parser.add_argument("--baseline", type=Path, default=None,
                        help="A checkout of another commit (git worktree add DIR COMMIT): adds its `p2p predict` as a row.")
    args = parser.parse_args()

    from p2p_core.images import list_images
    from p2p_core.predict import predict

    device = torch.device(args.device)
    files = list_images(args.images)
    files = [files[i * len(files) // args.limit] for i in range(args.limit)] if args.limit else files
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        images = folder / "images"
        images.mkdir()
        for path in files:
            (images / path.name).symlink_to(path.resolve())
        ckpt = args.checkpoint or make_checkpoint(folder)
        os.environ["P2P_CACHE"] = str(folder / "cache")  # a fresh checkpoint each run: its export is not worth keeping
        rows: list[tuple[str, int, Callable[[], float]]] = [
            ("bare G(x) loop, eager, decoded beforehand", 1, bare_loop(ckpt, files, device)),
            ("`p2p predict --mode eval` (the CLI as installed)", 1, lambda: cli(ckpt, images, folder / "cli", device)),
            *([(f"`p2p predict --mode eval` at {baseline_commit(args.baseline)}", 1,
                lambda: cli(ckpt, images, folder / "baseline", device, tree=args.baseline))] if args.baseline else []),
            *((f"{backend} backend alone on decoded images, {precision}", 1, backend_loop(ckpt, files, device, backend, precision))
              for backend, precision in [*configurations(device), ("auto", "float32")]),
        ]
        for (backend, precision), batch_size in itertools.product([*configurations(device), ("auto", "float32")], args.batch_sizes):

            def run(backend: str = backend, precision: str = precision, batch_size: int = batch_size) -> float:
                start = time.perf_counter()
                result = predict(ckpt=ckpt, input=images, output=folder / "out", device=args.device, mode="eval",
                                 backend=backend, batch_size=batch_size, precision=precision, overwrite=True, progress=False)  # fmt: skip
                print(f"{result} ({time.perf_counter() - start:.1f} s with loading and any export build)", file=sys.stderr)
                return result.images_per_second

            rows.append((f"`predict --backend {backend} --precision {precision}`", batch_size, run))
        rates: list[list[float]] = [[] for _ in rows]
        for round_ in range(args.rounds):
            for (what, batch_size, rate), found in zip(rows, rates):
                found.append(rate())
                print(f"round {round_ + 1}: {what}, batch {batch_size}: {found[-1]:.2f} images/s", file=sys.stderr)
    medians = [statistics.median(found) for found in rates]
    bare, cli_rate = medians[0], medians[1]
    versus = [("CLI as installed", cli_rate)] + ([(baseline_commit(args.baseline), medians[2])] if args.baseline else [])
    print(f"\n{len(files)} images from {args.images}, U-Net 256, eval mode, {device}, {torch.get_num_threads()} torch threads, "
          f"median of {args.rounds} round(s); {heading(device)}\n")  # fmt: skip
    print("| what | batch | images/s (median) | rounds' range | x bare loop | " + " | ".join(f"x {name}" for name, _ in versus) + " |")
    print("| --- " * (5 + len(versus)) + "|")
    for (what, batch_size, _), median, found in zip(rows, medians, rates):
        ratios = " | ".join(f"{median / rate:.2f}" for _, rate in versus)
        print(f"| {what} | {batch_size} | {median:.2f} | {min(found):.2f}-{max(found):.2f} | {median / bare:.2f} | {ratios} |")

if __name__ == "__main__":
    main()

"""Peak memory of tiled `p2p predict` against the image's size: is it bounded by the tile?

    python benchmarks/tiled_memory.py                           # 4096^2 and 8192^2, the paper's U-Net 256
    python benchmarks/tiled_memory.py --sizes 512 1024 --tile 256 --ngf 8     # a quick check that it runs

Each size runs `p2p predict --mode eval --backend torch --tile T --overlap O` on one random PNG of that side in a
fresh process, and reads the child's peak resident memory (``ru_maxrss`` of the children, on Linux and macOS) after
it exits, so that nothing of one run stays in another's figure. The generator's activations, which dominate
whole-image memory, grow with the tile only; the image and its output are still held whole, as 8-bit pixels (3 bytes
a pixel each, and PIL's own copy, 4 bytes a pixel, while the PNG is decoded or encoded), so the figure still grows
with the image, by about 0.45 GiB from 4096^2 to 8192^2.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image


def make_checkpoint(folder: Path, *, ngf: int) -> Path:
    from p2p_core import checkpoint
    from p2p_core.spec import ComponentSpec, RunSpec, Shapes, TrainConfig
    from p2p_core.training import Training

    spec = RunSpec(generator=ComponentSpec("unet", {"ngf": ngf}), disc=ComponentSpec("patch70"), data=ComponentSpec("synthetic"),
                   trainer=TrainConfig(device="cpu"))
    model = Training.build(spec, Shapes(in_channels=3, out_channels=3, image_size=256), total_steps=1)
    return checkpoint.save(model.state_dict(), folder / "run", 0)


def peak_rss_mib(ckpt: Path, side: int, folder: Path, *, tile: int, overlap: int) -> float:
    """The peak RSS, in MiB, of one `p2p predict` of a side x side image in its own process."""
    images = folder / f"in{side}"
    images.mkdir()
    pixels = np.random.default_rng(side).integers(0, 256, (side, side, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(images / "image.png", compress_level=1)
    # A process that only waits for the predict: its children's peak is the predict's alone.
    script = (
        "import resource, subprocess, sys\n"
        "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    command = [sys.executable, "-m", "p2p_core", "predict", "--ckpt", str(ckpt), "--input", str(images), "--output",
               str(folder / f"out{side}"), "--mode", "eval", "--backend", "torch", "--device", "cpu", "--tile", str(tile),
               "--overlap", str(overlap), "--progress", "false"]  # fmt: skip
    done = subprocess.run([sys.executable, "-c", script, *command], check=True, capture_output=True, text=True)
    kib = int(done.stdout.split()[-1])
    return kib / 1024 if sys.platform != "darwin" else kib / 2**20  # macOS reports bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[4096, 8192])
    parser.add_argument("--tile", type=int, default=1024)
    parser.add_argument("--overlap", type=int, default=128)
    parser.add_argument("--ngf", type=int, default=64, help="The U-Net's filters (64: the paper's).")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        ckpt = make_checkpoint(folder, ngf=args.ngf)
        peaks = {side: peak_rss_mib(ckpt, side, folder, tile=args.tile, overlap=args.overlap) for side in args.sizes}
    smallest = peaks[args.sizes[0]]
    print(f"U-Net 256 (ngf {args.ngf}), eval, torch float32 on the CPU, --tile {args.tile} --overlap {args.overlap}\n")
    print("| image | peak RSS (MiB) | x the first |\n| --- | --- | --- |")
    for side, peak in peaks.items():
        print(f"| {side} x {side} | {peak:.0f} | {peak / smallest:.2f} |")


if __name__ == "__main__":
    main()

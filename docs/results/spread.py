"""How much a sweep's outputs vary from image to image, relative to the targets: near 0 means the same output
for every input (the paper's "the unconditional GAN ignores the input"), near 1 as varied as the real images.

    python docs/results/spread.py runs/SWEEP

Spread = mean absolute deviation of each pixel from the per-pixel mean over the test set (images of one size).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from p2p_core.images import list_images, read_image


def spread(folder: Path) -> float:
    images = torch.stack([read_image(path) for path in list_images(folder)])
    return (images - images.mean(0)).abs().mean().item()


for sweep in map(Path, sys.argv[1:]):
    for test in sorted(sweep.glob("runs/*/test_*")):
        ratio = spread(test / "outputs") / spread(test / "targets")
        print(f"{sweep.name} {test.parent.name}: output spread / target spread = {ratio:.2f}")

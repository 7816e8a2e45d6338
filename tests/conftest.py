"""Shared fixtures: tiny image folders in the standard layouts, and the real data beside the checkout."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from p2p_core.cli import main

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
SMOKE = str(RECIPES / "smoke.yaml")
TINY_DATA = ["--data.load_size", "36", "--data.crop_size", "32"]


def run(args, capsys):
    """Run the CLI in-process; return (exit code, stdout, stderr)."""
    try:
        main(args)
        code = 0
    except SystemExit as stop:
        code = stop.code or 0
    out, err = capsys.readouterr()
    return code, out, err


def fit_smoke(tmp_path, capsys, *extra):
    code, out, err = run(["fit", "--config", SMOKE, "--out_dir", str(tmp_path / "runs"), "--name", "smoke", *extra], capsys)
    assert code == 0, err
    return tmp_path / "runs" / "smoke"


SHARED_OUTLINES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "outlines"

# The tests run tiny tensors, for which intra-op threads add only synchronisation; on a busy 2-core machine
# their waiting made the suite six times slower (140 s against 23 s, most of it in the many small ops of
# the edge tools and the end-to-end fits).
torch.set_num_threads(1)


def write_ab_folder(root: Path, *, split: str = "train", count: int = 3, size: tuple[int, int] = (40, 40), identical: bool = False) -> Path:
    """root/split/i.png holding A|B side by side; with ``identical`` B is a copy of A."""
    folder = root / split
    folder.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(len(str(root)) + count)
    height, width = size
    for index in range(count):
        a = torch.randint(0, 256, (height, width, 3), generator=generator, dtype=torch.uint8)
        b = a if identical else torch.randint(0, 256, (height, width, 3), generator=generator, dtype=torch.uint8)
        Image.fromarray(torch.cat([a, b], dim=1).numpy()).save(folder / f"{index}.png")
    return root


def write_ab_folders(root: Path, *, split: str = "train", count: int = 3, size: tuple[int, int] = (40, 40), identical: bool = False) -> Path:
    """root/split/A/i.png and root/split/B/i.png."""
    aligned = write_ab_folder(root / "_aligned", split=split, count=count, size=size, identical=identical)
    for path in sorted((aligned / split).glob("*.png")):
        image = Image.open(path)
        width = image.width // 2
        for half, box in (("A", (0, 0, width, image.height)), ("B", (width, 0, 2 * width, image.height))):
            (root / split / half).mkdir(parents=True, exist_ok=True)
            image.crop(box).save(root / split / half / path.name)
    return root


@pytest.fixture
def ab_root(tmp_path: Path) -> Path:
    write_ab_folder(tmp_path / "ab", split="train")
    return write_ab_folder(tmp_path / "ab", split="val")


@pytest.fixture
def outlines() -> Path:
    if not (SHARED_OUTLINES / "train").is_dir():
        pytest.skip(f"real data not found at {SHARED_OUTLINES}")
    return SHARED_OUTLINES

"""End to end: train on 1- and 4-channel inputs, then predict images of other sizes and shapes, each kept."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from p2p_core.cli import main
from p2p_core.images import read_image, to_signed, to_uint8, write_image
from p2p_core.inference import load_generator, translate

TINY = [
    "--generator.ngf", "8", "--disc.ndf", "8", "--data.crop_size", "32", "--data.load_size", "36",
    "--trainer.max_steps", "2", "--trainer.num_workers", "0", "--trainer.progress", "false",
]  # fmt: skip
# Not multiples of the U-Net's 32, not square, and larger than the 32-pixel training crops.
SIZES = [(45, 70), (100, 33), (64, 64), (7, 5)]


def random_pixels(channels: int, height: int, width: int, seed: int) -> torch.Tensor:
    return to_signed(torch.randint(0, 256, (channels, height, width), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8))


def fit(tmp_path: Path, data: list[str], in_channels: int) -> None:
    """Train a tiny model into tmp_path/runs/run and write inputs of SIZES with ``in_channels`` channels."""
    main(["fit", "--data", "aligned", *data, *TINY, "--out_dir", str(tmp_path / "runs"), "--name", "run"])
    for index, (height, width) in enumerate(SIZES):
        write_image(random_pixels(in_channels, height, width, index), tmp_path / "inputs" / f"{index}.png")


def assert_predict_translates_at_input_sizes(tmp_path: Path, in_channels: int, shorter_side: int | None = None) -> None:
    """Each output of p2p predict is RGB at its input's size, and is what the generator gives at that size
    (or, with ``shorter_side``, at that scale)."""
    out = tmp_path / f"out{shorter_side}"
    resize = [] if shorter_side is None else ["--resize", str(shorter_side)]
    main(["predict", "--ckpt", str(tmp_path / "runs" / "run"), "--input", str(tmp_path / "inputs"), "--output", str(out), "--mode", "eval",
          "--backend", "torch", *resize])
    generator = load_generator(tmp_path / "runs" / "run", mode="eval").module
    for index, (height, width) in enumerate(SIZES):
        with Image.open(out / f"{index}.png") as image:
            assert (image.mode, image.height, image.width) == ("RGB", height, width)
        with torch.no_grad():
            expected = translate(generator, read_image(tmp_path / "inputs" / f"{index}.png", channels=in_channels), shorter_side=shorter_side)
        assert torch.equal(to_signed(to_uint8(expected)), read_image(out / f"{index}.png", channels=3))


def test_grayscale_to_rgb_at_native_size_or_scaled(tmp_path: Path):
    for index in range(2):
        write_image(random_pixels(3, 40, 80, index), tmp_path / "ab" / "train" / f"{index}.png")
    fit(tmp_path, ["--data.root", str(tmp_path / "ab"), "--data.a_channels", "1"], in_channels=1)
    assert_predict_translates_at_input_sizes(tmp_path, in_channels=1)
    assert_predict_translates_at_input_sizes(tmp_path, in_channels=1, shorter_side=32)


def test_rgba_to_rgb_from_combined_folders(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    for index in range(2):
        write_image(random_pixels(4, 40, 40, index), tmp_path / "A" / f"{index}.png")
        write_image(random_pixels(3, 40, 40, index + 10), tmp_path / "B" / f"{index}.png")
    main(["data", "combine", "--a", str(tmp_path / "A"), "--b", str(tmp_path / "B"), "--out", str(tmp_path / "ab")])
    assert "wrote 2 train pair(s)" in capsys.readouterr().out
    with Image.open(tmp_path / "ab" / "train" / "0.png") as combined:
        assert combined.mode == "RGBA"
    fit(tmp_path, ["--data.root", str(tmp_path / "ab"), "--data.a_channels", "4"], in_channels=4)
    assert_predict_translates_at_input_sizes(tmp_path, in_channels=4)

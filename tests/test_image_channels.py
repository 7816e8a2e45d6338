"""Reading and writing 1-, 3- and 4-channel images, and the aligned dataset's channel handling."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from p2p_core.errors import DataError
from p2p_core.images import image_header, read_image, to_signed, write_image
from p2p_datasets.files import AlignedDataset


@pytest.mark.parametrize(("channels", "mode"), [(1, "L"), (3, "RGB"), (4, "RGBA")])
def test_write_then_read_round_trips_exactly(tmp_path: Path, channels: int, mode: str):
    pixels = torch.randint(0, 256, (channels, 5, 7), generator=torch.Generator().manual_seed(channels), dtype=torch.uint8)
    image = to_signed(pixels)
    write_image(image, tmp_path / "x.png")
    with Image.open(tmp_path / "x.png") as saved:
        assert saved.mode == mode
    assert torch.equal(read_image(tmp_path / "x.png", channels=channels), image)
    assert image_header(tmp_path / "x.png") == (5, 7, channels == 4)


def test_an_rgb_file_read_as_rgba_is_opaque(tmp_path: Path):
    write_image(torch.zeros(3, 4, 4), tmp_path / "x.png")
    image = read_image(tmp_path / "x.png", channels=4)
    assert image.shape == (4, 4, 4)
    assert torch.equal(image[3], torch.ones(4, 4))


def test_jpeg_refuses_alpha_and_names_the_fix(tmp_path: Path):
    with pytest.raises(DataError, match=r"x\.jpg.*alpha.*\.png"):
        write_image(torch.zeros(4, 4, 4), tmp_path / "x.jpg")


def test_two_channels_are_written_as_grayscale_of_the_first(tmp_path: Path):
    image = torch.stack([torch.full((3, 3), -1.0), torch.full((3, 3), 1.0)])
    write_image(image, tmp_path / "x.png")
    with Image.open(tmp_path / "x.png") as saved:
        assert saved.mode == "RGB" and saved.getpixel((0, 0)) == (0, 0, 0)


def test_read_image_rejects_other_channel_counts(tmp_path: Path):
    write_image(torch.zeros(3, 4, 4), tmp_path / "x.png")
    with pytest.raises(DataError, match="got 2"):
        read_image(tmp_path / "x.png", channels=2)


def test_aligned_dataset_reads_rgba_halves(tmp_path: Path):
    a = torch.rand(4, 8, 8) * 2 - 1
    a[3, :4] = -1.0  # transparent top half: the alpha must survive
    b = torch.rand(3, 8, 8) * 2 - 1
    write_image(torch.cat([a, torch.cat([b, torch.ones(1, 8, 8)])], dim=-1), tmp_path / "train" / "0.png")
    dataset = AlignedDataset(root=tmp_path, split="train", a_channels=4, b_channels=3, preprocess="none", crop_size=8, flip=False)
    sample = dataset[0]
    assert (dataset.in_channels, dataset.out_channels) == (4, 3)
    assert torch.allclose(sample.a, a, atol=1 / 127.5) and torch.allclose(sample.b, b, atol=1 / 127.5)

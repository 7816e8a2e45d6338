"""Tiled inference: overlapping tiles blended into the whole-image output, without seams, and clear refusals."""

from __future__ import annotations

import warnings
from concurrent.futures import Executor, Future
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from PIL import Image
from torch import nn

import p2p_core
from conftest import fit_tiny
from p2p_core import tiles
from p2p_core.cli import main
from p2p_core.commands import fit, fit_arguments
from p2p_core.errors import ConfigError
from p2p_core.images import read_image, read_input, resize, to_signed, to_uint8, write_image
from p2p_core.inference import load_generator, translate
from p2p_core.predict import predict
from p2p_core.registry import Registry
from p2p_core.tiles import translate_tiled


def local_generator() -> nn.Module:
    """Fully convolutional with a 7-pixel receptive field: away from tile edges a tile's output is the whole image's.
    Its zero padding makes every tile's edges wrong, as any generator's padding does: what blending must hide."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(8, 3, 3, padding=1), nn.Tanh()).eval()


def smooth_image(size: int = 64) -> torch.Tensor:
    rows, columns = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    return 0.9 * torch.stack([torch.sin(2 * rows + columns), torch.cos(3 * columns), rows * columns])[None]


def largest_step(image: torch.Tensor, border: int = 4) -> float:
    """The largest difference between neighbouring pixels, away from the image's own borders (where the generator's
    padding acts on the whole image too)."""
    inside = image[..., border:-border, border:-border]
    return max(inside.diff(dim=-2).abs().max().item(), inside.diff(dim=-1).abs().max().item())


def test_tiled_output_is_the_whole_image_output_for_a_fully_convolutional_generator():
    generator, image = local_generator(), torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        whole, tiled = generator(image), translate_tiled(generator, image, tile=32, overlap=8)
    assert tiled.shape == whole.shape
    # Measured: mean L1 5.8e-4 (of outputs in [-1, 1]), largest difference 0.013, where tile edges' padding remains.
    assert (tiled - whole).abs().mean() < 1e-3


def test_no_seam_shows_where_tiles_meet():
    generator, image = local_generator(), smooth_image()
    with torch.no_grad():
        whole = largest_step(generator(image))
        # 32-pixel tiles with 8 blended meet at 24-32 and 32-40 in both directions; 24-pixel ones at three places.
        for tile in (32, 24):
            # Measured 1.3x the whole image's largest step; cut without blending, 11.7x; averaged uniformly, 6.8x.
            assert largest_step(translate_tiled(generator, image, tile=tile, overlap=8)) <= 1.5 * whole, tile


def test_a_side_shorter_than_the_tile_is_taken_whole():
    calls = []

    def run(batch: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(batch.shape[-2:]))
        return batch

    image = torch.rand(1, 3, 20, 70)
    assert torch.allclose(translate_tiled(run, image, tile=32, overlap=8), image)
    assert calls == [(20, 32), (20, 32), (20, 32)]  # columns 0, 24 and 38: each tile whole, the last flush with the end


@settings(max_examples=60, deadline=None)
@given(height=st.integers(1, 70), width=st.integers(1, 70), tile=st.integers(2, 32), data=st.data())
def test_tile_weights_add_up_to_one_everywhere_for_any_tiles(height: int, width: int, tile: int, data: st.DataObject):
    """With a generator that returns its input, the blend must give the image back: the weights of every pixel's tiles,
    across rows of tiles blended one after another, add up to one, whatever the overlap (up to tile - 1, where a
    tile's rows reach past the next row of tiles into the one after)."""
    overlap = data.draw(st.integers(0, tile - 1), label="overlap")
    image = torch.rand(2, 3, height, width, generator=torch.Generator().manual_seed(height * 71 + width)) * 2 - 1
    assert torch.allclose(translate_tiled(lambda piece: piece, image, tile=tile, overlap=overlap), image, atol=1e-6)


def test_the_output_is_finished_a_row_of_tiles_at_a_time():
    """Only a band of rows is held in float: ``finish`` (predict's 8-bit conversion) gets each band once it is done,
    never the whole image, and what it makes of the bands is the output."""
    generator, image = local_generator(), smooth_image(96)
    bands = []

    def finish(rows: torch.Tensor) -> torch.Tensor:
        bands.append(rows.shape[-2:])
        return to_uint8(rows)

    with torch.no_grad():
        floats = translate_tiled(generator, image, tile=32, overlap=8)
        pixels = translate_tiled(generator, image, tile=32, overlap=8, finish=finish)
    assert pixels.dtype == torch.uint8 and torch.equal(pixels, to_uint8(floats))
    # Rows of tiles start at 0, 24, 48 and 64 (the last flush with the end): bands of 24, 24, 16 and 32 rows.
    assert bands == [(24, 96), (24, 96), (16, 96), (32, 96)]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fit_tiny(tmp_path_factory.mktemp("tiles"))


@pytest.fixture
def large(tmp_path: Path) -> Path:
    pixels = torch.randint(0, 256, (3, 32, 24), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    write_image(to_signed(pixels), tmp_path / "in" / "large.png")
    return tmp_path / "in"


def read(folder: Path) -> np.ndarray:
    return np.asarray(Image.open(folder / "large.png")).astype(int)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"tile": 20}, "--tile 20 is not a multiple of the generator's size_multiple 16 .*use --tile 16 or 32"),
        ({"tile": 8}, "--tile 8 is not a multiple of the generator's size_multiple 16 .*use --tile 16$"),
        ({"tile": 1}, "--tile 1 is not a multiple of the generator's size_multiple 16 .*use --tile 16$"),
        ({"tile": 16, "overlap": 16}, "--overlap 16 must be at least 0 and smaller than --tile 16: use e.g. --overlap 2"),
    ],
)
def test_bad_tiles_are_refused_naming_the_value_and_the_fix(run: Path, large: Path, tmp_path: Path, options, message):
    with pytest.raises(ConfigError, match=message):
        predict(ckpt=run, input=large, output=tmp_path / "out", mode="eval", backend="torch", progress=False, **options)
    assert not (tmp_path / "out").exists()


def test_the_cli_refuses_a_bad_tile_in_one_line(run: Path, large: Path, tmp_path: Path, capsys):
    with pytest.raises(SystemExit) as exit:
        main(["predict", "--ckpt", str(run), "--input", str(large), "--output", str(tmp_path / "out"), "--tile", "20"])
    assert exit.value.code == 2
    assert capsys.readouterr().err.startswith("p2p: error: --tile 20 is not a multiple")


def test_predict_tiles_large_images_unasked_with_a_message(run: Path, large: Path, tmp_path: Path, monkeypatch, capsys):
    common = {"ckpt": run, "input": large, "mode": "eval", "backend": "torch", "progress": False}
    predict(output=tmp_path / "whole", tile=0, **common)
    predict(output=tmp_path / "asked", tile=16, overlap=2, **common)
    assert "tiles" not in capsys.readouterr().err
    monkeypatch.setattr(tiles, "AUTO_TILE", 16)
    monkeypatch.setattr("p2p_core.predict.AUTO_TILE_PIXELS", 16 * 16)
    predict(output=tmp_path / "unasked", **common)
    assert "large.png (32 x 24) and its 768 pixels are over 256: translated in 16-pixel tiles overlapping by 2" in capsys.readouterr().err
    whole, asked, unasked = read(tmp_path / "whole"), read(tmp_path / "asked"), read(tmp_path / "unasked")
    assert whole.shape == asked.shape == (32, 24, 3)
    assert np.array_equal(asked, unasked)
    # The U-Net sees the whole image or a tile, not the same context: close (measured 0.07 of an 8-bit level on average).
    assert not np.array_equal(whole, asked) and np.abs(whole - asked).mean() < 1


def test_predict_holds_a_tiled_image_and_its_output_as_8_bit_pixels(run: Path, large: Path, tmp_path: Path, monkeypatch):
    """A tiled image is held whole: as uint8 (a quarter of float32), each tile made floats only for the generator,
    and the output likewise; the file written is the one a float path writes."""
    seen = []

    def spy(run, batch, **options):
        output = translate_tiled(run, batch, **options)
        seen.append((batch.dtype, output.dtype))
        return output

    monkeypatch.setattr("p2p_core.predict.translate_tiled", spy)
    predict(ckpt=run, input=large, output=tmp_path / "out", mode="eval", backend="torch", progress=False, tile=16, overlap=2)
    assert seen == [(torch.uint8, torch.uint8)]
    generator = load_generator(run, mode="eval").module
    with torch.no_grad():
        floats = translate_tiled(generator, read_image(large / "large.png")[None], tile=16, overlap=2)
    assert np.array_equal(read(tmp_path / "out"), to_uint8(floats[0]).permute(1, 2, 0).numpy())


def tiled_sizes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """The sizes of the images predict translates through tiles, from now on."""
    seen = []

    def spy(run, batch, **options):
        seen.append(tuple(batch.shape[-2:]))
        return translate_tiled(run, batch, **options)

    monkeypatch.setattr("p2p_core.predict.translate_tiled", spy)
    return seen


@pytest.mark.parametrize(("tile", "tiled"), [(16, [(16, 17), (17, 16)]), (0, []), (None, [(16, 17), (17, 16)])])
def test_images_larger_than_the_tile_on_a_side_are_tiled(run: Path, tmp_path: Path, monkeypatch, capsys, tile: int | None, tiled):
    """--tile N tiles the images over N pixels on either side; 0 none; without it, those of over AUTO_TILE_PIXELS
    pixels (here 16 x 16, in 16-pixel tiles), whatever their sides, and a message says so."""
    monkeypatch.setattr(tiles, "AUTO_TILE", 16)
    monkeypatch.setattr("p2p_core.predict.AUTO_TILE_PIXELS", 16 * 16)
    for height, width in [(16, 16), (16, 17), (17, 16)]:
        write_image(torch.zeros(3, height, width), tmp_path / "in" / f"{height}x{width}.png")
    seen = tiled_sizes(monkeypatch)
    predict(ckpt=run, input=tmp_path / "in", output=tmp_path / "out", mode="eval", backend="torch", progress=False, tile=tile)
    assert sorted(seen) == tiled
    unasked = "16x17.png (16 x 17) and its 272 pixels are over 256 (1 other image(s) too): translated in 16-pixel tiles"
    assert (unasked in capsys.readouterr().err) == (tile is None)


class Pointwise(nn.Module):
    """A generator of size_multiple 1 (a 1x1 convolution): any tile fits it, down to one pixel."""

    size_multiple = 1

    def __init__(self, *, in_channels: int, out_channels: int, image_size: int) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.conv = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.conv(x))


class PointwisePlugin:
    @p2p_core.hookimpl
    def p2p_generators(self):
        return {"pointwise": Pointwise}


def test_tile_1_translates_a_generator_of_size_multiple_1_a_pixel_at_a_time(tmp_path: Path, monkeypatch):
    registry = Registry()
    registry.load_entry_points(allow=["p2p"])
    registry.register(PointwisePlugin(), name="pointwise", distribution="p2p-pointwise", version="1.0")
    arguments = fit_arguments(["--generator", "pointwise", "--disc", "pixel", "--disc.ndf", "4", "--data", "synthetic",
                               "--data.length", "1", "--data.load_size", "16", "--data.crop_size", "16", "--trainer.max_steps", "1",
                               "--trainer.num_workers", "0", "--trainer.progress", "false", "--out_dir", str(tmp_path), "--name", "run"],
                              registry)
    fit(**arguments, registry=registry, argv=[])
    write_image(torch.rand(3, 2, 3, generator=torch.Generator().manual_seed(0)) * 2 - 1, tmp_path / "in" / "small.png")
    seen = tiled_sizes(monkeypatch)
    common = {"ckpt": tmp_path / "run", "input": tmp_path / "in", "mode": "eval", "backend": "torch", "progress": False, "registry": registry}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a 2 x 3 image, far from the 16-pixel training scale
        predict(output=tmp_path / "tiled", tile=1, **common)
        predict(output=tmp_path / "whole", tile=0, **common)
    assert seen == [(2, 3)]
    # Each pixel's output depends on that pixel alone: one-pixel tiles (no overlap) give the whole image's output.
    assert np.array_equal(np.asarray(Image.open(tmp_path / "tiled" / "small.png")), np.asarray(Image.open(tmp_path / "whole" / "small.png")))


def test_with_resize_the_images_tiled_are_those_large_after_it(run: Path, large: Path, tmp_path: Path, monkeypatch, capsys):
    """The 32 x 24 image is scaled to 11 x 8 (88 pixels) or 43 x 32 (1,376) before it reaches the generator: only the
    second is over the 256 pixels tiled unasked here, and is translated in tiles at that scale, then scaled back."""
    monkeypatch.setattr(tiles, "AUTO_TILE", 16)
    monkeypatch.setattr("p2p_core.predict.AUTO_TILE_PIXELS", 16 * 16)
    seen = tiled_sizes(monkeypatch)
    common = {"ckpt": run, "input": large, "mode": "eval", "backend": "torch", "progress": False}
    predict(output=tmp_path / "small", resize=8, **common)
    assert seen == [] and "tiles" not in capsys.readouterr().err
    predict(output=tmp_path / "large", resize=32, **common)
    assert seen == [(43, 32)]
    assert "large.png (43 x 32) and its 1,376 pixels are over 256: translated in 16-pixel tiles" in capsys.readouterr().err
    generator = load_generator(run, mode="eval").module
    with torch.no_grad():
        floats = translate_tiled(lambda piece: translate(generator, piece), resize(read_image(large / "large.png")[None], (43, 32)),
                                 tile=16, overlap=2)
    assert np.array_equal(read(tmp_path / "large"), to_uint8(resize(floats, (32, 24))[0]).permute(1, 2, 0).numpy())


class InOrder(Executor):
    """Runs each task when it is submitted, so that what predict reads and translates happens in the order it asks."""

    def __init__(self, max_workers: int) -> None:
        pass

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as error:  # noqa: BLE001 - the future holds it, as a pool's does
            future.set_exception(error)
        return future


def test_while_a_tiled_image_is_translated_at_most_the_next_one_is_decoded(run: Path, tmp_path: Path, monkeypatch):
    """What tiling saves would be lost if every image were decoded ahead: one is, beside the image being translated."""
    for index in range(4):
        write_image(torch.zeros(3, 32, 24), tmp_path / "in" / f"{index}.png")
    events = []

    def reading(path: Path, **options) -> torch.Tensor:
        events.append("read")
        return read_input(path, **options)

    def tiling(run, batch: torch.Tensor, **options) -> torch.Tensor:
        events.append("translate")
        return translate_tiled(run, batch, **options)

    monkeypatch.setattr("p2p_core.predict.ThreadPoolExecutor", InOrder)
    monkeypatch.setattr("p2p_core.predict.read_input", reading)
    monkeypatch.setattr("p2p_core.predict.translate_tiled", tiling)
    predict(ckpt=run, input=tmp_path / "in", output=tmp_path / "out", mode="eval", backend="torch", progress=False, tile=16)
    translations = [position for position, event in enumerate(events) if event == "translate"]
    assert len(translations) == 4
    for number, position in enumerate(translations):
        assert events[:position].count("read") <= number + 2, events

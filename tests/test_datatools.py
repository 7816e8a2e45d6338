"""p2p data combine / edges: pairing, size and overwrite checks, splits, and edge maps of real photos."""

from __future__ import annotations

import errno
import os
from collections import deque
from pathlib import Path

import kornia
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from p2p_core import datatools
from p2p_core.cli import main
from p2p_core.datatools import assign_splits, combine, connected_components, edge_map, fit_square, remove_fragments
from p2p_core.errors import ConfigError, DataError
from p2p_core.images import read_image, to_signed, to_uint8, write_image

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "edges2cats.yaml"


def pixels(channels: int, height: int, width: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return to_signed(torch.randint(0, 256, (channels, height, width), generator=generator, dtype=torch.uint8))


def write_folders(root: Path, names_a: list[str], names_b: list[str], *, size: tuple[int, int] = (6, 8)) -> dict[str, torch.Tensor]:
    images = {}
    for seed, name in enumerate(names_a):
        images[f"A/{name}"] = pixels(3, *size, seed)
        write_image(images[f"A/{name}"], root / "A" / name)
    for seed, name in enumerate(names_b, start=100):
        images[f"B/{name}"] = pixels(3, *size, seed)
        write_image(images[f"B/{name}"], root / "B" / name)
    return images


# -- combine ----------------------------------------------------------------------------------------------------


def test_combine_pairs_by_name_across_extensions_and_reports_the_unmatched(tmp_path: Path):
    images = write_folders(tmp_path, ["x.png", "y.png", "only_a.png"], ["x.bmp", "y.png", "only_b.png"])
    report = combine(a=tmp_path / "A", b=tmp_path / "B", out=tmp_path / "ab")
    assert sorted(p.name for p in (tmp_path / "ab" / "train").iterdir()) == ["x.png", "y.png"]
    assert torch.equal(read_image(tmp_path / "ab" / "train" / "x.png"), torch.cat([images["A/x.png"], images["B/x.bmp"]], -1))
    text = str(report)
    assert "1 file(s) only in" in text and "only_a" in text and "only_b" in text
    assert "wrote 2 train pair(s)" in text


def test_combine_refuses_pairs_of_different_sizes_unless_told_to_scale_b(tmp_path: Path):
    write_folders(tmp_path, ["x.png"], [])
    write_image(pixels(3, 12, 16, 5), tmp_path / "B" / "x.png")
    with pytest.raises(DataError, match=r"x \(A 8x6, B 16x12\).*--resize_b"):
        combine(a=tmp_path / "A", b=tmp_path / "B", out=tmp_path / "ab")
    assert not (tmp_path / "ab").exists()
    report = combine(a=tmp_path / "A", b=tmp_path / "B", out=tmp_path / "ab", resize_b=True)
    assert read_image(tmp_path / "ab" / "train" / "x.png").shape == (3, 6, 16)
    assert "scaled to their A's size" in str(report)


def test_combine_never_overwrites_silently_and_a_new_split_leaves_no_copies(tmp_path: Path):
    names = [f"{i}.png" for i in range(6)]
    write_folders(tmp_path, names, names)
    combine(a=tmp_path / "A", b=tmp_path / "B", out=tmp_path / "ab")
    with pytest.raises(DataError, match="already exist.*--overwrite"):
        combine(a=tmp_path / "A", b=tmp_path / "B", out=tmp_path / "ab", val_fraction=0.5)
    combine(a=tmp_path / "A", b=tmp_path / "B", out=tmp_path / "ab", val_fraction=0.5, overwrite=True)
    train = {p.name for p in (tmp_path / "ab" / "train").iterdir()}
    val = {p.name for p in (tmp_path / "ab" / "val").iterdir()}
    assert len(train) == len(val) == 3 and not train & val


def contents(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.mark.parametrize("out", ["ds", "ds/train", "link", "link/train"])
def test_combine_never_writes_into_its_inputs_even_with_overwrite(tmp_path: Path, out: str):
    names = ["x.png", "y.png"]
    write_folders(tmp_path, names, names)
    combine(a=tmp_path / "A", b=tmp_path / "B", out=tmp_path / "ds")
    (tmp_path / "link").symlink_to(tmp_path / "ds")
    before = contents(tmp_path)
    # A from the dataset's own train folder, B as before: OUT holds (or is) the folder A is read from.
    with pytest.raises(DataError, match=r"--out .* input folder .*train"):
        combine(a=tmp_path / "ds" / "train", b=tmp_path / "B", out=tmp_path / out, overwrite=True)
    assert contents(tmp_path) == before


def test_combine_reads_every_input_before_changing_anything(tmp_path: Path):
    names = ["x.png", "y.png", "z.png"]
    write_folders(tmp_path, names, names)
    combine(a=tmp_path / "A", b=tmp_path / "B", out=tmp_path / "ab", format="jpg")
    before = contents(tmp_path / "ab")
    damaged = tmp_path / "B" / "z.png"  # last in the list; its header still reads
    damaged.write_bytes(damaged.read_bytes()[:60])
    with pytest.raises(DataError, match=r"z\.png"):
        combine(a=tmp_path / "A", b=tmp_path / "B", out=tmp_path / "ab", overwrite=True)
    assert contents(tmp_path / "ab") == before and {p.name for p in (tmp_path / "ab").iterdir()} == {"train"}
    with pytest.raises(DataError, match=r"z\.png"):
        combine(a=tmp_path / "A", b=tmp_path / "B", out=tmp_path / "new" / "ab")
    assert not (tmp_path / "new").exists()


def test_combine_on_a_full_disk_leaves_the_output_as_it_was(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    names = ["x.png", "y.png"]
    write_folders(tmp_path, names, names)
    combine(a=tmp_path / "A", b=tmp_path / "B", out=tmp_path / "ab")
    before = contents(tmp_path / "ab")
    writes = []

    def full_at_the_second(image: torch.Tensor, path: Path) -> None:
        writes.append(path)
        if len(writes) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        write_image(image, path)

    monkeypatch.setattr(datatools, "write_image", full_at_the_second)
    with pytest.raises(DataError, match=r"cannot write to --out .*ab: No space left on device; nothing was changed"):
        combine(a=tmp_path / "A", b=tmp_path / "B", out=tmp_path / "ab", format="jpg", overwrite=True)
    assert contents(tmp_path / "ab") == before and len(writes) == 2


def test_combine_keeps_alpha_and_refuses_it_in_jpeg_before_writing(tmp_path: Path):
    write_image(pixels(4, 6, 8, 0), tmp_path / "A" / "x.png")
    write_image(pixels(3, 6, 8, 1), tmp_path / "B" / "x.png")
    with pytest.raises(DataError, match="alpha.*--format png"):
        combine(a=tmp_path / "A", b=tmp_path / "B", out=tmp_path / "ab", format="jpg")
    assert not (tmp_path / "ab").exists()
    combine(a=tmp_path / "A", b=tmp_path / "B", out=tmp_path / "ab")
    combined = read_image(tmp_path / "ab" / "train" / "x.png", channels=4)
    assert torch.equal(combined[:, :, :8], pixels(4, 6, 8, 0))
    assert torch.equal(combined[3, :, 8:], torch.ones(6, 8))  # B had no alpha: opaque


def test_combine_refuses_two_files_of_one_name(tmp_path: Path):
    write_folders(tmp_path, ["x.png", "x.jpg"], ["x.png"])
    with pytest.raises(DataError, match="several files named x"):
        combine(a=tmp_path / "A", b=tmp_path / "B", out=tmp_path / "ab")


def test_splits_are_seeded_and_leave_both_sides_non_empty():
    names = [f"n{i}" for i in range(20)]
    plan = assign_splits(names, split="train", val_fraction=0.25, seed=1)
    assert sum(split == "val" for split in plan.values()) == 5
    assert plan == assign_splits(names, split="train", val_fraction=0.25, seed=1)
    assert plan != assign_splits(names, split="train", val_fraction=0.25, seed=2)
    assert list(assign_splits(["a", "b"], split="test", val_fraction=0.01, seed=0).values()).count("val") == 1
    with pytest.raises(ConfigError, match="val_fraction"):
        assign_splits(names, split="val", val_fraction=0.1, seed=0)
    with pytest.raises(ConfigError, match="got 1.0"):
        assign_splits(names, split="train", val_fraction=1.0, seed=0)


# -- edge maps --------------------------------------------------------------------------------------------------


def reference_components(mask: torch.Tensor) -> list[set[tuple[int, int]]]:
    """8-connected components by breadth-first search."""
    height, width = mask.shape
    seen: set[tuple[int, int]] = set()
    found = []
    for start in map(tuple, mask.nonzero().tolist()):
        if start in seen:
            continue
        seen.add(start)
        component, queue = set(), deque([start])
        while queue:
            y, x = queue.popleft()
            component.add((y, x))
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    near = (y + dy, x + dx)
                    if 0 <= near[0] < height and 0 <= near[1] < width and mask[near] and near not in seen:
                        seen.add(near)
                        queue.append(near)
        found.append(component)
    return found


@settings(max_examples=40, deadline=None, derandomize=True)
@given(height=st.integers(1, 40), width=st.integers(1, 40), density=st.floats(0.05, 0.7), seed=st.integers(0, 2**16))
def test_connected_components_match_a_breadth_first_search(height, width, density, seed):
    mask = torch.rand(height, width, generator=torch.Generator().manual_seed(seed)) < density
    labels = connected_components(mask)
    expected = reference_components(mask)
    assert len({int(labels[p]) for p in map(tuple, mask.nonzero().tolist())}) == len(expected)
    for component in expected:
        assert len({int(labels[p]) for p in component}) == 1


def test_small_fragments_go_and_long_thin_curves_stay():
    mask = torch.zeros(64, 64, dtype=torch.bool)
    rows = torch.arange(2, 62)
    mask[rows, (30 + 5 * torch.sin(rows / 6.0)).round().long()] = True  # a wavy line, slope < 1: 8-connected
    mask[5, 5] = mask[5, 6] = mask[50, 50] = True  # specks
    mask[10:13, 55:58] = True  # a 9-pixel blob
    kept = remove_fragments(mask, min_pixels=10)
    assert kept.sum() == 60 and kept[rows].any(dim=1).all()
    assert not kept[5, 5] and not kept[50, 50] and not kept[10:13, 55:58].any()
    assert torch.equal(remove_fragments(mask, min_pixels=1), mask)


def test_edges_of_a_square_lie_on_its_border():
    photo = torch.ones(3, 64, 64)
    photo[:, 16:48, 16:48] = -1.0
    drawn = edge_map(photo)[0]
    edges = drawn < 0
    assert set(drawn.unique().tolist()) == {-1.0, 1.0}
    border = torch.zeros(64, 64, dtype=torch.bool)
    border[14:50, 14:50] = True
    border[18:46, 18:46] = False
    assert edges.sum() >= 4 * 28 and not (edges & ~border).any()


def test_edge_options_are_checked():
    with pytest.raises(ConfigError, match="0 < --low_threshold < --high_threshold"):
        edge_map(torch.zeros(3, 8, 8), low_threshold=0.3, high_threshold=0.2)


# -- edges on real photos -----------------------------------------------------------------------------------------


@pytest.fixture
def photos(outlines: Path, tmp_path: Path) -> Path:
    """The A halves (photos of people on white) of 16 real pairs, some shorter than they are wide."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for path in sorted((outlines / "val").glob("*.jpg"))[:16]:
        with Image.open(path) as pair:
            pair.crop((0, 0, pair.width // 2, pair.height)).save(folder / f"{path.stem}.png")
    return folder


def test_edges_of_real_photos_make_a_dataset_the_edges2cats_recipe_trains_on(photos: Path, tmp_path: Path):
    edges_of = ["data", "edges", "--photos", str(photos), "--size", "96", "--val_fraction", "0.25", "--seed", "3"]
    main([*edges_of, "--out", str(tmp_path / "ds")])
    train, val = (sorted(p.stem for p in (tmp_path / "ds" / split).iterdir()) for split in ("train", "val"))
    assert (len(train), len(val)) == (12, 4) and sorted(train + val) == sorted(p.stem for p in photos.iterdir())

    for path in sorted((tmp_path / "ds").glob("*/*.png")):
        pair = read_image(path)
        assert pair.shape == (3, 96, 192)
        drawn, photo = pair[0, :, :96], pair[:, :, 96:]
        assert set(drawn.unique().tolist()) <= {-1.0, 1.0}
        black = drawn < 0
        assert 0.002 < black.float().mean() < 0.15, path  # mostly white, with some lines
        assert torch.equal(photo, to_signed(to_uint8(fit_square(read_image(photos / path.name), size=96, fit="crop"))))
        # Edges sit where the photo changes: its gradient there is many times the gradient elsewhere.
        gradient = kornia.filters.sobel(photo.add(1).div(2).mean(0)[None, None])[0, 0]
        assert gradient[black].mean() > 5 * gradient[~black].mean(), path

    # The same photos and seed give the same files, byte for byte (other seeds: test_splits_are_seeded...).
    main([*edges_of, "--out", str(tmp_path / "again")])
    for path in sorted((tmp_path / "ds").glob("*/*.png")):
        assert path.read_bytes() == (tmp_path / "again" / path.relative_to(tmp_path / "ds")).read_bytes()

    tiny = ["--generator.ngf", "8", "--disc.ndf", "8", "--data.crop_size", "32", "--data.load_size", "36",
            "--trainer.max_steps", "2", "--trainer.num_workers", "0", "--trainer.progress", "false"]  # fmt: skip
    main(["fit", "--config", str(RECIPE), "--data.root", str(tmp_path / "ds"), *tiny, "--out_dir", str(tmp_path / "runs")])
    assert list((tmp_path / "runs" / "edges2cats" / "checkpoints").glob("step_*.pt"))

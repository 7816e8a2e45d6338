"""The file datasets read what they promise: ``aligned`` splits each A|B file of the split's folder into its halves,
``folders`` pairs A/ and B/ by name; both in natural order, each half converted to the channels asked for (grey,
RGB, RGBA), swapped by the direction, jittered alike as the paper does; a bad file is refused naming it, or
skipped; size warnings name the files they are about."""

from __future__ import annotations

import logging
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from PIL import Image

from p2p_core.errors import DataError
from p2p_core.images import PairedJitter, to_signed
from p2p_datasets.files import AlignedDataset, FoldersDataset

DATASETS = {"aligned": AlignedDataset, "folders": FoldersDataset}
MODES = {1: "L", 3: "RGB", 4: "RGBA"}


def pixels(height: int, width: int, *, channels: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, channels), dtype=np.uint8)


def save(array: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=MODES[array.shape[-1]]).save(path)
    return path


def write_pair(root: Path, kind: str, split: str, name: str, a: np.ndarray, b: np.ndarray) -> Path:
    """One pair in the layout of ``kind``; returns the path the dataset names it by (the A|B file, or A's file)."""
    if kind == "aligned":
        return save(np.concatenate([a, b], axis=1), root / split / f"{name}.png")
    save(b, root / split / "B" / f"{name}.png")
    return save(a, root / split / "A" / f"{name}.png")


def signed(array: np.ndarray) -> torch.Tensor:
    return to_signed(torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1))


def as_channels(array: np.ndarray, channels: int) -> torch.Tensor:
    """The image as PIL converts a file of it to ``channels`` channels: what a file of one half alone would read as."""
    converted = np.array(Image.fromarray(array, mode=MODES[array.shape[-1]]).convert(MODES[channels]))
    return signed(converted.reshape(*converted.shape[:2], -1))


EXACT = {"preprocess": "none", "crop_size": 1, "flip": False}  # each half at its stored size, nothing drawn


@pytest.mark.parametrize("kind", DATASETS)
@pytest.mark.parametrize("direction", ["AtoB", "BtoA"])
def test_the_pairs_of_the_split_folder_are_read_in_natural_order_and_swapped_by_the_direction(tmp_path: Path, kind, direction):
    halves = {name: (pixels(4, 6, seed=2 * i), pixels(4, 6, seed=2 * i + 1)) for i, name in enumerate(["10", "2", "b", "a"])}
    paths = {name: write_pair(tmp_path, kind, "val", name, a, b) for name, (a, b) in halves.items()}
    write_pair(tmp_path, kind, "train", "2", pixels(4, 6, seed=90), pixels(4, 6, seed=91))  # another split: not read
    dataset = DATASETS[kind](root=tmp_path, split="val", direction=direction, **EXACT)
    order = ["2", "10", "a", "b"]
    assert len(dataset) == 4 and dataset.image_size == 1
    for index, name in enumerate(order):
        sample = dataset[index]
        expected = tuple(signed(half) for half in halves[name])
        assert torch.equal(sample.a, expected[direction == "BtoA"]) and torch.equal(sample.b, expected[direction == "AtoB"])
        assert sample.path == str(paths[name])


@settings(max_examples=25, deadline=None)
@given(
    kind=st.sampled_from(sorted(DATASETS)),
    direction=st.sampled_from(["AtoB", "BtoA"]),
    a_channels=st.sampled_from([1, 3, 4]),
    b_channels=st.sampled_from([1, 3, 4]),
    height=st.integers(1, 9),
    width=st.integers(1, 9),
    seed=st.integers(0, 1000),
)
# Each conversion, in either half and either direction, on every run whatever the profile draws.
@example(kind="aligned", direction="AtoB", a_channels=1, b_channels=4, height=3, width=5, seed=0)
@example(kind="aligned", direction="BtoA", a_channels=4, b_channels=1, height=5, width=3, seed=1)
@example(kind="aligned", direction="AtoB", a_channels=3, b_channels=1, height=2, width=2, seed=2)
@example(kind="folders", direction="BtoA", a_channels=1, b_channels=4, height=3, width=4, seed=3)
@example(kind="folders", direction="AtoB", a_channels=4, b_channels=3, height=4, width=3, seed=4)
def test_each_half_reads_as_a_file_of_it_alone_would_in_the_channels_asked_for(
    tmp_path_factory, kind, direction, a_channels, b_channels, height, width, seed
):
    # An A|B file holds alpha when some half needs it; a half that does not drops it, and a grey half is
    # the luma PIL gives a grey file (within a level: the dataset does not round).
    stored = 4 if 4 in (a_channels, b_channels) else 3
    a, b = pixels(height, width, channels=stored, seed=seed), pixels(height, width, channels=stored, seed=seed + 1)
    root = tmp_path_factory.mktemp(kind)
    write_pair(root, kind, "train", "0", a, b)
    dataset = DATASETS[kind](root=root, direction=direction, a_channels=a_channels, b_channels=b_channels, **EXACT)
    sample = dataset[0]
    expected_a, expected_b = as_channels(a, a_channels), as_channels(b, b_channels)
    if direction == "BtoA":
        expected_a, expected_b = expected_b, expected_a
    assert (dataset.in_channels, dataset.out_channels) == (expected_a.shape[0], expected_b.shape[0])
    assert sample.a.shape == expected_a.shape and sample.b.shape == expected_b.shape
    assert torch.allclose(sample.a, expected_a, atol=1 / 127.5) and torch.allclose(sample.b, expected_b, atol=1 / 127.5)


@pytest.mark.parametrize("kind", DATASETS)
@pytest.mark.parametrize("preprocess", ["resize_and_crop", "crop", "none"])
@pytest.mark.parametrize("flip", [True, False])
def test_the_train_split_is_jittered_as_the_options_say_and_the_others_are_not_drawn(tmp_path: Path, kind, preprocess, flip):
    a, b = pixels(48, 48, seed=1), pixels(48, 48, seed=2)
    for split in ("train", "val"):
        write_pair(tmp_path, kind, split, "0", a, b)
    options = {"load_size": 40, "crop_size": 32, "preprocess": preprocess, "flip": flip}
    jitter = PairedJitter(**options)
    for split, train in (("train", True), ("val", False)):
        dataset = DATASETS[kind](root=tmp_path, split=split, **options)
        assert dataset.image_size == 32
        for seed in range(4):  # draws of both crops and both sides of the coin
            torch.manual_seed(seed)
            sample = dataset[0]
            torch.manual_seed(seed)
            expected = jitter(signed(a), signed(b), train=train, path="")
            assert torch.equal(sample.a, expected[0]) and torch.equal(sample.b, expected[1]), (split, seed)


def test_by_default_a_dataset_reads_the_train_split_as_rgb_a_to_b_jittered_as_the_paper_does(tmp_path: Path):
    a, b = pixels(20, 20, seed=3), pixels(20, 20, seed=4)
    write_pair(tmp_path, "aligned", "train", "0", a, b)
    dataset = AlignedDataset(root=tmp_path)
    assert (dataset.in_channels, dataset.out_channels, dataset.image_size) == (3, 3, 256)
    paper = PairedJitter(load_size=286, crop_size=256, preprocess="resize_and_crop", flip=True)
    for seed in range(4):
        torch.manual_seed(seed)
        sample = dataset[0]
        torch.manual_seed(seed)
        expected = paper(signed(a), signed(b), train=True, path="")
        assert torch.equal(sample.a, expected[0]) and torch.equal(sample.b, expected[1]), seed


def test_a_bad_file_is_refused_naming_it_unless_skip_bad_skips_to_the_next_pair(tmp_path: Path, caplog):
    good = {name: write_pair(tmp_path, "aligned", "train", name, pixels(4, 4), pixels(4, 4)) for name in ("0", "2")}
    (tmp_path / "train" / "1.png").write_bytes(b"not an image")
    (tmp_path / "train" / "3.png").write_bytes(b"")
    with pytest.raises(DataError, match=re.escape(str(tmp_path / "train" / "1.png"))):
        AlignedDataset(root=tmp_path, **EXACT)[1]
    dataset = AlignedDataset(root=tmp_path, skip_bad=True, **EXACT)
    with caplog.at_level(logging.WARNING, logger="p2p_datasets.files"):
        assert [dataset[index].path for index in range(4)] == [str(good["0"]), str(good["2"]), str(good["2"]), str(good["0"])]
    skipped = [record.getMessage() for record in caplog.records if record.name == "p2p_datasets.files"]
    assert len(skipped) == 2
    for message, name in zip(skipped, ("1.png", "3.png")):
        assert message.startswith(f"skipping a bad pair: cannot read image {tmp_path / 'train' / name}: ")


def test_a_split_of_bad_files_only_is_refused_even_with_skip_bad(tmp_path: Path):
    (tmp_path / "train").mkdir()
    for name in ("0.png", "1.png"):
        (tmp_path / "train" / name).write_bytes(b"")
    with pytest.raises(DataError, match=re.escape(f"every pair under {tmp_path / 'train'} is unreadable")):
        AlignedDataset(root=tmp_path, skip_bad=True, **EXACT)[0]


def test_an_a_b_file_of_odd_width_is_refused_naming_it(tmp_path: Path):
    path = save(pixels(4, 9), tmp_path / "train" / "odd.png")
    with pytest.raises(DataError, match=re.escape(f"{path}: width 9 is odd, so it cannot be split into A|B halves")):
        AlignedDataset(root=tmp_path, **EXACT)[0]


def test_folder_pairs_of_different_sizes_are_refused_naming_the_a_file(tmp_path: Path):
    path = save(pixels(4, 4), tmp_path / "train" / "A" / "x.png")
    save(pixels(4, 6), tmp_path / "train" / "B" / "x.png")
    with pytest.raises(DataError, match=re.escape(f"{path}: A is (4, 4) but B is (4, 6)")):
        FoldersDataset(root=tmp_path, **EXACT)[0]


def test_a_direction_other_than_a_to_b_or_b_to_a_is_refused_naming_it(tmp_path: Path):
    write_pair(tmp_path, "aligned", "train", "0", pixels(4, 4), pixels(4, 4))
    with pytest.raises(DataError, match=r"direction must be 'AtoB' or 'BtoA', got 'sideways'"):
        AlignedDataset(root=tmp_path, direction="sideways")


@pytest.mark.parametrize(("kind", "missing", "layout"), [
    ("aligned", "val", "ROOT/{train,val,test}/*.jpg with A|B side by side (--data.root ROOT)"),
    ("folders", "val/A", "ROOT/{train,val,test}/{A,B}/ with matching file names (--data.root ROOT)"),
])
def test_a_missing_split_folder_is_named_with_the_layout_expected(tmp_path: Path, kind, missing, layout):
    write_pair(tmp_path, kind, "train", "0", pixels(4, 4), pixels(4, 4))
    with pytest.raises(DataError, match=re.escape(f"data folder {tmp_path / missing} does not exist; expected {layout}")):
        DATASETS[kind](root=tmp_path, split="val")


@pytest.mark.parametrize("kind", DATASETS)
def test_a_val_split_builds_without_a_train_split_beside_it(tmp_path: Path, kind):
    write_pair(tmp_path, kind, "val", "0", pixels(4, 4), pixels(4, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(DATASETS[kind](root=tmp_path, split="val")) == 1


def sizes_warning(root: Path, kind: str = "aligned", **options) -> list[str]:
    """The warnings building the train split of ``root`` gives."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        DATASETS[kind](root=root, **{"preprocess": "crop", **options})
    return [str(warning.message) for warning in caught]


@pytest.mark.parametrize(("sides", "described"), [
    ([8, 8, 10], "2 sizes: 2 of 8x8 (e.g. 0.png), 1 of 10x10 (e.g. 2.png)"),
    ([8, 10, 10, 12], "3 sizes: 2 of 10x10 (e.g. 1.png), 1 of 8x8 (e.g. 0.png), 1 of 12x12 (e.g. 3.png)"),
    ([14, 8, 8, 8, 10, 10, 12, 14, 16], "5 sizes: 3 of 8x8 (e.g. 1.png), 2 of 14x14 (e.g. 0.png), 2 of 10x10 (e.g. 4.png) "
                                         "and 2 more size(s)"),
])
def test_pairs_of_several_sizes_are_described_most_common_first_with_the_first_file_of_each(tmp_path: Path, sides, described):
    for index, side in enumerate(sides):
        write_pair(tmp_path, "aligned", "train", str(index), pixels(side, side), pixels(side, side))
    assert sizes_warning(tmp_path) == [f"{tmp_path / 'train'}: the pairs' A images come in {described}; check that they belong together"]


def test_an_unreadable_file_leaves_the_size_check_of_the_others_to_run(tmp_path: Path):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "0.png").write_bytes(b"")
    for index, side in ((1, 8), (2, 10)):
        write_pair(tmp_path, "aligned", "train", str(index), pixels(side, side), pixels(side, side))
    assert [message for message in sizes_warning(tmp_path) if "2 sizes: 1 of 8x8 (e.g. 1.png), 1 of 10x10 (e.g. 2.png)" in message]


def test_the_size_checks_are_about_the_a_images_of_folder_pairs(tmp_path: Path):
    # The B images of different sizes would be refused when read, naming the pair; the build speaks of A's sizes.
    for index, side in enumerate((8, 8, 10)):
        write_pair(tmp_path, "folders", "train", str(index), pixels(8, 8), pixels(side, side))
    assert sizes_warning(tmp_path, "folders") == []


def test_val_sizes_the_train_split_lacks_are_named_with_the_train_splits_sizes(tmp_path: Path):
    for index, side in enumerate((10, 8)):
        write_pair(tmp_path, "aligned", "train", str(index), pixels(side, side), pixels(side, side))
    write_pair(tmp_path, "aligned", "val", "0", pixels(12, 12), pixels(12, 12))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        AlignedDataset(root=tmp_path, split="val", preprocess="crop")
    assert [str(warning.message) for warning in caught] == [
        f"{tmp_path / 'val'}: 1 pair(s) have a size the train split does not have (8x8, 10x10): 1 of 12x12 (e.g. 0.png); "
        f"the model is scored on data shaped unlike what it learnt from"
    ]


@pytest.mark.parametrize(("height", "width", "squeezed"), [(40, 44, False), (44, 40, False), (40, 45, True), (45, 40, True)])
def test_resize_and_crop_warns_of_pairs_more_than_a_tenth_from_square(tmp_path: Path, height, width, squeezed):
    write_pair(tmp_path, "aligned", "train", "0", pixels(height, width), pixels(height, width))
    messages = sizes_warning(tmp_path, preprocess="resize_and_crop")
    assert messages == ([f"{tmp_path / 'train'}: 1 pair(s) are far from square, yet resize_and_crop squeezes each image to a square: "
                         f"1 of {width}x{height} (e.g. 0.png); check that each file holds what the dataset expects, or use "
                         f"--data.preprocess crop or none"] if squeezed else [])


@pytest.mark.parametrize("kind", DATASETS)
def test_a_name_in_the_split_that_is_not_a_file_is_warned_of_once(tmp_path: Path, kind):
    path = write_pair(tmp_path, kind, "train", "0", pixels(4, 4), pixels(4, 4))
    (path.parent / "folder.png").mkdir()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        DATASETS[kind](root=tmp_path, preprocess="crop")
    assert [str(warning.message) for warning in caught] == [
        f"{path.parent}: skipped 1 name(s) with an image suffix that are not regular files (folders, symlink loops, broken "
        f"links or links to devices): folder.png"
    ]

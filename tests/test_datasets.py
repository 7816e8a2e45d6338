"""The file datasets name data that is not what it claims: an A|B file without its B half, mixed sizes."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from PIL import Image

from conftest import write_ab_folder, write_ab_folders
from p2p_datasets.files import AlignedDataset, FoldersDataset

OPTIONS = {"load_size": 36, "crop_size": 32}


def test_a_val_image_without_its_b_half_is_named(tmp_path: Path):
    root = write_ab_folder(tmp_path, split="train", size=(40, 40))
    (root / "val").mkdir()
    Image.new("RGB", (40, 39)).save(root / "val" / "photo.png")  # one photo, no B beside it
    with pytest.warns(UserWarning) as caught:
        AlignedDataset(root=root, split="val", **OPTIONS)
    messages = [str(warning.message) for warning in caught]
    assert any("far from square" in m and "1 of 20x39 (e.g. photo.png)" in m for m in messages), messages
    assert any("size the train split does not have (40x40)" in m and "photo.png" in m for m in messages), messages


def test_pairs_of_several_sizes_in_a_split_are_named(tmp_path: Path):
    root = write_ab_folder(tmp_path, split="train", count=2, size=(40, 40))
    Image.new("RGB", (100, 50)).save(root / "train" / "wide.png")
    Image.new("RGB", (60, 30)).save(root / "train" / "small.png")
    sizes = r"3 sizes: 2 of 40x40 \(e\.g\. 0\.png\), 1 of 30x30 \(e\.g\. small\.png\), 1 of 50x50 \(e\.g\. wide\.png\)"
    with pytest.warns(UserWarning, match=rf"train: the pairs' A images come in {sizes}"):
        AlignedDataset(root=root, split="train", **OPTIONS)


def test_a_val_split_of_another_size_is_named_for_folder_pairs_too(tmp_path: Path):
    write_ab_folders(tmp_path, split="train", size=(40, 40))
    write_ab_folders(tmp_path, split="val", size=(48, 40))
    with pytest.warns(UserWarning, match=r"val: 3 pair\(s\) have a size the train split does not have \(40x40\): 3 of 40x48"):
        FoldersDataset(root=tmp_path, split="val", preprocess="crop", **OPTIONS)


@pytest.mark.parametrize("preprocess", ["resize_and_crop", "crop", "none"])
def test_consistent_data_builds_without_a_warning(tmp_path: Path, preprocess: str):
    write_ab_folder(tmp_path, split="train", size=(40, 40))
    write_ab_folder(tmp_path, split="val", size=(40, 40))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        AlignedDataset(root=tmp_path, split="val", preprocess=preprocess, **OPTIONS)


def test_far_from_square_pairs_are_fine_when_nothing_squeezes_them(tmp_path: Path):
    write_ab_folder(tmp_path, split="train", size=(40, 64))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        AlignedDataset(root=tmp_path, split="train", preprocess="crop", **OPTIONS)
    with pytest.warns(UserWarning, match="far from square"):
        AlignedDataset(root=tmp_path, split="train", preprocess="resize_and_crop", **OPTIONS)

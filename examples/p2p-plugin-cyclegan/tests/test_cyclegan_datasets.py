"""What the kit cannot know about the unpaired datasets: the reference's sampling of A and B, its layout, and the
synthetic task taken apart with its A side's class maps kept."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

import p2p_core
from p2p_core.errors import DataError

# Flat colours, told apart after any resize, crop or flip by their mean.
A_GREYS = [10, 60, 110]
B_GREYS = [150, 200]


def write_images(folder: Path, greys: list[int], sizes: list[tuple[int, int]]) -> None:
    folder.mkdir(parents=True)
    for index, (grey, size) in enumerate(zip(greys, sizes, strict=True)):
        Image.new("RGB", size, (grey, grey, grey)).save(folder / f"{index}.png")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """trainA of 3 and trainB of 2 images, every one of another size; testA and testB likewise."""
    for split in ("train", "test"):
        write_images(tmp_path / f"{split}A", A_GREYS, [(40, 30), (50, 64), (33, 33)])
        write_images(tmp_path / f"{split}B", B_GREYS, [(70, 40), (36, 48)])
    return tmp_path


def grey(image: torch.Tensor) -> int:
    return round((image.mean().item() + 1) * 127.5)


def unaligned(root: Path, **options) -> torch.utils.data.Dataset:
    return p2p_core.create("dataset", "unaligned", root=root, **{"load_size": 18, "crop_size": 16, **options})


def test_unaligned_takes_a_in_order_and_draws_b_at_random_from_torchs_seed(root):
    dataset = unaligned(root)
    assert len(dataset) == 3  # the larger set, as the reference's max(A_size, B_size)
    torch.manual_seed(0)
    drawn = [[grey(dataset[index].b) for index in range(3)] for _ in range(20)]
    assert all(grey(dataset[index].a) == A_GREYS[index] for index in range(3))
    assert {b for draw in drawn for b in draw} == set(B_GREYS)  # every B is drawn, for any A
    assert len({tuple(draw) for draw in drawn}) > 1
    torch.manual_seed(0)
    assert [grey(dataset[index].b) for index in range(3)] == drawn[0]
    assert dataset[1].path.endswith("trainA/1.png") and dataset[1].a.shape == (3, 16, 16)


def test_unaligned_jitters_a_and_b_apart(tmp_path):
    """The same picture as A and B: a shared crop would make them equal; the reference crops each on its own."""
    gradient = Image.linear_gradient("L").resize((40, 40)).convert("RGB")
    for side in "AB":
        (tmp_path / f"train{side}").mkdir()
        gradient.save(tmp_path / f"train{side}" / "0.png")
    dataset = unaligned(tmp_path, load_size=40, crop_size=16)
    torch.manual_seed(0)
    samples = [dataset[0] for _ in range(10)]
    assert any(not torch.equal(sample.a, sample.b) for sample in samples)


def test_unaligned_test_split_is_serial_and_unjittered_as_the_reference_tests(root):
    dataset = unaligned(root, split="test")
    for seed in (0, 1):
        torch.manual_seed(seed)
        assert [(grey(s.a), grey(s.b)) for s in dataset] == [(10, 150), (60, 200), (110, 150)]
    assert torch.equal(dataset[0].b, dataset[2].b)
    assert dataset[0].b.shape == (3, 16, 16)


def test_unaligned_btoa_translates_b_and_names_its_file(root):
    dataset = unaligned(root, split="test", direction="BtoA", a_channels=1)
    assert (len(dataset), dataset.in_channels, dataset.out_channels) == (3, 3, 1)
    sample = dataset[1]
    assert (grey(sample.a), grey(sample.b)) == (200, 60)
    assert sample.path.endswith("testB/1.png") and sample.b.shape == (1, 16, 16)


def test_unaligned_says_which_folder_is_missing_and_what_to_do(root):
    with pytest.raises(DataError, match=r"valA does not exist: .*only where valA and valB are"):
        unaligned(root, split="val")
    (root / "trainB" / "0.png").unlink()
    (root / "trainB" / "1.png").unlink()
    with pytest.raises(DataError, match=r"trainB holds no images.*ROOT/trainA, ROOT/trainB"):
        unaligned(root)
    paired = root / "paired"
    (paired / "train").mkdir(parents=True)
    with pytest.raises(DataError, match=r"paired/trainA does not exist, but .*paired/train does: .*--data aligned"):
        unaligned(paired)


def synthetic(**options):
    return p2p_core.create("dataset", "synthetic", **{"length": 6, "load_size": 36, "crop_size": 32, **options})


def synthetic_unpaired(**options):
    return p2p_core.create("dataset", "synthetic_unpaired", **{"length": 6, "load_size": 36, "crop_size": 32, **options})


def test_synthetic_unpaired_gives_each_label_map_another_scenes_photo_and_keeps_its_class_map():
    unjittered = {"load_size": 32, "flip": False}  # so that a scene's images are the same on every call
    paired, unpaired = synthetic(**unjittered), synthetic_unpaired(**unjittered)
    assert unpaired.classes == paired.classes and unpaired.root is None
    photos = [paired[index].b for index in range(6)]
    torch.manual_seed(0)
    drawn = []
    for index in range(6):
        sample, truth = unpaired[index], paired[index]
        assert torch.equal(sample.a, truth.a) and torch.equal(sample.labels, truth.labels) and sample.path == truth.path
        drawn.append(next(scene for scene, photo in enumerate(photos) if torch.equal(sample.b, photo)))
    assert drawn != list(range(6))


def test_synthetic_unpaired_keeps_held_out_pairs_for_scoring_unless_asked():
    torch.manual_seed(0)
    for split in ("val", "test"):
        assert all(torch.equal(synthetic_unpaired(split=split)[i].b, synthetic(split=split)[i].b) for i in range(6))
    shuffled = synthetic_unpaired(split="test", paired_eval=False)
    assert any(not torch.equal(shuffled[i].b, synthetic(split="test")[i].b) for i in range(6))

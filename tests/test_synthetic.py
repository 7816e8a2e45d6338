"""The built-in synthetic task keeps its promises: its options' bounds."""

from __future__ import annotations

import pytest

from p2p_datasets.synthetic import synthetic

# Small scenes, rendered whole: no jitter in the way of what the renderer promises.
SMALL = {"length": 16, "load_size": 32, "crop_size": 32}


@pytest.mark.parametrize("option, lowest, highest", [("length", 1, 10**8), ("seed", 0, 2**63 - 1)])
def test_the_bounds_of_length_and_seed_are_taken_and_one_beyond_is_refused_naming_the_value(option, lowest, highest):
    for good in (lowest, highest):
        data = synthetic(split="val", **(SMALL | {option: good}))
        assert data[len(data) - 1].a.shape == (3, 32, 32)
    for bad in (lowest - 1, highest + 1):
        with pytest.raises(ValueError, match=f"{option}.* got {bad}$"):
            synthetic(**{option: bad})


def test_the_longest_splits_share_no_scene():
    """Item i of a split is drawn by the generator seeded with the split's ``seed`` plus i: the runs of seeds of
    the longest splits must not overlap."""
    longest = 10**8
    with pytest.raises(ValueError, match="length"):
        synthetic(length=longest + 1)
    starts = sorted(synthetic(split=split, length=longest).seed for split in ("train", "val", "test"))
    assert all(later - earlier >= longest for earlier, later in zip(starts, starts[1:]))

"""The paper's jitter on pairs, and image decoding."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from p2p_core.errors import DataError
from p2p_core.images import PairedJitter, read_image

sides = st.integers(8, 48)


@st.composite
def pairs(draw):
    height, width = draw(sides), draw(sides)
    seed = draw(st.integers(0, 2**31 - 1))
    a = torch.rand(3, height, width, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    return a


@settings(max_examples=40, deadline=None)
@given(a=pairs(), crop=st.sampled_from([8, 16]), extra=st.integers(0, 8), seed=st.integers(0, 1000), train=st.booleans())
def test_jitter_applies_the_same_crop_and_flip_to_both_halves(a, crop, extra, seed, train):
    jitter = PairedJitter(load_size=crop + extra, crop_size=crop)
    torch.manual_seed(seed)
    same_a, same_b = jitter(a, a.clone(), train=train, path="x")
    torch.manual_seed(seed)
    neg_a, neg_b = jitter(a, -a, train=train, path="x")
    assert torch.equal(same_a, same_b)
    # A pixel-wise relation between A and B survives: the geometry is shared.
    assert torch.allclose(neg_b, -neg_a, atol=1e-5)
    assert same_a.shape == (3, crop, crop)


def test_jitter_crops_and_flips_at_random_only_when_training():
    a = torch.arange(3 * 12 * 12, dtype=torch.float32).view(3, 12, 12) / 500 - 0.5
    jitter = PairedJitter(load_size=12, crop_size=8)
    crops = {tuple(jitter(a, a, train=True, path="x")[0].flatten()[:4].tolist()) for _ in range(30)}
    assert len(crops) > 3
    views = {tuple(jitter(a, a, train=False, path="x")[0].flatten().tolist()) for _ in range(5)}
    assert len(views) == 1


def test_preprocess_none_rounds_sides_to_a_multiple_of_the_crop():
    a = torch.zeros(1, 250, 530)
    out, _ = PairedJitter(crop_size=256, preprocess="none")(a, a, train=True, path="x")
    assert out.shape == (1, 256, 512)


def test_crop_mode_names_an_image_smaller_than_the_crop():
    a = torch.zeros(3, 20, 30)
    with pytest.raises(DataError, match=r"small\.png: image 20x30 is smaller than crop_size 32"):
        PairedJitter(crop_size=32, preprocess="crop")(a, a, train=True, path="small.png")


def test_pairs_of_different_sizes_are_refused_by_name():
    with pytest.raises(DataError, match="pair.png"):
        PairedJitter(crop_size=8)(torch.zeros(3, 10, 10), torch.zeros(3, 10, 12), train=True, path="pair.png")


def test_load_size_below_crop_size_is_refused():
    with pytest.raises(DataError, match="load_size 200 is smaller than crop_size 256"):
        PairedJitter(load_size=200, crop_size=256)


def test_unreadable_image_is_named(tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(DataError, match=r"cannot read image .*broken\.jpg"):
        read_image(broken)

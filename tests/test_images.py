"""The paper's jitter on pairs, and image decoding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from p2p_core.errors import DataError
from p2p_core.images import (
    MAX_SIDE,
    PairedJitter,
    center_crop,
    decode,
    decode_input,
    displayable,
    image_header,
    list_images,
    one_hot,
    read_image,
    read_input,
    resize,
    to_pil,
    to_signed,
    to_uint8,
    write_image,
)

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


def test_single_jitters_one_image_as_a_pair_would_be_and_takes_any_shape():
    """Unpaired data jitters A and B apart: one image gets the pair's steps, from the same draws, at any aspect."""
    a = torch.rand(3, 12, 12) * 2 - 1
    jitter = PairedJitter(load_size=12, crop_size=8)
    for seed in range(5):
        torch.manual_seed(seed)
        paired, _ = jitter(a, a, train=True, path="x")
        torch.manual_seed(seed)
        assert torch.equal(jitter.single(a, train=True, path="x"), paired)
    assert jitter.single(torch.zeros(1, 30, 50), train=True, path="x").shape == (1, 8, 8)


def test_preprocess_none_rounds_sides_to_a_multiple_of_the_crop():
    a = torch.zeros(1, 250, 530)
    out, _ = PairedJitter(crop_size=256, preprocess="none")(a, a, train=True, path="x")
    assert out.shape == (1, 256, 512)


@pytest.mark.parametrize("value", [-1.0, 1.0])
def test_downscaling_keeps_saturated_images_in_range(value):
    # Antialiased bilinear rounding once gave -1.0000001 here, which the kit's range check refuses.
    a = torch.full((3, 40, 40), value)
    for side in range(1, 40):
        out, _ = PairedJitter(crop_size=side, preprocess="none")(a, a, train=False, path="x")
        assert bool((out == value).all()), side


@settings(max_examples=20, deadline=None)
@given(a=pairs(), side=sides)
def test_resize_stays_within_the_input_range(a, side):
    resized = resize(a.sign(), [side, side + 1])
    assert resized.min() >= -1 and resized.max() <= 1


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


def float_tiff(path: Path, pixels: np.ndarray) -> Path:
    Image.fromarray(pixels.astype(np.float32), mode="F").save(path, format="TIFF")
    return path


def test_a_float_tiff_in_0_1_reads_as_its_8_bit_equivalent(tmp_path):
    levels = np.arange(256, dtype=np.float32).reshape(16, 16)
    found = read_image(float_tiff(tmp_path / "depth.tif", levels / 255), channels=1)
    assert torch.equal(found, to_signed(torch.from_numpy(levels).to(torch.uint8)[None]))
    assert torch.equal(read_image(tmp_path / "depth.tif", channels=3), found.expand(3, -1, -1))
    assert torch.equal(read_image(tmp_path / "depth.tif", channels=4), torch.cat([found.expand(3, -1, -1), torch.ones(1, 16, 16)]))


@pytest.mark.parametrize("value", [2.0, -0.5, float("nan")])
def test_a_float_tiff_outside_0_1_is_refused_by_name(tmp_path, value):
    path = float_tiff(tmp_path / "depth.tif", np.full((4, 4), value))
    with pytest.raises(DataError, match=r"depth\.tif: .*floating-point pixels range .*outside \[0, 1\]"):
        read_image(path)


def test_a_32_bit_integer_image_beyond_16_bits_is_refused_by_name(tmp_path):
    path = tmp_path / "counts.tif"
    Image.new("I", (4, 4), 100_000).save(path, format="TIFF")
    with pytest.raises(DataError, match=r"counts\.tif: .*integer pixels range from 100000"):
        read_image(path)


def test_names_with_an_image_suffix_that_are_not_files_are_skipped_and_named(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "real.png")
    (tmp_path / "folder.png").mkdir()
    (tmp_path / "loop.png").symlink_to(tmp_path / "loop.png")
    (tmp_path / "zeros.png").symlink_to("/dev/zero")
    (tmp_path / "gone.jpg").symlink_to(tmp_path / "missing.jpg")
    (tmp_path / "linked.png").symlink_to(tmp_path / "real.png")  # a link to a file is a file
    with pytest.warns(UserWarning, match=r"skipped 4 name\(s\).*: folder\.png, gone\.jpg, loop\.png, zeros\.png$"):
        assert [p.name for p in list_images(tmp_path)] == ["linked.png", "real.png"]


def test_a_missing_folder_is_named_with_the_layout_it_should_have(tmp_path):
    with pytest.raises(DataError, match=r"data folder .*nowhere does not exist; expected A/ and B/ folders$"):
        list_images(tmp_path / "nowhere", layout="A/ and B/ folders")
    with pytest.raises(DataError, match=r"data folder .*nowhere does not exist$"):
        list_images(tmp_path / "nowhere")


def test_a_folder_without_images_names_the_suffixes_it_looks_for(tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match=r"holds no images \(\.bmp, \.jpeg, \.jpg, \.png, \.tif, \.tiff, \.webp\)$"):
        list_images(tmp_path)
    with pytest.raises(DataError, match=r"holds no images .*; expected one image a pair$"):
        list_images(tmp_path, layout="one image a pair")


@pytest.mark.parametrize(("folders", "shown"), [
    (5, "a.png, b.png, c.png, d.png, e.png"),
    (6, "a.png, b.png, c.png, d.png, e.png and 1 more"),
    (8, "a.png, b.png, c.png, d.png, e.png and 3 more"),
])
def test_the_skipped_names_warning_shows_five_names_and_counts_the_rest(tmp_path, folders, shown):
    Image.new("RGB", (4, 4)).save(tmp_path / "real.png")
    for name in "abcdefgh"[:folders]:
        (tmp_path / f"{name}.png").mkdir()
    with pytest.warns(UserWarning, match=rf"skipped {folders} name\(s\).*: {shown}$") as caught:
        list_images(tmp_path)
    # The warning points at the caller, the line that asked for the folder.
    assert [Path(w.filename).name for w in caught] == [Path(__file__).name]


def test_images_list_in_natural_order_numbers_first(tmp_path):
    for name in ["b.png", "10.png", "a.jpg", "2.png", "1.png", "a1.png"]:
        Image.new("RGB", (4, 4)).save(tmp_path / name)
    assert [p.name for p in list_images(tmp_path)] == ["1.png", "2.png", "10.png", "a.jpg", "a1.png", "b.png"]


def test_files_read_as_rgb_floats_in_minus_1_to_1_by_default(tmp_path):
    grey = Image.fromarray(np.array([[0, 255], [51, 102]], dtype=np.uint8))
    grey.save(tmp_path / "grey.png")
    expected = to_signed(torch.from_numpy(np.array(grey)).expand(3, -1, -1))
    for found in (decode(grey), decode_input(grey), read_image(tmp_path / "grey.png"), read_input(tmp_path / "grey.png")):
        assert found.dtype == torch.float32
        assert torch.equal(found, expected)


def test_one_hot_sets_one_channel_a_pixel_and_keeps_every_class():
    labels = torch.tensor([[0, 2], [2, 0]])
    found = one_hot(labels, 4)
    assert found.shape == (4, 2, 2) and found.dtype == torch.float32
    assert torch.equal(found.argmax(0), labels) and torch.equal(found.sum(0), torch.ones(2, 2))
    assert not found[1].any() and not found[3].any()  # classes no pixel has still get their channel
    assert one_hot(torch.zeros(0, 0, dtype=torch.long), 1).shape == (1, 0, 0)  # an empty map is valid for any count


@pytest.mark.parametrize(("index", "suggested"), [(4, 5), (6, 7)])
def test_one_hot_names_an_index_too_high_and_the_classes_that_would_hold_it(index, suggested):
    with pytest.raises(ValueError, match=rf"class index {index}, but labels:4 has 4 classes \(indices 0 to 3\); .* labels:{suggested}$"):
        one_hot(torch.tensor([[0, index]]), 4)


def test_one_hot_names_a_negative_index():
    with pytest.raises(ValueError, match=r"class index -1, but labels:4 .* labels:4$"):
        one_hot(torch.tensor([[3, -1]]), 4)


def test_16_bit_images_scale_to_8_bits_rounding_to_the_nearest_level(tmp_path):
    levels = np.array([[0, 128, 129, 385], [65406, 65407, 65535, 32767]], dtype=np.uint16)
    path = tmp_path / "depth.png"
    Image.fromarray(levels).save(path)
    expected = np.floor(levels / 257 + 0.5).astype(np.uint8)  # 65535 / 255 = 257 levels of 16 bits to one of 8
    assert torch.equal(read_image(path, channels=1), to_signed(torch.from_numpy(expected)[None]))


@pytest.mark.parametrize(("mode", "value"), [("I;16", 0), ("I;16", 65535), ("F", 0.0), ("F", 1.0)])
def test_a_high_depth_image_of_one_value_at_either_end_of_its_range_reads(tmp_path, mode, value):
    path = tmp_path / "flat.tif"
    Image.new(mode, (3, 2), value).save(path, format="TIFF")
    assert torch.equal(read_image(path, channels=1), torch.full((1, 2, 3), -1.0 if value == 0 else 1.0))


def test_a_32_bit_integer_image_just_beyond_16_bits_is_refused(tmp_path):
    path = tmp_path / "counts.tif"
    Image.new("I", (4, 4), 65536).save(path, format="TIFF")
    with pytest.raises(DataError, match=r"counts\.tif: .*integer pixels range from 65536 to 65536, outside \[0, 65535\]"):
        read_image(path)


def _la_tiff(path: Path) -> Path:
    """A TIFF whose alpha is associated (premultiplied): PIL opens it in mode La."""
    Image.new("LA", (4, 3)).save(path, format="TIFF")
    unassociated = b"\x52\x01\x03\x00\x01\x00\x00\x00\x02\x00"  # tag ExtraSamples (338), SHORT, 1 value: 2
    path.write_bytes(path.read_bytes().replace(unassociated, unassociated[:-2] + b"\x01\x00"))
    return path


def _pa_image(path: Path) -> Path:
    """An IM file of palette indices with alpha: PIL opens it in mode PA."""
    palette = Image.new("P", (4, 3))
    palette.putpalette([0, 0, 0, 255, 0, 0])
    palette.convert("PA").save(path, format="IM")
    return path


@pytest.mark.filterwarnings("ignore:IM image format is deprecated:DeprecationWarning")
def test_the_header_tells_whether_an_image_has_alpha(tmp_path):
    Image.new("RGB", (4, 3)).save(tmp_path / "rgb.png")
    Image.new("RGBA", (4, 3)).save(tmp_path / "rgba.png")
    Image.new("LA", (4, 3)).save(tmp_path / "la.png")
    Image.new("L", (4, 3)).save(tmp_path / "keyed.png", transparency=0)
    keyed = Image.new("P", (4, 3))
    keyed.putpalette([0, 0, 0, 255, 255, 255])
    keyed.save(tmp_path / "keyed-palette.png", transparency=1)
    la, pa = _la_tiff(tmp_path / "la.tif"), _pa_image(tmp_path / "pa.im")
    assert Image.open(la).mode == "La" and Image.open(pa).mode == "PA"
    assert image_header(tmp_path / "rgb.png") == (3, 4, False)
    for path in ["rgba.png", "la.png", "keyed.png", "keyed-palette.png", la, pa]:
        assert image_header(tmp_path / path) == (3, 4, True), path


def test_to_signed_keeps_a_tensor_on_its_device():
    # The meta device stands in for a GPU on a machine without one: the conversion runs there, not through NumPy.
    signed = to_signed(torch.empty(3, 5, 7, dtype=torch.uint8, device="meta"))
    assert signed.device.type == "meta" and signed.dtype == torch.float32 and signed.shape == (3, 5, 7)


def test_to_uint8_clips_values_beyond_minus_1_to_1():
    assert to_uint8(torch.tensor([-3.0, -1.5, -1.0, 1.0, 1.01, 1.5, 3.0])).tolist() == [0, 0, 0, 255, 255, 255, 255]


def test_to_uint8_matches_float32_arithmetic_in_torch():
    # The CPU path uses NumPy for speed; its values are those of the same float32 steps in torch.
    image = torch.rand(4, 512, 512, generator=torch.Generator().manual_seed(0)) * 2 - 1
    expected = image.add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8)
    assert torch.equal(to_uint8(image), expected)


def test_an_unknown_suffix_is_written_as_png(tmp_path):
    write_image(torch.zeros(3, 4, 5), tmp_path / "out.result")
    with Image.open(tmp_path / "out.result") as written:
        assert written.format == "PNG" and written.size == (5, 4)


@pytest.mark.parametrize("suffix", [".jpg", ".webp"])
def test_the_lossy_formats_keep_thin_lines(tmp_path, suffix):
    # PIL's default qualities smear one-pixel lines such as an edge map's.
    lines = -torch.ones(1, 64, 64)
    lines[:, ::8, :] = 1
    lines[:, :, 3::8] = 1
    write_image(lines, tmp_path / f"edges{suffix}")
    found = read_image(tmp_path / f"edges{suffix}", channels=1)
    assert (found - lines).abs().max() < 0.05  # JPEG: 0.17 at its default 75, 0.04 at 95; WebP: 0.09 at 80, 0.03 at 95


def test_jpeg_is_written_at_the_quality_p2p_documents(tmp_path):
    # `p2p datatools` promises "jpg (quality 95)": the file's quantisation tables are the ones quality 95 makes.
    image = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    write_image(image, tmp_path / "written.jpg")
    to_pil(image).save(tmp_path / "at_95.jpg", quality=95)
    with Image.open(tmp_path / "written.jpg") as written, Image.open(tmp_path / "at_95.jpg") as at_95:
        assert written.quantization == at_95.quantization


def test_resize_is_bilinear_with_antialiasing_as_pil_resizes():
    image = torch.rand(2, 3, 12, 17, generator=torch.Generator().manual_seed(0))
    for height, width in [(5, 6), (12, 17), (30, 40), (7, 33)]:
        expected = torch.stack([
            torch.stack([
                torch.from_numpy(np.array(Image.fromarray(channel.numpy(), mode="F").resize((width, height), Image.BILINEAR)))
                for channel in picture
            ])
            for picture in image
        ])
        found = resize(image, [height, width])
        assert found.shape == (2, 3, height, width)
        assert torch.allclose(found, expected, atol=1e-5), (height, width)


def test_center_crop_rounds_its_offsets_as_torchvision_does():
    image = torch.arange(2 * 10 * 13, dtype=torch.float32).view(2, 10, 13)
    # Offsets (10 - 4) / 2 = 3 and (13 - 6) / 2 = 3.5, which rounds to even: 4.
    assert torch.equal(center_crop(image, [4, 6]), image[:, 3:7, 4:10])
    assert torch.equal(center_crop(image[None], [5, 2]), image[None, :, 2:7, 6:8])  # 2.5 -> 2, 5.5 -> 6


def test_displayable_shows_few_channels_as_grey_and_cuts_many_to_three():
    image = torch.rand(5, 4, 4)
    assert torch.equal(displayable(image[:3]), image[:3])
    assert torch.equal(displayable(image), image[:3])
    assert torch.equal(displayable(image[:2]), image[:1].expand(3, -1, -1))
    assert torch.equal(displayable(image[:1]), image[:1].expand(3, -1, -1))


def test_jitter_sizes_must_be_from_1_to_the_largest_side():
    for load_size, crop_size in [(1, 1), (MAX_SIDE, MAX_SIDE), (MAX_SIDE, 1)]:
        PairedJitter(load_size=load_size, crop_size=crop_size)
    for load_size, crop_size in [(0, 1), (1, 0), (MAX_SIDE + 1, 8), (MAX_SIDE, MAX_SIDE + 1)]:
        with pytest.raises(DataError, match=rf"from 1 to 65,536 pixels, got {load_size} and {crop_size}$"):
            PairedJitter(load_size=load_size, crop_size=crop_size, preprocess="crop")


def test_pairs_of_different_sizes_are_refused_with_both_sizes():
    with pytest.raises(DataError, match=r"pair\.png: A is \(10, 10\) but B is \(10, 12\); a pair must align$"):
        PairedJitter(crop_size=8)(torch.zeros(3, 10, 10), torch.zeros(3, 10, 12), train=True, path="pair.png")


def test_the_training_flip_mirrors_left_and_right_about_half_the_time():
    a = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(0))
    jitter = PairedJitter(crop_size=8, preprocess="crop")  # the crop is the whole image: only the flip changes it
    torch.manual_seed(0)
    views = [jitter(a, a, train=True, path="x")[0] for _ in range(200)]
    mirrored = sum(torch.equal(view, a.flip(-1)) for view in views)
    assert sum(torch.equal(view, a) for view in views) + mirrored == 200
    assert 70 <= mirrored <= 130
    assert all(torch.equal(view, a) for view in [jitter(a, a, train=False, path="x")[0] for _ in range(20)])
    unflipped = PairedJitter(crop_size=8, preprocess="crop", flip=False)
    assert all(torch.equal(unflipped(a, a, train=True, path="x")[0], a) for _ in range(20))


def test_crop_mode_takes_the_centre_when_not_training():
    a = torch.rand(2, 13, 10, generator=torch.Generator().manual_seed(0))
    found, _ = PairedJitter(crop_size=6, preprocess="crop")(a, a, train=False, path="x")
    assert torch.equal(found, center_crop(a, [6, 6]))
    assert torch.equal(found, a[:, 4:10, 2:8])  # offsets (13 - 6) / 2 = 3.5 -> 4 and (10 - 6) / 2 = 2


@pytest.mark.parametrize("shape", [(20, 40), (40, 20)])
def test_crop_mode_names_an_image_with_one_side_smaller_than_the_crop(shape):
    a = torch.zeros(3, *shape)
    with pytest.raises(DataError, match=rf"x\.png: image {shape[0]}x{shape[1]} is smaller than crop_size 32"):
        PairedJitter(crop_size=32, preprocess="crop")(a, a, train=True, path="x.png")

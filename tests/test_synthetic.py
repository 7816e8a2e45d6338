"""The built-in synthetic task keeps its module docstring's promises: the class tables, seams only at the label
map's edges, lighting as a gradient, the texture variant's patterns, deterministic items that the splits never
share and that stay the scenes docs/results was measured on, the class map jittered with the images, and its
options' defaults and bounds."""

from __future__ import annotations

import math
import os
from functools import cache
from pathlib import Path

import numpy as np

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from p2p_core.images import PairedJitter
from p2p_datasets.synthetic import (
    CLASSES,
    LABEL_COLOURS,
    PHOTO_COLOURS,
    TEXTURE_CLASSES,
    TEXTURE_COLOUR,
    TEXTURE_CONTRAST,
    SyntheticDataset,
    render,
    synthetic,
    textures,
)

SIZE = 48
SCENES = 24
# Small scenes, rendered whole: no jitter in the way of what the renderer promises.
SMALL = {"length": 16, "load_size": 32, "crop_size": 32}


@cache
def scenes(variant: str) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    return [render(size=SIZE, generator=torch.Generator().manual_seed(seed), variant=variant) for seed in range(SCENES)]


def same_sample(first, second) -> bool:
    return first.path == second.path and all(torch.equal(x, y) for x, y in zip(first[:2] + first[3:], second[:2] + second[3:]))


def near_an_edge(labels: torch.Tensor, radius: int) -> torch.Tensor:
    """Pixels with another class within ``radius`` pixels (a square), at the image's border too."""
    one_hot = F.one_hot(labels, len(CLASSES)).permute(2, 0, 1).float()[None]
    return F.max_pool2d(one_hot, 2 * radius + 1, 1, radius)[0].sum(0) > 1


def colours(variant: str, labels: torch.Tensor) -> torch.Tensor:
    """Each pixel's photo colour before shading, 3 x H x W: its class's, or the texture variant's one colour."""
    if variant == "texture":
        return TEXTURE_COLOUR[:, None, None].expand(3, *labels.shape)
    return PHOTO_COLOURS[labels].permute(2, 0, 1)


def brightness(photo: torch.Tensor, colour: torch.Tensor) -> torch.Tensor:
    """The photo (in [-1, 1]) divided by each pixel's colour (3 x H x W), checked to be one factor for all three
    channels: a pixel is its colour, darkened or lightened, never another hue."""
    factor = (photo + 1) / 2 / colour
    assert torch.allclose(factor.amax(0), factor.amin(0), rtol=1e-4, atol=1e-6)
    return factor.mean(0)


def lighting(factor: torch.Tensor, where: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The least-squares plane through ``factor`` at the pixels ``where``, over the whole image, checked to fit
    them exactly (a gradient), and its slope per pixel across and down."""
    rows, cols = torch.meshgrid(*(torch.arange(float(side)) for side in factor.shape), indexing="ij")
    design = torch.stack([torch.ones_like(rows), cols, rows], -1)
    plane = torch.linalg.lstsq(design[where].double(), factor[where][:, None].double()).solution.float()
    fitted = (design @ plane)[..., 0]
    assert torch.allclose(fitted[where], factor[where], atol=1e-4)
    return fitted, plane[1:, 0]


def test_the_label_map_is_one_colour_per_class_and_the_photo_a_shade_of_its_class_colour():
    for variant in ("colour", "texture"):
        for a, b, labels in scenes(variant):
            assert a.shape == b.shape == (3, SIZE, SIZE) and labels.shape == (SIZE, SIZE) and labels.dtype == torch.long
            assert torch.equal(a, LABEL_COLOURS[labels].permute(2, 0, 1) * 2 - 1)
            assert b.isfinite().all() and -1 <= float(b.min()) and float(b.max()) <= 1
            assert float(brightness(b, colours(variant, labels)).min()) > 0


def test_scenes_are_shapes_of_every_class_on_a_background_and_the_same_in_both_variants():
    seen = torch.zeros(len(CLASSES), dtype=torch.bool)
    for (a, _, labels), (texture_a, _, texture_labels) in zip(scenes("colour"), scenes("texture")):
        # The same scenes: the texture variant draws its phases after the shapes.
        assert torch.equal(labels, texture_labels) and torch.equal(a, texture_a)
        background = float((labels == 0).float().mean())
        assert 0 < background < 1
        seen[labels.unique()] = True
    assert seen.all()


def test_scenes_are_rectangles_and_ellipses_smaller_than_the_image_anywhere_in_it():
    labels = torch.stack([render(size=32, generator=torch.Generator().manual_seed(seed))[2] for seed in range(64)])
    shapes = (labels > 0).float()
    # Shapes cover some of every scene, never nearly all or nearly none of it.
    background = 1 - shapes.mean((1, 2))
    assert 0.2 < float(background.min()) and float(background.max()) < 0.9
    # Each shape is smaller than the image: no row or column is one class of shape from border to border.
    for scene in labels:
        for lines in (scene, scene.T):
            assert not ((lines == lines[:, :1]) & (lines[:, :1] > 0)).all(1).any()
    # Anywhere alike: as much shape on the left as on the right, at the top as at the bottom.
    assert abs(float(shapes[..., :16].mean() - shapes[..., 16:].mean())) < 0.15
    assert abs(float(shapes[:, :16].mean() - shapes[:, 16:].mean())) < 0.15
    # Ellipses too: a scene of at most 8 rectangles has at most 17 different rows, an ellipse a row per width.
    assert max(len({tuple(row) for row in scene.tolist()}) for scene in labels) > 17


def test_seams_are_dark_exactly_along_the_label_maps_edges():
    for a, b, labels in scenes("colour"):
        factor = brightness(b, colours("colour", labels))
        # A seam is about a third of the brightness around it: below 0.4, while the rest (the darkest stripe under
        # the dimmest light) is above it.
        dark = factor < 0.4
        assert not (near_an_edge(labels, 1) & ~dark).any(), "a pixel beside another class is not dark"
        assert not (dark & ~near_an_edge(labels, 2)).any(), "a dark pixel away from every edge"


def test_the_light_is_a_gradient_in_any_direction_over_plain_background():
    directions = []
    for variant in ("colour", "texture"):
        for seed in range(SCENES, 4 * SCENES):
            _, b, labels = render(size=32, generator=torch.Generator().manual_seed(seed), variant=variant)
            factor = brightness(b, colours(variant, labels))
            background = (labels == 0) & ~near_an_edge(labels, 2)
            _, slope = lighting(factor, background)
            assert float(slope.norm()) > 0.003
            directions.append(math.atan2(float(slope[1]), float(slope[0])))
    # Every direction is as likely: as many scenes brighter at the bottom as at the top, and no wide arc of
    # directions left out.
    assert abs(sum(direction > 0 for direction in directions) / len(directions) - 0.5) < 0.15
    directions = sorted(directions)
    gaps = [later - earlier for earlier, later in zip(directions, directions[1:])] + [directions[0] + 2 * math.pi - directions[-1]]
    assert max(gaps) < 1.0


@cache
def stripes(variant: str = "colour") -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each scene's class map and the brightness of each pixel relative to the lighting (off the seams)."""
    out = []
    for _, b, labels in scenes(variant):
        factor = brightness(b, colours(variant, labels))
        inside = ~near_an_edge(labels, 2)
        light, _ = lighting(factor, (labels == 0) & inside)
        out.append((torch.where(inside, labels, -1), factor / light))
    return out


def test_each_class_has_stripes_of_its_own_direction():
    rows, cols = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    # The stripes of a class run along one line through the pixel grid: what stays constant along them.
    along = {1: cols, 2: rows, 3: rows + cols, 4: cols - rows}
    # A step along a diagonal's line number is 1 / sqrt(2) pixel across its stripes.
    pixels_per_step = {1: 1.0, 2: 1.0, 3: 2**-0.5, 4: 2**-0.5}
    for cls, line in along.items():
        values: dict[int, list[float]] = {}
        for labels, relative in stripes():
            for key, value in zip(line[labels == cls].tolist(), relative[labels == cls].tolist()):
                values.setdefault(key, []).append(value)
        assert all(max(v) - min(v) < 1e-3 for v in values.values()), f"{CLASSES[cls]}'s stripes do not run along their line"
        profile = {key: sum(v) / len(v) for key, v in values.items()}
        middle = sum(profile.values()) / len(profile)
        # Fine stripes: a light and a dark band every few pixels (a crossing of the middle at least every 10
        # steps along the line), not one gentle ramp; but at least 3 pixels to a period (two crossings), where a
        # grid of pixels would show a moire instead.
        steps = [(profile[key] - middle) * (profile[key + 1] - middle) for key in profile if key + 1 in profile]
        crossings = sum(step < 0 for step in steps) / len(steps)
        assert max(profile.values()) - min(profile.values()) > 0.1, CLASSES[cls]
        assert 1 / 10 < crossings < 2 * pixels_per_step[cls] / 3, CLASSES[cls]
    # The background has none, and mauve's slant is none of the others'.
    for labels, relative in stripes():
        assert torch.allclose(relative[labels == 0], torch.ones(()), atol=1e-4)
    for line in along.values():
        values = {}
        for labels, relative in stripes():
            for key, value in zip(line[labels == 5].tolist(), relative[labels == 5].tolist()):
                values.setdefault(key, []).append(value)
        assert max(max(v) - min(v) for v in values.values()) > 0.05


PERIODS = {"vertical": (4, None), "horizontal": (None, 6), "checks": (8, 8), "dots": (4, 4)}
"""Each periodic pattern's period across (u) and down (v), in pixels; None: constant that way."""


@pytest.mark.parametrize("across, down", [(0.125, 0.125), (1.375, 2.625), (3.875, 5.125), (17.625, 22.875)])
def test_each_texture_has_its_period_unit_amplitude_and_zero_mean(across: float, down: float):
    # Four samples per pixel, off the lines where a checkerboard's sign flips (there it is 0, or +-1 by rounding).
    step = 0.25
    v, u = torch.meshgrid(torch.arange(0, 24, step) + down, torch.arange(0, 24, step) + across, indexing="ij")
    patterns = dict(zip(TEXTURE_CLASSES, textures(u, v, generator=torch.Generator().manual_seed(0))))
    assert patterns.keys() == set(TEXTURE_CLASSES) and torch.equal(patterns["plain"], torch.zeros_like(u))
    for name, periods in PERIODS.items():
        pattern = patterns[name]
        assert float(pattern.abs().max()) <= 1 and float(pattern.max()) > 0.9 and float(pattern.min()) < -0.9, name
        for dim, period in zip((1, 0), periods):
            if period is None:
                assert torch.equal(pattern, pattern.narrow(dim, 0, 1).expand_as(pattern)), name
                continue
            shift = int(period / step)
            later = pattern.narrow(dim, shift, pattern.shape[dim] - shift)
            assert torch.allclose(later, pattern.narrow(dim, 0, later.shape[dim]), atol=1e-3), name
            # Zero mean over a period, along every line: each stretch of a class's shape averages to its colour.
            assert float(pattern.narrow(dim, 0, shift).mean(dim).abs().max()) < 1e-3, name
    grain = patterns["grain"]
    assert float(grain.abs().max()) <= 1 and float(grain.max()) > 0.99 and float(grain.min()) < -0.99
    assert abs(float(grain.mean())) < 0.02 and abs(float((grain[:, 1:] * grain[:, :-1]).mean())) < 0.02


def test_the_textures_are_bounded_at_whole_pixels_square_and_only_their_grain_follows_the_generator():
    u, v = torch.meshgrid(torch.arange(-8.0, 9.0), torch.arange(-8.0, 9.0), indexing="xy")
    first, again = (textures(u, v, generator=torch.Generator().manual_seed(1)) for _ in range(2))
    assert torch.equal(first, again) and first.isfinite().all() and float(first.abs().max()) <= 1
    # Checks of squares and a square grid of dots: the same across as down (on a grid as wide as it is high,
    # centred on 0), on the squares' edges too.
    assert torch.equal(first[3:5], first[3:5].transpose(1, 2))
    other = textures(u, v, generator=torch.Generator().manual_seed(2))
    assert torch.equal(first[:5], other[:5]) and not torch.equal(first[5], other[5])


def test_the_texture_variant_scales_one_colour_by_its_classs_pattern_at_a_random_phase_per_shape():
    def pairs(cls: int, down: int, across: int, labels: torch.Tensor, pattern: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The pattern at the pixels of class ``cls`` that have one of the class ``down`` and ``across`` from them."""
        height, width = labels.shape[0] - down, labels.shape[1] - across
        both = (labels[:height, :width] == cls) & (labels[down:, across:] == cls)
        return pattern[:height, :width][both], pattern[down:, across:][both]

    def share(compare, cls: int, down: int, across: int) -> float:
        """The share of those pairs (over every scene) for which ``compare`` holds."""
        firsts, seconds = zip(*(pairs(cls, down, across, labels, pattern) for labels, pattern in patterns))
        return float(compare(torch.cat(firsts), torch.cat(seconds)).float().mean())

    patterns = [(labels, torch.where(labels >= 0, (relative - 1) / TEXTURE_CONTRAST, 0)) for labels, relative in stripes("texture")]

    def same(x, y):
        return (x - y).abs() < 1e-3

    def opposite(x, y):
        return (x + y).abs() < 1e-3

    for labels, pattern in patterns:
        assert float(pattern.abs().max()) < 1 + 1e-3
        assert torch.allclose(pattern[labels == 0], torch.zeros(()), atol=1e-4)
    # Pairs of one class a period apart are nearly all in one shape, where the pattern repeats; at other distances
    # (or in shapes of another scale) it differs. Vertical stripes of period 4: constant down, repeating 4 pixels
    # across, opposite 2 across; horizontal ones of period 6 likewise, turned.
    assert share(same, 1, 1, 0) > 0.6 and share(same, 1, 0, 4) > 0.6 and share(opposite, 1, 0, 2) > 0.6
    assert share(same, 1, 0, 1) < 0.1 and share(same, 1, 0, 3) < 0.1
    assert share(same, 2, 0, 1) > 0.6 and share(same, 2, 6, 0) > 0.6 and share(opposite, 2, 3, 0) > 0.6
    assert share(same, 2, 1, 0) < 0.1 and share(same, 2, 5, 0) < 0.1
    # Checks of 4-pixel squares: +-1, repeating 8 pixels either way, opposite 4 pixels away; dots: period 4.
    assert share(lambda x, y: (x.abs() > 0.99) & same(x, y), 3, 8, 0) > 0.6 and share(opposite, 3, 0, 4) > 0.6
    assert share(same, 4, 4, 0) > 0.6 and share(same, 4, 0, 4) > 0.6 and share(opposite, 4, 2, 0) > 0.6
    assert share(same, 4, 1, 0) < 0.1 and share(same, 4, 0, 3) < 0.1
    # Grain: uncorrelated neighbours; and every pattern averages out, so each class has the same mean colour.
    assert share(same, 5, 0, 1) < 0.1
    for cls in range(1, len(TEXTURE_CLASSES)):
        values = torch.cat([pattern[labels == cls] for labels, pattern in patterns])
        assert abs(float(values.mean())) < 0.1 and float(values.max()) > 0.7 and float(values.min()) < -0.7, TEXTURE_CLASSES[cls]
    # A random phase per shape: at the columns where vertical stripes without an offset cross zero, the
    # pattern differs from shape to shape.
    rows, columns = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    at_zero = torch.cat([pattern[(labels == 1) & (columns % 4 == 0)] for labels, pattern in patterns])
    assert float(at_zero.std()) > 0.3
    # and the phases across and down are drawn apart: where the squares of checks without an offset meet, a
    # shape's square is light or dark as it happens.
    corners = torch.cat([pattern[(labels == 3) & (columns % 8 == 0) & (rows % 8 == 0)] for labels, pattern in patterns])
    assert float(corners.max()) > 0.99 and float(corners.min()) < -0.99


def test_rendering_is_deterministic_for_a_seed_and_differs_between_seeds():
    for variant in ("colour", "texture"):
        for seed in range(4):
            first, again = (render(size=SIZE, generator=torch.Generator().manual_seed(seed), variant=variant) for _ in range(2))
            assert all(torch.equal(x, y) for x, y in zip(first, again)), variant
        other = render(size=SIZE, generator=torch.Generator().manual_seed(SCENES), variant=variant)
        assert not torch.equal(other[2], scenes(variant)[0][2])


def test_items_are_the_same_on_every_call_and_no_two_splits_share_a_scene():
    splits = {split: synthetic(split=split, flip=False, **SMALL) for split in ("train", "val", "test")}
    seen: dict[bytes, str] = {}
    for split, data in splits.items():
        again = synthetic(split=split, flip=False, **SMALL)
        for index in range(len(data)):
            sample = data[index]
            assert sample.path == f"synthetic/{split}/{index}"
            assert same_sample(sample, again[index])
            key = sample.labels.numpy().tobytes()
            assert key not in seen, f"{split} {index} is a scene of {seen.get(key)}"
            seen[key] = split
    assert not torch.equal(synthetic(seed=1, flip=False, **SMALL)[0].labels, splits["train"][0].labels)


def test_a_train_sample_is_a_random_crop_of_its_scene_drawn_at_load_size_mirrored_at_random():
    torch.manual_seed(0)
    whole = synthetic(split="train", length=12, load_size=40, crop_size=40, flip=False)
    cropped = synthetic(split="train", length=12, load_size=40, crop_size=32)
    mirrored, places = 0, set()
    for index in range(len(whole)):
        scene = whole[index]
        assert same_sample(scene, whole[index])
        sample = cropped[index]
        # The class map, one channel per class beside the images, goes through the very same crop and flip.
        stack = torch.cat([scene.a, scene.b, F.one_hot(scene.labels, 6).permute(2, 0, 1).float()])
        target = torch.cat([sample.a, sample.b, F.one_hot(sample.labels, 6).permute(2, 0, 1).float()])
        windows = {(top, left): stack[:, top : top + 32, left : left + 32] for top in range(9) for left in range(9)}
        found = [(*place, flip) for place, window in windows.items() for flip in (False, True)
                 if torch.equal(window.flip(-1) if flip else window, target)]
        assert found, f"train item {index} is not a crop of its scene"
        mirrored += found[0][2]
        places.add(found[0][:2])
    assert 0 < mirrored < len(whole) and len(places) > 1


def test_a_held_out_sample_is_its_whole_scene_resized_with_its_class_map():
    data = synthetic(split="val", length=4, load_size=40, crop_size=32)
    for index in range(len(data)):
        sample = data[index]
        assert sample.a.shape == sample.b.shape == (3, 32, 32) and sample.labels.shape == (32, 32)
        # Away from the edges, where a resize blends neighbours, each pixel's label colour names its class.
        inside = ~near_an_edge(sample.labels, 1)
        expected = LABEL_COLOURS[sample.labels].permute(2, 0, 1) * 2 - 1
        assert torch.allclose(sample.a[:, inside], expected[:, inside], atol=1e-5)


def test_a_jitter_that_does_not_resize_gets_the_scene_drawn_at_its_crop_size():
    for preprocess in ("crop", "none"):
        jitter = PairedJitter(load_size=40, crop_size=32, preprocess=preprocess, flip=False)
        data = SyntheticDataset(split="val", length=2, seed=0, swap=False, jitter=jitter)
        sample = data[1]
        assert sample.a.shape == (3, 32, 32)
        # Nothing resized, nothing cut: the label map is exact everywhere.
        assert torch.equal(sample.a, LABEL_COLOURS[sample.labels].permute(2, 0, 1) * 2 - 1)
        # and the same scene as that of a dataset drawing at 32 pixels through a resize.
        resized = synthetic(split="val", length=2, load_size=32, crop_size=32)[1]
        assert torch.equal(sample.labels, resized.labels)


def test_the_direction_swaps_the_images_and_keeps_the_class_map():
    forward, backward = (synthetic(split="val", direction=direction, **SMALL)[2] for direction in ("AtoB", "BtoA"))
    assert torch.equal(forward.a, backward.b) and torch.equal(forward.b, backward.a)
    assert torch.equal(forward.labels, backward.labels) and forward.path == backward.path
    # A is the label map: one of the label colours at every pixel.
    assert torch.isin(forward.a[0], LABEL_COLOURS[:, 0] * 2 - 1).all()


def test_the_texture_variant_names_its_classes_and_draws_their_patterns():
    colour, texture = (synthetic(split="val", variant=variant, **SMALL) for variant in ("colour", "texture"))
    assert colour.classes == CLASSES and texture.classes == TEXTURE_CLASSES
    sample = texture[0]
    brightness(sample.b, colours("texture", sample.labels))
    assert torch.equal(sample.labels, colour[0].labels) and not torch.equal(sample.b, colour[0].b)
    plain = SyntheticDataset(split="val", length=1, seed=0, swap=False, jitter=PairedJitter(load_size=32, crop_size=32))
    assert plain.classes == CLASSES and torch.equal(plain[0].b, colour[0].b)
    with pytest.raises(ValueError, match="got 'textures'; did you mean 'texture'"):
        synthetic(variant="textures")


def test_the_defaults_are_the_papers_jitter_on_400_training_scenes():
    torch.manual_seed(0)
    default = synthetic()
    sample = default[0]
    torch.manual_seed(0)
    explicit = synthetic(split="train", length=400, seed=0, direction="AtoB", load_size=286, crop_size=256, flip=True, variant="colour")
    assert len(default) == len(explicit) == 400 and default.classes == CLASSES
    assert default.jitter == explicit.jitter == PairedJitter(load_size=286, crop_size=256, flip=True)
    assert same_sample(sample, explicit[0]) and sample.path == "synthetic/train/0"


@pytest.mark.parametrize("option, lowest, highest", [("length", 1, 10**8), ("seed", 0, 2**63 - 1)])
def test_the_bounds_of_length_and_seed_are_taken_and_one_beyond_is_refused_naming_the_value(option, lowest, highest):
    for good in (lowest, highest):
        data = synthetic(split="val", **(SMALL | {option: good}))
        assert data[len(data) - 1].a.shape == (3, 32, 32)
    for bad in (lowest - 1, highest + 1):
        with pytest.raises(ValueError, match=f"{option}.* got {bad}$"):
            synthetic(**{option: bad})


def test_a_split_holds_its_length_of_items_and_refuses_an_index_outside_it():
    data = synthetic(split="val", **SMALL)
    # Python iterates a dataset by index until IndexError: one item too many would be a scene of no split.
    assert [sample.path for sample in data] == [f"synthetic/val/{index}" for index in range(SMALL["length"])]
    for index in (-1, len(data)):
        with pytest.raises(IndexError, match=f"index {index} out of range for a synthetic dataset of {len(data)}"):
            data[index]


def test_the_longest_splits_share_no_scene():
    """Item i of a split is drawn by the generator seeded with the split's ``seed`` plus i: the runs of seeds of
    the longest splits must not overlap."""
    longest = 10**8
    with pytest.raises(ValueError, match="length"):
        synthetic(length=longest + 1)
    starts = sorted(synthetic(split=split, length=longest).seed for split in ("train", "val", "test"))
    assert all(later - earlier >= longest for earlier, later in zip(starts, starts[1:]))


def test_an_unknown_split_is_refused_with_the_closest_one():
    # Any name would seed scenes of its own: a misspelt "val" would validate on data of no split at all.
    with pytest.raises(ValueError, match=r"^split must be 'train', 'val' or 'test', got 'vall'; did you mean 'val'\?$"):
        synthetic(split="vall")



REFERENCE = Path(__file__).parent / "data" / "synthetic-reference.png"


def reference_grid() -> torch.Tensor:
    """Pairs 0-2 of the val and test splits of seed 0, colour and texture, and of seed 1's val split, drawn whole
    at 32 pixels: one row of A | B pairs per dataset, in [-1, 1]."""
    rows = []
    for variant, split, seed in [("colour", "val", 0), ("colour", "test", 0), ("texture", "val", 0), ("texture", "test", 0), ("colour", "val", 1)]:
        data = synthetic(split=split, variant=variant, seed=seed, length=3, load_size=32, crop_size=32, flip=False)
        rows.append(torch.cat([image for index in range(len(data)) for image in data[index][:2]], dim=2))
    return torch.cat(rows, dim=1)


def test_the_scenes_are_those_docs_results_was_measured_on():
    """docs/results' tables were measured on these scenes: a change to how they are drawn, to which seed draws
    item i, or to a split's seed makes every published figure incomparable with a new run, while every property
    above may still hold (a pattern's phase drawn the other way, a shape drawn in the background's class). The
    reference is a picture (tests/data/synthetic-reference.png); it is compared to within one 8-bit level, which
    the floating-point differences between machines stay far below."""
    grid = reference_grid()
    as_bytes = ((grid + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    if os.environ.get("P2P_WRITE_REFERENCE"):  # drawing new scenes on purpose: then re-measure docs/results
        Image.fromarray(as_bytes).save(REFERENCE)
    expected = np.asarray(Image.open(REFERENCE).convert("RGB")).astype(np.int16)
    assert expected.shape == as_bytes.shape
    off = np.abs(as_bytes.astype(np.int16) - expected).max(axis=2) > 1
    assert not off.any(), (
        f"{int(off.sum())} of {off.size} pixels differ from {REFERENCE.name} by more than one level, first at "
        f"(row, column) {tuple(int(i) for i in np.argwhere(off)[0])}: the synthetic scenes changed"
    )

"""translate(): any image size in, the same size out, through generators that need multiples of a size."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from p2p_core.errors import ConfigError
from p2p_core.inference import AnySize, pad_to_multiple, scale_note, translate
from p2p_unet import UNet


class StrictIdentity(nn.Module):
    """Returns its input, and fails like a real generator on sizes that are not multiples of ``size_multiple``."""

    def __init__(self, size_multiple: int, out_channels: int | None = None) -> None:
        super().__init__()
        self.size_multiple, self.out_channels = size_multiple, out_channels

    def forward(self, x: Tensor) -> Tensor:
        assert x.shape[-2] % self.size_multiple == 0 and x.shape[-1] % self.size_multiple == 0, tuple(x.shape)
        return x if self.out_channels is None else x[:, :1].expand(-1, self.out_channels, -1, -1)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    height=st.integers(1, 300),
    width=st.integers(1, 300),
    exponent=st.integers(0, 8),
    channels=st.sampled_from([1, 3, 4]),
    batched=st.booleans(),
)
def test_translate_keeps_any_size_and_crops_the_padding_exactly(height, width, exponent, channels, batched):
    image = torch.rand(*([2] if batched else []), channels, height, width) * 2 - 1
    output = translate(StrictIdentity(2**exponent), image)
    # An identity generator gives back exactly the input only if the crop undoes the padding pixel for pixel.
    assert torch.equal(output, image)


@settings(max_examples=12, deadline=None, derandomize=True)
@given(height=st.integers(1, 70), width=st.integers(1, 70), in_channels=st.sampled_from([1, 3, 4]), out_channels=st.sampled_from([1, 3]))
def test_a_real_unet_translates_non_square_sizes_that_are_not_multiples(height, width, in_channels, out_channels):
    torch.manual_seed(0)
    generator = UNet(in_channels=in_channels, out_channels=out_channels, image_size=16, ngf=4).eval()
    with torch.no_grad():
        output = translate(generator, torch.rand(in_channels, height, width) * 2 - 1)
    assert output.shape == (out_channels, height, width)
    assert output.abs().max() <= 1


def test_padding_mirrors_the_image_and_keeps_it_centred():
    image = torch.arange(5.0).view(1, 1, 1, 5).expand(1, 1, 3, 5)
    padded, (rows, columns) = pad_to_multiple(image, 8)
    assert padded.shape[-2:] == (8, 8)
    # 3 columns to add: 1 before, 2 after, mirrored about the edge pixels (reflect, not repeat).
    assert padded[0, 0, 0].tolist() == [1, 0, 1, 2, 3, 4, 3, 2]
    assert (rows, columns) == (slice(2, 5), slice(1, 6))
    assert torch.equal(padded[..., rows, columns], image)


def test_padding_larger_than_the_image_mirrors_repeatedly():
    image = torch.tensor([[[[0.0, 1.0]]]])
    padded, _ = pad_to_multiple(image, 8)
    # 6 columns to add, 3 a side; a 2-pixel row mirrors one pixel at a time: ... 1 0 1 | 0 1 | 0 1 0 ...
    assert padded[0, 0, 0].tolist() == [1, 0, 1, 0, 1, 0, 1, 0]


def test_shorter_side_runs_at_that_scale_and_returns_the_original_size():
    seen = []

    def generator(x: Tensor) -> Tensor:
        seen.append(tuple(x.shape[-2:]))
        return x

    image = torch.rand(3, 30, 60) * 2 - 1
    output = translate(generator, image, size_multiple=4, shorter_side=16)
    assert seen == [(16, 32)]
    assert output.shape == image.shape


def test_a_generator_without_size_multiple_needs_one():
    with pytest.raises(ConfigError, match="size_multiple"):
        translate(lambda x: x, torch.zeros(3, 8, 8))


@settings(max_examples=40, deadline=None, derandomize=True)
@given(height=st.integers(1, 40), width=st.integers(1, 40), multiple=st.sampled_from([2, 8, 32, 64]))
def test_padding_is_numpys_reflect_so_code_without_p2p_can_match_it(height, width, multiple):
    image = torch.rand(1, 2, height, width)
    padded, _ = pad_to_multiple(image, multiple)
    rows, columns = -height % multiple, -width % multiple
    # The exports' JSON describes exactly this: floor(padding / 2) before, the rest after, numpy-style reflect.
    expected = np.pad(image.numpy(), ((0, 0), (0, 0), (rows // 2, rows - rows // 2), (columns // 2, columns - columns // 2)), mode="reflect")
    assert np.array_equal(padded.numpy(), expected)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(height=st.integers(1, 150), width=st.integers(1, 150), exponent=st.integers(0, 7), channels=st.sampled_from([1, 3]))
def test_the_graph_form_of_the_padding_is_translates_exactly(height, width, exponent, channels):
    """AnySize, which exports hold, pads and crops as translate() does: compare what each feeds the generator."""
    seen = []

    def generator(x: Tensor) -> Tensor:
        seen.append(x)
        return -x

    class Recording(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            return generator(x)

    image = torch.rand(2, channels, height, width) * 2 - 1
    output = AnySize(Recording(), 2**exponent)(image)
    expected = translate(generator, image, size_multiple=2**exponent)
    assert torch.equal(seen[0], seen[1]) and torch.equal(output, expected)


def test_scale_note_warns_only_far_from_the_training_size():
    assert scale_note(300, 260, image_size=256, shorter_side=None) is None
    assert "--resize 64" in scale_note(256, 300, image_size=64, shorter_side=None)
    assert scale_note(256, 300, image_size=64, shorter_side=64) is None
    assert "--resize 256" in scale_note(40, 40, image_size=256, shorter_side=None)

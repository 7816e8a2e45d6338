"""The built-in networks against the numbers the paper (and its reference implementation) publish."""

from __future__ import annotations

import pytest
import torch

import p2p_core
from p2p_core.config import parse_spec
from p2p_core.errors import ConfigError
from p2p_core.model import Pix2Pix
from p2p_core.registry import default_registry
from p2p_core.spec import Shapes
from p2p_unet import UNet


def parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_unet_256_has_the_papers_parameter_count():
    unet = p2p_core.create("generator", "unet", in_channels=3, out_channels=3, image_size=256)
    assert parameters(unet) == 54_413_955


@pytest.mark.parametrize(("image_size", "depth"), [(128, 7), (256, 8), (512, 9)])
def test_generator_depth_follows_the_crop_size(image_size, depth):
    unet = p2p_core.create("generator", "unet", in_channels=3, out_channels=3, image_size=image_size, ngf=4)
    assert len(unet.encoder) == depth
    assert unet.size_multiple == image_size


def test_encoder_decoder_is_the_unet_with_the_skips_cut():
    unet = p2p_core.create("generator", "unet", in_channels=3, out_channels=3, image_size=256)
    plain = p2p_core.create("generator", "encoder_decoder", in_channels=3, out_channels=3, image_size=256)
    # Only the decoder's input widths differ: each U-Net decoder block but the innermost also takes the
    # mirrored encoder block's channels (C1024 instead of C512, ...).
    assert [type(m) for m in unet.children()] == [type(m) for m in plain.children()]
    assert [type(m) for m in unet.encoder.modules()] == [type(m) for m in plain.encoder.modules()]
    widths = [block[1].in_channels for block in unet.decoder]
    assert widths == [512, 1024, 1024, 1024, 1024, 512, 256, 128]
    assert [block[1].in_channels for block in plain.decoder] == [512, 512, 512, 512, 512, 256, 128, 64]


def test_unet_decoder_block_i_sees_encoder_block_n_minus_i():
    """Zeroing the bottleneck silences an encoder-decoder, but the U-Net still sees the input via skips."""
    outputs = {}
    for name in ("unet", "encoder_decoder"):
        torch.manual_seed(0)
        net = p2p_core.create("generator", name, in_channels=3, out_channels=3, image_size=32, ngf=8).eval()
        net.encoder[-1].register_forward_hook(lambda module, args, out: torch.zeros_like(out))
        with torch.no_grad():
            outputs[name] = [net(torch.rand(1, 3, 32, 32) * 2 - 1) for _ in range(2)]
    assert torch.equal(*outputs["encoder_decoder"])
    assert not torch.allclose(*outputs["unet"])


def test_unet_decoder_block_j_takes_the_block_before_it_then_encoder_block_n_minus_1_minus_j():
    # The paper's skips join layer i to layer n - i; the channel order (decoder's first, then the skip's) is
    # the one imported reference weights are rearranged into, so it is part of the fact.
    torch.manual_seed(0)
    unet = p2p_core.create("generator", "unet", in_channels=3, out_channels=3, image_size=16, ngf=2).eval()
    encoded, decoded, inputs = [], [], []

    def record(module, args, out):
        if module in unet.encoder:
            encoded.append(out)
        else:
            inputs.append(args[0])
            decoded.append(out)

    for block in (*unet.encoder, *unet.decoder):
        block.register_forward_hook(record)
    with torch.no_grad():
        unet(torch.rand(1, 3, 16, 16) * 2 - 1)
    depth = len(unet.encoder)
    assert torch.equal(inputs[0], encoded[-1])
    for j in range(1, depth):
        assert torch.equal(inputs[j], torch.cat([decoded[j - 1], encoded[depth - 1 - j]], dim=1)), f"decoder block {j}"


def test_dropout_sits_in_the_three_innermost_decoder_blocks():
    unet = p2p_core.create("generator", "unet", in_channels=3, out_channels=3, image_size=256)
    rates = [next((m.p for m in block if isinstance(m, torch.nn.Dropout)), 0.0) for block in unet.decoder]
    assert rates == [0.5, 0.5, 0.5, 0, 0, 0, 0, 0]


@pytest.mark.parametrize(
    ("image_size", "placement", "rates"),
    [
        (8, "paper", [0.5, 0.5, 0]),  # fewer than three blocks below the outermost: all of them
        (256, "reference", [0, 0.5, 0.5, 0.5, 0, 0, 0, 0]),  # the reference: depth - 5 blocks above the innermost
        (512, "reference", [0, 0.5, 0.5, 0.5, 0.5, 0, 0, 0, 0]),
    ],
)
def test_dropout_placement_of_shallow_unets_and_of_the_reference(image_size, placement, rates):
    unet = p2p_core.create("generator", "unet", in_channels=3, out_channels=3, image_size=image_size, dropout_placement=placement)
    assert [next((m.p for m in block if isinstance(m, torch.nn.Dropout)), 0.0) for block in unet.decoder] == rates


@pytest.mark.parametrize(("height", "width"), [(32, 48), (48, 32)])
def test_unet_refuses_an_input_side_that_is_not_a_multiple_naming_its_size(height, width):
    unet = p2p_core.create("generator", "unet", in_channels=3, out_channels=3, image_size=32, ngf=4)
    with pytest.raises(ValueError, match=f"input {height}x{width} is not a multiple of 32"):
        unet(torch.zeros(1, 3, height, width))


@pytest.mark.parametrize("norm", ["batch", "none"])
def test_patchgan_uses_leaky_relu_0_2_and_a_bias_only_where_no_batch_norm_follows(norm):
    disc = p2p_core.create("discriminator", "patch70", in_channels=6, ndf=4, norm=norm)
    assert {m.negative_slope for m in disc.modules() if isinstance(m, torch.nn.LeakyReLU)} == {0.2}
    convs = [m for m in disc.modules() if isinstance(m, torch.nn.Conv2d)]
    # The first and the last convolution have no norm after them, so they keep their bias.
    assert [conv.bias is not None for conv in convs] == [True, *[norm != "batch"] * (len(convs) - 2), True]


@pytest.mark.parametrize("name", ["patch", "pixel", "patch16", "patch70", "image286"])
def test_every_patchgan_takes_its_width_and_norm_and_patch_defaults_to_the_papers_70(name):
    disc = p2p_core.create("discriminator", name, in_channels=6, ndf=4, norm="instance")
    assert next(m for m in disc.modules() if isinstance(m, torch.nn.Conv2d)).out_channels == 4
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in disc.modules())
    assert str(p2p_core.create("discriminator", "patch", in_channels=6)) == str(p2p_core.create("discriminator", "patch70", in_channels=6))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"n_layers": 17}, r"n_layers must be from 1 \(a 16x16 receptive field\) to 16, got 17\. "),
        ({"n_layers": 10**50}, r"to 16, got 1" + "0" * 39 + r"\. "),  # a huge value is cut to 40 characters
        ({"ndf": 0}, r"ndf \(the first layer's filters\) must be from 1 to 65,536, got 0\. "),
        ({"ndf": 65537}, r"to 65,536, got 65537\. "),
        ({"ndf": 10**50}, r"to 65,536, got 1" + "0" * 39 + r"\. "),
    ],
)
def test_patchgan_refuses_sizes_out_of_range_naming_the_bounds(options, message):
    with pytest.raises(ConfigError, match=message):
        p2p_core.create("discriminator", "patch", in_channels=6, **{"ndf": 1, **options})


def test_patchgan_builds_at_its_bounds():
    assert p2p_core.create("discriminator", "patch", in_channels=6, ndf=1, n_layers=16)
    assert p2p_core.create("discriminator", "patch", in_channels=6, ndf=1, n_layers=1)


def test_patchgan_features_are_the_activations_after_each_block_beside_its_logits():
    disc = p2p_core.create("discriminator", "patch70", in_channels=6, ndf=4).eval()
    x = torch.randn(1, 6, 64, 64, generator=torch.Generator().manual_seed(0))
    logits, features = disc.logits_and_features(x)
    blocks = [i + 1 for i, layer in enumerate(disc.model) if isinstance(layer, torch.nn.LeakyReLU)]
    assert torch.equal(logits, disc(x)) and len(features) == len(blocks) == 4
    assert all(torch.equal(feature, disc.model[:end](x)) for feature, end in zip(features, blocks))


def test_encoder_has_no_norm_on_the_first_and_innermost_blocks():
    unet = p2p_core.create("generator", "unet", in_channels=3, out_channels=3, image_size=256)
    normed = [any(isinstance(m, torch.nn.BatchNorm2d) for m in block) for block in unet.encoder]
    assert normed == [False, True, True, True, True, True, True, False]


@pytest.mark.parametrize(
    ("name", "receptive_field", "params", "grid_at_256"),
    [("pixel", 1, 9_024, 256), ("patch16", 16, 139_585, 126), ("patch70", 70, 2_768_705, 30), ("image286", 286, 11_159_361, 6)],
)
def test_discriminators_match_the_papers_table(name, receptive_field, params, grid_at_256):
    d = p2p_core.create("discriminator", name, in_channels=6)
    assert d.receptive_field == receptive_field
    assert parameters(d) == params
    assert d.output_size(256) == grid_at_256


@pytest.mark.parametrize(("n_layers", "receptive_field"), [(1, 16), (2, 34), (3, 70), (4, 142), (5, 286), (6, 574)])
def test_patch_receptive_field_by_number_of_strided_layers(n_layers, receptive_field):
    assert p2p_core.create("discriminator", "patch", in_channels=6, n_layers=n_layers, ndf=4).receptive_field == receptive_field


def test_patch70_logit_grid_at_256_is_30x30():
    d = p2p_core.create("discriminator", "patch70", in_channels=6, ndf=8)
    with torch.no_grad():
        assert d(torch.zeros(1, 6, 256, 256)).shape == (1, 1, 30, 30)


def test_l1_weight_defaults_to_lambda_100():
    term = p2p_core.create("loss", "l1")
    fake, target = torch.zeros(1, 3, 4, 4), torch.full((1, 3, 4, 4), 0.5)
    assert term.generator_loss(x=fake, fake=fake, target=target, d_fake=None, d_real=None).item() == pytest.approx(50.0)


@pytest.mark.parametrize("dataset", ["aligned", "folders", "synthetic"])
def test_the_built_in_datasets_jitter_as_the_paper_does_by_default_resize_to_286_crop_256(dataset):
    defaults = {option.name: option.default for option in default_registry().get("dataset", dataset).options}
    assert (defaults["load_size"], defaults["crop_size"]) == (286, 256)


def test_the_readmes_main_command_trains_the_paper_model_on_256_crops_of_286():
    # README's `p2p fit --generator unet --disc patch70`, narrowed (ngf, ndf) but at its default sizes: the data,
    # the U-Net's depth and the PatchGAN's grid must all agree before the first step.
    registry = default_registry()
    spec, _ = parse_spec(["--generator", "unet", "--disc", "patch70", "--generator.ngf", "4", "--disc.ndf", "4"], registry)
    assert (spec.data.options["load_size"], spec.data.options["crop_size"]) == (286, 256)
    dataset = registry.create("dataset", spec.data.name, split="train", **spec.data.options)
    sample = dataset[0]
    assert dataset.image_size == 256
    assert sample.a.shape == sample.b.shape == (3, 256, 256)
    shapes = Shapes(in_channels=dataset.in_channels, out_channels=dataset.out_channels, image_size=dataset.image_size)
    model = Pix2Pix.build(spec, shapes, total_steps=1, registry=registry)
    assert len(model.generator.encoder) == 8 and model.discriminator.output_size(256) == 30


def test_the_unet_takes_depths_from_2_and_fits_the_smallest_images_with_2():
    shallowest = UNet(in_channels=3, out_channels=3, image_size=4, ngf=2)  # log2(4) = 2 halvings
    assert shallowest.depth == 2 and shallowest(torch.zeros(1, 3, 4, 4)).shape == (1, 3, 4, 4)
    assert UNet(in_channels=3, out_channels=3, image_size=64, ngf=2, depth=2).depth == 2
    with pytest.raises(ValueError, match=r"^depth \(stride-2 blocks\) must be at least 2, got 1; leave it unset to fit "
                                         r"the image size \(6 for 64\)$"):
        UNet(in_channels=3, out_channels=3, image_size=64, ngf=2, depth=1)
    with pytest.raises(ValueError, match=r"^ngf \(the first layer's filters\) must be from 1 to 65,536, got 0$"):
        UNet(in_channels=3, out_channels=3, image_size=64, ngf=0)


def test_the_unet_takes_depths_up_to_16_and_refuses_deeper_naming_the_range():
    assert UNet(in_channels=3, out_channels=3, image_size=2**16, ngf=1, depth=16).depth == 16
    with pytest.raises(ValueError, match=r"^depth must be from 2 to 16, got 17$"):
        UNet(in_channels=3, out_channels=3, image_size=2**17, ngf=1, depth=17)


def test_unet_encoder_uses_leaky_relu_0_2_and_its_decoder_relu():
    unet = UNet(in_channels=3, out_channels=3, image_size=64, ngf=4)
    assert {m.negative_slope for m in unet.encoder.modules() if isinstance(m, torch.nn.LeakyReLU)} == {0.2}
    assert not any(isinstance(m, torch.nn.LeakyReLU) for m in unet.decoder.modules())


@pytest.mark.parametrize("norm", ["batch", "instance", "none"])
def test_unet_convolutions_have_a_bias_unless_batch_norm_follows(norm):
    # BatchNorm's shift makes a bias redundant; instance norm (no affine) and no norm need one. The last layer has no norm.
    unet = UNet(in_channels=3, out_channels=3, image_size=64, ngf=4, norm=norm)
    convolutions = [m for m in unet.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    assert [m.bias is not None for m in convolutions] == [norm != "batch"] * (len(convolutions) - 1) + [True]


def test_unet_refuses_more_than_65536_filters_naming_the_range():
    with pytest.raises(ValueError, match=r"^ngf \(the first layer's filters\) must be from 1 to 65,536, got 65537$"):
        UNet(in_channels=3, out_channels=3, image_size=64, ngf=65537)


"""What the kit cannot know: the multi-scale discriminator is pix2pixHD's, the feature-matching and VGG terms
compute pix2pixHD's losses, and p2p trains with them once the package is installed."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torchvision.models.vgg import cfgs, make_layers

from p2p_core import checkpoint
from p2p_core.cli import main
from p2p_core.protocols import DiscriminatorOutput
from p2p_patchgan import PatchGAN
from p2p_plugin_hd.discriminators import multiscale
from p2p_plugin_hd import P2P_CONFORMANCE
from p2p_plugin_hd.losses import FeatureMatchingLoss, VGGLoss

CHECKOUT = Path(__file__).resolve().parents[3]
OUTLINES = CHECKOUT.parent / "shared" / "data" / "outlines"


def test_each_scale_is_a_patchgan_of_its_own_on_the_input_pooled_once_more():
    d = multiscale(in_channels=6, scales=3, ndf=4).eval()
    assert [type(s) for s in d.scales] == [PatchGAN] * 3
    assert not torch.equal(d.scales[0].model[0].weight, d.scales[1].model[0].weight)
    x = torch.rand(2, 6, 128, 128) * 2 - 1
    pool = torch.nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)
    with torch.no_grad():
        output = d(x)
        expected = [d.scales[0](x), d.scales[1](pool(x)), d.scales[2](pool(pool(x)))]
    assert all(torch.equal(got, want) for got, want in zip(output.logits, expected))
    assert [tuple(logits.shape[-2:]) for logits in output.logits] == [(14, 14), (6, 6), (2, 2)] == [(s, s) for s in d.output_size(128)]


def test_the_70x70_field_grows_to_141_and_283_at_coarser_scales():
    d = multiscale(in_channels=6, scales=3, ndf=4)
    assert d.receptive_field == (70, 141, 283)
    assert d.output_size(256) == (30, 14, 6)


def test_features_are_the_activations_after_each_block_of_each_scale():
    d = multiscale(in_channels=3, scales=2, ndf=4, n_layers=3)
    output = d(torch.rand(2, 3, 64, 64))
    assert [len(scale) for scale in output.features] == [4, 4]  # C64, C128, C256 and the stride-1 C512
    assert [f.shape[1] for f in output.features[0]] == [4, 8, 16, 32]
    assert all(f.shape[0] == 2 for scale in output.features for f in scale)


def _output(*features: list[torch.Tensor]) -> DiscriminatorOutput:
    return DiscriminatorOutput(logits=[torch.zeros(1, 1, 1, 1)] * len(features), features=features)


def test_feature_matching_is_l1_averaged_over_layers_then_scales_times_10():
    zeros, ones, twos = (torch.full((1, 2, 2, 2), v) for v in (0.0, 1.0, 2.0))
    real = _output([zeros, zeros], [zeros])
    fake = _output([ones, twos], [ones])
    term = FeatureMatchingLoss()
    value = term.generator_loss(x=zeros, fake=zeros, target=zeros, d_fake=fake, d_real=real)
    assert value.item() == pytest.approx(10 * ((1 + 2) / 2 + 1) / 2)
    assert term.generator_loss(x=zeros, fake=zeros, target=zeros, d_fake=real, d_real=real).item() == 0


def test_feature_matching_sends_gradients_to_the_fake_features_only():
    real_feature = torch.zeros(1, 2, 2, 2, requires_grad=True)
    fake_feature = torch.ones(1, 2, 2, 2, requires_grad=True)
    zeros = torch.zeros(1, 3, 2, 2)
    FeatureMatchingLoss().generator_loss(x=zeros, fake=zeros, target=zeros, d_fake=_output([fake_feature]),
                                         d_real=_output([real_feature])).backward()
    assert fake_feature.grad is not None and real_feature.grad is None


def vgg_weights(path: Path, entries: int = 4) -> Path:
    """A file in the layout of torchvision's VGG19 weights: random features for the first ``entries`` of its
    configuration (4: up to relu2_1), and a classifier the term does not read."""
    torch.manual_seed(0)
    features = make_layers(cfgs["E"][:entries])
    torch.save({**{f"features.{k}": v for k, v in features.state_dict().items()}, "classifier.0.weight": torch.zeros(2, 2)}, path)
    return path


def test_the_vgg_loss_is_pix2pixhds_weighted_l1_over_vgg19s_slices_of_normalised_images(tmp_path):
    term = VGGLoss(weights=vgg_weights(tmp_path / "vgg19.pth"), slices=2)
    features = make_layers(cfgs["E"][:4])
    features.load_state_dict(term.features.state_dict())
    generator = torch.Generator().manual_seed(1)
    fake, target = (torch.rand(2, 3, 16, 16, generator=generator) * 2 - 1 for _ in range(2))

    def slices(image: torch.Tensor) -> list[torch.Tensor]:
        mean, std = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        relu1_1 = features[0:2](((image + 1) / 2 - mean) / std)
        return [relu1_1, features[2:7](relu1_1)]

    expected = 10 * (F.l1_loss(slices(fake)[0], slices(target)[0]) / 32 + F.l1_loss(slices(fake)[1], slices(target)[1]) / 16)
    value = term.generator_loss(x=fake, fake=fake, target=target, d_fake=None, d_real=None)
    torch.testing.assert_close(value, expected)


def test_the_vgg_loss_names_the_weights_it_lacks(tmp_path):
    with pytest.raises(ValueError, match="no VGG19 weights at .*missing.pth"):
        VGGLoss(weights=tmp_path / "missing.pth")
    with pytest.raises(ValueError, match=r"lacks VGG19's features.7.weight \(and 3 more\)"):
        VGGLoss(weights=vgg_weights(tmp_path / "vgg19.pth"), slices=3)


def test_the_kits_weights_are_vgg19s_first_layer_seeded_0():
    torch.manual_seed(0)
    seeded = make_layers(cfgs["E"][:1]).state_dict()
    shipped = torch.load(P2P_CONFORMANCE["options"]["loss:vgg"]["weights"], weights_only=True)
    assert shipped.keys() == {f"features.{k}" for k in seeded}
    assert all(torch.equal(shipped[f"features.{k}"], v) for k, v in seeded.items())


def test_p2p_lists_the_components_and_the_recipe_with_this_distribution(capsys):
    main(["list"])
    rows = {tuple(line.split()[:2]): line for line in capsys.readouterr().out.splitlines()}
    for kind, name in [("discriminator", "multiscale"), ("loss", "fm"), ("loss", "vgg")]:
        assert rows[kind, name].endswith("p2p-plugin-hd 0.1.0")
    main(["list", "recipes"])
    assert "hd_outlines" in capsys.readouterr().out


# The second scale of a 70x70 PatchGAN needs 64x64 images (32x32 at that scale) for an output.
SMALL = ["--generator.ngf", "4", "--disc.ndf", "4", "--data.length", "2", "--data.load_size", "72", "--data.crop_size", "64",
         "--trainer.num_workers", "0", "--trainer.progress", "false"]


def test_p2p_fit_trains_the_multiscale_discriminator_with_feature_matching(tmp_path):
    main(["fit", "--disc", "multiscale", "--loss", "cgan+fm+l1", "--trainer.max_steps", "2", *SMALL,
          "--out_dir", str(tmp_path), "--name", "run"])
    state = checkpoint.read(tmp_path / "run" / "checkpoints" / "step_00000002.pt")
    assert state.spec.run.disc.name == "multiscale" and state.spec.run.loss == "cgan+fm+l1"
    assert state.spec.plugins["p2p-plugin-hd"] == "0.1.0"
    assert any(key.startswith("scales.1.") for key in state.state["models"]["discriminator"])


def test_p2p_fit_trains_with_the_vgg_loss_fixed_and_left_out_of_the_checkpoint(tmp_path):
    weights = vgg_weights(tmp_path / "vgg19.pth")
    main(["fit", "--loss", "cgan+l1+vgg", "--loss_options.vgg.weights", str(weights), "--loss_options.vgg.slices", "2",
          "--trainer.max_steps", "2", *SMALL, "--out_dir", str(tmp_path), "--name", "run"])
    state = checkpoint.read(tmp_path / "run" / "checkpoints" / "step_00000002.pt")
    assert state.spec.run.loss_options["vgg"]["slices"] == 2
    assert set(state.state["models"]) == {"generator", "discriminator"} and "terms" not in state.state


def test_feature_matching_with_a_discriminator_without_features_stops_with_the_contract(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--disc", "patch70", "--loss", "cgan+fm+l1", "--trainer.max_steps", "1", *SMALL,
              "--out_dir", str(tmp_path), "--name", "run"])
    headline, found, fix = capsys.readouterr().err.strip().splitlines()[-3:]
    assert headline.startswith("p2p: error: loss 'fm' (plugin 'hd' from p2p-plugin-hd 0.1.0) needs the discriminator's features")
    assert "discriminator 'patch70'" in headline
    assert found == "  found: logits only (no DiscriminatorOutput.features)"
    assert fix.startswith("  fix: choose a discriminator that returns its features")
    assert not any(tmp_path.iterdir())  # refused before the run folder was made


def test_a_crop_too_small_for_the_coarsest_scale_is_refused_with_the_smallest_that_works(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--disc", "multiscale", "--disc.scales", "3", "--loss", "cgan+fm+l1", "--trainer.max_steps", "1", *SMALL,
              "--out_dir", str(tmp_path), "--name", "run"])
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert message.startswith("p2p: error: discriminator 'multiscale' (p2p-plugin-hd 0.1.0) has no output for 64x64 images")
    assert message.endswith("use --data.crop_size 93 (or larger), or a smaller receptive field (or fewer scales)")
    assert multiscale(in_channels=6, scales=3).output_size(93) == (9, 3, 1)
    assert not any(tmp_path.iterdir())


@pytest.mark.skipif(not OUTLINES.is_dir(), reason="needs the outlines data at ../shared/data/outlines")
def test_the_recipe_trains_on_the_outlines(tmp_path, monkeypatch):
    monkeypatch.chdir(CHECKOUT)  # the recipe's data path is relative to the checkout
    main(["fit", "--config", "hd_outlines", "--trainer.max_steps", "1", "--out_dir", str(tmp_path), "--name", "hd"])
    state = checkpoint.read(tmp_path / "hd" / "checkpoints" / "step_00000001.pt")
    assert state.spec.run.loss == "cgan+fm+l1" and state.spec.run.disc.options["ndf"] == 16

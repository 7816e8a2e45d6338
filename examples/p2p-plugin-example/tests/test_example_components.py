"""What the kit cannot know: the ResNet is the published architecture, the terms compute the published losses,
and p2p finds, lists and trains with all of it once the package is installed."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from p2p_core import checkpoint
from p2p_core.cli import main
from p2p_core.objective import Objective
from p2p_core.protocols import DiscriminatorOutput
from p2p_example.losses import HingeLoss, LeastSquaresLoss
from p2p_example.resnet import ResidualBlock, resnet9


def _layers(module: nn.Module) -> list[tuple[str, int, int, int, int]]:
    convolutions = (nn.Conv2d, nn.ConvTranspose2d)
    return [
        (type(m).__name__, m.in_channels, m.out_channels, m.kernel_size[0], m.stride[0])
        for m in module.modules()
        if isinstance(m, convolutions)
    ]


def test_resnet9_is_c7s1_64_d128_d256_nine_r256_u128_u64_c7s1_out_then_tanh():
    g = resnet9(in_channels=3, out_channels=2, image_size=256)
    assert _layers(g) == [
        ("Conv2d", 3, 64, 7, 1),
        ("Conv2d", 64, 128, 3, 2),
        ("Conv2d", 128, 256, 3, 2),
        *[("Conv2d", 256, 256, 3, 1)] * 18,
        ("ConvTranspose2d", 256, 128, 3, 2),
        ("ConvTranspose2d", 128, 64, 3, 2),
        ("Conv2d", 64, 2, 7, 1),
    ]
    assert isinstance(list(g.modules())[-1], nn.Tanh)


def test_resnet9_pads_its_stride_1_convolutions_by_reflection():
    g = resnet9(in_channels=3, out_channels=3, image_size=64, ngf=4, n_blocks=2)
    stride_1 = [m for m in g.modules() if isinstance(m, nn.Conv2d) and m.stride == (1, 1)]
    assert all(m.padding == (0, 0) for m in stride_1)
    assert sum(isinstance(m, nn.ReflectionPad2d) for m in g.modules()) == len(stride_1)


def test_resnet9_options_set_width_blocks_and_norm():
    g = resnet9(in_channels=1, out_channels=3, image_size=64, ngf=8, n_blocks=3, norm="instance")
    assert sum(isinstance(m, ResidualBlock) for m in g.modules()) == 3
    assert _layers(g)[0] == ("Conv2d", 1, 8, 7, 1)
    assert any(isinstance(m, nn.InstanceNorm2d) for m in g.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in g.modules())
    # Without a norm layer after them, the convolutions need their bias back.
    plain = resnet9(in_channels=3, out_channels=3, image_size=64, ngf=4, norm="none")
    assert all(m.bias is not None for m in plain.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)))


def test_resnet9_options_give_the_reference_its_dropout_and_biases():
    """use_dropout puts Dropout(0.5) between each block's ReLU and second padding; under instance norm the reference
    gives every convolution a bias."""
    g = resnet9(in_channels=3, out_channels=3, image_size=64, ngf=4, n_blocks=2, norm="instance", dropout=0.5, conv_bias="all")
    for block in (m for m in g.modules() if isinstance(m, ResidualBlock)):
        assert [type(m).__name__ for m in block.body] == [
            "ReflectionPad2d", "Conv2d", "InstanceNorm2d", "ReLU", "Dropout", "ReflectionPad2d", "Conv2d", "InstanceNorm2d"
        ]
        assert block.body[4].p == 0.5
    assert all(m.bias is not None for m in g.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)))
    # The defaults stay: no dropout, and no bias where a norm follows.
    default = resnet9(in_channels=3, out_channels=3, image_size=64, ngf=4, n_blocks=2, norm="instance")
    assert not any(isinstance(m, nn.Dropout) for m in default.modules())
    assert [m.bias is not None for m in default.modules() if isinstance(m, nn.Conv2d)][:-1] == [False] * 7


def test_resnet9_accepts_multiples_of_4_from_8_and_says_what_else_to_do():
    g = resnet9(in_channels=3, out_channels=3, image_size=64, ngf=4, n_blocks=1).eval()
    with torch.no_grad():
        assert g(torch.zeros(1, 3, 12, 20)).shape == (1, 3, 12, 20)
        with pytest.raises(ValueError, match=r"input 10x10: .* multiples of 4 and at least 8; resize or crop"):
            g(torch.zeros(1, 3, 10, 10))
        with pytest.raises(ValueError, match=r"input 4x4: .* at least 8"):
            g(torch.zeros(1, 3, 4, 4))


def _scores_by_mean(scale: float):
    """A discriminator that scores a pair by the mean of its output half, and records what it was shown."""
    shown = []

    def disc(pair: torch.Tensor) -> torch.Tensor:
        shown.append(pair.shape[1])
        return scale * pair[:, -3:].mean(dim=1, keepdim=True)

    return disc, shown


# Real targets are +1 everywhere and fakes -1, so D scores real patches +scale and fakes -scale.
PAIR = {"x": torch.zeros(2, 3, 4, 4), "target": torch.ones(2, 3, 4, 4), "fake": -torch.ones(2, 3, 4, 4)}


def _losses(term, disc, pair=PAIR) -> tuple[float, float]:
    """The term's generator and discriminator losses as p2p computes them: the objective runs D for the term."""
    objective = Objective({"term": term})
    return (objective.generator_losses(**pair, disc=disc)["term"].item(),
            objective.discriminator_losses(**pair, disc=disc)["term"].item())


def test_lsgan_regresses_real_to_1_and_fake_to_0():
    disc, shown = _scores_by_mean(2.0)
    g_loss, d_loss = _losses(LeastSquaresLoss(weight=0.5), disc)
    assert g_loss == pytest.approx(0.5 * (-2 - 1) ** 2)
    assert d_loss == pytest.approx(0.5 * ((2 - 1) ** 2 + (-2) ** 2))
    assert set(shown) == {6}  # conditional: D sees the input beside the output


def test_hinge_has_a_margin_of_1_on_both_sides():
    disc, _ = _scores_by_mean(0.5)
    assert _losses(HingeLoss(), disc) == pytest.approx((1 + 0.5, (1 - 0.5) + (1 - 0.5)))
    confident, _ = _scores_by_mean(2.0)  # beyond the margins: nothing left for D to learn
    assert _losses(HingeLoss(), confident)[1] == 0
    fooled = {**PAIR, "fake": torch.ones(2, 3, 4, 4)}  # D scores this fake +2, past G's margin
    assert _losses(HingeLoss(), confident, fooled)[0] == 0


def test_both_terms_average_the_scales_of_a_multiscale_discriminator():
    def two_scales(pair: torch.Tensor) -> DiscriminatorOutput:
        score = pair[:, -3:].mean(dim=1, keepdim=True)
        return DiscriminatorOutput(logits=[2.0 * score, 0.5 * score[..., ::2, ::2]])

    lsgan_g = (((-2 - 1) ** 2) + ((-0.5 - 1) ** 2)) / 2
    assert _losses(LeastSquaresLoss(), two_scales)[0] == pytest.approx(lsgan_g)
    assert _losses(HingeLoss(), two_scales)[0] == pytest.approx((3 + 1.5) / 2)


@pytest.mark.parametrize("term", [LeastSquaresLoss(conditional=False), HingeLoss(conditional=False)])
def test_unconditional_terms_show_d_only_the_output(term):
    disc, shown = _scores_by_mean(1.0)
    _losses(term, disc)
    assert set(shown) == {3}
    assert term.discriminator_input == "output"


def test_p2p_lists_the_components_with_this_distribution(capsys):
    main(["list"])
    rows = {tuple(line.split()[:2]): line for line in capsys.readouterr().out.splitlines()}
    for kind, name in [("generator", "resnet9"), ("loss", "lsgan"), ("loss", "hinge")]:
        assert rows[kind, name].endswith("p2p-plugin-example 0.1.0")
    main(["list", "recipes"])
    assert "resnet9_smoke" in capsys.readouterr().out


# Smaller than a first try would be, to keep the test quick on a CPU.
SMALL = ["--data.crop_size", "32", "--data.load_size", "36", "--trainer.num_workers", "0", "--trainer.progress", "false"]


def test_p2p_fit_trains_resnet9_by_name(tmp_path):
    main([
        "fit", "--generator", "resnet9", "--disc", "patch70", "--generator.ngf", "4", "--generator.n_blocks", "2",
        "--disc.ndf", "4", "--trainer.max_steps", "2", *SMALL, "--out_dir", str(tmp_path), "--name", "run",
    ])
    state = checkpoint.read(tmp_path / "run" / "checkpoints" / "step_00000002.pt")
    assert state.spec.run.generator.name == "resnet9"
    assert state.spec.plugins["p2p-plugin-example"] == "0.1.0"


def test_the_recipe_trains_with_lsgan(tmp_path):
    main(["fit", "--config", "resnet9_smoke", "--trainer.max_steps", "1", *SMALL, "--out_dir", str(tmp_path), "--name", "smoke"])
    state = checkpoint.read(tmp_path / "smoke" / "checkpoints" / "step_00000001.pt")
    assert state.spec.run.loss == "lsgan+l1"
    assert state.spec.run.generator.options.items() >= {"ngf": 8, "n_blocks": 3}.items()

"""Loss terms beyond the paper's: gradient penalties (R1, WGAN-GP) whose gradient the objective computes, terms
that go below 0 (WGAN), and terms with a fixed network of their own (a perceptual loss)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import p2p_core
from conftest import make_spec
from p2p_core.objective import Objective
from p2p_core.protocols import Sample
from p2p_core.registry import Registry, default_registry
from p2p_core.spec import Shapes
from p2p_core.testing import ContractViolation, cases
from p2p_core.testing.checks import check_loss_finite_non_negative_and_differentiable
from p2p_core.training import Training

SHAPES = Shapes(in_channels=3, out_channels=3, image_size=32)


class TinyDiscriminator(nn.Module):
    """Two convolutions with a LeakyReLU between, so that D's gradient depends on the image it judges; counts its runs."""

    def __init__(self, channels: int = 6) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(channels, 4, 3), nn.LeakyReLU(0.2), nn.Conv2d(4, 1, 3))
        self.runs = 0

    def forward(self, x: Tensor) -> Tensor:
        self.runs += 1
        return self.net(x)


def images(seed: int = 1) -> dict[str, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {name: torch.rand(2, 3, 8, 8, generator=generator) * 2 - 1 for name in ("x", "fake", "target")}


def test_r1_is_gamma_half_the_squared_norm_of_ds_gradient_at_the_real_image_computed_once_for_all_terms():
    d, pair = TinyDiscriminator(), images()
    objective = Objective.parse("cgan+l1+r1", {"r1": {"gamma": 4.0}}, default_registry())
    losses = objective.discriminator_losses(**pair, disc=d)
    assert d.runs == 2  # the real pair once (its outputs serve cgan and r1), the fake once
    losses["r1"].backward()
    engine = [p.grad for p in d.parameters()]

    d.zero_grad(set_to_none=True)
    y = pair["target"].clone().requires_grad_(True)  # the image judged, not the input x beside it
    (gradient,) = torch.autograd.grad(d(torch.cat([pair["x"], y], 1)).sum(), y, create_graph=True)
    by_hand = 4.0 / 2 * gradient.pow(2).sum(dim=(1, 2, 3)).mean()
    by_hand.backward()
    torch.testing.assert_close(losses["r1"], by_hand, rtol=0, atol=0)
    for got, expected in zip(engine, (p.grad for p in d.parameters())):
        torch.testing.assert_close(got, expected)  # None alike for the last bias, on which the gradient does not depend
    assert "r1" not in objective.generator_losses(**pair, disc=d)  # a penalty has D's side alone


def test_wgan_gp_penalises_the_gradient_norm_at_one_random_point_per_sample_between_real_and_fake():
    d, pair = TinyDiscriminator(3), images()
    objective = Objective.parse("wgan+wgan_gp", {"wgan": {"conditional": False}, "wgan_gp": {"conditional": False}},
                                default_registry())
    torch.manual_seed(5)
    losses = objective.discriminator_losses(**pair, disc=d)
    assert d.runs == 3  # real, fake, and the interpolates
    torch.manual_seed(5)
    eps = torch.rand(2, 1, 1, 1)
    between = (eps * pair["target"] + (1 - eps) * pair["fake"]).requires_grad_(True)
    (gradient,) = torch.autograd.grad(d(between).sum(), between)
    torch.testing.assert_close(losses["wgan_gp"], 10 * (gradient.flatten(1).norm(dim=1) - 1).pow(2).mean())
    with torch.no_grad():
        assert losses["wgan"] == d(pair["fake"]).mean() - d(pair["target"]).mean()
        # G raises the critic's score of its output: -mean D(G(x)), on the critic's own scale.
        torch.testing.assert_close(objective.generator_losses(**pair, disc=d)["wgan"], -d(pair["fake"]).mean())



class FlatDiscriminator(nn.Module):
    """A weight of zero on the image: D's gradient is exactly zero everywhere, where a norm's square root has no
    derivative, yet depends on the weight (so the penalty has one)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor) -> Tensor:
        return self.weight * x[:, :1]


def test_wgan_gp_of_a_flat_discriminator_is_its_weight_with_a_finite_gradient():
    d = FlatDiscriminator()
    objective = Objective.parse("wgan+wgan_gp", {"wgan": {"conditional": False}, "wgan_gp": {"conditional": False}},
                                default_registry())
    penalty = objective.discriminator_losses(**images(), disc=d)["wgan_gp"]
    assert penalty.item() == pytest.approx(10.0)  # weight * (0 - 1)^2
    penalty.backward()
    assert torch.isfinite(d.weight.grad).all()


def test_the_penalty_is_computed_in_float32_under_bf16_autocast():
    d, pair = TinyDiscriminator(), images()
    objective = Objective.parse("cgan+r1", {}, default_registry())
    plain = objective.discriminator_losses(**pair, disc=d)["r1"]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = objective.discriminator_losses(**pair, disc=d)["r1"]
    assert mixed.dtype == torch.float32 and mixed == plain


def test_the_penalty_runs_a_compiled_discriminator_eagerly():
    d, pair = TinyDiscriminator(), images()
    objective = Objective.parse("cgan+r1", {}, default_registry())
    eager = objective.discriminator_losses(**pair, disc=d)
    compiled = objective.discriminator_losses(**pair, disc=torch.compile(d, backend="aot_eager"))
    torch.testing.assert_close(compiled, eager)
    compiled["r1"].backward()  # AOTAutograd's graphs refuse the double backward this takes
    assert d.net[0].weight.grad.abs().sum() > 0


class PenalisesTheFake:
    discriminator_input = "input+output"
    penalises = "fake"

    def discriminator_loss(self, *, x, fake, target, d_fake, d_real, gradient):
        return gradient.pow(2).mean()


class PenalisesWithoutShowingD:
    """Says where D's gradient is taken, but shows D nothing and has no discriminator loss."""

    discriminator_input = "none"
    penalises = "real"

    def generator_loss(self, *, x, fake, target, d_fake, d_real):
        return (fake - target).abs().mean()


@pytest.mark.parametrize(("term", "found"), [
    (PenalisesTheFake(), "penalises = 'fake'"),
    (PenalisesWithoutShowingD(), "discriminator_input = 'none', discriminator_loss = None"),
], ids=["an input p2p takes no gradient at", "no discriminator side"])
def test_a_penalty_that_p2p_cannot_compute_is_refused_with_the_choices(term, found):
    with pytest.raises(p2p_core.ConfigError) as error:
        Objective({"gp": term})
    headline, found_line, fix = str(error.value).splitlines()
    assert headline.startswith("loss 'gp' breaks the contract: a gradient penalty says where D's gradient is taken, "
                               "one of ('real', 'interpolated')")
    assert found_line == f"  found: {found}"
    assert fix.startswith("  fix: say penalises = 'real' (R1) or 'interpolated' (WGAN-GP)")


def batches(count: int) -> list[Sample]:
    generator = torch.Generator().manual_seed(1)
    return [Sample(*(torch.rand(2, 3, 32, 32, generator=generator) * 2 - 1 for _ in range(2)), path="") for _ in range(count)]


@pytest.mark.parametrize(("loss", "logged"), [("cgan+l1+r1", {"D/cgan", "D/r1", "G/cgan", "G/l1"}),
                                              ("wgan+wgan_gp+l1", {"D/wgan", "D/wgan_gp", "G/wgan", "G/l1"})])
def test_pix2pix_trains_with_a_penalty_under_bf16(loss, logged):
    torch.manual_seed(0)
    spec = make_spec(generator=("unet", {"ngf": 8}), disc=("patch16", {"ndf": 8}), loss=loss, precision="bf16")
    training = Training.build(spec, SHAPES, total_steps=2)
    before = [p.clone() for p in training.networks["discriminator"].parameters()]
    for batch in batches(2):
        values = training.train_step(batch)
        assert set(values) == logged and all(math.isfinite(v) for v in values.values())
    assert training.skipped_updates == 0
    assert any(not torch.equal(a, b) for a, b in zip(before, training.networks["discriminator"].parameters()))


def wgan_claiming_non_negative(*, conditional: bool = True) -> object:
    """The built-in wgan term, declaring the default range instead of its own."""
    term = default_registry().create("loss", "wgan", conditional=conditional)
    term.value_range = (0.0, math.inf)
    return term


class Claims:
    @p2p_core.hookimpl
    def p2p_losses(self):
        return {"wgan_claiming_non_negative": wgan_claiming_non_negative}


def test_the_kit_accepts_a_term_below_zero_that_declares_its_range_and_fails_it_otherwise():
    found = Registry()
    found.load_entry_points(allow=["p2p"])
    found.register(Claims(), name="claims", distribution="p2p-fake-claims", version="1.0")
    for case in cases(["loss:wgan"], registry=found):
        case.run()
    (case,) = [c for c in cases(["loss:wgan_claiming_non_negative"], registry=found)
               if c.check is check_loss_finite_non_negative_and_differentiable]
    with pytest.raises(ContractViolation, match=r"loss 'wgan_claiming_non_negative' \(p2p-fake-claims\) breaks the contract: "
                                                r"(generator|discriminator)_loss is a finite scalar in its value_range \[0, inf\]"):
        case.run()


# -- a term with a network of its own ----------------------------------------------------------------------


class FixedFeatures(nn.Module):
    """L1 between a fixed convolution's features of G(x) and of the target; the convolution read from ``weights``."""

    discriminator_input = "none"

    def __init__(self, *, weights: Path, saved: bool = False) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(4))
        self.features.load_state_dict(torch.load(weights, weights_only=True))
        if saved:  # a term that says nothing about it is not saved
            self.saved = True

    def generator_loss(self, *, x: Tensor, fake: Tensor, target: Tensor, d_fake: None, d_real: None) -> Tensor:
        return F.l1_loss(self.features(fake), self.features(target))


class Terms:
    @p2p_core.hookimpl
    def p2p_losses(self):
        return {"features": FixedFeatures}


def registry() -> Registry:
    found = Registry()
    found.load_entry_points(allow=["p2p"])
    found.register(Terms(), name="terms", distribution="p2p-fake-terms", version="1.0")
    return found


def weights_file(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    network = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(4))
    network[2].running_mean.normal_()
    torch.save(network.state_dict(), path)
    return path


def trained(tmp_path: Path, loss: str, steps: int = 2, precision: str = "fp32", **options) -> Training:
    weights = weights_file(tmp_path / "features.pt", seed=0)
    spec = make_spec(generator=("unet", {"ngf": 8}), disc=("patch16", {"ndf": 8}), loss=loss,
                     loss_options={"features": {"weights": str(weights), **options}}, precision=precision)
    training = Training.build(spec, SHAPES, total_steps=4, registry=registry())
    for batch in batches(steps):
        training.train_step(batch)
    return training


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_terms_network_is_fixed_on_the_device_in_no_optimizer_and_the_generators_gradient_flows_through_it(tmp_path, precision):
    training = trained(tmp_path, "features", steps=0, precision=precision)
    term = training.method.objective.terms["features"]
    generator = [p.clone() for p in training.networks["generator"].parameters()]
    for batch in batches(2):
        assert set(training.train_step(batch)) == {"G/features"}  # the term alone trains G
    assert all(tensor.device == training.device for tensor in term.state_dict().values())
    assert not any(module.training for module in term.modules())  # its batch norm keeps the file's statistics
    assert all(not p.requires_grad and p.grad is None for p in term.parameters())
    trained_ids = {id(p) for optimizer in training.optimizers.values() for group in optimizer.param_groups for p in group["params"]}
    assert not trained_ids & {id(p) for p in term.parameters()}
    expected = torch.load(tmp_path / "features.pt", weights_only=True)
    assert all(torch.equal(term.features.state_dict()[name], tensor) for name, tensor in expected.items())
    assert any(not torch.equal(a, b) for a, b in zip(generator, training.networks["generator"].parameters()))


def test_a_terms_network_is_left_out_of_checkpoints_unless_it_asks(tmp_path):
    state = trained(tmp_path, "cgan+l1+features").state_dict()
    assert "terms" not in state and set(state["models"]) == {"generator", "discriminator"}

    saved = trained(tmp_path, "cgan+l1+features", saved=True)
    state = saved.state_dict()
    assert set(state["terms"]) == {"features"}
    weights_file(tmp_path / "features.pt", seed=1)  # the file changed since: the checkpoint's weights win
    spec = saved.spec
    resumed = Training.build(spec, SHAPES, total_steps=2, registry=registry())
    resumed.load_state_dict(state)
    for name, tensor in saved.method.objective.terms["features"].state_dict().items():
        assert torch.equal(resumed.method.objective.terms["features"].state_dict()[name], tensor), name

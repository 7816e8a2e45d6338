"""The conformance kit itself: it fails deliberately broken components with the contract and the fix, passes
their repaired twins, and ``expected_failures`` turns a known failure into a strict xfail (which pytest then
reports as XFAIL, or as a failure should the case pass: see test_pytest_plugin.py)."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

import p2p_core
from p2p_core.registry import OWN_DISTRIBUTION, Registry
from p2p_core.testing import cases, parametrize_with_checks
from p2p_core.testing.checks import (
    check_generator_output_shape_and_range,
    check_loss_finite_non_negative_and_differentiable,
    check_receptive_field,
)


class UnboundedGenerator(nn.Module):
    """Forgot the final Tanh: outputs leave [-1, 1]."""

    size_multiple = 1

    def __init__(self, *, in_channels: int, out_channels: int, image_size: int, squash: bool = False) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.squash = in_channels, out_channels, squash
        self.conv = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        y = 10 * self.conv(x) + 5
        return torch.tanh(y) if self.squash else y


class ShrinkingGenerator(UnboundedGenerator):
    """Downsamples and never upsamples again."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.tanh(self.conv(x))[..., ::2, ::2]


class MisdeclaredDiscriminator(nn.Module):
    """One 4x4 convolution, so each logit sees 4 pixels, but it claims the 70 of the paper's PatchGAN."""

    def __init__(self, *, in_channels: int, receptive_field: int = 70) -> None:
        super().__init__()
        self.in_channels, self.receptive_field = in_channels, receptive_field
        self.conv = nn.Conv2d(in_channels, 1, 4)

    def output_size(self, input_size: int) -> int:
        return input_size - 3

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class NegativeLoss:
    """The unbounded -mean(D(fake)) of a WGAN critic, which p2p's objective contract rules out."""

    discriminator_input = "output"

    def __init__(self, *, shift: float = 0.0) -> None:
        self.shift = shift

    def generator_loss(self, *, x: Tensor, fake: Tensor, target: Tensor, disc) -> Tensor:
        return self.shift - disc(fake).mean() - 10

    def discriminator_loss(self, *, x: Tensor, fake: Tensor, target: Tensor, disc) -> Tensor:
        return (disc(fake) - disc(target)).abs().mean()


class BrokenPlugin:
    @p2p_core.hookimpl
    def p2p_generators(self):
        return {"unbounded": UnboundedGenerator, "shrinking": ShrinkingGenerator}

    @p2p_core.hookimpl
    def p2p_discriminators(self):
        return {"misdeclared": MisdeclaredDiscriminator}

    @p2p_core.hookimpl
    def p2p_losses(self):
        return {"negative": NegativeLoss}


def broken_registry() -> Registry:
    """p2p's built-ins (the kit's config check builds p2p's parser, which needs them) and the broken components."""
    registry = Registry()
    registry.load_entry_points(allow=[OWN_DISTRIBUTION])
    registry.register(BrokenPlugin(), name="broken", distribution="broken-components", version="0")
    return registry


def _case(component: str, check, options: dict | None = None):
    (case,) = [c for c in cases([component], registry=broken_registry(), options={component: options or {}}) if c.check is check]
    return case


@pytest.mark.parametrize(
    ("component", "check", "contract", "found", "fix"),
    [
        ("generator:unbounded", check_generator_output_shape_and_range, "outputs in [-1, 1]", "range [", "end the network with Tanh"),
        ("generator:shrinking", check_generator_output_shape_and_range, "output shape N x out_channels x H x W", "expected",
         "keep the spatial size"),
        ("discriminator:misdeclared", check_receptive_field, "receptive_field matches the network", "declared 70, measured 4 pixels",
         "compute receptive_field from the layers"),
        ("loss:negative", check_loss_finite_non_negative_and_differentiable, "generator_loss is a finite scalar >= 0", "tensor(-",
         "reduce with mean(); use a loss bounded below by 0"),
    ],
)
def test_a_broken_component_fails_with_the_contract_and_the_fix(component, check, contract, found, fix):
    kind, name = component.split(":")
    with pytest.raises(AssertionError) as failure:
        _case(component, check).run()
    headline, found_line, fix_line = str(failure.value).splitlines()
    assert headline == f"{kind} {name!r} (broken-components) breaks the contract: {contract}"
    assert found_line.startswith("  found: ") and found in found_line
    assert fix_line.startswith(f"  fix: {fix}")


@pytest.mark.parametrize(
    ("component", "check", "repair"),
    [
        ("generator:unbounded", check_generator_output_shape_and_range, {"squash": True}),
        ("discriminator:misdeclared", check_receptive_field, {"receptive_field": 4}),
        ("loss:negative", check_loss_finite_non_negative_and_differentiable, {"shift": 1000.0}),
    ],
)
def test_the_same_check_passes_once_the_component_is_repaired(component, check, repair):
    _case(component, check, repair).run()


def test_expected_failures_become_strict_xfails():
    mark = parametrize_with_checks(
        ["generator:unbounded"],
        registry=broken_registry(),
        expected_failures={
            "check_generator_output_shape_and_range": "no Tanh yet",  # by check name
            "generator:unbounded-check_state_dict_round_trip": "believed broken",  # by case id
        },
    )
    argnames, params = mark.args
    assert argnames == "case"
    xfails = {p.id: [(m.kwargs["reason"], m.kwargs["strict"]) for m in p.marks if m.name == "xfail"] for p in params}
    assert xfails == {
        "generator:unbounded-check_generator_output_shape_and_range": [("no Tanh yet", True)],
        "generator:unbounded-check_generator_size_multiple": [],
        "generator:unbounded-check_generator_eval_is_deterministic": [],
        "generator:unbounded-check_gradients_reach_every_parameter": [],
        "generator:unbounded-check_state_dict_round_trip": [("believed broken", True)],
        "generator:unbounded-check_options_round_trip_through_config": [],
    }

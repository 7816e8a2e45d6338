"""The kit on discriminators of several scales and on loss terms that read features (#14, point 4): the
repaired components pass, and deliberately broken ones fail with the contract, what was found, and the fix."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import p2p_core
from p2p_core.protocols import DiscriminatorOutput
from p2p_core.registry import OWN_DISTRIBUTION, Registry
from p2p_core.testing import cases
from p2p_core.testing.checks import (
    check_discriminator_every_scale_sees_the_input,
    check_discriminator_output_grid,
    check_loss_finite_non_negative_and_differentiable,
    check_loss_with_multiscale_features,
    check_receptive_field,
)


class Scales(nn.Module):
    """Two 4x4 stride-2 convolutions and a 3x3 head per scale, the second scale on the input average-pooled by 2.

    ``broken`` names one way to get it wrong; "" is the correct one."""

    def __init__(self, *, in_channels: int, broken: str = "") -> None:
        super().__init__()
        self.in_channels, self.broken = in_channels, broken
        self.hidden = nn.ModuleList(nn.Conv2d(in_channels, 4, 4, 2, 1) for _ in range(2))
        self.heads = nn.ModuleList(nn.Conv2d(4, 1, 3, 1, 1) for _ in range(2))

    @property
    def receptive_field(self) -> tuple[int, ...]:
        return (8, 8) if self.broken == "field" else (8, 16)

    def output_size(self, input_size: int) -> int | tuple[int, ...]:
        if self.broken == "one_size":
            return input_size // 2
        return (input_size // 2, input_size // 2 if self.broken == "sizes" else input_size // 4)

    def forward(self, x: Tensor) -> object:
        logits, features = [], []
        for scale, (hidden, head) in enumerate(zip(self.hidden, self.heads)):
            seen = x.detach() if scale and self.broken == "detached" else x
            h = F.leaky_relu(hidden(seen), 0.2)
            logits.append(head(h))
            features.append((h.mean(0) if self.broken == "pooled_features" else h,))
            x = F.avg_pool2d(x, 2)
        if self.broken == "list":
            return logits
        return DiscriminatorOutput(logits=logits, features=features)


class Matching:
    """L1 between D's features of the real and the fake pair; ``broken`` names one way to get it wrong."""

    discriminator_input = "input+output"

    def __init__(self, *, broken: str = "") -> None:
        self.broken = broken
        self.needs = "logits" if broken == "undeclared" else "features"
        self.generator_needs_real = broken != "no_real"

    def generator_loss(self, *, x: Tensor, fake: Tensor, target: Tensor, d_fake, d_real) -> Tensor:
        layers = []
        for scale in range(len(d_fake.logits)):
            for fake_feature, real_feature in zip(d_fake.features[scale], d_real.features[scale]):
                fake_feature = fake_feature.detach() if self.broken == "detached" else fake_feature
                layers.append((fake_feature - real_feature.detach()).abs().mean())
        return torch.stack(layers) if self.broken == "per_layer" else torch.stack(layers).mean()

    def discriminator_loss(self, *, x: Tensor, fake: Tensor, target: Tensor, d_fake, d_real) -> Tensor:
        return fake.new_zeros(())


class Plugin:
    @p2p_core.hookimpl
    def p2p_discriminators(self):
        return {"scales": Scales}

    @p2p_core.hookimpl
    def p2p_losses(self):
        return {"matching": Matching}


def multi_registry() -> Registry:
    """p2p's built-ins (the kit's config check builds p2p's parser, which needs them) and these components."""
    registry = Registry()
    registry.load_entry_points(allow=[OWN_DISTRIBUTION])
    registry.register(Plugin(), name="multi", distribution="multi-components", version="0")
    return registry


def run(component: str, check, **options) -> None:
    (case,) = [c for c in cases([component], registry=multi_registry(), options={component: options}) if c.check is check]
    case.run()


def test_the_repaired_components_pass_every_check():
    for case in cases(["discriminator:scales", "loss:matching"], registry=multi_registry()):
        case.run()


@pytest.mark.parametrize(
    ("component", "check", "broken", "contract", "found", "fix"),
    [
        ("discriminator:scales", check_discriminator_output_grid, "list",
         "a discriminator returns a Tensor of logits or a DiscriminatorOutput of per-scale logits and features",
         "a list of 2 tensors", "return one tensor, or for several"),
        ("discriminator:scales", check_discriminator_output_grid, "one_size",
         "output_size gives one size per scale of logits", "1 sizes for 2 scales", "return a tuple from output_size"),
        ("discriminator:scales", check_discriminator_output_grid, "sizes",
         "logits N x 1 x output_size(H) x output_size(W)", "at scale 1 for input", "end with a 1-channel convolution"),
        ("discriminator:scales", check_discriminator_output_grid, "pooled_features",
         "features are finite tensors N x ...", "at scale 0 for input", "return the activations themselves"),
        ("discriminator:scales", check_receptive_field, "field",
         "receptive_field matches the network", "declared 8, measured 16 pixels at scale 1", "compute receptive_field"),
        ("discriminator:scales", check_discriminator_every_scale_sees_the_input, "detached",
         "every scale's logits depend on the input", "from scale 1", "compute each scale from the input"),
        ("loss:matching", check_loss_with_multiscale_features, "undeclared",
         "a term reads only what it declares (needs, generator_needs_real)", "IndexError", "say needs = 'features'"),
        ("loss:matching", check_loss_with_multiscale_features, "no_real",
         "a term reads only what it declares (needs, generator_needs_real)", "AttributeError", "say needs = 'features'"),
        ("loss:matching", check_loss_with_multiscale_features, "per_layer",
         "generator_loss is a finite scalar in its value_range [0, inf]", "tensor([", "reduce with mean()"),
        ("loss:matching", check_loss_with_multiscale_features, "detached",
         "generator_loss is differentiable in G(x)", "no finite gradient reaches fake", "do not detach fake"),
    ],
)
def test_a_broken_multiscale_component_fails_with_the_contract_and_the_fix(component, check, broken, contract, found, fix):
    kind, name = component.split(":")
    with pytest.raises(AssertionError) as failure:
        run(component, check, broken=broken)
    headline, found_line, fix_line = str(failure.value).splitlines()
    assert headline == f"{kind} {name!r} (multi-components) breaks the contract: {contract}"
    assert found_line.startswith("  found: ") and found in found_line
    assert fix_line.startswith(f"  fix: {fix}")


def test_a_feature_term_given_one_scale_gets_features_too():
    run("loss:matching", check_loss_finite_non_negative_and_differentiable)

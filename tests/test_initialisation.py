"""Who initialises the weights (#14, point 2): the engine's N(0, 0.02) reaches spectral-norm layers' stored
weights, and a component (or a part of one) that initialises itself keeps its own initialisation."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

import p2p_core
from conftest import make_spec
from p2p_core.training import Training
from p2p_core.networks import init_weights
from p2p_core.registry import Registry
from p2p_core.spec import Shapes
from p2p_patchgan import PatchGAN

SHAPES = Shapes(in_channels=3, out_channels=3, image_size=32)


def test_a_spectral_norm_layer_gets_the_papers_initialisation_where_its_weight_is_stored():
    torch.manual_seed(0)
    plain = nn.Conv2d(4, 64, 3)
    normalised = spectral_norm(nn.Conv2d(4, 64, 3))
    torch.manual_seed(1)
    init_weights(plain, 0.02)
    torch.manual_seed(1)
    init_weights(normalised, 0.02)
    assert torch.equal(normalised.parametrizations.weight.original, plain.weight)
    assert normalised.parametrizations.weight.original.std().item() == pytest.approx(0.02, rel=0.1)


def spectral_patch(*, in_channels: int, ndf: int = 8) -> PatchGAN:
    """The 70x70 PatchGAN with spectral normalisation on every convolution."""
    d = PatchGAN(in_channels=in_channels, ndf=ndf, n_layers=3, norm="none")
    for conv in [m for m in d.modules() if isinstance(m, nn.Conv2d)]:
        spectral_norm(conv)
    return d


class SelfInitialised(PatchGAN):
    """A PatchGAN whose first convolution starts from a constant, its own choice."""

    def __init__(self, *, in_channels: int, ndf: int = 8, whole: bool = False) -> None:
        super().__init__(in_channels=in_channels, ndf=ndf, n_layers=1)
        self.first = self.model[0]
        nn.init.constant_(self.first.weight, 0.5)
        if whole:
            self.initialises_itself = True
        else:
            self.first.initialises_itself = True


class Components:
    @p2p_core.hookimpl
    def p2p_discriminators(self):
        return {"spectral_patch": spectral_patch, "self_initialised": SelfInitialised}


def discriminator(disc: str, **options) -> torch.nn.Module:
    registry = Registry()
    registry.load_entry_points(allow=["p2p"])
    registry.register(Components(), name="init", distribution="p2p-fake-init", version="1.0")
    spec = make_spec(generator=("unet", {"ngf": 4}), disc=(disc, options), loss="cgan+l1")
    return Training.build(spec, SHAPES, total_steps=1, registry=registry).networks["discriminator"]


def test_the_engine_initialises_a_spectral_norm_discriminator_in_what_its_checkpoint_keeps():
    d = discriminator("spectral_patch")
    stored = d.state_dict()["model.0.parametrizations.weight.original"]
    assert stored.std().item() == pytest.approx(0.02, rel=0.1) and abs(stored.mean().item()) < 0.005


def test_after_the_engines_initialisation_spectral_norm_normalises_to_one_from_the_first_step():
    d = discriminator("spectral_patch").train()
    with torch.no_grad():
        d(torch.rand(1, 6, 32, 32) * 2 - 1)  # one training forward: one power iteration, as in the first step
    for conv in [m for m in d.modules() if isinstance(m, nn.Conv2d)]:
        largest = torch.linalg.matrix_norm(conv.weight.flatten(1), ord=2).item()
        assert largest == pytest.approx(1.0, abs=0.05)


def test_a_part_that_initialises_itself_keeps_its_initialisation_and_the_rest_gets_the_papers():
    d = discriminator("self_initialised")
    assert torch.equal(d.first.weight, torch.full_like(d.first.weight, 0.5))
    second = d.model[2].weight
    assert second.std().item() == pytest.approx(0.02, rel=0.1)


def test_a_component_that_initialises_itself_is_left_alone_entirely():
    d = discriminator("self_initialised", whole=True)
    assert torch.equal(d.first.weight, torch.full_like(d.first.weight, 0.5))
    # PyTorch's own initialisation of the second convolution: uniform within 1/sqrt(fan_in), not N(0, 0.02).
    second = d.model[2].weight
    bound = 1 / math.sqrt(second[0].numel())
    assert second.abs().max() <= bound and second.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.15)

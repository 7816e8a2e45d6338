"""The paper's objective terms: conditional and unconditional GAN (on logits, averaged over a multi-scale
discriminator's scales), and L1 with lambda = 100; and beside them the Wasserstein critic's term and the two
gradient penalties that keep a discriminator smooth, R1 and WGAN-GP."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

import p2p_core
from p2p_core.protocols import DiscriminatorOutput


def _bce(output: DiscriminatorOutput, real: bool) -> Tensor:
    """Cross-entropy of every scale's logits against "real" or "fake", averaged over the scales."""
    losses = [F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, float(real))) for logits in output.logits]
    return sum(losses) / len(losses)


class AdversarialLoss:
    """log D(real) + log(1 - D(fake)) for D; the non-saturating -log D(fake) for G, as in the paper."""

    needs = "logits"

    def __init__(self, *, conditional: bool, weight: float = 1.0) -> None:
        self.conditional = conditional
        self.weight = weight
        self.discriminator_input = "input+output" if conditional else "output"

    def generator_loss(
        self, *, x: Tensor, fake: Tensor, target: Tensor, d_fake: DiscriminatorOutput, d_real: DiscriminatorOutput | None
    ) -> Tensor:
        return self.weight * _bce(d_fake, real=True)

    def discriminator_loss(
        self, *, x: Tensor, fake: Tensor, target: Tensor, d_fake: DiscriminatorOutput, d_real: DiscriminatorOutput
    ) -> Tensor:
        return self.weight * (_bce(d_real, real=True) + _bce(d_fake, real=False))


class L1Loss:
    """lambda * mean |G(x) - y|: keeps the output close to the target at low frequencies."""

    discriminator_input = "none"
    needs = "nothing"

    def __init__(self, *, weight: float = 100.0) -> None:
        self.weight = weight

    def generator_loss(self, *, x: Tensor, fake: Tensor, target: Tensor, d_fake: None, d_real: None) -> Tensor:
        return self.weight * F.l1_loss(fake, target)

    def discriminator_loss(self, *, x: Tensor, fake: Tensor, target: Tensor, d_fake: None, d_real: None) -> Tensor:
        return fake.new_zeros(())


class WassersteinLoss:
    """The Wasserstein critic (Arjovsky et al. 2017): D minimises mean D(fake) - mean D(real), G minimises
    -mean D(fake), each scale's mean averaged over the scales. Unbounded both ways (so it declares its range); pair
    it with a gradient penalty (wgan_gp, r1) that keeps D smooth."""

    needs = "logits"
    value_range = (-math.inf, math.inf)

    def __init__(self, *, conditional: bool, weight: float) -> None:
        self.weight = weight
        self.discriminator_input = "input+output" if conditional else "output"

    def generator_loss(
        self, *, x: Tensor, fake: Tensor, target: Tensor, d_fake: DiscriminatorOutput, d_real: DiscriminatorOutput | None
    ) -> Tensor:
        return -self.weight * _mean(d_fake)

    def discriminator_loss(
        self, *, x: Tensor, fake: Tensor, target: Tensor, d_fake: DiscriminatorOutput, d_real: DiscriminatorOutput
    ) -> Tensor:
        return self.weight * (_mean(d_fake) - _mean(d_real))


def _mean(output: DiscriminatorOutput) -> Tensor:
    """The mean logit of each scale, averaged over the scales."""
    # In float32 under bf16 autocast too: the critic's loss is the difference of two close means, which bf16's
    # 8 bits of precision would round away.
    return torch.stack([logits.float().mean() for logits in output.logits]).mean()


class GradientPenalty:
    """D's gradient with respect to the image it judges, penalised: R1's ``gamma / 2 * E ||grad||^2`` at real pairs
    (Mescheder et al. 2018), or WGAN-GP's ``weight * E (||grad|| - 1)^2`` between real and fake ones (Gulrajani et
    al. 2017). p2p computes the gradient once for every penalty (see p2p_core.protocols.Penalty); no generator side."""

    needs = "nothing"

    def __init__(self, *, penalises: Literal["real", "interpolated"], conditional: bool, weight: float) -> None:
        self.penalises, self.weight = penalises, weight
        self.discriminator_input = "input+output" if conditional else "output"

    def discriminator_loss(
        self, *, x: Tensor, fake: Tensor, target: Tensor, d_fake: None, d_real: None, gradient: Tensor
    ) -> Tensor:
        squared = gradient.pow(2).flatten(1).sum(dim=1)
        if self.penalises == "real":
            return self.weight / 2 * squared.mean()
        # The square root's derivative is infinite at 0, where a flat D's gradient can be: sqrt(0 + tiny) is not.
        return self.weight * ((squared + torch.finfo(squared.dtype).tiny).sqrt() - 1).pow(2).mean()


def cgan(*, weight: float = 1.0) -> AdversarialLoss:
    """Conditional GAN term: D sees the input and the (real or generated) output."""
    return AdversarialLoss(conditional=True, weight=weight)


def gan(*, weight: float = 1.0) -> AdversarialLoss:
    """Unconditional GAN term: D sees only the (real or generated) output."""
    return AdversarialLoss(conditional=False, weight=weight)


def l1(*, weight: float = 100.0) -> L1Loss:
    """L1 distance to the target, weighted by lambda (100 in the paper)."""
    return L1Loss(weight=weight)


def wgan(*, conditional: bool = True, weight: float = 1.0) -> WassersteinLoss:
    """Wasserstein GAN term: D maximises mean D(real) - mean D(fake); negative values are normal. Use with wgan_gp."""
    return WassersteinLoss(conditional=conditional, weight=weight)


def r1(*, gamma: float = 10.0, conditional: bool = True) -> GradientPenalty:
    """R1 penalty: gamma / 2 * E ||grad D(real)||^2, for D alone (set conditional as the GAN term's)."""
    return GradientPenalty(penalises="real", conditional=conditional, weight=gamma)


def wgan_gp(*, weight: float = 10.0, conditional: bool = True) -> GradientPenalty:
    """WGAN-GP penalty: weight * E (||grad D(eps real + (1 - eps) fake)|| - 1)^2, for D alone."""
    return GradientPenalty(penalises="interpolated", conditional=conditional, weight=weight)


@p2p_core.hookimpl
def p2p_losses():
    return {"cgan": cgan, "gan": gan, "l1": l1, "wgan": wgan, "r1": r1, "wgan_gp": wgan_gp}

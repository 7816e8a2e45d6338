"""The paper's objective terms: conditional and unconditional GAN (on logits, averaged over a multi-scale
discriminator's scales), and L1 with lambda = 100."""

from __future__ import annotations

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


def cgan(*, weight: float = 1.0) -> AdversarialLoss:
    """Conditional GAN term: D sees the input and the (real or generated) output."""
    return AdversarialLoss(conditional=True, weight=weight)


def gan(*, weight: float = 1.0) -> AdversarialLoss:
    """Unconditional GAN term: D sees only the (real or generated) output."""
    return AdversarialLoss(conditional=False, weight=weight)


def l1(*, weight: float = 100.0) -> L1Loss:
    """L1 distance to the target, weighted by lambda (100 in the paper)."""
    return L1Loss(weight=weight)


@p2p_core.hookimpl
def p2p_losses():
    return {"cgan": cgan, "gan": gan, "l1": l1}

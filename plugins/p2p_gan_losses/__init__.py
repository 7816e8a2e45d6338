"""The paper's objective terms: conditional and unconditional GAN (on logits), and L1 with lambda = 100."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

import p2p_core
from p2p_core.protocols import DiscriminatorFn


class AdversarialLoss:
    """log D(real) + log(1 - D(fake)) for D; the non-saturating -log D(fake) for G, as in the paper."""

    def __init__(self, *, conditional: bool, weight: float = 1.0) -> None:
        self.conditional = conditional
        self.weight = weight
        self.discriminator_input = "input+output" if conditional else "output"

    def _logits(self, disc: DiscriminatorFn, x: Tensor, y: Tensor) -> Tensor:
        return disc(torch.cat([x, y], dim=1) if self.conditional else y)

    def generator_loss(self, *, x: Tensor, fake: Tensor, target: Tensor, disc: DiscriminatorFn | None) -> Tensor:
        logits = self._logits(disc, x, fake)
        return self.weight * F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))

    def discriminator_loss(self, *, x: Tensor, fake: Tensor, target: Tensor, disc: DiscriminatorFn) -> Tensor:
        real_logits = self._logits(disc, x, target)
        fake_logits = self._logits(disc, x, fake)
        real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
        return self.weight * (real + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))


class L1Loss:
    """lambda * mean |G(x) - y|: keeps the output close to the target at low frequencies."""

    discriminator_input = "none"

    def __init__(self, *, weight: float = 100.0) -> None:
        self.weight = weight

    def generator_loss(self, *, x: Tensor, fake: Tensor, target: Tensor, disc: DiscriminatorFn | None) -> Tensor:
        return self.weight * F.l1_loss(fake, target)

    def discriminator_loss(self, *, x: Tensor, fake: Tensor, target: Tensor, disc: DiscriminatorFn) -> Tensor:
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

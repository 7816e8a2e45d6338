"""Two adversarial objective terms that replace the paper's cross-entropy one: least squares and hinge.

Both are conditional by default, like the paper's cGAN term: the discriminator sees the input beside the real
or generated output. Both stay >= 0, as p2p's Loss contract asks, so that the logged terms compare.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from p2p_core.protocols import DiscriminatorOutput


def _per_scale(output: DiscriminatorOutput, loss: Callable[[Tensor], Tensor]) -> Tensor:
    """``loss`` of each scale's scores, averaged over the scales of a multi-scale discriminator."""
    return torch.stack([loss(scores) for scores in output.logits]).mean()


class _AdversarialTerm:
    """What the terms share: what the discriminator is shown, and the term's weight in the objective.

    p2p runs the discriminator and hands the terms its scores on the real pair (``d_real``) and the fake one
    (``d_fake``); these terms read the scores (logits), not the features.
    """

    needs = "logits"

    def __init__(self, *, conditional: bool = True, weight: float = 1.0) -> None:
        self.conditional = conditional
        self.weight = weight
        self.discriminator_input = "input+output" if conditional else "output"


class LeastSquaresLoss(_AdversarialTerm):
    """LSGAN (Mao et al. 2017): D regresses real patches to 1 and fakes to 0; G pulls D(fake) towards 1."""

    def generator_loss(self, *, x: Tensor, fake: Tensor, target: Tensor, d_fake: DiscriminatorOutput, d_real: None) -> Tensor:
        return self.weight * _per_scale(d_fake, lambda scores: (scores - 1).pow(2).mean())

    def discriminator_loss(
        self, *, x: Tensor, fake: Tensor, target: Tensor, d_fake: DiscriminatorOutput, d_real: DiscriminatorOutput
    ) -> Tensor:
        real_term = _per_scale(d_real, lambda scores: (scores - 1).pow(2).mean())
        return self.weight * (real_term + _per_scale(d_fake, lambda scores: scores.pow(2).mean()))


class HingeLoss(_AdversarialTerm):
    """Hinge GAN: D pushes real scores above +1 and fakes below -1; G raises D(fake) up to the margin."""

    def generator_loss(self, *, x: Tensor, fake: Tensor, target: Tensor, d_fake: DiscriminatorOutput, d_real: None) -> Tensor:
        # The usual -mean(D(fake)) is unbounded below, which the Loss contract forbids. relu(1 - D(fake)) gives
        # the same gradient wherever D scores a fake below the margin, and none where it already scores above.
        return self.weight * _per_scale(d_fake, lambda scores: F.relu(1 - scores).mean())

    def discriminator_loss(
        self, *, x: Tensor, fake: Tensor, target: Tensor, d_fake: DiscriminatorOutput, d_real: DiscriminatorOutput
    ) -> Tensor:
        real_term = _per_scale(d_real, lambda scores: F.relu(1 - scores).mean())
        return self.weight * (real_term + _per_scale(d_fake, lambda scores: F.relu(1 + scores).mean()))

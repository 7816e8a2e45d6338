"""Two adversarial objective terms that replace the paper's cross-entropy one: least squares and hinge.

Both are conditional by default, like the paper's cGAN term: the discriminator sees the input beside the real
or generated output. Both stay >= 0, as p2p's Loss contract asks, so that the logged terms compare.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from p2p_core.protocols import DiscriminatorFn


class _AdversarialTerm:
    """What the terms share: what the discriminator is shown, and the term's weight in the objective."""

    def __init__(self, *, conditional: bool = True, weight: float = 1.0) -> None:
        self.conditional = conditional
        self.weight = weight
        self.discriminator_input = "input+output" if conditional else "output"

    def _scores(self, disc: DiscriminatorFn | None, x: Tensor, y: Tensor) -> Tensor:
        if disc is None:
            raise ValueError(f"{type(self).__name__} needs the discriminator; the engine passes it for adversarial terms")
        return disc(torch.cat([x, y], dim=1) if self.conditional else y)


class LeastSquaresLoss(_AdversarialTerm):
    """LSGAN (Mao et al. 2017): D regresses real patches to 1 and fakes to 0; G pulls D(fake) towards 1."""

    def generator_loss(self, *, x: Tensor, fake: Tensor, target: Tensor, disc: DiscriminatorFn | None) -> Tensor:
        return self.weight * (self._scores(disc, x, fake) - 1).pow(2).mean()

    def discriminator_loss(self, *, x: Tensor, fake: Tensor, target: Tensor, disc: DiscriminatorFn) -> Tensor:
        real_term = (self._scores(disc, x, target) - 1).pow(2).mean()
        return self.weight * (real_term + self._scores(disc, x, fake).pow(2).mean())


class HingeLoss(_AdversarialTerm):
    """Hinge GAN: D pushes real scores above +1 and fakes below -1; G raises D(fake) up to the margin."""

    def generator_loss(self, *, x: Tensor, fake: Tensor, target: Tensor, disc: DiscriminatorFn | None) -> Tensor:
        # The usual -mean(D(fake)) is unbounded below, which the Loss contract forbids. relu(1 - D(fake)) gives
        # the same gradient wherever D scores a fake below the margin, and none where it already scores above.
        return self.weight * F.relu(1 - self._scores(disc, x, fake)).mean()

    def discriminator_loss(self, *, x: Tensor, fake: Tensor, target: Tensor, disc: DiscriminatorFn) -> Tensor:
        real_term = F.relu(1 - self._scores(disc, x, target)).mean()
        return self.weight * (real_term + F.relu(1 + self._scores(disc, x, fake)).mean())

"""pix2pixHD's discriminator feature-matching loss: the generator matches D's intermediate features of the real
pair, which steadies training and adds detail at every scale the discriminator sees.

It reads the discriminator's features (``needs = "features"``) on the fake pair and, in the generator's step,
on the real one too (``generator_needs_real``), which p2p computes once for all terms, without gradients.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from p2p_core.protocols import DiscriminatorOutput


class FeatureMatchingLoss:
    """weight * L1 between D's features of the real and of the fake pair, averaged over layers and scales."""

    needs = "features"
    generator_needs_real = True

    def __init__(self, *, conditional: bool = True, weight: float = 10.0) -> None:
        # pix2pixHD's lambda is 10; it sums its 4 layers (weights 4 / (n_layers + 1) = 1) where this averages
        # them, so weight 40 reproduces its value for the 70x70 PatchGAN.
        self.weight = weight
        self.discriminator_input = "input+output" if conditional else "output"

    def generator_loss(
        self, *, x: Tensor, fake: Tensor, target: Tensor, d_fake: DiscriminatorOutput, d_real: DiscriminatorOutput
    ) -> Tensor:
        per_scale = [
            torch.stack([F.l1_loss(f, r.detach()) for f, r in zip(fakes, reals)]).mean()
            for fakes, reals in zip(d_fake.features, d_real.features)
        ]
        return self.weight * torch.stack(per_scale).mean()

    # No discriminator_loss: the features are the discriminator's to learn through its GAN term; matching them is
    # the generator's goal. p2p then neither calls nor logs a discriminator side of this term.

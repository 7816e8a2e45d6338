"""pix2pixHD's two feature losses: the discriminator's feature matching, and the VGG loss.

Feature matching: the generator matches D's intermediate features of the real pair, which steadies training and
adds detail at every scale the discriminator sees. It reads the discriminator's features (``needs = "features"``)
on the fake pair and, in the generator's step, on the real one too (``generator_needs_real``), which p2p computes
once for all terms, without gradients.

The VGG loss compares a fixed ImageNet network's features of the output and of the target: a term with a network
of its own, which p2p keeps fixed on the training device (the term is an ``nn.Module``; see
p2p_core.protocols.Loss).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.vgg import cfgs, make_layers

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


# pix2pixHD's five slices of VGG19's features end after relu1_1, relu2_1, relu3_1, relu4_1 and relu5_1: after these
# many entries of torchvision's configuration "E" (a number is a convolution and its ReLU, "M" a pooling), and the
# deeper slices weigh more.
SLICE_ENDS = (1, 4, 7, 12, 17)
SLICE_WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)
# The statistics the ImageNet weights were trained with, for images in [0, 1].
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class VGGLoss(nn.Module):
    """weight * sum over VGG19's slices of w_k * L1 between the features of G(x) and of the target (pix2pixHD)."""

    discriminator_input = "none"
    needs = "nothing"

    def __init__(self, *, weights: Path, slices: Literal[1, 2, 3, 4, 5] = 5, weight: float = 10.0) -> None:
        super().__init__()
        weights = Path(weights)
        if not weights.is_file():
            raise ValueError(f"no VGG19 weights at {weights}; give torchvision's vgg19-dcbb9e9d.pth, downloaded once")
        self.weight, self.slice_weights = weight, SLICE_WEIGHTS[:slices]
        config = cfgs["E"][: SLICE_ENDS[slices - 1]]
        self.features = make_layers(config)
        self.ends = [sum(2 if isinstance(v, int) else 1 for v in config[:end]) for end in SLICE_ENDS[:slices]]
        # torchvision's file holds the whole network ("features.0.weight", ..., "classifier..."): take the layers used.
        state = torch.load(weights, map_location="cpu", weights_only=True)
        wanted = self.features.state_dict()
        found = {key.removeprefix("features."): value for key, value in state.items() if key.removeprefix("features.") in wanted}
        missing = [key for key in wanted if key not in found]
        if missing:
            raise ValueError(f"{weights} lacks VGG19's features.{missing[0]} (and {len(missing) - 1} more); "
                             "give torchvision's vgg19 weights")
        self.features.load_state_dict(found)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def _slices(self, image: Tensor) -> list[Tensor]:
        # p2p's images are in [-1, 1]; the ImageNet weights expect normalised RGB in [0, 1] (pix2pixHD skips this).
        h = ((image.expand(-1, 3, -1, -1) + 1) / 2 - self.mean) / self.std
        outputs = []
        for index, layer in enumerate(self.features, start=1):
            h = layer(h)
            if index in self.ends:
                outputs.append(h)
        return outputs

    def generator_loss(self, *, x: Tensor, fake: Tensor, target: Tensor, d_fake: None, d_real: None) -> Tensor:
        with torch.no_grad():
            reals = self._slices(target)
        fakes = self._slices(fake)
        return self.weight * sum(w * F.l1_loss(f, r) for w, f, r in zip(self.slice_weights, fakes, reals))

"""The paper's discriminator family: one PatchGAN parametrised by its number of strided layers.

C64-C128-... (4x4 convolutions, stride 2, LeakyReLU 0.2, no norm on the first), then one stride-1 block
and a stride-1 convolution to one logit channel. Receptive fields: 1 strided layer -> 16, 3 -> 70, 5 -> 286.
PixelGAN is the 1-layer network with 1x1 convolutions everywhere.
"""

from __future__ import annotations

from torch import Tensor, nn

import p2p_core
from p2p_core.layers import Norm, norm_layer


class PatchGAN(nn.Module):
    """Fully convolutional discriminator that classifies each receptive-field patch as real or fake."""

    def __init__(
        self, *, in_channels: int, ndf: int = 64, n_layers: int = 3, norm: Norm = "batch", kernel_size: int = 4
    ) -> None:
        super().__init__()
        if not 1 <= n_layers <= 16:
            raise ValueError(f"n_layers must be from 1 (a 16x16 receptive field) to 16, got {str(n_layers)[:40]}")
        if not 1 <= ndf <= 65536:
            raise ValueError(f"ndf (the first layer's filters) must be from 1 to 65,536, got {str(ndf)[:40]}")
        if kernel_size not in (1, 4):
            raise ValueError(f"kernel_size must be 4 (PatchGAN) or 1 (PixelGAN), got {kernel_size}")
        self.in_channels = in_channels
        bias = norm != "batch"
        padding = 1 if kernel_size == 4 else 0
        stride = 2 if kernel_size == 4 else 1
        widths = [ndf * min(2**i, 8) for i in range(n_layers + 1)]

        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, kernel_size, stride, padding), nn.LeakyReLU(0.2)]
        for i in range(1, n_layers + 1):
            last = i == n_layers  # the last block keeps the resolution (stride 1), as in the paper
            layers += [
                nn.Conv2d(widths[i - 1], widths[i], kernel_size, 1 if last else stride, padding, bias=bias),
                norm_layer(norm, widths[i]),
                nn.LeakyReLU(0.2),
            ]
        # The reference PixelGAN's final 1x1 convolution has no bias; keeping that matches its 9,024 parameters.
        layers.append(nn.Conv2d(widths[-1], 1, kernel_size, 1, padding, bias=kernel_size > 1 or bias))
        self.model = nn.Sequential(*layers)
        self._convs = [m for m in self.model if isinstance(m, nn.Conv2d)]

    @property
    def receptive_field(self) -> int:
        field = 1
        for conv in reversed(self._convs):
            field = field * conv.stride[0] + conv.kernel_size[0] - conv.stride[0]
        return field

    def output_size(self, input_size: int) -> int:
        size = input_size
        for conv in self._convs:
            size = (size + 2 * conv.padding[0] - conv.kernel_size[0]) // conv.stride[0] + 1
        return size

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def logits_and_features(self, x: Tensor) -> tuple[Tensor, tuple[Tensor, ...]]:
        """The logits and the activation after each block, the features a feature-matching loss compares."""
        features = []
        for layer in self.model:
            x = layer(x)
            if isinstance(layer, nn.LeakyReLU):
                features.append(x)
        return x, tuple(features)


def patch(*, in_channels: int, n_layers: int = 3, ndf: int = 64, norm: Norm = "batch") -> PatchGAN:
    """PatchGAN with an explicit number of strided layers (receptive field 16, 34, 70, 142, 286, ...)."""
    return PatchGAN(in_channels=in_channels, ndf=ndf, n_layers=n_layers, norm=norm)


def pixel(*, in_channels: int, ndf: int = 64, norm: Norm = "batch") -> PatchGAN:
    """PixelGAN: 1x1 receptive field, judges colour per pixel."""
    return PatchGAN(in_channels=in_channels, ndf=ndf, n_layers=1, norm=norm, kernel_size=1)


def patch16(*, in_channels: int, ndf: int = 64, norm: Norm = "batch") -> PatchGAN:
    """PatchGAN with a 16x16 receptive field."""
    return PatchGAN(in_channels=in_channels, ndf=ndf, n_layers=1, norm=norm)


def patch70(*, in_channels: int, ndf: int = 64, norm: Norm = "batch") -> PatchGAN:
    """PatchGAN with a 70x70 receptive field (the paper's default)."""
    return PatchGAN(in_channels=in_channels, ndf=ndf, n_layers=3, norm=norm)


def image286(*, in_channels: int, ndf: int = 64, norm: Norm = "batch") -> PatchGAN:
    """ImageGAN: a 286x286 receptive field, the whole 256x256 image."""
    return PatchGAN(in_channels=in_channels, ndf=ndf, n_layers=5, norm=norm)


@p2p_core.hookimpl
def p2p_discriminators():
    return {"patch": patch, "pixel": pixel, "patch16": patch16, "patch70": patch70, "image286": image286}

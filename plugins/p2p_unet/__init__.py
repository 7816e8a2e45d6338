"""The paper's generators: U-Net and the encoder-decoder it is compared with (the same network, skips cut).

Encoder C64-C128-C256-C512-C512-... (4x4 convolutions, stride 2, LeakyReLU 0.2, no norm on the first and
innermost blocks); the decoder mirrors it with transposed convolutions and ReLU, dropout in its three
innermost blocks, and Tanh on the output. In the U-Net, decoder block i also sees encoder block n-i.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

import p2p_core
from p2p_core.layers import Norm, norm_layer

DROPOUT_BLOCKS = 3  # the paper's CD512-CD512-CD512 (CD512-CD1024-CD1024 with skips)

DropoutPlacement = Literal["paper", "reference"]
"""Which decoder blocks end in dropout: the paper's three innermost, or those the PyTorch reference
(junyanz/pytorch-CycleGAN-and-pix2pix) uses, one block further out: the ``depth - 5`` after the innermost."""


def dropout_blocks(depth: int, placement: DropoutPlacement) -> range:
    """The decoder blocks, counted from the bottleneck (0 the innermost), that end in dropout."""
    if placement == "paper":
        return range(min(DROPOUT_BLOCKS, depth - 1))
    if placement == "reference":
        # The reference's UnetGenerator gives dropout to its num_downs - 5 ngf*8 blocks between the innermost
        # one and the four it builds around them; eval mode does not see it, the paper's test-time mode does.
        return range(1, depth - 4)
    raise ValueError(f"dropout_placement must be 'paper' or 'reference', got {placement!r}")


class UNet(nn.Module):
    """U-Net: encoder-decoder with skips between layer i and n-i (the paper's generator).

    ``depth`` stride-2 blocks, by default as many as halve ``image_size`` down to a 1x1 bottleneck: 8 for 256,
    7 for 128, 9 for 512. ``dropout_placement`` "paper" puts dropout in the three decoder blocks nearest the
    bottleneck; "reference" in the ``depth - 5`` after the innermost (decoder blocks 2-4 at depth 8), as the
    PyTorch reference does, so that its imported models (``p2p_core.reference``) also match in the paper's
    test-time mode. Both have the same parameters.
    """

    skips = True

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        image_size: int,
        ngf: int = 64,
        norm: Norm = "batch",
        dropout: float = 0.5,
        depth: int | None = None,
        dropout_placement: DropoutPlacement = "paper",
    ) -> None:
        super().__init__()
        fitting = max(2, int(math.log2(image_size)))
        if depth is None:
            depth = fitting
        elif depth < 2:
            raise ValueError(
                f"depth (stride-2 blocks) must be at least 2, got {str(depth)[:40]}; leave it unset to fit the image size "
                f"({fitting} for {image_size})"
            )
        if depth > 16:  # 16 halvings already need images of 65,536 pixels a side
            raise ValueError(f"depth must be from 2 to 16, got {str(depth)[:40]}")
        if not 1 <= ngf <= 65536:
            raise ValueError(f"ngf (the first layer's filters) must be from 1 to 65,536, got {str(ngf)[:40]}")
        self.in_channels, self.out_channels, self.depth = in_channels, out_channels, depth
        self.size_multiple = 2**depth
        # BatchNorm's shift makes a bias redundant; InstanceNorm (no affine) and no norm need one.
        bias = norm != "batch"
        widths = [ngf * min(2**i, 8) for i in range(depth)]
        dropped = dropout_blocks(depth, dropout_placement)

        self.encoder = nn.ModuleList()
        for i, width in enumerate(widths):
            outermost, innermost = i == 0, i == depth - 1
            self.encoder.append(
                nn.Sequential(
                    nn.Identity() if outermost else nn.LeakyReLU(0.2),
                    nn.Conv2d(in_channels if outermost else widths[i - 1], width, 4, 2, 1, bias=bias),
                    nn.Identity() if outermost or innermost else norm_layer(norm, width),
                )
            )

        self.decoder = nn.ModuleList()
        for i in reversed(range(depth)):
            innermost, outermost = i == depth - 1, i == 0
            joined = widths[i] * (2 if self.skips and not innermost else 1)
            out = out_channels if outermost else widths[i - 1]
            self.decoder.append(
                nn.Sequential(
                    nn.ReLU(),
                    nn.ConvTranspose2d(joined, out, 4, 2, 1, bias=bias or outermost),
                    nn.Tanh() if outermost else norm_layer(norm, out),
                    nn.Dropout(dropout) if depth - 1 - i in dropped else nn.Identity(),
                )
            )

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] % self.size_multiple or x.shape[-2] % self.size_multiple:
            raise ValueError(
                f"input {x.shape[-2]}x{x.shape[-1]} is not a multiple of {self.size_multiple} "
                f"(2**depth, depth {self.depth}); resize or pad it, or build the generator for a smaller image_size"
            )
        features = []
        for block in self.encoder:
            x = block(x)
            features.append(x)
        for level, block in zip(reversed(range(self.depth)), self.decoder):
            if self.skips and level < self.depth - 1:
                x = torch.cat([x, features[level]], dim=1)
            x = block(x)
        return x


class EncoderDecoder(UNet):
    """Encoder-decoder: the U-Net with its skip connections cut (the paper's ablation)."""

    skips = False


@p2p_core.hookimpl
def p2p_generators():
    return {"unet": UNet, "encoder_decoder": EncoderDecoder}

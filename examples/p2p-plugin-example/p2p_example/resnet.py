"""The ResNet generator of Johnson et al. (2016) as CycleGAN and pix2pix use it, in their layer notation:

c7s1-64, d128, d256, R256 x n_blocks, u128, u64, c7s1-out, then Tanh.

c7s1-k: 7x7 convolution, stride 1, k filters, norm, ReLU. dk: 3x3 convolution, stride 2, norm, ReLU.
Rk: residual block of two 3x3 convolutions with k filters. uk: 3x3 transposed convolution, stride 2, norm, ReLU.
Every stride-1 convolution is padded by reflection rather than zeros, which avoids dark borders in the output.

The module's layout (one Sequential ``model``, residual blocks at the same indices, the dropout of
``use_dropout`` between a block's ReLU and second padding) is the reference's ResnetGenerator's
(junyanz/pytorch-CycleGAN-and-pix2pix), so its weights load here under a renaming of ``conv_block`` to ``body``.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

from p2p_core.layers import Norm, norm_layer

DOWNSAMPLINGS = 2  # d128 and d256
ConvBias = Literal["unnormalised", "all"]
"""Which convolutions have a bias: those no norm layer follows (a norm subtracts the per-channel mean, which cancels
a bias), or all of them, as the reference's ResnetGenerator has under instance norm."""


def _biased(norm: Norm, conv_bias: ConvBias) -> bool:
    """Whether the convolutions that ``norm`` follows have a bias."""
    return norm == "none" or conv_bias == "all"


class ResidualBlock(nn.Module):
    """x + F(x), where F is two reflection-padded 3x3 convolutions with norm and a ReLU between them (and dropout
    after the ReLU, when ``dropout`` > 0)."""

    def __init__(self, *, channels: int, norm: Norm, conv_bias: ConvBias = "unnormalised", dropout: float = 0.0) -> None:
        super().__init__()
        bias = _biased(norm, conv_bias)
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3, bias=bias),
            norm_layer(norm, channels),
            nn.ReLU(),
            *([nn.Dropout(dropout)] if dropout else []),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3, bias=bias),
            norm_layer(norm, channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """c7s1-ngf, d(2 ngf), d(4 ngf), n_blocks residual blocks, u(2 ngf), u(ngf), c7s1-out_channels, Tanh."""

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        ngf: int = 64,
        norm: Norm = "batch",
        n_blocks: int = 9,
        dropout: float = 0.0,
        conv_bias: ConvBias = "unnormalised",
    ) -> None:
        super().__init__()
        if n_blocks < 0:
            raise ValueError(f"n_blocks must be >= 0 (9 for 256x256 images, 6 for 128x128), got {n_blocks}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1) (0.5 is the reference's use_dropout), got {dropout}")
        self.in_channels, self.out_channels = in_channels, out_channels
        # Two stride-2 downsamplings make 4 the divisor of H and W. The residual blocks' reflection padding and
        # the norm layers need a bottleneck of at least 2x2, though, so 4x4 inputs fail; 8 is the multiple for
        # which every size works, which is what the Generator protocol promises.
        self.size_multiple = 2 * 2**DOWNSAMPLINGS
        bias = _biased(norm, conv_bias)
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(in_channels, ngf, 7, bias=bias),
            norm_layer(norm, ngf),
            nn.ReLU(),
        ]
        for i in range(DOWNSAMPLINGS):
            width = ngf * 2**i
            layers += [nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=bias), norm_layer(norm, 2 * width), nn.ReLU()]
        block = {"channels": ngf * 2**DOWNSAMPLINGS, "norm": norm, "conv_bias": conv_bias, "dropout": dropout}
        layers += [ResidualBlock(**block) for _ in range(n_blocks)]
        for i in reversed(range(DOWNSAMPLINGS)):
            width = ngf * 2**i
            # output_padding=1 makes each transposed convolution exactly double the size.
            layers += [
                nn.ConvTranspose2d(2 * width, width, 3, stride=2, padding=1, output_padding=1, bias=bias),
                norm_layer(norm, width),
                nn.ReLU(),
            ]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        height, width = x.shape[-2:]
        divisor = 2**DOWNSAMPLINGS
        if height % divisor or width % divisor or min(height, width) < self.size_multiple:
            raise ValueError(
                f"input {height}x{width}: the ResNet generator needs H and W to be multiples of {divisor} and at least "
                f"{self.size_multiple}; resize or crop the images (--data.crop_size)"
            )
        return self.model(x)


def resnet9(
    *,
    in_channels: int,
    out_channels: int,
    image_size: int,
    ngf: int = 64,
    norm: Norm = "batch",
    n_blocks: int = 9,
    dropout: float = 0.0,
    conv_bias: ConvBias = "unnormalised",
) -> ResnetGenerator:
    """ResNet generator: two downsamplings, residual blocks, two upsamplings (CycleGAN's resnet_9blocks)."""
    # Fully convolutional: the training size changes nothing in the network, so the engine's image_size is unused.
    del image_size
    return ResnetGenerator(in_channels=in_channels, out_channels=out_channels, ngf=ngf, norm=norm, n_blocks=n_blocks,
                           dropout=dropout, conv_bias=conv_bias)

"""pix2pixHD's multi-scale discriminator: K of p2p's PatchGANs, the k-th judging the input average-pooled k times.

Each pooling is 3x3 with stride 2 and padding 1, not counting the padding (count_include_pad=False), as in
pix2pixHD. A coarser scale sees more of the image through the same network: the 70x70 PatchGAN's field grows to
141 pixels at the second scale and 283 at the third. Every scale's intermediate activations are its features,
for the feature-matching loss.
"""

from __future__ import annotations

from torch import Tensor, nn

from p2p_core.layers import Norm
from p2p_core.protocols import DiscriminatorOutput
from p2p_patchgan import PatchGAN


class MultiscaleDiscriminator(nn.Module):
    """``scales`` PatchGANs of their own weights, on the input at full size, half size, a quarter, ..."""

    def __init__(self, *, in_channels: int, scales: int = 2, ndf: int = 64, n_layers: int = 3, norm: Norm = "batch") -> None:
        super().__init__()
        if scales < 1:
            raise ValueError(f"scales must be at least 1 (pix2pixHD uses 2 or 3), got {scales}")
        self.in_channels = in_channels
        self.scales = nn.ModuleList(
            PatchGAN(in_channels=in_channels, ndf=ndf, n_layers=n_layers, norm=norm) for _ in range(scales)
        )
        self.downsample = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)

    @property
    def receptive_field(self) -> tuple[int, ...]:
        # Each pooling before a scale widens its field by rf * stride + (kernel - stride) = 2 rf + 1.
        fields = []
        for k, patchgan in enumerate(self.scales):
            field = patchgan.receptive_field
            for _ in range(k):
                field = 2 * field + 1
            fields.append(field)
        return tuple(fields)

    def output_size(self, input_size: int) -> tuple[int, ...]:
        sizes, size = [], input_size
        for k, patchgan in enumerate(self.scales):
            if k:
                size = (size - 1) // 2 + 1  # the pooling: (size + 2 * 1 - 3) // 2 + 1
            sizes.append(patchgan.output_size(size))
        return tuple(sizes)

    def forward(self, x: Tensor) -> DiscriminatorOutput:
        logits, features = [], []
        for k, patchgan in enumerate(self.scales):
            if k:
                x = self.downsample(x)
            scale_logits, scale_features = patchgan.logits_and_features(x)
            logits.append(scale_logits)
            features.append(scale_features)
        return DiscriminatorOutput(logits=logits, features=features)


def multiscale(
    *, in_channels: int, scales: int = 2, ndf: int = 64, n_layers: int = 3, norm: Norm = "batch"
) -> MultiscaleDiscriminator:
    """pix2pixHD's multi-scale PatchGAN: one 70x70 PatchGAN per scale, each on the image downsampled by 2 once more."""
    return MultiscaleDiscriminator(in_channels=in_channels, scales=scales, ndf=ndf, n_layers=n_layers, norm=norm)

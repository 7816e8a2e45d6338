"""The contracts of the four component kinds.

A plugin implements them structurally (no base class to inherit); `p2p_core.testing` checks them.
Images are float tensors N x C x H x W with values in [-1, 1].
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Protocol, runtime_checkable

if TYPE_CHECKING:
    from torch import Tensor


@runtime_checkable
class Generator(Protocol):
    """Translates a batch N x in_channels x H x W into N x out_channels x H x W, values in [-1, 1].

    Implementations are ``torch.nn.Module``s.
    Factories receive ``in_channels``, ``out_channels`` and ``image_size`` (the training side length) from
    the engine; every other keyword is a user option. ``size_multiple`` is what H and W must be divisible by,
    and every such size must work down to one multiple (an input size_multiple x size_multiple, batch 1, in
    training mode): p2p pads images up to the next multiple, so a network whose smallest input is larger than
    its divisor declares that smallest side (a multiple of the divisor) as its ``size_multiple``.
    """

    in_channels: int
    out_channels: int
    size_multiple: int

    def __call__(self, x: Tensor) -> Tensor: ...


@runtime_checkable
class Discriminator(Protocol):
    """Maps a batch N x in_channels x H x W to patch logits N x 1 x h x w.

    Implementations are ``torch.nn.Module``s.
    Factories receive ``in_channels`` from the engine. ``receptive_field`` is the side of the input square
    that one output logit sees; ``output_size(n)`` is the logit grid side for an n x n input.
    """

    in_channels: int
    receptive_field: int

    def output_size(self, input_size: int) -> int: ...

    def __call__(self, x: Tensor) -> Tensor: ...


class Sample(NamedTuple):
    """One aligned pair: ``a`` is the generator's input, ``b`` its target (after any direction swap).

    ``labels``, where a dataset knows them, is the scene's class map: an H x W LongTensor aligned with both
    images (jittered with them), its values indices into the dataset's ``classes``. It is what an FCN-score
    scorer (``p2p_core.scoring``) learns and is measured against; datasets without labels leave it None.
    """

    a: Tensor
    b: Tensor
    path: str
    labels: Tensor | None = None


@runtime_checkable
class PairedDataset(Protocol):
    """An indexable collection of aligned pairs, each C x H x W in [-1, 1].

    Implementations are ``torch.utils.data.Dataset``s.
    Factories receive ``split`` ("train", "val" or "test") from the engine; random jitter applies to
    "train" only, and the same crop and flip always apply to both halves of a pair.
    """

    in_channels: int
    out_channels: int
    image_size: int
    root: Path | None

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Sample: ...


class DiscriminatorFn(Protocol):
    def __call__(self, x: Tensor) -> Tensor: ...


@runtime_checkable
class Loss(Protocol):
    """One term of the objective, e.g. the cGAN term or lambda * L1.

    ``discriminator_input`` says what an adversarial term shows the discriminator: "none" for a term that
    needs no discriminator (L1), "output" for an unconditional GAN (D sees y or G(x)), "input+output" for
    a conditional one (D sees x concatenated with y or G(x)). Both methods return a scalar; the engine sums
    the generator terms and halves the sum of the discriminator terms, as in the paper.
    """

    discriminator_input: str

    def generator_loss(self, *, x: Tensor, fake: Tensor, target: Tensor, disc: DiscriminatorFn | None) -> Tensor: ...

    def discriminator_loss(self, *, x: Tensor, fake: Tensor, target: Tensor, disc: DiscriminatorFn) -> Tensor: ...

"""Deprecated: training moved to :mod:`p2p_core.training` (what every method needs: networks, optimizers, updates,
state) and the built-in plugin ``p2p_pix2pix`` (pix2pix's step, the method ``pix2pix``).

:class:`Pix2Pix` keeps the old interface working, with a DeprecationWarning: ``Pix2Pix.build(run, shapes, ...)``,
``train_step(x, target)``, and the ``generator``, ``discriminator``, ``models``, ``objective`` and ``last``
attributes of a pix2pix run.
"""

from __future__ import annotations

import warnings
from typing import Any

from torch import Tensor, nn

from p2p_core.protocols import Sample
from p2p_core.training import Training


class Pix2Pix(Training):
    """Deprecated: a :class:`~p2p_core.training.Training` of the ``pix2pix`` method, with its old attributes."""

    @classmethod
    def build(cls, *args: Any, **kwargs: Any) -> Pix2Pix:
        """Deprecated: :meth:`Training.build`, whose arguments it takes."""
        warnings.warn("p2p_core.model.Pix2Pix is deprecated; use p2p_core.training.Training.build (the method is the "
                      "run's --method, pix2pix by default)", DeprecationWarning, stacklevel=2)
        return super().build(*args, **kwargs)

    def train_step(self, x: Tensor | Sample, target: Tensor | None = None) -> dict[str, float]:
        return super().train_step(x if target is None else Sample(a=x, b=target, path=""))

    @property
    def generator(self) -> nn.Module:
        return self.networks["generator"]

    @property
    def discriminator(self) -> nn.Module | None:
        return self.networks.get("discriminator")

    @property
    def models(self) -> dict[str, nn.Module | None]:
        return {"generator": self.generator, "discriminator": self.discriminator}

    @property
    def objective(self) -> Any:
        return self.method.objective

    @property
    def last(self) -> tuple[Tensor, Tensor, Tensor] | None:
        images = self.method.images()
        return (images["input"], images["output"], images["target"]) if images else None

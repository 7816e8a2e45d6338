"""The objective as a sum of registered terms: ``cgan+l1`` is the paper's L_cGAN + lambda * L_L1."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from p2p_core.errors import ConfigError
from p2p_core.protocols import DiscriminatorFn, Loss
from p2p_core.registry import Registry

DISCRIMINATOR_INPUTS = ("none", "output", "input+output")


class Objective:
    """Named terms; the generator minimises their sum, the discriminator half the sum of its terms."""

    def __init__(self, terms: Mapping[str, Loss], origins: Mapping[str, str] | None = None) -> None:
        self.origins = dict(origins or {})
        """Term name -> the distribution that provided it, for messages."""
        if not terms:
            raise ConfigError("the objective needs at least one term, e.g. --loss cgan+l1")
        self.terms = dict(terms)
        inputs = {term.discriminator_input for term in self.terms.values()} - {"none"}
        unknown = inputs - set(DISCRIMINATOR_INPUTS)
        if unknown:
            raise ConfigError(f"discriminator_input must be one of {DISCRIMINATOR_INPUTS}, got {sorted(unknown)}")
        if len(inputs) > 1:
            raise ConfigError(
                f"terms {' and '.join(self.terms)} disagree on what the one discriminator sees ({sorted(inputs)}); "
                "combine a conditional term only with conditional ones"
            )
        self.discriminator_input = inputs.pop() if inputs else "none"

    @classmethod
    def parse(cls, spec: str, options: Mapping[str, Mapping[str, Any]], registry: Registry) -> Objective:
        """Build ``"cgan+l1"`` with per-term options such as ``{"l1": {"weight": 10}}``."""
        names = [name.strip() for name in spec.split("+") if name.strip()]
        if len(set(names)) != len(names):
            raise ConfigError(f"--loss {spec!r} names a term twice")
        stray = set(options) - set(names)
        if stray:
            raise ConfigError(f"--loss_options sets {sorted(stray)} but --loss {spec!r} does not use it")
        terms = {name: registry.create("loss", name, **dict(options.get(name, {}))) for name in names}
        origins = {name: f"{registry.get('loss', name).distribution} {registry.get('loss', name).version}" for name in names}
        return cls(terms, origins)

    def check(self, role: str, losses: Mapping[str, Tensor]) -> None:
        """Each term's value is a finite scalar, as the Loss protocol says; the model checks its first step with
        this, so a plugin's broken term stops the run at once, named, instead of training on silently."""
        for name, value in losses.items():
            found = None
            if not isinstance(value, Tensor) or value.dim() != 0:
                found = f"{type(value).__name__} of shape {tuple(getattr(value, 'shape', ()))}"
            elif not bool(value.isfinite()):
                found = str(value.item())
            if found is not None:
                origin = f" ({self.origins[name]})" if name in self.origins else ""
                raise ConfigError(
                    f"loss {name!r}{origin} breaks the contract: {role}_loss returns a finite scalar\n"
                    f"  found: {found} at the first step\n  fix: reduce over the batch (mean()) and keep the value finite"
                )

    @property
    def adversarial(self) -> bool:
        return self.discriminator_input != "none"

    def discriminator_channels(self, in_channels: int, out_channels: int) -> int:
        return out_channels + (in_channels if self.discriminator_input == "input+output" else 0)

    def generator_losses(self, *, x: Tensor, fake: Tensor, target: Tensor, disc: DiscriminatorFn | None) -> dict[str, Tensor]:
        return {name: term.generator_loss(x=x, fake=fake, target=target, disc=disc) for name, term in self.terms.items()}

    def discriminator_losses(self, *, x: Tensor, fake: Tensor, target: Tensor, disc: DiscriminatorFn) -> dict[str, Tensor]:
        return {
            name: term.discriminator_loss(x=x, fake=fake, target=target, disc=disc)
            for name, term in self.terms.items()
            if term.discriminator_input != "none"
        }

"""The objective as a sum of registered terms: ``cgan+l1`` is the paper's L_cGAN + lambda * L_L1.

The objective runs the discriminator for its terms: once on the real pair and once on the fake one per update,
and only where a term reads the result (see the Loss protocol's ``needs``), and computes D's gradient once for the
gradient penalties (see the Penalty protocol).
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from p2p_core.errors import ConfigError
from p2p_core.protocols import AdversarialLoss, DiscriminatorOutput, Loss, Needs, Penalises, Penalty
from p2p_core.registry import Registry

DISCRIMINATOR_INPUTS = ("none", "output", "input+output")
NEEDS: tuple[Needs, ...] = ("nothing", "logits", "features")
PENALISES: tuple[Penalises, ...] = ("real", "interpolated")

Disc = Callable[[Tensor], Any]
"""The discriminator as the objective calls it: a Tensor or a DiscriminatorOutput for each batch."""


def needs(term: Loss | Penalty) -> Needs:
    """What ``term`` reads of the discriminator's outputs; a term of the first version calls D itself."""
    if first_version(term):
        return "nothing"
    return getattr(term, "needs", "nothing" if term.discriminator_input == "none" else "logits")


def has_discriminator_side(term: Loss | Penalty) -> bool:
    """Whether ``term`` trains the discriminator too: it shows it something and has a ``discriminator_loss``."""
    return term.discriminator_input != "none" and isinstance(term, (AdversarialLoss, Penalty))


def has_generator_side(term: Loss | Penalty) -> bool:
    """Whether ``term`` trains the generator: every term but a gradient penalty, which leaves generator_loss out."""
    return callable(getattr(term, "generator_loss", None))


def penalises(term: Loss | Penalty) -> Penalises | None:
    """Where ``term`` takes D's gradient, if it is a gradient penalty."""
    return getattr(term, "penalises", None)


def value_range(term: Loss | Penalty) -> tuple[float, float]:
    """The values ``term``'s losses take: ``[0, inf)`` unless it declares its own (a WGAN term goes below 0)."""
    return getattr(term, "value_range", (0.0, math.inf))


def first_version(term: Loss | Penalty) -> bool:
    """Whether ``term`` is written for the first Loss protocol: ``generator_loss(*, x, fake, target, disc)``."""
    return has_generator_side(term) and "disc" in inspect.signature(term.generator_loss).parameters


def fix_network(term: nn.Module, device: torch.device, memory_format: torch.memory_format = torch.preserve_format) -> None:
    """A term's own network as training uses it: on ``device``, in eval mode, its parameters without gradients (it
    is in no optimizer; the generator's gradient still flows through it)."""
    term.to(device, memory_format=memory_format).eval().requires_grad_(False)


class Objective:
    """Named terms; the generator minimises their sum, the discriminator half the sum of its terms."""

    def __init__(
        self, terms: Mapping[str, Loss | Penalty], origins: Mapping[str, str] | None = None, *, discriminator: str = "the discriminator"
    ) -> None:
        self.origins = dict(origins or {})
        """Term name -> the plugin and distribution that provided it, for messages."""
        self.discriminator = discriminator
        """What messages call the discriminator."""
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
        self.needs = {name: needs(term) for name, term in self.terms.items()}
        """Term name -> what it reads of the discriminator's outputs."""
        self._first_version = {name for name, term in self.terms.items() if first_version(term)}
        self._generator_needs_real = {name for name, term in self.terms.items() if getattr(term, "generator_needs_real", False)}
        self.penalises = {name: penalises(term) for name, term in self.terms.items() if penalises(term) is not None}
        """Term name -> where the gradient penalty of that name takes D's gradient."""
        self._extras = {name: tuple(extras) for name, term in self.terms.items() if (extras := getattr(term, "generator_extras", ()))}
        """Term name -> the generator's extras it reads (a VAE's mu and logvar), for the terms that read some."""
        for name in self.terms:
            self._check_needs(name)
            self._check_penalty(name)
            if name in self._first_version:
                self._warn_first_version(name)

    @classmethod
    def parse(
        cls, spec: str, options: Mapping[str, Mapping[str, Any]], registry: Registry, *, discriminator: str = "the discriminator"
    ) -> Objective:
        """Build ``"cgan+l1"`` with per-term options such as ``{"l1": {"weight": 10}}``."""
        names = [name.strip() for name in spec.split("+") if name.strip()]
        if len(set(names)) != len(names):
            raise ConfigError(f"--loss {spec!r} names a term twice")
        stray = set(options) - set(names)
        if stray:
            raise ConfigError(f"--loss_options sets {sorted(stray)} but --loss {spec!r} does not use it")
        terms = {name: registry.create("loss", name, **dict(options.get(name, {}))) for name in names}
        components = {name: registry.get("loss", name) for name in names}
        origins = {name: f"plugin {c.plugin!r} from {c.distribution} {c.version}" for name, c in components.items()}
        return cls(terms, origins, discriminator=discriminator)

    def _warn_first_version(self, name: str) -> None:
        """A DeprecationWarning at the term's own generator_loss, where the author has something to change."""
        method = self.terms[name].generator_loss
        code = getattr(method, "__func__", method).__code__
        warnings.warn_explicit(
            f"loss {name!r}{self._origin(name)} uses the first Loss protocol (generator_loss(..., disc)); it keeps "
            "working on one-scale discriminators, but port it: take d_fake and d_real (DiscriminatorOutput) "
            "instead of calling disc, see p2p_core.protocols.Loss",
            DeprecationWarning,
            code.co_filename,
            code.co_firstlineno,
            module=type(self.terms[name]).__module__,
        )

    def _origin(self, name: str) -> str:
        return f" ({self.origins[name]})" if name in self.origins else ""

    def _check_needs(self, name: str) -> None:
        need, found = self.needs[name], None
        if need not in NEEDS:
            found = f"needs = {need!r}"
        elif need != "nothing" and self.terms[name].discriminator_input == "none":
            found = f"needs = {need!r} with discriminator_input = 'none'"
        if found is not None:
            raise ConfigError(
                f"loss {name!r}{self._origin(name)} breaks the contract: needs is one of {NEEDS}, and only a term "
                f"that shows the discriminator something reads its outputs\n  found: {found}\n"
                "  fix: say needs = 'logits' (or 'features') with discriminator_input 'output' or 'input+output', or "
                "needs = 'nothing'"
            )

    def _check_penalty(self, name: str) -> None:
        if name not in self.penalises:
            return
        term, found = self.terms[name], None
        if self.penalises[name] not in PENALISES:
            found = f"penalises = {self.penalises[name]!r}"
        elif not has_discriminator_side(term):
            found = f"discriminator_input = {term.discriminator_input!r}, discriminator_loss = {getattr(term, 'discriminator_loss', None)!r}"
        if found is not None:
            raise ConfigError(
                f"loss {name!r}{self._origin(name)} breaks the contract: a gradient penalty says where D's gradient is "
                f"taken, one of {PENALISES}, shows D the pair its GAN terms show it and has a discriminator_loss(..., "
                f"gradient)\n  found: {found}\n  fix: say penalises = 'real' (R1) or 'interpolated' (WGAN-GP), "
                "discriminator_input 'output' or 'input+output', and define discriminator_loss"
            )

    @property
    def networks(self) -> dict[str, nn.Module]:
        """Term name -> the term, for each term with a network of its own (an ``nn.Module``), which training keeps
        fixed (:func:`fix_network`)."""
        return {name: term for name, term in self.terms.items() if isinstance(term, nn.Module)}

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
                raise ConfigError(
                    f"loss {name!r}{self._origin(name)} breaks the contract: {role}_loss returns a finite scalar\n"
                    f"  found: {found} at the first step\n  fix: reduce over the batch (mean()) and keep the value finite"
                )

    @property
    def adversarial(self) -> bool:
        return self.discriminator_input != "none"

    def discriminator_channels(self, in_channels: int, out_channels: int) -> int:
        return out_channels + (in_channels if self.discriminator_input == "input+output" else 0)

    def generator_losses(
        self, *, x: Tensor, fake: Tensor, target: Tensor, disc: Disc | None, extras: Mapping[str, Tensor] | None = None
    ) -> dict[str, Tensor]:
        """Every term's generator loss; ``disc`` is run once on the fake pair, and on the real one (without
        gradients) only for terms that read it. ``extras`` are the generator's (``GeneratorOutput.extras``): a term
        that lists some in ``generator_extras`` gets those, as ``extras``; the others never see the keyword."""
        d_fake = d_real = None
        if disc is not None and set(self.needs.values()) != {"nothing"}:
            d_fake = self._judge(disc, x, fake)
            if self._generator_needs_real:
                with torch.no_grad():
                    d_real = self._judge(disc, x, target)
        losses = {}
        for name, term in self.terms.items():
            if not has_generator_side(term):
                continue
            if name in self._first_version:
                losses[name] = term.generator_loss(x=x, fake=fake, target=target, disc=self._one_scale(name, disc))
                continue
            real = d_real if name in self._generator_needs_real else None
            read = {"extras": self._extras_for(name, extras or {})} if name in self._extras else {}
            losses[name] = term.generator_loss(
                x=x, fake=fake, target=target, d_fake=self._view(name, d_fake), d_real=self._view(name, real), **read
            )
        return losses

    def _extras_for(self, name: str, extras: Mapping[str, Tensor]) -> dict[str, Tensor]:
        if not set(self._extras[name]) <= set(extras):
            raise ConfigError(
                f"loss {name!r}{self._origin(name)} reads the generator's extras {', '.join(self._extras[name])}, and the "
                f"generator gives {', '.join(extras) or 'none'}\n  fix: choose a generator that returns them "
                "(GeneratorOutput(image=..., extras={...})), or drop the term"
            )
        return {extra: extras[extra] for extra in self._extras[name]}

    def discriminator_losses(self, *, x: Tensor, fake: Tensor, target: Tensor, disc: Disc) -> dict[str, Tensor]:
        """The discriminator losses of the adversarial terms that have one (feature matching has none); ``disc``
        is run once on the real pair, once on the fake, and once on an interpolate for WGAN-GP's penalty."""
        terms = {name: term for name, term in self.terms.items() if has_discriminator_side(term)}
        wanted = set(self.penalises.values())
        d_real = d_fake = None
        gradients: dict[str, Tensor] = {}
        if "real" in wanted:  # R1's run of D on the real pair serves the other terms too
            d_real, gradients["real"] = self._judge_with_gradient(disc, x, target)
        if any(self.needs[name] != "nothing" for name in terms):
            if d_real is None:
                d_real = self._judge(disc, x, target)
            d_fake = self._judge(disc, x, fake)
        if "interpolated" in wanted:
            eps = torch.rand(target.shape[0], 1, 1, 1, device=target.device)
            _, gradients["interpolated"] = self._judge_with_gradient(disc, x, eps * target + (1 - eps) * fake.detach())
        losses = {}
        for name, term in terms.items():
            if name in self._first_version:
                losses[name] = term.discriminator_loss(x=x, fake=fake, target=target, disc=self._one_scale(name, disc))
                continue
            penalty = {"gradient": gradients[self.penalises[name]]} if name in self.penalises else {}
            losses[name] = term.discriminator_loss(
                x=x, fake=fake, target=target, d_fake=self._view(name, d_fake), d_real=self._view(name, d_real), **penalty
            )
        return losses

    def _judge(self, disc: Disc, x: Tensor, y: Tensor) -> DiscriminatorOutput:
        pair = torch.cat([x, y], dim=1) if self.discriminator_input == "input+output" else y
        return DiscriminatorOutput.of(disc(pair), source=self.discriminator)

    def _judge_with_gradient(self, disc: Disc, x: Tensor, y: Tensor) -> tuple[DiscriminatorOutput, Tensor]:
        """D's outputs on ``y`` (beside ``x`` for a conditional D), and the gradient of the sum of its logits over
        every scale with respect to ``y``, with its graph, so that a penalty on it trains D."""
        y = y.detach().float().requires_grad_(True)
        # In float32 even under bf16 autocast: a second derivative in bf16's 8 bits of precision is mostly rounding.
        # Eager even under --trainer.compile: compiled graphs (AOTAutograd) take no double backward.
        with torch.autocast(y.device.type, enabled=False), torch.compiler.set_stance("force_eager"):
            output = self._judge(disc, x.float(), y)
            total = torch.stack([logits.float().sum() for logits in output.logits]).sum()
            (gradient,) = torch.autograd.grad(total, y, create_graph=True)
        return output, gradient

    def _view(self, name: str, output: DiscriminatorOutput | None) -> DiscriminatorOutput | None:
        """What term ``name`` may read of ``output``: nothing, the logits, or all of it."""
        need = self.needs[name]
        if output is None or need == "nothing":
            return None
        if need == "logits":
            return output.without_features()
        if not output.features:
            raise ConfigError(
                f"loss {name!r}{self._origin(name)} needs the discriminator's features, and {self.discriminator} breaks "
                "that contract for it: features for every scale\n  found: logits only (no DiscriminatorOutput.features)\n"
                "  fix: choose a discriminator that returns its features (DiscriminatorOutput), or drop the term"
            )
        return output

    def check_output(self, output: DiscriminatorOutput) -> None:
        """Every term can read ``output`` as it declares (features where it needs them, one scale for a term of the
        first version): the model checks a dry run of D with this, so a mismatch stops the run before it starts."""
        for name, term in self.terms.items():
            if name in self._first_version:
                if term.discriminator_input != "none":
                    self._check_one_scale(name, output)
            else:
                self._view(name, output)

    def _one_scale(self, name: str, disc: Disc | None) -> Callable[[Tensor], Tensor] | None:
        """``disc`` as a first-version term calls it: one tensor of logits."""
        if disc is None:
            return None

        def logits(pair: Tensor) -> Tensor:
            output = DiscriminatorOutput.of(disc(pair), source=self.discriminator)
            self._check_one_scale(name, output)
            return output.logits[0]

        return logits

    def _check_one_scale(self, name: str, output: DiscriminatorOutput) -> None:
        if len(output.logits) != 1:
            raise ConfigError(
                f"loss {name!r}{self._origin(name)} uses the first Loss protocol, which reads one tensor of logits\n"
                f"  found: {self.discriminator} returns {len(output.logits)} scales\n"
                "  fix: port the term to d_fake and d_real (see p2p_core.protocols.Loss), or use a one-scale discriminator"
            )

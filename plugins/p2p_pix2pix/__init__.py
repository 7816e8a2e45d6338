"""pix2pix's training method (Isola et al. 2017, section 3.3), p2p's default: ``--method pix2pix``.

A generator and, when the objective has an adversarial term, a discriminator that sees the output (and, for a
conditional term, the input beside it). Each step is one D step on half the adversarial terms, then one G step on
all the terms; Adam 2e-4 (0.5, 0.999) for both. A built-in, registered through the same hook a plugin's method uses.

Its options change the optimisation for other papers' recipes: each network's own rate (SPADE's two time-scale
update rule, ``--method.g_lr 1e-4 --method.d_lr 4e-4`` with ``--trainer.beta1 0 --trainer.beta2 0.9``), and
``n_critic`` D updates per G update (WGAN's critic steps). Every step is one batch and one D update; G is updated
on every ``n_critic``-th step only, so each of the critic's updates sees a fresh batch, as in the WGAN paper, and
the phase follows from the step count, which checkpoints hold: a resumed run continues it exactly.
"""

from __future__ import annotations

import math

from torch import Tensor

import p2p_core
from p2p_core.networks import check_discriminator
from p2p_core.protocols import GeneratorOutput, Sample
from p2p_core.training import Training


class Pix2Pix:
    """pix2pix: G translates A to B against a (conditional) discriminator; one D step, then one G step."""

    directions = {"AtoB": "generator"}

    def __init__(
        self, *, training: Training, g_lr: float | None = None, d_lr: float | None = None, n_critic: int = 1
    ) -> None:
        """``g_lr`` and ``d_lr``: the generator's and the discriminator's Adam rate (default: ``--trainer.lr``),
        each scaled by the schedule; ``n_critic``: D updates per G update (G is updated on every n_critic-th step)."""
        for option, rate in (("g_lr", g_lr), ("d_lr", d_lr)):
            if rate is not None and not (math.isfinite(rate) and 0 < rate <= 1):
                raise ValueError(f"{option} (Adam's learning rate) must be in (0, 1], got {rate}; leave it unset for --trainer.lr")
        if not 1 <= n_critic <= 1000:
            raise ValueError(f"n_critic (D updates per G update) must be from 1 to 1,000, got {str(n_critic)[:40]}")
        run, shapes = training.spec, training.shapes
        self.training, self.n_critic = training, n_critic
        self.objective = training.build_objective()
        self.adversarial = self.objective.adversarial
        if not self.adversarial and (d_lr is not None or n_critic != 1):
            raise ValueError(f"d_lr and n_critic set the discriminator's training, but --loss {run.loss!r} trains none; "
                             "add an adversarial term (cgan) or drop them")
        generator = training.network("generator", "generator", in_channels=shapes.in_channels, out_channels=shapes.out_channels)
        self.takes_target = bool(getattr(generator, "takes_target", False))
        self.generator_label = f"generator {run.generator.name!r} ({training.registry.providers(run)['generator']})"
        if self.adversarial:
            disc_channels = self.objective.discriminator_channels(shapes.in_channels, shapes.out_channels)
            discriminator = training.network("discriminator", "discriminator", in_channels=disc_channels)
            # What each term reads of D's output (features, scales): refused now, before the run folder exists.
            check_discriminator(discriminator, self.objective, size=shapes.image_size, batch=run.trainer.batch_size)
        training.optimizer("generator", ["generator"], lr=g_lr)
        if self.adversarial:
            training.optimizer("discriminator", ["discriminator"], lr=d_lr)
        # Terms with a schedule of their own (a weight warm-up) learn the step before each one.
        self._scheduled = [term for term in self.objective.terms.values() if callable(getattr(term, "at_step", None))]
        self._last: dict[str, Tensor] = {}

    def train_step(self, batch: Sample) -> dict[str, float]:
        """One D step on half the adversarial terms, then (on every n_critic-th step) one G step on all terms;
        returns the losses.

        The objective runs D once on the real pair and once on the fake one in each step, for all its terms."""
        training, x, target = self.training, batch.a, batch.b
        for term in self._scheduled:
            term.at_step(training.step, training.total_steps)
        generator = training.module("generator")
        with training.autocast():
            generated = GeneratorOutput.of(generator(x, target=target) if self.takes_target else generator(x),
                                           source=self.generator_label)
        fake = generated.image
        logged: dict[str, float] = {}
        judged = ("discriminator",) if self.adversarial else ()
        if self.adversarial:
            with training.autocast():
                d_losses = self.objective.discriminator_losses(
                    x=x, fake=fake.detach(), target=target, disc=training.module("discriminator"))
            if training.step == 0:
                self.objective.check("discriminator", d_losses)
            if d_losses:  # none when every adversarial term only reads D (feature matching alone)
                logged |= training.update("discriminator", {f"D/{name}": 0.5 * value for name, value in d_losses.items()})
        self._last = {"input": x, "output": fake.detach(), "target": target}
        self._last |= {name: image for name, image in generated.shown().items() if name not in self._last}
        if (training.step + 1) % self.n_critic:  # a critic's step: G waits for the n_critic-th
            return logged
        with training.frozen(*judged):  # G's step needs gradients through D, not for D
            with training.autocast():
                g_losses = self.objective.generator_losses(
                    x=x, fake=fake, target=target, disc=training.module("discriminator") if self.adversarial else None,
                    extras=generated.extras)
            if training.step < self.n_critic:  # G's first step
                self.objective.check("generator", g_losses)
            logged |= training.update("generator", {f"G/{name}": value for name, value in g_losses.items()})
        return logged

    def images(self) -> dict[str, Tensor]:
        """The latest step's input, output and target, and the generator's extras that are images (attention maps)."""
        return self._last


@p2p_core.hookimpl
def p2p_methods() -> dict[str, type]:
    return {"pix2pix": Pix2Pix}

"""The ``cyclegan`` training method: CycleGAN (Zhu et al., ICCV 2017) on unpaired data, written on p2p's public API.

Two generators (``generator_ab``: A -> B, ``generator_ba``: B -> A) and two discriminators (``disc_a`` judges
domain A, ``disc_b`` domain B), all built from whatever ``--generator`` and ``--disc`` name. Each step, as the
reference implementation (junyanz/pytorch-CycleGAN-and-pix2pix, ``models/cycle_gan_model.py``) does it:

1. G step, both discriminators frozen: the adversarial terms of ``--loss`` (LSGAN by default) for G_AB(a) judged by
   D_B and G_BA(b) judged by D_A; the cycle-consistency L1 ``|G_BA(G_AB(a)) - a|`` weighted ``lambda_a`` and
   ``|G_AB(G_BA(b)) - b|`` weighted ``lambda_b``; the identity L1 ``|G_AB(b) - b|`` weighted ``lambda_identity x
   lambda_b`` and ``|G_BA(a) - a|`` weighted ``lambda_identity x lambda_a``. One Adam over both generators.
2. D step: each discriminator on its domain's real images and on generated ones drawn from an image pool of the
   last ``pool_size`` outputs (Shrivastava et al. 2017), its objective halved. One Adam over both.

The reference's defaults: lambda 10 per direction, identity 0.5, pool 50, LSGAN, Adam 2e-4 (0.5, 0.999), batch 1,
100 epochs at the initial rate then 100 decaying to 0 (the trainer's defaults).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from p2p_core.errors import ConfigError
from p2p_core.protocols import Sample
from p2p_core.training import Training


class ImagePool:
    """The last ``size`` generated images; a query returns, per image, either it or (half the time, once the pool is
    full) a stored older one that it replaces, so a discriminator also sees what the generators made earlier."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.images: list[Tensor] = []

    def query(self, images: Tensor) -> Tensor:
        if self.size == 0:
            return images
        chosen = []
        for image in images.detach():
            if len(self.images) < self.size:
                self.images.append(image.clone())
                chosen.append(image)
            elif torch.rand(()) < 0.5:  # torch's generator: seeded by the run and restored on resume
                index = int(torch.randint(len(self.images), ()))
                chosen.append(self.images[index])
                self.images[index] = image.clone()
            else:
                chosen.append(image)
        return torch.stack(chosen)

    def state_dict(self) -> Tensor:
        return torch.stack(self.images) if self.images else torch.empty(0)

    def load_state_dict(self, images: Tensor) -> None:
        self.images = list(images.unbind()) if images.numel() else []


class CycleGAN:
    """CycleGAN: G_AB and G_BA with cycle-consistency and identity losses against D_A and D_B, for unpaired data."""

    directions = {"AtoB": "generator_ab", "BtoA": "generator_ba"}
    default_loss = "lsgan"
    """The adversarial term when --loss is not given: least squares, as the reference trains..."""
    default_loss_options = {"lsgan": {"conditional": False}}
    """...with each discriminator seeing one domain's images alone."""

    def __init__(
        self,
        *,
        training: Training,
        lambda_a: float = 10.0,
        lambda_b: float = 10.0,
        lambda_identity: float = 0.5,
        pool_size: int = 50,
    ) -> None:
        """
        Args:
            lambda_a: Weight of the cycle A -> B -> A.
            lambda_b: Weight of the cycle B -> A -> B.
            lambda_identity: Weight of the identity terms, relative to the cycle weight of their domain; 0 turns
                them off (they need A and B of the same channels).
            pool_size: Generated images each discriminator's pool keeps; 0 shows it only the newest.
        """
        for name, value in (("lambda_a", lambda_a), ("lambda_b", lambda_b), ("lambda_identity", lambda_identity)):
            if not value >= 0:
                raise ValueError(f"--method.{name} must be 0 or more, got {value}")
        if pool_size < 0:
            raise ValueError(f"--method.pool_size must be 0 or more, got {pool_size}")
        run, shapes = training.spec, training.shapes
        self.training = training
        self.lambda_a, self.lambda_b, self.lambda_identity = lambda_a, lambda_b, lambda_identity
        self.objective = training.build_objective()
        # A gradient penalty reads nothing of D's outputs but still judges one domain's images alone: it fits.
        plain = {name for name, need in self.objective.needs.items() if need == "nothing" and name not in self.objective.penalises}
        if self.objective.discriminator_input != "output" or plain:
            raise ConfigError(
                f"cyclegan trains --loss {run.loss!r}, but its discriminators see the images of one domain, with no "
                "input beside them and no target to compare with: use unconditional adversarial terms only, e.g. "
                "--loss gan, or --loss lsgan --loss_options.lsgan.conditional false (the default when --loss is not given)"
            )
        a, b = shapes.in_channels, shapes.out_channels
        if lambda_identity and a != b:
            raise ConfigError(f"the identity terms feed B images ({b} channels) to G_AB, which takes {a}: "
                              "set --method.lambda_identity 0 for domains of different channels")
        training.network("generator_ab", "generator", in_channels=a, out_channels=b)
        training.network("generator_ba", "generator", in_channels=b, out_channels=a)
        training.network("disc_a", "discriminator", in_channels=a)
        training.network("disc_b", "discriminator", in_channels=b)
        training.optimizer("generators", ["generator_ab", "generator_ba"])
        training.optimizer("discriminators", ["disc_a", "disc_b"])
        self.pools = {"disc_a": ImagePool(pool_size), "disc_b": ImagePool(pool_size)}
        self._last: dict[str, Tensor] = {}

    def train_step(self, batch: Sample) -> dict[str, float]:
        """One G step (both generators, discriminators frozen), then one D step (both discriminators)."""
        training, real_a, real_b = self.training, batch.a, batch.b
        g_ab, g_ba = training.module("generator_ab"), training.module("generator_ba")
        first = training.step == 0
        logged: dict[str, float] = {}
        with training.frozen("disc_a", "disc_b"):
            with training.autocast():
                fake_b, fake_a = g_ab(real_a), g_ba(real_b)
                rec_a, rec_b = g_ba(fake_b), g_ab(fake_a)
                losses = {
                    **self._adversarial("G_AB", "generator", real_a, fake_b, real_b, "disc_b", check=first),
                    **self._adversarial("G_BA", "generator", real_b, fake_a, real_a, "disc_a", check=first),
                    "G/cycle_a": self.lambda_a * (rec_a - real_a).abs().mean(),
                    "G/cycle_b": self.lambda_b * (rec_b - real_b).abs().mean(),
                }
                if self.lambda_identity:
                    losses["G/identity_a"] = self.lambda_identity * self.lambda_a * (g_ba(real_a) - real_a).abs().mean()
                    losses["G/identity_b"] = self.lambda_identity * self.lambda_b * (g_ab(real_b) - real_b).abs().mean()
            logged |= training.update("generators", losses)
        with training.autocast():
            losses = {
                **self._adversarial("D_A", "discriminator", real_b, self.pools["disc_a"].query(fake_a), real_a, "disc_a", check=first),
                **self._adversarial("D_B", "discriminator", real_a, self.pools["disc_b"].query(fake_b), real_b, "disc_b", check=first),
            }
        logged |= training.update("discriminators", {name: 0.5 * value for name, value in losses.items()})
        self._last = {"real_a": real_a, "fake_b": fake_b.detach(), "rec_a": rec_a.detach(),
                      "real_b": real_b, "fake_a": fake_a.detach(), "rec_b": rec_b.detach()}
        return logged

    def _adversarial(self, prefix: str, role: str, x: Tensor, fake: Tensor, real: Tensor, disc: str, *, check: bool) -> dict[str, Tensor]:
        """The adversarial terms of one generator's output ``fake`` against the real images ``real`` of its domain,
        judged by ``disc``: for the generator (``fake`` with gradients) or for the discriminator (``fake`` detached)."""
        if role == "generator":
            terms = self.objective.generator_losses(x=x, fake=fake, target=real, disc=self.training.module(disc))
        else:
            terms = self.objective.discriminator_losses(x=x, fake=fake.detach(), target=real, disc=self.training.module(disc))
        if check:
            self.objective.check(role, terms)
        return {f"{prefix}/{name}": value for name, value in terms.items()}

    def images(self) -> dict[str, Tensor]:
        """Both cycles of the latest step: real A, G_AB(A), G_BA(G_AB(A)), real B, G_BA(B), G_AB(G_BA(B))."""
        return self._last

    def state_dict(self) -> dict[str, Any]:
        """The image pools: a resumed run shows its discriminators what an uninterrupted one would."""
        return {"pools": {role: pool.state_dict() for role, pool in self.pools.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for role, images in state["pools"].items():
            self.pools[role].load_state_dict(images.to(self.training.device))

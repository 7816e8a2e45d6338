"""The pix2pix model: G, D, the objective, Adam and the schedule, and the paper's training step.

One D step on the halved objective, then one G step, Adam 2e-4 (0.5, 0.999), N(0, 0.02) initialisation. The
model knows nothing of data, folders, logging or signals (:mod:`p2p_core.run` does): ``bench`` and tests build
it in one call, :meth:`Pix2Pix.build`, and feed it batches.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from p2p_core import distributed
from p2p_core.checkpoint import check_weights
from p2p_core.errors import ConfigError, DataError, NumericalError
from p2p_core.networks import build_discriminator, build_generator, init_weights
from p2p_core.objective import Objective
from p2p_core.protocols import per_scale
from p2p_core.registry import Registry, default_registry
from p2p_core.spec import RunSpec, Shapes, TrainedSpec


class Pix2Pix:
    """The networks being trained, their optimizers, and the step count that drives the schedule."""

    def __init__(
        self,
        *,
        trained: TrainedSpec,
        generator: nn.Module,
        discriminator: nn.Module | None,
        objective: Objective,
        total_steps: int,
        device: torch.device,
        dist: distributed.Context = distributed.Context(),
    ) -> None:
        self.trained, self.config = trained, trained.run.trainer
        self.generator, self.discriminator, self.objective = generator, discriminator, objective
        self.total_steps, self.device, self.dist = total_steps, device, dist
        self.models = {"generator": generator, "discriminator": discriminator}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        for role, model in self.models.items():
            if model is None:
                continue
            init_weights(model, self.config.init_gain)
            model.to(device)
            if self.config.channels_last:
                model.to(memory_format=torch.channels_last)
            # PyTorch's fused kernel runs the same Adam update in one pass over the weights: 5x faster on CPU.
            self.optimizers[role] = torch.optim.Adam(
                model.parameters(), lr=self.config.lr, betas=(self.config.beta1, self.config.beta2), fused=True
            )
        self._generator = self._compiled(self._parallel(generator))
        self._discriminator = self._compiled(self._parallel(discriminator))
        # G's step judges its output with D but must not average D's (absent) gradients across processes.
        self._judge = self._compiled(discriminator) if dist.active else self._discriminator
        self.step = 0
        self.skipped_updates = 0
        self.last: tuple[Tensor, Tensor, Tensor] | None = None
        """The latest step's input, output and target, for image grids."""

    @classmethod
    def build(
        cls,
        run: RunSpec,
        shapes: Shapes,
        *,
        total_steps: int,
        device: torch.device | str = "cpu",
        registry: Registry | None = None,
        dist: distributed.Context = distributed.Context(),
    ) -> Pix2Pix:
        """The model ``run`` describes for data of ``shapes`` (``disc_in_channels`` is filled in from the objective)."""
        registry = registry or default_registry()
        device = torch.device(device)
        providers = registry.providers(run)
        objective = Objective.parse(run.loss, run.loss_options, registry,
                                    discriminator=f"discriminator {run.disc.name!r} ({providers['disc']})")
        disc_channels = objective.discriminator_channels(shapes.in_channels, shapes.out_channels) if objective.adversarial else None
        shapes = Shapes(in_channels=shapes.in_channels, out_channels=shapes.out_channels, image_size=shapes.image_size,
                        disc_in_channels=disc_channels)
        trained = TrainedSpec(
            run=run,
            shapes=shapes,
            plugins={p.distribution: p.version for p in registry.plugins if not p.error},
            providers=providers,
            adversarial=objective.adversarial,
        )
        generator = build_generator(run, shapes, registry)
        multiple = getattr(generator, "size_multiple", 1)
        if shapes.image_size % multiple:  # otherwise the first step fails deep inside the network
            fits = max(multiple, shapes.image_size // multiple * multiple)
            raise ConfigError(
                f"generator {run.generator.name!r} needs image sides that are multiples of {multiple}, but the training "
                f"crops are {shapes.image_size}x{shapes.image_size}; use --data.crop_size {fits} (or a generator option "
                "such as --generator.depth that fits the size)"
            )
        discriminator = None
        if objective.adversarial:
            discriminator = build_discriminator(run, shapes, registry)
            size = shapes.image_size
            if min(per_scale(discriminator.output_size(size))) < 1:  # otherwise a convolution fails mid-step, far from the cause
                raise ConfigError(
                    f"discriminator {run.disc.name!r} (receptive field {discriminator.receptive_field}) has no "
                    f"output for {size}x{size} images; use larger images (--data.crop_size) or a smaller receptive field"
                    " (or fewer scales)"
                )
        return cls(trained=trained, generator=generator, discriminator=discriminator, objective=objective,
                   total_steps=total_steps, device=device, dist=dist)

    def _parallel(self, model: nn.Module | None) -> nn.Module | None:
        """The module training calls: under torchrun, wrapped so gradients are averaged across processes."""
        if model is None or not self.dist.active:
            return model
        if self.config.sync_batchnorm:
            if self.device.type != "cuda":
                raise ConfigError("--trainer.sync_batchnorm needs CUDA devices; on CPU use instance norm or none")
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)

    def _compiled(self, model: nn.Module | None) -> nn.Module | None:
        if model is None or self.config.compile == "none":
            return model
        return torch.compile(model, mode=self.config.compile)

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.precision == "bf16")

    def to_device(self, images: Tensor) -> Tensor:
        """Move a batch where training runs, in the memory layout the networks use."""
        images = images.to(self.device, non_blocking=True)
        return images.to(memory_format=torch.channels_last) if self.config.channels_last else images

    @property
    def checkpoint_bytes(self) -> int:
        """About what one checkpoint takes: weights plus Adam's two moments for each network."""
        tensors = [t for m in self.models.values() if m is not None for t in (*m.parameters(), *m.buffers())]
        return 3 * sum(t.numel() * t.element_size() for t in tensors)

    def learning_rate(self) -> float:
        """The rate of the next update: the schedule at the current step of ``total_steps``."""
        return self.config.lr * self.config.learning_rate_factor(self.step, self.total_steps)

    # -- one step -----------------------------------------------------------------------------------------

    def train_step(self, x: Tensor, target: Tensor) -> dict[str, float]:
        """One D step on half the adversarial terms, then one G step on all terms; returns the losses.

        The objective runs D once on the real pair and once on the fake one in each step, for all its terms."""
        for optimizer in self.optimizers.values():
            for group in optimizer.param_groups:
                group["lr"] = self.learning_rate()
        with self._autocast():
            fake = self._generator(x)
        logged: dict[str, float] = {}
        disc = self.discriminator
        if disc is not None:
            disc.requires_grad_(True)
            with self._autocast():
                d_losses = self.objective.discriminator_losses(x=x, fake=fake.detach(), target=target, disc=self._discriminator)
            if self.step == 0:
                self.objective.check("discriminator", d_losses)
            logged |= self._update("discriminator", {f"D/{name}": 0.5 * value for name, value in d_losses.items()})
            disc.requires_grad_(False)  # G's step needs gradients through D, not for D
        with self._autocast():
            g_losses = self.objective.generator_losses(x=x, fake=fake, target=target, disc=self._judge)
        if self.step == 0:
            self.objective.check("generator", g_losses)
        logged |= self._update("generator", {f"G/{name}": value for name, value in g_losses.items()})
        self.last = (x, fake.detach(), target)
        self.step += 1
        return logged

    def _update(self, role: str, losses: dict[str, Tensor]) -> dict[str, float]:
        """Backpropagate the sum of ``losses`` into ``role`` and step its optimizer, unless a value is not finite."""
        optimizer = self.optimizers[role]
        optimizer.zero_grad(set_to_none=True)
        values = {name: value.item() for name, value in losses.items()}
        faults = [f"loss term {name} is {value}" for name, value in values.items() if not math.isfinite(value)]
        if not faults:
            torch.stack(list(losses.values())).sum().backward()
            gradients = [p.grad for p in self.models[role].parameters() if p.grad is not None]
            norm = torch.nn.utils.get_total_norm(gradients) if gradients else torch.zeros(())
            if not torch.isfinite(norm):
                faults.append(f"the {role}'s gradient is {norm.item()}")
        if not faults:
            optimizer.step()
            return values
        message = f"step {self.step + 1}: {'; '.join(faults)}"
        if self.config.on_nonfinite == "stop":
            raise NumericalError(
                f"{message}. Stopped; the last checkpoint is intact. Try a lower --trainer.lr, "
                "or --trainer.on_nonfinite skip to drop such updates"
            )
        optimizer.zero_grad(set_to_none=True)
        self.skipped_updates += 1
        warnings.warn(f"{message}; update skipped", stacklevel=2)
        return values

    # -- state ----------------------------------------------------------------------------------------------

    def check_finite(self) -> None:
        """Refuse to keep weights or buffers that are not finite (e.g. BatchNorm statistics after a divergence)."""
        for role, model in self.models.items():
            if model is None:
                continue
            for name, tensor in (*model.named_parameters(), *model.named_buffers()):
                if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                    bad = int((~torch.isfinite(tensor)).sum())
                    raise NumericalError(
                        f"step {self.step}: the {role}'s {name} holds {bad} value(s) that are not finite, so no "
                        "checkpoint was written (the last one is intact). Try a lower --trainer.lr"
                    )

    def state_dict(self) -> dict[str, Any]:
        """Weights, optimizer moments and the step, with the spec that rebuilds the networks (format 2)."""
        return {
            "format": 2,
            "step": self.step,
            "models": {role: m.state_dict() for role, m in self.models.items() if m is not None},
            "optimizers": {role: o.state_dict() for role, o in self.optimizers.items()},
            **self.trained.to_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from ``state``; the schedule follows from the step, so format 1's scheduler entry is not needed.

        An imported model (``p2p import``) has weights but no optimizer moments: its optimizers start fresh.
        """
        self.load_weights(state["models"], source="the checkpoint")
        for role, optimizer in self.optimizers.items():
            if role in state.get("optimizers", {}):
                optimizer.load_state_dict(state["optimizers"][role])
        self.step = int(state["step"])

    def load_weights(self, models: Mapping[str, Mapping[str, Any]], *, source: str) -> None:
        """The networks' weights from ``models`` (role -> state dict): the generator's always, the
        discriminator's where ``source`` has one. Anything that does not fit exactly is an error naming it."""
        for role, model in self.models.items():
            if model is None or (role == "discriminator" and role not in models):
                continue
            if role not in models:
                raise DataError(f"{source} holds no {role} weights")
            check_weights(models[role], source=f"{source}, {role}")
            try:
                model.load_state_dict(models[role])
            except RuntimeError as error:
                raise DataError(f"the {role} weights in {source} do not fit this {role}: {str(error).splitlines()[-1].strip()}") from None

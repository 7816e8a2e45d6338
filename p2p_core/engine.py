"""Training as in the paper: one D step on the halved objective, then one G step, Adam 2e-4 (0.5, 0.999)."""

from __future__ import annotations

import math
import os
import random
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import attrs
import torch
import torchvision
from torch import Tensor, nn
from torch.utils.data import DataLoader, Sampler
from tqdm.auto import tqdm

from p2p_core import checkpoint
from p2p_core.errors import ConfigError, DataError
from p2p_core.images import displayable
from p2p_core.objective import Objective
from p2p_core.registry import Registry, default_registry
from p2p_core.test_time import Mode
from p2p_core.validation import Validator


@attrs.frozen
class Choice:
    """A registered component's name and the user's options for it."""

    name: str
    options: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.define(kw_only=True)
class TrainConfig:
    """Optimisation, schedule and bookkeeping; the defaults are the paper's."""

    n_epochs: int = 100
    """Epochs at the initial learning rate."""
    n_epochs_decay: int = 100
    """Epochs over which the learning rate then decays linearly to 0."""
    max_steps: int | None = None
    """Stop after this many steps in total, whatever the epochs say (quick runs, benchmarks)."""
    batch_size: int = 1
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    init_gain: float = 0.02
    """Standard deviation of the N(0, gain) weight initialisation."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    num_workers: int = 2
    """Data-loading processes; 0 loads in the training process."""
    seed: int = 0
    log_every: int = 50
    """Steps between TensorBoard scalars (averaged over the interval)."""
    image_every: int = 500
    """Steps between input | output | target image grids in TensorBoard."""
    checkpoint_every: int = 5000
    """Steps between checkpoints; one is always written at the end."""
    progress: bool = True
    """Show a progress bar."""
    validate_every: int = 0
    """Steps between validations (and once at the end); 0 turns validation off."""
    validate_samples: int = 16
    """Validation pairs scored each time: a fixed subset, spread evenly over the val split."""
    best_metric: Literal["l1", "psnr", "ssim", "hist_L", "hist_a", "hist_b"] = "l1"
    """Which validation score picks checkpoints/best.pt (l1 lower is better; the others higher)."""
    validate_mode: Mode = "paper"
    """Test-time behaviour while validating: paper (dropout, batch statistics) or eval."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--trainer.device cuda was asked for, but torch sees no CUDA device; use auto or cpu")
    return torch.device(name)


def init_weights(module: nn.Module, gain: float) -> None:
    """The paper's N(0, 0.02) initialisation; norm scales N(1, 0.02); biases 0."""
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(layer.weight, 0.0, gain)
        elif isinstance(layer, nn.modules.batchnorm._BatchNorm) and layer.weight is not None:
            nn.init.normal_(layer.weight, 1.0, gain)
        else:
            continue
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)


def build_generator(spec: Mapping[str, Any], registry: Registry | None = None) -> nn.Module:
    """Rebuild a generator from the ``components.generator`` entry a checkpoint stores."""
    registry = registry or default_registry()
    return registry.create(
        "generator",
        spec["name"],
        in_channels=spec["in_channels"],
        out_channels=spec["out_channels"],
        image_size=spec["image_size"],
        **spec["options"],
    )


class EpochSampler(Sampler[int]):
    """A fresh permutation per epoch, seeded by (seed, epoch), so a resumed run sees the same order."""

    def __init__(self, length: int, *, seed: int, epoch: int, skip: int = 0) -> None:
        self.length, self.seed, self.epoch, self.skip = length, seed, epoch, skip

    def __iter__(self) -> Iterator[int]:
        order = torch.randperm(self.length, generator=torch.Generator().manual_seed(self.seed * 10_007 + self.epoch))
        return iter(order[self.skip :].tolist())

    def __len__(self) -> int:
        return self.length - self.skip


class Trainer:
    """Builds the components from the registry and runs, logs and checkpoints the training loop."""

    def __init__(
        self,
        *,
        generator: Choice,
        discriminator: Choice,
        loss: str,
        loss_options: Mapping[str, Mapping[str, Any]],
        data: Choice,
        train: TrainConfig,
        run_dir: Path,
        config_text: str = "",
        registry: Registry | None = None,
    ) -> None:
        registry = registry or default_registry()
        self.config, self.run_dir, self.config_text = train, Path(run_dir), config_text
        self.device = resolve_device(train.device)
        torch.manual_seed(train.seed)
        random.seed(train.seed)

        self.dataset = registry.create("dataset", data.name, split="train", **data.options)
        if len(self.dataset) == 0:
            raise ConfigError(f"dataset {data.name!r} is empty")
        self.dataset[0]  # fail on unreadable data now, with the file named, not inside a worker later
        channels = {"in_channels": self.dataset.in_channels, "out_channels": self.dataset.out_channels}
        self.components: dict[str, Any] = {
            "generator": {"name": generator.name, "options": dict(generator.options), "image_size": self.dataset.image_size, **channels},
            "loss": loss,
            "loss_options": {k: dict(v) for k, v in loss_options.items()},
            "dataset": data.name,
            # What `p2p test` rebuilds the validation split from; paths as text, since checkpoints hold no objects.
            "dataset_options": {k: str(v) if isinstance(v, os.PathLike) else v for k, v in data.options.items()},
        }
        self.generator = build_generator(self.components["generator"], registry).to(self.device)
        self.objective = Objective.parse(loss, loss_options, registry)
        self.discriminator: nn.Module | None = None
        if self.objective.adversarial:
            d_channels = self.objective.discriminator_channels(self.dataset.in_channels, self.dataset.out_channels)
            self.discriminator = registry.create("discriminator", discriminator.name, in_channels=d_channels, **discriminator.options)
            size = self.dataset.image_size
            if self.discriminator.output_size(size) < 1:  # otherwise a convolution fails mid-step, far from the cause
                raise ConfigError(
                    f"discriminator {discriminator.name!r} (receptive field {self.discriminator.receptive_field}) has no "
                    f"output for {size}x{size} images; use larger images (--data.crop_size) or a smaller receptive field"
                )
            self.discriminator.to(self.device)
            self.components["discriminator"] = {"name": discriminator.name, "options": dict(discriminator.options), "in_channels": d_channels}
        self.components["plugins"] = {p.distribution: p.version for p in registry.plugins if not p.error}

        self.models = {"generator": self.generator, "discriminator": self.discriminator}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler] = {}
        for role, model in self.models.items():
            if model is None:
                continue
            init_weights(model, train.init_gain)
            optimizer = torch.optim.Adam(model.parameters(), lr=train.lr, betas=(train.beta1, train.beta2))
            self.optimizers[role] = optimizer
            self.schedulers[role] = torch.optim.lr_scheduler.LambdaLR(optimizer, self._lr_factor)

        self.validator: Validator | None = None
        if train.validate_every:
            try:
                validation_data = registry.create("dataset", data.name, split="val", **data.options)
            except DataError as error:
                raise DataError(f"{error}. Validation needs a val split; without one, set --trainer.validate_every 0") from None
            self.validator = Validator(
                dataset=validation_data,
                samples=train.validate_samples,
                metric=train.best_metric,
                mode=train.validate_mode,
                device=self.device,
            )

        self.steps_per_epoch = math.ceil(len(self.dataset) / train.batch_size)
        epochs = train.n_epochs + train.n_epochs_decay
        self.total_steps = min(epochs * self.steps_per_epoch, train.max_steps or math.inf)
        self.step = 0

    def _lr_factor(self, epoch: int) -> float:
        """1 for n_epochs, then linear decay, reaching 0 once n_epochs_decay more have passed."""
        decay = self.config.n_epochs_decay
        return min(1.0, (self.config.n_epochs + decay - epoch) / (decay + 1))

    # -- one step -----------------------------------------------------------------------------------------

    def train_step(self, x: Tensor, target: Tensor) -> dict[str, float]:
        """One D step on half the adversarial terms, then one G step on all terms; returns the losses."""
        fake = self.generator(x)
        logged: dict[str, float] = {}
        disc = self.discriminator
        if disc is not None:
            disc.requires_grad_(True)
            self.optimizers["discriminator"].zero_grad(set_to_none=True)
            d_losses = self.objective.discriminator_losses(x=x, fake=fake.detach(), target=target, disc=disc)
            (0.5 * Objective.total(d_losses)).backward()
            self.optimizers["discriminator"].step()
            disc.requires_grad_(False)  # G's step needs gradients through D, not for D
            logged |= {f"D/{name}": 0.5 * value.item() for name, value in d_losses.items()}
        self.optimizers["generator"].zero_grad(set_to_none=True)
        g_losses = self.objective.generator_losses(x=x, fake=fake, target=target, disc=disc)
        Objective.total(g_losses).backward()
        self.optimizers["generator"].step()
        logged |= {f"G/{name}": value.item() for name, value in g_losses.items()}
        self._last = (x, fake.detach(), target)
        return logged

    # -- state ----------------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "format": 1,
            "step": self.step,
            "models": {role: m.state_dict() for role, m in self.models.items() if m is not None},
            "optimizers": {role: o.state_dict() for role, o in self.optimizers.items()},
            "schedulers": {role: s.state_dict() for role, s in self.schedulers.items()},
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "python": random.getstate(),
            },
            "components": self.components,
            "config": self.config_text,
            **({"best": self.validator.state_dict()} if self.validator else {}),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for role, model in self.models.items():
            if model is not None:
                model.load_state_dict(state["models"][role])
        for role, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][role])
        for role, scheduler in self.schedulers.items():
            scheduler.load_state_dict(state["schedulers"][role])
        torch.set_rng_state(state["rng"]["torch"])
        if state["rng"]["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        random.setstate(state["rng"]["python"])
        if self.validator and "best" in state:
            self.validator.load_state_dict(state["best"])
        self.step = state["step"]

    def resume(self) -> None:
        self.load_state_dict(checkpoint.load(self.run_dir, map_location=self.device))

    # -- the loop -------------------------------------------------------------------------------------------

    def fit(self) -> Path:
        """Train to ``total_steps``, logging to TensorBoard; returns the last checkpoint's path."""
        from torch.utils.tensorboard import SummaryWriter  # slow to import; only training needs it

        cfg = self.config
        writer = SummaryWriter(self.run_dir)
        sums: dict[str, float] = defaultdict(float)
        counted, images, started = 0, 0, time.perf_counter()
        last_path = None
        bar = tqdm(total=self.total_steps, initial=self.step, disable=not cfg.progress, unit="step", dynamic_ncols=True)
        try:
            while self.step < self.total_steps:
                epoch, done = divmod(self.step, self.steps_per_epoch)
                for batch in self._loader(epoch, skip=done * cfg.batch_size):
                    x, target = batch.a.to(self.device), batch.b.to(self.device)
                    for name, value in self.train_step(x, target).items():
                        sums[name] += value
                    counted += 1
                    images += x.shape[0]
                    self.step += 1
                    bar.update()
                    if self.step % cfg.log_every == 0 or self.step == self.total_steps:
                        rate = images / (time.perf_counter() - started)
                        means = {name: total / counted for name, total in sums.items()}
                        self._log_scalars(writer, means, rate)
                        bar.set_postfix({k: f"{v:.3g}" for k, v in means.items()} | {"img/s": f"{rate:.2f}"})
                        sums.clear()
                        counted, images, started = 0, 0, time.perf_counter()
                    if self.step % cfg.image_every == 0 or self.step == self.total_steps:
                        writer.add_image("train/input|output|target", self._grid(), self.step)
                    if cfg.validate_every and (self.step % cfg.validate_every == 0 or self.step == self.total_steps):
                        self._validate(writer)
                    if self.step % cfg.checkpoint_every == 0 and self.step < self.total_steps:
                        last_path = checkpoint.save(self.state_dict(), self.run_dir, self.step)
                    if self.step >= self.total_steps:
                        break
                if self.step % self.steps_per_epoch == 0 or self.step >= self.total_steps:
                    for scheduler in self.schedulers.values():
                        scheduler.step()
            last_path = checkpoint.save(self.state_dict(), self.run_dir, self.step)
        finally:
            bar.close()
            writer.close()
        return last_path

    def _loader(self, epoch: int, skip: int) -> DataLoader:
        sampler = EpochSampler(len(self.dataset), seed=self.config.seed, epoch=epoch, skip=skip)
        return DataLoader(
            self.dataset,
            batch_size=self.config.batch_size,
            sampler=sampler,
            num_workers=self.config.num_workers,
            persistent_workers=False,
            pin_memory=self.device.type == "cuda",
            generator=torch.Generator().manual_seed(self.config.seed + epoch),
        )

    def _validate(self, writer: Any) -> None:
        scores = self.validator(self.generator)
        for name, value in scores.items():
            writer.add_scalar(f"val/{name}", value, self.step)
        if self.validator.improved(scores, self.step):
            checkpoint.save_best(self.state_dict(), self.run_dir)

    def _log_scalars(self, writer: Any, means: Mapping[str, float], images_per_sec: float) -> None:
        for name, value in means.items():
            writer.add_scalar(f"loss/{name}", value, self.step)
        writer.add_scalar("lr", self.optimizers["generator"].param_groups[0]["lr"], self.step)
        writer.add_scalar("perf/images_per_sec", images_per_sec, self.step)

    def _grid(self, max_rows: int = 4) -> Tensor:
        """Rows of input | output | target, values mapped to [0, 1]."""
        x, fake, target = (displayable(t[:max_rows]).cpu() for t in self._last)
        rows = torch.stack([x, fake, target], dim=1).flatten(0, 1)
        return torchvision.utils.make_grid(rows, nrow=3, normalize=True, value_range=(-1, 1), padding=2)

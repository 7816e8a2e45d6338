"""Training as in the paper: one D step on the halved objective, then one G step, Adam 2e-4 (0.5, 0.999)."""

from __future__ import annotations

import math
import os
import random
import signal
import threading
import time
import warnings
from collections import defaultdict
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import attrs
import numpy as np
import torch
import torchvision
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm

from p2p_core import checkpoint, distributed
from p2p_core.errors import ConfigError, DataError, NumericalError
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
    on_nonfinite: Literal["stop", "skip"] = "stop"
    """A NaN/Inf loss or gradient stops the run (the last checkpoint stays intact), or skips that update."""
    nproc: int = 1
    """Processes on this machine; more than 1 reruns the command under torchrun (DistributedDataParallel)."""
    sync_batchnorm: bool = False
    """With several GPUs, BatchNorm statistics over the whole batch rather than each process's share."""
    dist_timeout: float = 600.0
    """Seconds a process waits for the others before the job fails instead of hanging."""
    precision: Literal["fp32", "bf16"] = "fp32"
    """bf16 runs forward passes and losses under autocast: faster on recent GPUs, different numerics."""
    channels_last: bool = False
    """Keep images and weights in NHWC layout, which GPU convolution kernels prefer."""
    compile: Literal["none", "default", "reduce-overhead", "max-autotune"] = "none"
    """torch.compile the networks; reduce-overhead also replays CUDA graphs (needs fixed image sizes)."""
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
    """A fresh permutation per epoch, seeded by (seed, epoch), so a resumed run sees the same order.

    With several processes, like torch's DistributedSampler: each rank takes every world_size-th index
    of the same permutation (the tail that does not divide evenly is left out, so ranks stay in step).
    ``skip`` drops the first indices of this rank's share: the ones a resumed run has already used.
    """

    def __init__(self, length: int, *, seed: int, epoch: int, skip: int = 0, rank: int = 0, world_size: int = 1) -> None:
        self.length, self.seed, self.epoch, self.skip = length, seed, epoch, skip
        self.rank, self.world_size = rank, world_size

    def __iter__(self) -> Iterator[int]:
        order = torch.randperm(self.length, generator=torch.Generator().manual_seed(self.seed * 10_007 + self.epoch))
        share = order[: len(order) - len(order) % self.world_size][self.rank :: self.world_size]
        return iter(share[self.skip :].tolist())

    def __len__(self) -> int:
        return self.length // self.world_size - self.skip


def rng_state() -> dict[str, Any]:
    """Every random number generator training touches, as plain data a weights-only checkpoint can hold."""
    keys, position, has_gauss, gauss = np.random.get_state()[1:]
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": random.getstate(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "position": position, "has_gauss": has_gauss, "gauss": gauss},
    }


def set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    random.setstate(state["python"])
    numpy = state["numpy"]
    np.random.set_state(("MT19937", numpy["keys"].numpy().astype(np.uint32), numpy["position"], numpy["has_gauss"], numpy["gauss"]))


class SeededSamples(Dataset):
    """Gives each sample's random draws (the jitter) a seed of its own, made from (seed, epoch, index).

    What a step sees then depends neither on the number of loader workers nor on where a run was resumed,
    and data loading leaves the training process's generators (dropout's) untouched.
    """

    def __init__(self, dataset: Any, *, seed: int, epoch: int) -> None:
        self.dataset, self.seed, self.epoch = dataset, seed, epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        saved = rng_state()
        sample_seed = ((self.seed * 1_000_003 + self.epoch) * 1_000_033 + index) % 2**32
        torch.manual_seed(sample_seed)
        random.seed(sample_seed)
        np.random.seed(sample_seed)
        try:
            return self.dataset[index]
        finally:
            set_rng_state(saved)


class StopRequest:
    """Turns SIGINT/SIGTERM into a request to checkpoint and stop after the current step; a second one aborts."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            self._previous = {number: signal.signal(number, self._handle) for number in self.SIGNALS}
        return self

    def __exit__(self, *exc_info: object) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)

    def _handle(self, number: int, frame: object) -> None:
        if self.signal is not None:
            raise KeyboardInterrupt
        self.signal = number


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
        device = resolve_device(train.device)
        self.dist = distributed.init(device=device, timeout_s=train.dist_timeout)
        self.device = distributed.device_for(self.dist, device)
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
            # PyTorch's fused kernel runs the same Adam update in one pass over the weights: 5x faster on CPU.
            optimizer = torch.optim.Adam(model.parameters(), lr=train.lr, betas=(train.beta1, train.beta2), fused=True)
            self.optimizers[role] = optimizer
            self.schedulers[role] = torch.optim.lr_scheduler.LambdaLR(optimizer, self._lr_factor)

        if train.channels_last:
            for model in self.models.values():
                if model is not None:
                    model.to(memory_format=torch.channels_last)
        self._generator = self._compiled(self._parallel(self.generator))
        self._discriminator = self._compiled(self._parallel(self.discriminator))
        # G's step judges its output with D but must not average D's (absent) gradients across processes.
        self._judge = self._compiled(self.discriminator) if self.dist.active else self._discriminator

        self.validator: Validator | None = None
        if train.validate_every and self.dist.is_main:  # one process validates and keeps best.pt
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

        self.steps_per_epoch = math.ceil(len(self.dataset) // self.dist.world_size / train.batch_size)
        epochs = train.n_epochs + train.n_epochs_decay
        self.total_steps = min(epochs * self.steps_per_epoch, train.max_steps or math.inf)
        self.step = 0
        self.skipped_updates = 0
        self.stopped_by: int | None = None

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

    def _lr_factor(self, epoch: int) -> float:
        """1 for n_epochs, then linear decay, reaching 0 once n_epochs_decay more have passed."""
        decay = self.config.n_epochs_decay
        return min(1.0, (self.config.n_epochs + decay - epoch) / (decay + 1))

    # -- one step -----------------------------------------------------------------------------------------

    def train_step(self, x: Tensor, target: Tensor) -> dict[str, float]:
        """One D step on half the adversarial terms, then one G step on all terms; returns the losses."""
        with self._autocast():
            fake = self._generator(x)
        logged: dict[str, float] = {}
        disc = self.discriminator
        if disc is not None:
            disc.requires_grad_(True)
            with self._autocast():
                d_losses = self.objective.discriminator_losses(x=x, fake=fake.detach(), target=target, disc=self._discriminator)
            logged |= self._update("discriminator", {f"D/{name}": 0.5 * value for name, value in d_losses.items()})
            disc.requires_grad_(False)  # G's step needs gradients through D, not for D
        with self._autocast():
            g_losses = self.objective.generator_losses(x=x, fake=fake, target=target, disc=self._judge)
        logged |= self._update("generator", {f"G/{name}": value for name, value in g_losses.items()})
        self._last = (x, fake.detach(), target)
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

    def state_dict(self) -> dict[str, Any]:
        return {
            "format": 1,
            "step": self.step,
            "models": {role: m.state_dict() for role, m in self.models.items() if m is not None},
            "optimizers": {role: o.state_dict() for role, o in self.optimizers.items()},
            "schedulers": {role: s.state_dict() for role, s in self.schedulers.items()},
            "rng": rng_state(),
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
        set_rng_state(state["rng"])
        if self.validator and "best" in state:
            self.validator.load_state_dict(state["best"])
        self.step = state["step"]

    def resume(self) -> None:
        self.load_state_dict(checkpoint.load(self.run_dir, map_location=self.device))

    # -- the loop -------------------------------------------------------------------------------------------

    def fit(self) -> Path:
        """Train to ``total_steps`` (or until SIGINT/SIGTERM), logging to TensorBoard; returns the last checkpoint."""
        from torch.utils.tensorboard import SummaryWriter  # slow to import; only training needs it

        cfg = self.config
        main = self.dist.is_main  # one process logs and writes checkpoints for all
        writer = SummaryWriter(self.run_dir) if main else None
        sums: dict[str, float] = defaultdict(float)
        counted, images, started = 0, 0, time.perf_counter()
        bar = tqdm(total=self.total_steps, initial=self.step, disable=not (cfg.progress and main), unit="step", dynamic_ncols=True)
        try:
            with StopRequest() as stop:
                for batch in self._batches():
                    x, target = self.to_device(batch.a), self.to_device(batch.b)
                    for name, value in self.train_step(x, target).items():
                        sums[name] += value
                    counted += 1
                    images += x.shape[0] * self.dist.world_size
                    self.step += 1
                    bar.update()
                    if self.step % self.steps_per_epoch == 0:  # before any checkpoint, so a resume starts clean
                        for scheduler in self.schedulers.values():
                            scheduler.step()
                    if main and (self.step % cfg.log_every == 0 or self.step == self.total_steps):
                        rate = images / (time.perf_counter() - started)
                        means = {name: total / counted for name, total in sums.items()}
                        self._log_scalars(writer, means, rate)
                        bar.set_postfix({k: f"{v:.3g}" for k, v in means.items()} | {"img/s": f"{rate:.2f}"})
                        sums.clear()
                        counted, images, started = 0, 0, time.perf_counter()
                    if main and (self.step % cfg.image_every == 0 or self.step == self.total_steps):
                        writer.add_image("train/input|output|target", self._grid(), self.step)
                    if self.validator and (self.step % cfg.validate_every == 0 or self.step == self.total_steps):
                        self._validate(writer)
                    if distributed.any_rank(self.dist, stop.signal is not None) or self.step >= self.total_steps:
                        break
                    if main and self.step % cfg.checkpoint_every == 0:
                        checkpoint.save(self.state_dict(), self.run_dir, self.step)
                # Stopped early without a signal of its own: another rank got one (torchrun sends SIGTERM to all).
                self.stopped_by = stop.signal or (signal.SIGTERM if self.step < self.total_steps else None)
            if not main:
                return checkpoint.path_for(self.run_dir, self.step)
            return checkpoint.save(self.state_dict(), self.run_dir, self.step)
        finally:
            bar.close()
            if writer is not None:
                writer.close()

    def _batches(self) -> Iterator[Any]:
        """Batches from the current step on, epoch after epoch, each epoch in its seeded order."""
        while self.step < self.total_steps:
            epoch, done = divmod(self.step, self.steps_per_epoch)
            yield from self._loader(epoch, skip=done * self.config.batch_size)

    def _loader(self, epoch: int, skip: int) -> DataLoader:
        return DataLoader(
            SeededSamples(self.dataset, seed=self.config.seed, epoch=epoch),
            batch_size=self.config.batch_size,
            sampler=EpochSampler(len(self.dataset), seed=self.config.seed, epoch=epoch, skip=skip,
                                 rank=self.dist.rank, world_size=self.dist.world_size),
            num_workers=self.config.num_workers,
            pin_memory=self.device.type == "cuda",
            # Its own generator: otherwise making the iterator draws from the global one that dropout uses.
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

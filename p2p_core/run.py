"""A training run: its folder, data, processes, logging, checkpoints, validation and signals.

``p2p fit`` parses a :class:`~p2p_core.spec.RunSpec` and hands it here; :class:`Run` does the rest, once, in
this order: join the processes (torchrun's), name and check the folder, build the data and the model, write
``config.yaml``, resume from the newest good checkpoint if asked, then train to the end or to a signal. A new
run whose first step fails removes its folder again.
"""

from __future__ import annotations

import contextlib
import math
import random
import shutil
import signal
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from p2p_core import checkpoint, distributed
from p2p_core.config import dump_yaml
from p2p_core.devices import resolve_device
from p2p_core.errors import ConfigError, DataError
from p2p_core.files import check_name, locked, remove_temporaries, write_atomically
from p2p_core.images import displayable
from p2p_core.progress import Progress, choose_style
from p2p_core.registry import Registry, default_registry
from p2p_core.spec import IMAGE_ENCODING, RunSpec, Shapes
from p2p_core.training import Training
from p2p_core.validation import Validator

CONFIG = "config.yaml"
LOCK = ".lock"
"""Held by the process training in a run folder (its PID inside), so that a second one is refused."""


@attrs.frozen(kw_only=True)
class Outcome:
    """How a run ended."""

    run_dir: Path
    checkpoint: Path
    """The last checkpoint written (on the main process)."""
    step: int
    total_steps: int
    stopped_by: int | None
    """The signal that stopped it early, or None when it ran to the end."""
    is_main: bool = True
    """Whether this process is the one that logs and writes (rank 0)."""


class Run:
    """One training run in ``out_dir/name`` (a new folder), or continuing the folder ``resume``."""

    def __init__(
        self,
        spec: RunSpec,
        *,
        out_dir: Path = Path("runs"),
        name: str | None = None,
        resume: Path | None = None,
        init_from: Path | None = None,
        registry: Registry | None = None,
    ) -> None:
        registry = registry or default_registry()
        self.spec, self.config = spec, spec.trainer
        train = spec.trainer
        device = resolve_device(train.device, option="--trainer.device")
        self.dist = distributed.init(device=device, timeout_s=train.dist_timeout)
        self.device = distributed.device_for(self.dist, device)
        self.resuming = resume is not None
        if resume is not None:
            self.run_dir = Path(resume)
        else:
            methods = "" if spec.method.name == "pix2pix" else f"{spec.method.name}-"
            default_name = f"{time.strftime('%Y%m%d-%H%M%S')}-{methods}{spec.generator.name}-{spec.disc.name}"
            self.run_dir = Path(out_dir) / (check_name(name, option="--name") if name else distributed.broadcast(self.dist, default_name))
            if self.dist.is_main and self.run_dir.exists():
                raise ConfigError(
                    f"run folder {self.run_dir} already exists; pick another --name, or continue it with --resume {self.run_dir}"
                )
        self.out_dir = self.run_dir.parent
        _seed_everything(train.seed)

        self.dataset = registry.create("dataset", spec.data.name, split="train", **spec.data.options)
        if len(self.dataset) == 0:
            raise ConfigError(f"dataset {spec.data.name!r} is empty")
        self.dataset[0]  # fail on unreadable data now, with the file named, not inside a worker later
        self.steps_per_epoch = math.ceil(len(self.dataset) // self.dist.world_size / train.batch_size)
        if self.steps_per_epoch < 1:
            raise ConfigError(
                f"dataset {spec.data.name!r} has {len(self.dataset)} pair(s), fewer than the {self.dist.world_size} "
                "process(es) need; add data or use fewer --trainer.nproc"
            )
        epochs = train.n_epochs + train.n_epochs_decay
        total_steps = min(epochs * self.steps_per_epoch, train.max_steps or math.inf)
        if total_steps < 1:
            raise ConfigError("the run has no steps: set --trainer.n_epochs, --trainer.n_epochs_decay or --trainer.max_steps above 0")
        shapes = Shapes(in_channels=self.dataset.in_channels, out_channels=self.dataset.out_channels, image_size=self.dataset.image_size)
        self.model = Training.build(spec, shapes, total_steps=int(total_steps), device=self.device, registry=registry, dist=self.dist,
                                    input_encoding=getattr(self.dataset, "input_encoding", IMAGE_ENCODING))
        if init_from is not None:  # fine-tuning: the weights of another run, a fresh optimizer and schedule
            source = checkpoint.read(init_from, map_location=self.device)
            self.model.load_weights(source.state["models"], source=str(source.path))

        self.validator: Validator | None = None
        if train.validate_every and self.dist.is_main:  # one process validates and keeps best.pt
            try:
                validation_data = registry.create("dataset", spec.data.name, split="val", **spec.data.options)
            except DataError as error:
                raise DataError(f"{error}. Validation needs a val split; without one, set --trainer.validate_every 0") from None
            self.validator = Validator(
                dataset=validation_data,
                samples=train.validate_samples,
                metric=train.best_metric,
                mode=train.validate_mode,
                device=self.device,
            )
        self.stopped_by: int | None = None

    @property
    def total_steps(self) -> int:
        return self.model.total_steps

    @property
    def step(self) -> int:
        return self.model.step

    def config_text(self) -> str:
        """``config.yaml``: the spec and where the run lives; ``p2p fit --config`` accepts it back."""
        return dump_yaml(self.spec.to_dict() | {"out_dir": str(self.out_dir), "name": self.run_dir.name})

    def __call__(self) -> Outcome:
        """Prepare the folder (or resume it), train, and say how it ended."""
        made = self.dist.is_main and not self.resuming
        with contextlib.ExitStack() as held:
            if self.dist.is_main:
                held.enter_context(self._claimed_folder())
            distributed.barrier(self.dist)
            if self.resuming and checkpoint.checkpoints(self.run_dir):
                self.load_state_dict(checkpoint.load(self.run_dir, map_location=self.device))
                self._say(f"resuming {self.run_dir} at step {self.step} of {self.total_steps}")
            elif self.resuming:  # stopped before its first checkpoint: start over with the saved config
                self._say(f"{self.run_dir} has no checkpoint yet; starting it from step 0")
            try:
                last = self.fit()
            except Exception:
                # A first step that fails (a term breaking its contract, torch.compile refusing a network) is a
                # configuration that cannot train: no half-made folder, with a config.yaml and events, is left of it.
                if made and self.step == 0:
                    shutil.rmtree(self.run_dir, ignore_errors=True)
                raise
        distributed.shutdown()
        return Outcome(run_dir=self.run_dir, checkpoint=last, step=self.step, total_steps=self.total_steps,
                       stopped_by=self.stopped_by, is_main=self.dist.is_main)

    @contextlib.contextmanager
    def _claimed_folder(self) -> Iterator[None]:
        """The run folder, made (a new run) and locked against a second writer for as long as the run lasts."""
        checkpoint.check_writable(self.run_dir, needed_bytes=2 * self.model.checkpoint_bytes)
        if not self.resuming:
            try:
                self.run_dir.mkdir(parents=True)
            except FileExistsError:  # made by another fit of the same --name since __init__ looked
                raise ConfigError(f"run folder {self.run_dir} already exists; pick another --name") from None
        with locked(self.run_dir / LOCK, what=f"run folder {self.run_dir}"):
            for folder in (self.run_dir, self.run_dir / checkpoint.FOLDER):
                remove_temporaries(folder)  # of a run killed mid-write; no other process writes here now
            if not self.resuming:
                write_atomically(self.run_dir / CONFIG, self.config_text().encode())
            yield

    def _say(self, message: str) -> None:
        if self.dist.is_main:
            print(message, file=sys.stderr)

    # -- state ----------------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            **self.model.state_dict(),
            "rng": rng_state(),
            **({"best": self.validator.state_dict()} if self.validator else {}),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.model.load_state_dict(state)
        if "rng" in state:  # an imported model has none: it was never trained here
            set_rng_state(state["rng"])
        if self.validator and "best" in state:
            self.validator.load_state_dict(state["best"])

    def _save(self) -> Path:
        self.model.check_finite()
        return checkpoint.save(self.state_dict(), self.run_dir, self.step)

    # -- the loop -------------------------------------------------------------------------------------------

    def fit(self) -> Path:
        """Train to ``total_steps`` (or until SIGINT/SIGTERM), logging to TensorBoard; returns the last checkpoint.

        The first step logs its scalars and an image grid, so TensorBoard shows something at once.
        """
        from torch.utils.tensorboard import SummaryWriter  # slow to import; only training needs it

        cfg, model = self.config, self.model
        main = self.dist.is_main  # one process logs and writes checkpoints for all
        writer = SummaryWriter(self.run_dir) if main else None
        # Per name: a method may log a value on some steps only (G's, with several critic steps per G step).
        sums: dict[str, float] = defaultdict(float)
        counts: dict[str, int] = defaultdict(int)
        images, started = 0, time.perf_counter()
        first = self.step + 1
        progress = Progress(total=self.total_steps, initial=self.step, style=choose_style(cfg.progress and main))
        try:
            with StopRequest() as stop:
                for batch in self._batches():
                    for name, value in model.train_step(batch).items():
                        sums[name] += value
                        counts[name] += 1
                    images += batch.a.shape[0] * self.dist.world_size
                    step = self.step
                    progress.step()
                    if main and (step % cfg.log_every == 0 or step in (first, self.total_steps)):
                        rate = images / (time.perf_counter() - started)
                        means = {name: total / counts[name] for name, total in sums.items()}
                        self._log_scalars(writer, means, rate)
                        progress.report(step, means, rate)
                        sums.clear()
                        counts.clear()
                        images, started = 0, time.perf_counter()
                    if main and (step % cfg.image_every == 0 or step in (first, self.total_steps)):
                        tag, grid = self._grid()
                        writer.add_image(tag, grid, step)
                    if self.validator and (step % cfg.validate_every == 0 or step == self.total_steps):
                        self._validate(writer)
                    if distributed.any_rank(self.dist, stop.signal is not None) or step >= self.total_steps:
                        break
                    if main and step % cfg.checkpoint_every == 0:
                        self._save()
                # Stopped early without a signal of its own: another rank got one (torchrun sends SIGTERM to all).
                self.stopped_by = stop.signal or (signal.SIGTERM if self.step < self.total_steps else None)
            if not main:
                return checkpoint.path_for(self.run_dir, self.step)
            return self._save()
        finally:
            progress.close()
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
            collate_fn=collate_samples,
            pin_memory=self.device.type == "cuda",
            # Its own generator: otherwise making the iterator draws from the global one that dropout uses.
            generator=torch.Generator().manual_seed(self.config.seed + epoch),
        )

    def _validate(self, writer: Any) -> None:
        scores = self.validator(self.model.translator("AtoB"))
        for name, value in scores.items():
            writer.add_scalar(f"val/{name}", value, self.step)
        if self.validator.improved(scores, self.step):
            self.model.check_finite()
            checkpoint.save_best(self.state_dict(), self.run_dir)

    def _log_scalars(self, writer: Any, means: Mapping[str, float], images_per_sec: float) -> None:
        scalars = {
            **{f"loss/{name}": value for name, value in means.items()},
            # The rate the latest update used, of the method's first optimizer (pix2pix: the generator's).
            "lr": next(iter(self.model.optimizers.values())).param_groups[0]["lr"],
            "perf/images_per_sec": images_per_sec,
        }
        for tag, value in scalars.items():
            writer.add_scalar(tag, value, self.step)
        self.model.registry.hook.p2p_log(training=self.model, run_dir=self.run_dir, step=self.step, scalars=scalars)

    def _grid(self, max_rows: int = 4) -> tuple[str, Tensor]:
        """The latest step's images as rows of the method's columns (pix2pix: input | output | target), values
        mapped to [0, 1], and the tag that names the columns."""
        import torchvision.utils

        columns = self.model.method.images()
        rows = torch.stack([displayable(t[:max_rows].detach().float()).cpu() for t in columns.values()], dim=1).flatten(0, 1)
        grid = torchvision.utils.make_grid(rows, nrow=len(columns), normalize=True, value_range=(-1, 1), padding=2)
        return f"train/{'|'.join(columns)}", grid


def collate_samples(samples: list[Any]) -> Any:
    """A batch of samples, field by field; a field a dataset leaves None (e.g. ``labels``) stays None."""
    first = samples[0]
    fields = [None if value is None else default_collate([sample[index] for sample in samples]) for index, value in enumerate(first)]
    return type(first)(*fields)


def _seed_everything(seed: int) -> None:
    # NumPy's global generator too: a plugin drawing from np.random then resumes exactly like torch does.
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)


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

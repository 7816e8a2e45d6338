"""Training any method: what every training procedure needs from the core, done once for all of them.

A method (:class:`p2p_core.protocols.Method`, pix2pix, or a plugin's) decides which networks it
trains and what one step does. :class:`Training` builds the networks it asks for through the registry, gives them
the paper's initialisation, places them on the device in the chosen memory layout, wraps them for
DistributedDataParallel and torch.compile, runs the learning-rate schedule over every optimizer, applies one
update with the non-finite checks, calls the plugins' training callbacks (:mod:`p2p_core.hookspecs`: an average of
the weights, augmentations of what a discriminator sees), and holds the whole state for checkpoints. It knows nothing of data, folders,
logging or signals (:mod:`p2p_core.run` does): ``bench`` and tests build it in one call, :meth:`Training.build`,
and feed it batches.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Literal

import torch
from torch import Tensor, nn

from p2p_core import distributed
from p2p_core.checkpoint import check_weights
from p2p_core.devices import native_precision_note
from p2p_core.errors import ConfigError, DataError, NumericalError, PluginError, did_you_mean
from p2p_core.networks import build_network, check_discriminator, init_weights
from p2p_core.objective import Objective, fix_network
from p2p_core.protocols import Method, Sample
from p2p_core.registry import Registry, default_registry
from p2p_core.spec import IMAGE_ENCODING, NetworkShape, RunSpec, Shapes, TrainedSpec, input_classes


class Training:
    """A method being trained: its networks by role, its optimizers by name, and the step that drives the schedule.

    Build it with :meth:`build`; the method's constructor receives it as ``training`` and calls :meth:`network`,
    :meth:`optimizer` and :meth:`build_objective`; its step calls :meth:`module`, :meth:`frozen`, :meth:`autocast`
    and :meth:`update`.
    """

    def __init__(
        self,
        *,
        run: RunSpec,
        shapes: Shapes,
        total_steps: int,
        device: torch.device,
        registry: Registry,
        dist: distributed.Context = distributed.Context(),
        input_encoding: str = IMAGE_ENCODING,
    ) -> None:
        classes = input_classes(input_encoding)
        if classes is not None and classes != shapes.in_channels:
            raise ConfigError(
                f"dataset {run.data.name!r} declares input_encoding {input_encoding!r} ({classes} one-hot channels), but "
                f"its inputs have {shapes.in_channels} channels; give the inputs one channel per class"
            )
        self.spec, self.shapes, self.config = run, shapes, run.trainer
        """The run spec (its loss, components and trainer options), the data's shapes, the trainer options."""
        self.registry, self.device, self.dist, self.total_steps = registry, device, dist, total_steps
        if note := native_precision_note(run.trainer.precision, device):
            warnings.warn(f"--trainer.precision {run.trainer.precision}: {note}", stacklevel=2)
        self.step = 0
        """Steps done; the method's step reads it (e.g. to check its terms at step 0)."""
        self.skipped_updates = 0
        self.networks: dict[str, nn.Module] = {}
        """Role -> the network itself (unwrapped): what checkpoints, validation and inference use."""
        self.averaged: dict[str, nn.Module] = {}
        """Role -> weights averaged over training (a module with the network's state-dict keys), as a training
        callback keeps them (``p2p_ema``): checkpoints hold them, and validation and inference use them."""
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.saved_terms: dict[str, nn.Module] = {}
        """Term name -> a loss term's own network that asks to be saved (``saved = True``): checkpoints hold it."""
        self._shapes: dict[str, NetworkShape] = {}
        self._base_rates: dict[str, float] = {}
        self._frozen: set[str] = set()
        self._wrapped: dict[str, nn.Module] = {}
        self._judges: dict[str, nn.Module] = {}
        self.method: Method = registry.create("method", run.method.name, training=self, **run.method.options)
        self._check_directions()
        for role in run.roles:
            if role not in self.networks:
                raise ConfigError(
                    f"--{role}.OPTION: method {run.method.name!r} has no network {role!r}{did_you_mean(role, self.networks)} "
                    f"its networks: {', '.join(self.networks)} (--ROLE.OPTION sets an option of one of them)"
                )
        for role, network in self.networks.items():
            init_weights(network, self.config.init_gain)
            network.to(device)
            if self.config.channels_last:
                network.to(memory_format=torch.channels_last)
            self._wrapped[role] = self._compiled(self._parallel(network))
            # A network judging another's update must not average its own (absent) gradients across processes.
            self._judges[role] = self._compiled(network) if dist.active else self._wrapped[role]
        discriminators = [shape for shape in self._shapes.values() if shape.kind == "discriminator"]
        self.trained = TrainedSpec(
            run=run,
            shapes=Shapes(in_channels=shapes.in_channels, out_channels=shapes.out_channels, image_size=shapes.image_size,
                          disc_in_channels=discriminators[0].in_channels if discriminators else None),
            plugins={p.distribution: p.version for p in registry.plugins if not p.error},
            providers=registry.providers(run),
            adversarial=bool(discriminators),
            networks=dict(self._shapes),
            directions=dict(self.method.directions),
            input_encoding=input_encoding,
        )
        """What checkpoints record: the spec, the shapes, the networks and directions, and who provided them."""
        for role in [role for role, shape in self._shapes.items() if shape.kind == "discriminator"]:
            augments = [augment for augment in registry.hook.p2p_discriminator_augment(training=self, role=role) if augment]
            if augments:
                self._wrapped[role], self._judges[role] = (Augmented(self._wrapped[role], augments),
                                                           Augmented(self._judges[role], augments))
        registry.hook.p2p_train_start(training=self)
        if self.config.ema and not self.averaged:  # otherwise the option would do nothing, silently
            raise PluginError("--trainer.ema: no loaded plugin keeps the average; it is p2p's built-in p2p_ema, "
                              "registered when p2p is installed: reinstall p2p (pip install -e . in a checkout)")

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
        input_encoding: str = IMAGE_ENCODING,
    ) -> Training:
        """The method ``run`` names, with its networks, for data of ``shapes`` (``disc_in_channels`` is the method's)
        whose input files are read as ``input_encoding`` says (the dataset's)."""
        return cls(run=run, shapes=shapes, total_steps=total_steps, device=torch.device(device),
                   registry=registry or default_registry(), dist=dist, input_encoding=input_encoding)

    # -- what a method's constructor calls ----------------------------------------------------------------------

    def network(
        self, role: str, kind: Literal["generator", "discriminator"], *, in_channels: int, out_channels: int | None = None
    ) -> nn.Module:
        """Build the run's chosen ``kind`` (``--generator``, ``--disc``, with their options) as the network ``role``.

        A generator translates ``in_channels`` to ``out_channels`` and is checked against the training crops; a
        discriminator sees ``in_channels`` and must have an output for them. The core initialises, places and
        wraps it once the method is built; call :meth:`module` in a step to run it.
        """
        if self._wrapped:
            raise PluginError(f"method {self.spec.method.name!r} asked for network {role!r} after it was built; "
                              "ask for every network in the method's constructor")
        if role in self._shapes:
            raise PluginError(f"method {self.spec.method.name!r} asked for network {role!r} twice; give each network a role of its own")
        if kind not in ("generator", "discriminator"):
            raise PluginError(f"network {role!r}: kind must be 'generator' or 'discriminator', got {kind!r}")
        shape = NetworkShape(kind=kind, in_channels=in_channels, out_channels=out_channels)
        module = build_network(self.spec, shape, image_size=self.shapes.image_size, registry=self.registry, role=role)
        size = self.shapes.image_size
        if kind == "generator":
            multiple = getattr(module, "size_multiple", 1)
            if size % multiple:  # otherwise the first step fails deep inside the network
                fits = max(multiple, size // multiple * multiple)
                raise ConfigError(
                    f"generator {self.spec.generator.name!r} needs image sides that are multiples of {multiple}, but the "
                    f"training crops are {size}x{size}; use --data.crop_size {fits} (or a generator option such as "
                    "--generator.depth that fits the size)"
                )
        else:  # fits the crops, and its output keeps the contract: checked here, not mid-step far from the cause
            chosen = self.registry.get("discriminator", self.spec.disc.name)
            label = f"discriminator {chosen.name!r} ({chosen.distribution} {chosen.version})"
            check_discriminator(module, size=size, batch=self.config.batch_size, label=label)
        self.networks[role], self._shapes[role] = module, shape
        return module

    def optimizer(
        self, name: str, roles: Iterable[str], *, lr: float | None = None, betas: tuple[float, float] | None = None
    ) -> torch.optim.Optimizer:
        """Adam over the parameters of ``roles``, at ``lr`` and ``betas`` (the trainer's, the paper's 2e-4 and (0.5,
        0.999), unless given); the schedule scales ``lr`` over the run. ``name`` is what :meth:`update` takes."""
        roles = list(roles)
        unknown = [role for role in roles if role not in self.networks]
        if unknown or name in self.optimizers:
            raise PluginError(f"optimizer {name!r}: " + (f"no network {unknown[0]!r} (built: {', '.join(self.networks)})"
                                                           if unknown else "a second optimizer of that name"))
        rate = self.config.lr if lr is None else lr
        # PyTorch's fused kernel runs the same Adam update in one pass over the weights: 5x faster on CPU.
        optimizer = torch.optim.Adam(
            [p for role in roles for p in self.networks[role].parameters()], lr=rate,
            betas=betas or (self.config.beta1, self.config.beta2), fused=True,
        )
        self.optimizers[name], self._base_rates[name] = optimizer, rate
        return optimizer

    def build_objective(self) -> Objective:
        """The run's ``--loss`` (with ``--loss_options``) as an :class:`Objective` whose messages name the run's
        discriminator. A term with a network of its own (an ``nn.Module``: a perceptual loss) is fixed here, on the
        device, in eval mode, without gradients, and in no optimizer; checkpoints hold it if it sets ``saved = True``."""
        run = self.spec
        objective = Objective.parse(run.loss, run.loss_options, self.registry,
                                    discriminator=f"discriminator {run.disc.name!r} ({self.registry.providers(run)['disc']})")
        layout = torch.channels_last if self.config.channels_last else torch.preserve_format
        for name, term in objective.networks.items():
            fix_network(term, self.device, layout)
            if getattr(term, "saved", False):
                self.saved_terms[name] = term
        return objective

    def _check_directions(self) -> None:
        directions = getattr(self.method, "directions", None)
        bad = None
        if not isinstance(directions, Mapping) or not directions:
            bad = f"directions {directions!r}"
        else:
            for direction, role in directions.items():
                if direction not in ("AtoB", "BtoA") or role not in self._shapes or self._shapes[role].kind != "generator":
                    bad = f"{direction}: {role!r}"
        if bad is not None:
            raise PluginError(
                f"method {self.spec.method.name!r} breaks the contract: directions maps AtoB and/or BtoA to generator "
                f"roles it built\n  found: {bad} (built: {', '.join(f'{r} ({s.kind})' for r, s in self._shapes.items()) or 'nothing'})\n"
                "  fix: build the generator with training.network(ROLE, 'generator', ...) and name that ROLE"
            )

    # -- what a method's step calls ------------------------------------------------------------------------------

    def module(self, role: str) -> nn.Module:
        """The network ``role`` as a step runs it: compiled if asked, and under torchrun wrapped so its gradients
        are averaged across processes, except while it is :meth:`frozen` (judging another network's update)."""
        return self._judges[role] if role in self._frozen else self._wrapped[role]

    @contextlib.contextmanager
    def frozen(self, *roles: str) -> Iterator[None]:
        """Within the block the networks ``roles`` get no gradients (a G step needs gradients through D, not for D)."""
        flags = {role: [p.requires_grad for p in self.networks[role].parameters()] for role in roles}
        for role in roles:
            self.networks[role].requires_grad_(False)
        self._frozen.update(roles)
        try:
            yield
        finally:
            self._frozen.difference_update(roles)
            for role, kept in flags.items():
                for parameter, flag in zip(self.networks[role].parameters(), kept):
                    parameter.requires_grad_(flag)

    def autocast(self) -> torch.autocast:
        """Forward passes and losses under bfloat16 autocast when ``--trainer.precision bfloat16``; a no-op otherwise."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.precision == "bfloat16")

    def update(self, name: str, losses: Mapping[str, Tensor]) -> dict[str, float]:
        """Backpropagate the sum of ``losses`` and step optimizer ``name``, unless a value or the gradient is not
        finite (then stop, or skip the update, as ``--trainer.on_nonfinite`` says); returns the values logged."""
        optimizer = self.optimizers[name]
        optimizer.zero_grad(set_to_none=True)
        values = {term: value.item() for term, value in losses.items()}
        faults = [f"loss term {term} is {value}" for term, value in values.items() if not math.isfinite(value)]
        if not faults:
            torch.stack(list(losses.values())).sum().backward()
            gradients = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
            norm = torch.nn.utils.get_total_norm(gradients) if gradients else torch.zeros(())
            if not torch.isfinite(norm):
                faults.append(f"the {name}'s gradient is {norm.item()}")
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

    # -- what the run calls ----------------------------------------------------------------------------------

    def learning_rate(self, name: str | None = None) -> float:
        """The rate of optimizer ``name``'s next update (the first optimizer's by default): the schedule at the
        current step of ``total_steps``."""
        base = self._base_rates[name] if name is not None else next(iter(self._base_rates.values()), self.config.lr)
        return base * self.config.learning_rate_factor(self.step, self.total_steps)

    def train_step(self, batch: Sample) -> dict[str, float]:
        """One step of the method on ``batch`` (moved to the device here); returns the scalars it logs."""
        for name, optimizer in self.optimizers.items():
            for group in optimizer.param_groups:
                group["lr"] = self.learning_rate(name)
        batch = self.to_device(batch)
        logged = dict(self.method.train_step(batch))
        self.step += 1
        self.registry.hook.p2p_train_step_end(training=self, batch=batch, logged=logged)
        return logged

    def to_device(self, batch: Any) -> Any:
        """A batch (a Sample of tensors, or one tensor) where training runs, in the memory layout the networks use."""
        if isinstance(batch, Tensor):
            images = batch.to(self.device, non_blocking=True)
            return images.to(memory_format=torch.channels_last) if self.config.channels_last and images.dim() == 4 else images
        return type(batch)(*(self.to_device(field) if isinstance(field, Tensor) else field for field in batch))

    def translator(self, direction: str = "AtoB") -> nn.Module:
        """The network that translates ``direction`` (what validation, bench and inference use): its averaged
        weights where a callback keeps them."""
        role = self.trained.generator_for(direction)
        return self.averaged.get(role, self.networks[role])

    @property
    def checkpoint_bytes(self) -> int:
        """About what one checkpoint takes: weights plus Adam's two moments for each network."""
        tensors = [t for m in self.networks.values() for t in (*m.parameters(), *m.buffers())]
        return 3 * sum(t.numel() * t.element_size() for t in tensors)

    # -- state ----------------------------------------------------------------------------------------------

    def check_finite(self) -> None:
        """Refuse to keep weights or buffers that are not finite (e.g. BatchNorm statistics after a divergence)."""
        for role, network in self.networks.items():
            for name, tensor in (*network.named_parameters(), *network.named_buffers()):
                if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                    bad = int((~torch.isfinite(tensor)).sum())
                    raise NumericalError(
                        f"step {self.step}: the {role}'s {name} holds {bad} value(s) that are not finite, so no "
                        "checkpoint was written (the last one is intact). Try a lower --trainer.lr"
                    )

    def state_dict(self) -> dict[str, Any]:
        """Weights, optimizer moments, the method's own state, the terms' networks that ask to be saved and the step,
        with the spec that rebuilds it (format 2)."""
        own = getattr(self.method, "state_dict", None)
        return {
            "format": 2,
            "step": self.step,
            "models": {role: network.state_dict() for role, network in self.networks.items()},
            "optimizers": {name: optimizer.state_dict() for name, optimizer in self.optimizers.items()},
            **({"method_state": own()} if callable(own) else {}),
            **({"terms": {name: term.state_dict() for name, term in self.saved_terms.items()}} if self.saved_terms else {}),
            **({"averaged": {role: module.state_dict() for role, module in self.averaged.items()}} if self.averaged else {}),
            **self.trained.to_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from ``state``; the schedule follows from the step, so format 1's scheduler entry is not needed.

        An imported model (``p2p import``) has weights but no optimizer moments: its optimizers start fresh; averaged
        weights a checkpoint lacks (a run that kept none until now) start from its weights.
        """
        self.load_weights(state["models"], source="the checkpoint")
        for role, module in self.averaged.items():
            if role in state.get("averaged", {}):
                check_weights(state["averaged"][role], source=f"the checkpoint, averaged {role}")
                module.load_state_dict(state["averaged"][role])
        for name, optimizer in self.optimizers.items():
            if name in state.get("optimizers", {}):
                optimizer.load_state_dict(state["optimizers"][name])
        if "method_state" in state and callable(getattr(self.method, "load_state_dict", None)):
            self.method.load_state_dict(state["method_state"])
        for name, term in self.saved_terms.items():
            if name in state.get("terms", {}):
                term.load_state_dict(state["terms"][name])
        self.step = int(state["step"])

    def load_weights(self, models: Mapping[str, Mapping[str, Any]], *, source: str) -> None:
        """The networks' weights from ``models`` (role -> state dict): the generators' that translate always,
        the others' where ``source`` has them. Anything that does not fit exactly is an error naming it."""
        required = set(self.trained.directions.values())
        for role, network in self.networks.items():
            if role not in models:
                if role in required:
                    raise DataError(f"{source} holds no {role} weights")
                continue
            check_weights(models[role], source=f"{source}, {role}")
            try:
                network.load_state_dict(models[role])
            except RuntimeError as error:
                raise DataError(f"the {role} weights in {source} do not fit this {role}: {str(error).splitlines()[-1].strip()}") from None
            if role in self.averaged:  # an average of weights loaded from elsewhere starts from them
                self.averaged[role].load_state_dict(models[role])

    # -- wrapping ---------------------------------------------------------------------------------------------

    def _parallel(self, network: nn.Module) -> nn.Module:
        """The module training calls: under torchrun, wrapped so gradients are averaged across processes."""
        if not self.dist.active:
            return network
        if self.config.sync_batchnorm:
            if self.device.type != "cuda":
                raise ConfigError("--trainer.sync_batchnorm needs CUDA devices; on CPU use instance norm or none")
            network = nn.SyncBatchNorm.convert_sync_batchnorm(network)
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(network, device_ids=device_ids)

    def _compiled(self, network: nn.Module) -> nn.Module:
        if self.config.compile == "none":
            return network
        return torch.compile(network, mode=self.config.compile)


class Augmented(nn.Module):
    """A discriminator that sees every batch through the plugins' augmentations (``p2p_discriminator_augment``)."""

    def __init__(self, network: nn.Module, augments: list[Callable[[Tensor], Tensor]]) -> None:
        super().__init__()
        self.network, self.augments = network, augments

    def forward(self, images: Tensor) -> Any:
        for augment in self.augments:
            images = augment(images)
        return self.network(images)

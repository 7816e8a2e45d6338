"""The run spec: what a training run is made of, as typed, versioned data.

``p2p fit`` parses argv and YAML into a :class:`RunSpec`; the run writes it to ``config.yaml`` and into every
checkpoint; every command that reads a checkpoint gets it back through :func:`read_checkpoint` as a
:class:`TrainedSpec`, with the shapes the data decided. Components are kept by registry name (``unet``), never
by import path, so a spec names what a user typed and loading one imports nothing.

This module imports neither torch nor a plugin: the CLI's help and every reader of a spec stay light.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any, Literal

import attrs

from p2p_core.errors import ConfigError, DataError
from p2p_core.ranges import LARGEST

SPEC_VERSION = 2
"""Version 1 is the untyped ``components`` dict that checkpoints held before; it is still read."""
DEFAULT_METHOD = "pix2pix"
"""The method of runs whose spec names none: every run before methods were plugins."""
SPEC_KEY = "p2p_spec"
"""The key that holds the version in ``config.yaml``."""
Mode = Literal["paper", "eval"]
MODES: dict[str, str] = {
    "paper": "paper: dropout on and batch statistics at test time, as in the paper",
    "eval": "eval: dropout off and BatchNorm's running statistics (PyTorch eval mode)",
}
Precision = Literal["float32", "bfloat16", "float16"]
"""The numeric precision a command runs in, spelt as torch's dtypes: ``--precision`` of predict, test and demo, and
``--trainer.precision`` of fit and bench (which offers float32 and bfloat16: float16 training would need loss
scaling)."""
PRECISION_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
"""Older spellings, read as the names they stand for: configs and checkpoints written with them keep working."""
TrainPrecision = Literal["float32", "bfloat16", "fp32", "bf16"]


def canonical_precision(value: str) -> str:
    """``value`` in the one vocabulary: ``bf16`` -> ``bfloat16``; anything else is returned as it is."""
    return PRECISION_ALIASES.get(value, value)


def _train_precision(value: TrainPrecision) -> str:
    return canonical_precision(value)


def _plain_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    # Paths become text: checkpoints and YAML hold plain data only.
    return {str(k): os.fspath(v) if isinstance(v, os.PathLike) else v for k, v in dict(options or {}).items()}


@attrs.frozen
class ComponentSpec:
    """A registered component's name and the user's options for it (its factory's keyword arguments)."""

    name: str = attrs.field(validator=attrs.validators.instance_of(str))
    options: Mapping[str, Any] = attrs.field(factory=dict, converter=_plain_options)

    def to_dict(self) -> dict[str, Any]:
        """The YAML form: ``{name: unet, ngf: 64, ...}``."""
        return {"name": self.name, **self.options}


def _positive(instance: object, attribute: attrs.Attribute, value: float | None) -> None:
    if value is not None and not value > 0:
        raise ValueError(f"--trainer.{attribute.name} must be positive, got {value}")


def _at_least(minimum: int, prefix: str = "--trainer."):  # noqa: ANN202 - an attrs validator
    def check(instance: object, attribute: attrs.Attribute, value: int | None) -> None:
        if value is not None and value < minimum:
            raise ValueError(f"{prefix}{attribute.name} must be at least {minimum}, got {str(value)[:40]}")
        if value is not None and value > LARGEST:
            raise ValueError(f"{prefix}{attribute.name} must be at most {LARGEST:,} (a 64-bit integer), got {str(value)[:40]}...")

    return check


def _finite(instance: object, attribute: attrs.Attribute, value: float) -> None:
    if not math.isfinite(value):
        raise ValueError(f"--trainer.{attribute.name} must be a finite number, got {value}")


def _fraction(instance: object, attribute: attrs.Attribute, value: float) -> None:
    if not 0 <= value < 1:
        raise ValueError(f"--trainer.{attribute.name} must be in [0, 1), got {value}")


@attrs.define(kw_only=True)
class TrainConfig:
    """Optimisation, schedule and bookkeeping; the defaults are the paper's."""

    n_epochs: int = attrs.field(default=100, validator=_at_least(0))
    """Epochs at the initial learning rate."""
    n_epochs_decay: int = attrs.field(default=100, validator=_at_least(0))
    """Epochs over which the learning rate then decays linearly to 0."""
    max_steps: int | None = attrs.field(default=None, validator=_at_least(1))
    """Stop after this many steps in total. The schedule is fitted to the shorter run: the rate stays constant
    for the same share of it as n_epochs is of all epochs, then decays linearly to 0 at the last step."""
    batch_size: int = attrs.field(default=1, validator=_at_least(1))
    """Pairs per step (the paper: 1)."""
    lr: float = attrs.field(default=2e-4, validator=[_finite, _positive])
    """Adam's initial learning rate."""
    beta1: float = attrs.field(default=0.5, validator=_fraction)
    """Adam's first-moment decay."""
    beta2: float = attrs.field(default=0.999, validator=_fraction)
    """Adam's second-moment decay."""
    ema: float = attrs.field(default=0.0, validator=_fraction)
    """Keep an exponential moving average of the generators' weights with this decay (e.g. 0.999), which
    checkpoints hold and predict, test, export and demo use; 0 keeps none."""
    init_gain: float = attrs.field(default=0.02, validator=[_finite, _positive])
    """Standard deviation of the N(0, gain) weight initialisation."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where training runs; auto takes CUDA when torch sees it."""
    num_workers: int = attrs.field(default=2, validator=_at_least(0))
    """Data-loading processes; 0 loads in the training process."""
    seed: int = attrs.field(default=0, validator=_at_least(-LARGEST - 1))
    """Seeds weights, data order, jitter and dropout: the same seed gives the same run."""
    log_every: int = attrs.field(default=50, validator=_at_least(1))
    """Steps between TensorBoard scalars and progress lines (averaged over the interval; the first step too)."""
    image_every: int = attrs.field(default=500, validator=_at_least(1))
    """Steps between input | output | target image grids in TensorBoard (the first step too)."""
    checkpoint_every: int = attrs.field(default=5000, validator=_at_least(1))
    """Steps between checkpoints; one is always written at the end."""
    progress: bool = True
    """Report progress: a live bar with the loss terms on a terminal, a plain line every log_every steps
    otherwise (log files, clusters); false prints only the final lines."""
    on_nonfinite: Literal["stop", "skip"] = "stop"
    """A NaN/Inf loss or gradient stops the run (the last checkpoint stays intact), or skips that update."""
    nproc: int = attrs.field(default=1, validator=_at_least(1))
    """Processes on this machine; more than 1 reruns the command under torchrun (DistributedDataParallel)."""
    sync_batchnorm: bool = False
    """With several GPUs, BatchNorm statistics over the whole batch rather than each process's share."""
    dist_timeout: float = attrs.field(default=600.0, validator=[_finite, _positive])
    """Seconds a process waits for the others before the job fails instead of hanging."""
    precision: TrainPrecision = attrs.field(default="float32", converter=_train_precision)
    """bfloat16 runs forward passes and losses under autocast: faster on GPUs and on CPUs with native bfloat16
    (1.5x and 1.77x the float32 step in `p2p bench` on two such CPUs), with different numerics (measured: the
    trained model's L1 3.6% higher and FCN-score 0.005 lower than float32's, benchmarks/README.md); a CPU without it
    gets a warning. fp32 and bf16 are older spellings of float32 and bfloat16, still read."""
    channels_last: bool = False
    """Keep images and weights in NHWC layout, which GPU convolution kernels prefer."""
    compile: Literal["none", "default", "reduce-overhead", "max-autotune"] = "none"
    """torch.compile the networks; reduce-overhead also replays CUDA graphs (needs fixed image sizes)."""
    validate_every: int = attrs.field(default=0, validator=_at_least(0))
    """Steps between validations (and once at the end); 0 turns validation off."""
    validate_samples: int = attrs.field(default=16, validator=_at_least(1))
    """Validation pairs scored each time: a fixed subset, spread evenly over the val split."""
    best_metric: Literal["l1", "psnr", "ssim", "hist_L", "hist_a", "hist_b"] = "l1"
    """Which validation score picks checkpoints/best.pt (l1 lower is better; the others higher)."""
    validate_mode: Mode = "paper"
    """Test-time behaviour while validating: paper (dropout, batch statistics) or eval."""

    def learning_rate_factor(self, step: int, total_steps: int) -> float:
        """The schedule on the run's real length: 1 for the first n_epochs/(n_epochs + n_epochs_decay) of
        ``total_steps``, then linear decay that reaches 0 after the last step (the paper's shape, per step)."""
        epochs = self.n_epochs + self.n_epochs_decay
        if self.n_epochs_decay == 0 or epochs == 0:
            return 1.0
        constant = total_steps * self.n_epochs / epochs
        decay = total_steps - constant
        return min(1.0, max(0.0, (total_steps - step) / (decay + 1)))


@attrs.frozen(kw_only=True)
class RunSpec:
    """Everything ``p2p fit`` trains from. Field names are the command line's (``--disc``, ``--data``)."""

    generator: ComponentSpec
    disc: ComponentSpec
    data: ComponentSpec
    method: ComponentSpec = ComponentSpec(DEFAULT_METHOD)
    """The training procedure; every generator role it has is built from ``generator``, every discriminator from ``disc``."""
    loss: str = "cgan+l1"
    """Objective terms joined by '+'."""
    loss_options: Mapping[str, Mapping[str, Any]] = attrs.field(
        factory=dict, converter=lambda terms: {str(k): _plain_options(v) for k, v in dict(terms or {}).items()}
    )
    trainer: TrainConfig = attrs.field(factory=TrainConfig)
    roles: Mapping[str, Mapping[str, Any]] = attrs.field(
        factory=dict, converter=lambda roles: {str(k): _plain_options(v) for k, v in dict(roles or {}).items()}
    )
    """Options of one network of the method, by its role, over its kind's (``--generator_ab.ngf 16``)."""

    def to_dict(self) -> dict[str, Any]:
        """Plain data, as config.yaml and checkpoints hold it."""
        return {
            SPEC_KEY: SPEC_VERSION,
            "generator": self.generator.to_dict(),
            "disc": self.disc.to_dict(),
            "data": self.data.to_dict(),
            "method": self.method.to_dict(),
            "loss": self.loss,
            "loss_options": {k: dict(v) for k, v in self.loss_options.items()},
            "trainer": attrs.asdict(self.trainer),
            **({"roles": {role: dict(options) for role, options in self.roles.items()}} if self.roles else {}),
        }

    @classmethod
    def from_dict(cls, content: Mapping[str, Any], *, source: str) -> RunSpec:
        """The spec from its plain form, checked field by field; errors name ``source`` and the field."""
        content = _mapping(content, source, "the spec")
        components = {key: _component(content.get(key), source, key) for key in ("generator", "disc", "data")}
        components["method"] = _component(content.get("method") or {"name": DEFAULT_METHOD}, source, "method")
        loss = content.get("loss", "cgan+l1")
        if not isinstance(loss, str):
            raise DataError(f"{source}: loss must be text such as 'cgan+l1', got {loss!r}")
        loss_options = _mapping(content.get("loss_options") or {}, source, "loss_options")
        for term, options in loss_options.items():
            _mapping(options, source, f"loss_options.{term}")
        trainer = _mapping(content.get("trainer") or {}, source, "trainer")
        known = {field.name for field in attrs.fields(TrainConfig)}
        unknown = sorted(set(trainer) - known)
        if unknown:
            raise DataError(f"{source}: unknown trainer option(s) {', '.join(unknown)}")
        try:
            train = TrainConfig(**trainer)
        except (TypeError, ValueError) as error:
            raise DataError(f"{source}: {error}") from None
        roles = _mapping(content.get("roles") or {}, source, "roles")
        for role, options in roles.items():
            _mapping(options, source, f"roles.{role}")
        return cls(**components, loss=loss, loss_options=loss_options, trainer=train, roles=roles)

MAX_MEMORY_GB = 16.0
"""Default of ``--max_memory_gb``: the most a model may need for its weights and one image at its training size."""


@attrs.frozen(kw_only=True)
class Shapes:
    """What the data decided when the networks were built."""

    in_channels: int = attrs.field(validator=_at_least(1, prefix=""))
    out_channels: int = attrs.field(validator=_at_least(1, prefix=""))
    image_size: int = attrs.field(validator=_at_least(1, prefix=""))
    """The side of the square training crops."""
    disc_in_channels: int | None = None
    """What the discriminator sees (None without one): the output's channels, plus the input's if conditional."""


IMAGE_ENCODING = "image"
"""How a file becomes a generator's input unless its dataset says otherwise: an image's pixels, 1, 3 or 4 channels."""
MAX_CLASSES = 65536
"""The most classes a ``labels:N`` input may have: a 16-bit class-index PNG holds that many."""


def input_classes(encoding: str) -> int | None:
    """The classes of a ``labels:N`` input encoding (a class-index PNG as N one-hot channels), None for ``image``; a
    ConfigError naming the encodings there are for anything else."""
    kind, _, count = str(encoding).partition(":")
    if encoding == IMAGE_ENCODING:
        return None
    if kind == "labels" and count.isascii() and count.isdigit() and 2 <= int(count) <= MAX_CLASSES:
        return int(count)
    raise ConfigError(
        f"unknown input encoding {str(encoding)[:60]!r}; a dataset's input_encoding is 'image' (the default) or "
        f"'labels:N' with N from 2 to {MAX_CLASSES} (a class-index PNG, mode L or P, as N one-hot channels)"
    )


@attrs.frozen(kw_only=True)
class NetworkShape:
    """One network of a trained method: its kind and the channels it was built for."""

    kind: Literal["generator", "discriminator"]
    in_channels: int = attrs.field(validator=_at_least(1, prefix=""))
    out_channels: int | None = None
    """Generators only."""


def _pix2pix_networks(trained: TrainedSpec) -> dict[str, NetworkShape]:
    """The networks of a checkpoint written before methods recorded theirs: pix2pix's generator and discriminator."""
    shapes = trained.shapes
    networks = {"generator": NetworkShape(kind="generator", in_channels=shapes.in_channels, out_channels=shapes.out_channels)}
    if trained.adversarial and shapes.disc_in_channels is not None:
        networks["discriminator"] = NetworkShape(kind="discriminator", in_channels=shapes.disc_in_channels)
    return networks


@attrs.frozen(kw_only=True)
class TrainedSpec:
    """What a checkpoint says about the model in it: the run spec, the shapes, and who provided the components."""

    run: RunSpec
    shapes: Shapes
    plugins: Mapping[str, str] = attrs.field(factory=dict)
    """Distribution -> version of every plugin loaded when it was trained."""
    providers: Mapping[str, str] = attrs.field(factory=dict)
    """Flag (generator, disc, data) -> the distribution and version that provided that component, so a missing
    plugin can be named with what to install."""
    adversarial: bool = True
    """Whether a discriminator was trained (the objective had an adversarial term)."""
    networks: Mapping[str, NetworkShape] = attrs.field(default=attrs.Factory(_pix2pix_networks, takes_self=True))
    """Role -> kind and channels of every network the method trained (pix2pix's before methods recorded them)."""
    directions: Mapping[str, str] = attrs.field(factory=lambda: {"AtoB": "generator"})
    """Direction (AtoB, BtoA) -> the generator role that translates that way."""
    input_encoding: str = IMAGE_ENCODING
    """How a file becomes the AtoB generator's input, as the dataset declared (``image``, or ``labels:N``): what
    predict, demo and export read files as. Checkpoints written before it was recorded are images."""

    def to_dict(self) -> dict[str, Any]:
        return {"spec": self.run.to_dict(), "shapes": attrs.asdict(self.shapes), "plugins": dict(self.plugins),
                "providers": dict(self.providers),
                "adversarial": self.adversarial,
                "networks": {role: attrs.asdict(shape) for role, shape in self.networks.items()},
                "directions": dict(self.directions),
                "input_encoding": self.input_encoding}

    def generator_for(self, direction: str) -> str:
        """The role of the generator that translates ``direction``; a DataError names the directions there are."""
        role = self.directions.get(direction)
        if role is None:
            raise DataError(f"this model translates {' and '.join(self.directions)} only, not {direction}; "
                            f"use --direction {next(iter(self.directions))}")
        return role


def read_checkpoint(state: Mapping[str, Any], *, source: str) -> TrainedSpec:
    """The typed spec of a loaded checkpoint, of this format (2) or the previous one (1: ``components``)."""
    version = state.get("format")
    if version == 2:
        shapes = _mapping(state.get("shapes"), source, "shapes")
        try:
            typed_shapes = Shapes(**{k: _integer(v, source, f"shapes.{k}") if v is not None else None for k, v in shapes.items()})
        except (TypeError, ValueError) as error:
            raise DataError(f"{source}: shapes: {error}") from None
        trained = TrainedSpec(
            run=RunSpec.from_dict(state.get("spec"), source=source),
            shapes=typed_shapes,
            plugins=dict(_mapping(state.get("plugins") or {}, source, "plugins")),
            providers=dict(_mapping(state.get("providers") or {}, source, "providers")),
            adversarial=bool(state.get("adversarial", True)),
            input_encoding=_encoding(state.get("input_encoding", IMAGE_ENCODING), source),
        )
        if "networks" not in state:  # written before methods were plugins: pix2pix's networks, derived above
            return trained
        return attrs.evolve(trained, networks=_networks(state["networks"], source),
                            directions=_directions(state.get("directions"), source))
    if version == 1 or (version is None and "components" in state):
        return _read_version_1(_mapping(state.get("components"), source, "components"), source)
    raise DataError(f"{source}: unknown checkpoint format {version!r}; it was written by a newer p2p, or is not p2p's")


def _read_version_1(components: Mapping[str, Any], source: str) -> TrainedSpec:
    """Checkpoints written before the spec existed: an untyped dict of the same facts."""
    generator = _mapping(components.get("generator"), source, "components.generator")
    discriminator = components.get("discriminator")
    disc = _mapping(discriminator, source, "components.discriminator") if discriminator is not None else None
    dataset = components.get("dataset")
    if not isinstance(dataset, str):
        raise DataError(f"{source}: components.dataset must name a dataset, got {dataset!r}")
    run = RunSpec(
        generator=ComponentSpec(_text(generator.get("name"), source, "components.generator.name"),
                                _mapping(generator.get("options") or {}, source, "components.generator.options")),
        disc=ComponentSpec(_text(disc.get("name"), source, "components.discriminator.name"),
                           _mapping(disc.get("options") or {}, source, "components.discriminator.options"))
        if disc else ComponentSpec("patch70"),
        data=ComponentSpec(dataset, _mapping(components.get("dataset_options") or {}, source, "components.dataset_options")),
        loss=_text(components.get("loss", "cgan+l1"), source, "components.loss"),
        loss_options=_mapping(components.get("loss_options") or {}, source, "components.loss_options"),
    )
    try:
        shapes = Shapes(
            in_channels=_integer(generator.get("in_channels"), source, "components.generator.in_channels"),
            out_channels=_integer(generator.get("out_channels"), source, "components.generator.out_channels"),
            image_size=_integer(generator.get("image_size"), source, "components.generator.image_size"),
            disc_in_channels=_integer(disc.get("in_channels"), source, "components.discriminator.in_channels") if disc else None,
        )
    except ValueError as error:
        raise DataError(f"{source}: {error}") from None
    plugins = _mapping(components.get("plugins") or {}, source, "components.plugins")
    return TrainedSpec(run=run, shapes=shapes, plugins=dict(plugins), adversarial=disc is not None)


def _networks(value: Any, source: str) -> dict[str, NetworkShape]:
    networks = {}
    for role, shape in _mapping(value, source, "networks").items():
        shape = _mapping(shape, source, f"networks.{role}")
        kind = shape.get("kind")
        if kind not in ("generator", "discriminator"):
            raise DataError(f"{source}: networks.{role}.kind must be generator or discriminator, got {kind!r:.60}")
        out = shape.get("out_channels")
        networks[str(role)] = NetworkShape(kind=kind, in_channels=_integer(shape.get("in_channels"), source, f"networks.{role}.in_channels"),
                                           out_channels=None if out is None else _integer(out, source, f"networks.{role}.out_channels"))
    return networks


def _directions(value: Any, source: str) -> dict[str, str]:
    directions = {str(k): _text(v, source, f"directions.{k}") for k, v in _mapping(value, source, "directions").items()}
    if not directions or not set(directions) <= {"AtoB", "BtoA"}:
        raise DataError(f"{source}: directions must map AtoB and/or BtoA to a generator, got {directions!r:.80}")
    return directions


def _encoding(value: Any, source: str) -> str:
    try:
        input_classes(value)
    except ConfigError as error:
        raise DataError(f"{source}: {error}") from None
    return value


def _component(value: Any, source: str, key: str) -> ComponentSpec:
    content = _mapping(value, source, key)
    options = {k: v for k, v in content.items() if k != "name"}
    return ComponentSpec(_text(content.get("name"), source, f"{key}.name"), options)


def _mapping(value: Any, source: str, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise DataError(f"{source}: {what} must be a mapping, got {type(value).__name__} {value!r:.60}")
    return value


def _text(value: Any, source: str, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise DataError(f"{source}: {what} must be a name, got {value!r:.60}")
    return value


def _integer(value: Any, source: str, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DataError(f"{source}: {what} must be a positive whole number, got {value!r:.60}")
    return value


def check_trainer(options: Mapping[str, Any]) -> TrainConfig:
    """A TrainConfig from parsed options, its range checks as ConfigErrors naming the option."""
    try:
        return TrainConfig(**options)
    except ValueError as error:
        raise ConfigError(str(error)) from None

"""The contracts of the six component kinds: four are parts of a model, :class:`Method` trains them, and an
:class:`InferenceBackend` runs a trained generator.

A plugin implements them structurally (no base class to inherit); `p2p_core.testing` checks them.
Images are float tensors N x C x H x W with values in [-1, 1].

Initialisation of generators and discriminators: the engine initialises the weight of every convolution,
transposed convolution and linear layer with the paper's N(0, 0.02), BatchNorm scales with N(1, 0.02), biases
with 0. A module (the whole component or any part of it) with ``initialises_itself = True`` keeps its own
initialisation, its submodules included. A weight under ``torch.nn.utils.parametrizations.spectral_norm`` (or
another parametrisation of one tensor) is initialised where it is stored, ``parametrizations.weight.original``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal, NamedTuple, Protocol, runtime_checkable

from p2p_core.errors import ConfigError

if TYPE_CHECKING:
    import torch
    from torch import Tensor

    from p2p_core.backends import Runner
    from p2p_core.inference import TrainedGenerator


@runtime_checkable
class Generator(Protocol):
    """Translates a batch N x in_channels x H x W into N x out_channels x H x W, values in [-1, 1].

    Implementations are ``torch.nn.Module``s.
    Factories receive ``in_channels``, ``out_channels`` and ``image_size`` (the training side length) from
    the engine; every other keyword is a user option. ``size_multiple`` is what H and W must be divisible by,
    and every such size must work down to one multiple (an input size_multiple x size_multiple, batch 1, in
    training mode): p2p pads images up to the next multiple, so a network whose smallest input is larger than
    its divisor declares that smallest side (a multiple of the divisor) as its ``size_multiple``.

    A generator may return a :class:`GeneratorOutput`: the image and named extra tensors (a VAE's mean and
    log-variance, attention maps) that loss terms read (their ``generator_extras``) and TensorBoard shows;
    inference (predict, test, export, demo, validation) keeps the image alone. One with ``takes_target = True`` is
    also given the target in training, as ``G(x, target=y)`` (an encoder of the target: pix2pixHD's instance
    features, a VAE's posterior); everywhere else it is called ``G(x)`` and must work without it.
    """

    in_channels: int
    out_channels: int
    size_multiple: int

    def __call__(self, x: Tensor) -> Tensor | GeneratorOutput: ...


@runtime_checkable
class Discriminator(Protocol):
    """Maps a batch N x in_channels x H x W to patch logits: one N x 1 x h x w tensor, or a
    :class:`DiscriminatorOutput` with several scales and intermediate features.

    Implementations are ``torch.nn.Module``s.
    Factories receive ``in_channels`` from the engine. ``receptive_field`` is the side of the input square
    that one output logit sees; ``output_size(n)`` is the logit grid side for an n x n input. A discriminator
    of several scales gives both per scale, as tuples in the order of its logits (:func:`per_scale` reads
    either form); a plain int means one scale.

    ``min_input_size`` (optional) is the smallest side of the square inputs it takes, where that is more than its
    logits need (a normalisation that needs a map larger than 1 x 1, a scale that must see a minimum): a run whose
    crops are smaller is refused when it is built, naming it. Without it p2p finds the smallest size by running it
    dry (see :func:`p2p_core.networks.smallest_input`).

    Initialisation: as for generators, see the module docstring.
    """

    in_channels: int
    receptive_field: int | tuple[int, ...]

    def output_size(self, input_size: int) -> int | tuple[int, ...]: ...

    def __call__(self, x: Tensor) -> Tensor | DiscriminatorOutput: ...


def per_scale(value: int | tuple[int, ...]) -> tuple[int, ...]:
    """A discriminator's ``receptive_field`` or ``output_size(n)`` as one int per scale."""
    return tuple(int(v) for v in value) if isinstance(value, (tuple, list)) else (int(value),)


def _tuples(features: object) -> tuple[tuple[Tensor, ...], ...]:
    return tuple(tuple(scale) for scale in features)  # type: ignore[attr-defined]


# A dataclass rather than attrs: torch.compile traces a frozen dataclass's __init__, but not the attrs-generated one
# (its cached object.__setattr__), and a compiled discriminator builds this object. Tensors have no truth value, so
# outputs compare by identity.
@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class DiscriminatorOutput:
    """What a discriminator returns when one logit tensor is not enough: several scales, or features too.

    ``logits`` holds one N x 1 x h x w tensor per scale, in the order of ``receptive_field`` and
    ``output_size``. ``features`` holds, per scale, the intermediate activations (each N x C x h' x w', the
    logits excluded) that a feature-matching loss compares, or is empty when the discriminator exposes none.
    A plain tensor returned by a discriminator means one scale without features; :meth:`of` reads both.
    """

    logits: tuple[Tensor, ...]
    features: tuple[tuple[Tensor, ...], ...] = ()

    def __post_init__(self) -> None:
        # Any sequences are accepted and stored as tuples, as the fields say.
        object.__setattr__(self, "logits", tuple(self.logits))
        object.__setattr__(self, "features", _tuples(self.features))

    @classmethod
    def of(cls, value: object, *, source: str = "the discriminator") -> DiscriminatorOutput:
        """What a discriminator returned, as a DiscriminatorOutput; ConfigError naming ``source`` and the fix
        for anything the contract does not allow."""
        from torch import Tensor

        if isinstance(value, Tensor):
            return cls(logits=(value,))
        found = fix = None
        if not isinstance(value, cls):
            found = type(value).__name__
            if isinstance(value, (list, tuple)) and value and all(isinstance(v, Tensor) for v in value):
                found = f"a {type(value).__name__} of {len(value)} tensors"
            fix = ("return one tensor, or for several scales wrap them: "
                   "DiscriminatorOutput(logits=per_scale_logits, features=per_scale_features) from p2p_core.protocols")
        elif not value.logits or not all(isinstance(t, Tensor) for t in value.logits):
            found = f"logits {[type(t).__name__ for t in value.logits]}"
            fix = "give logits one N x 1 x h x w tensor per scale"
        elif value.features and (len(value.features) != len(value.logits)
                                 or not all(isinstance(t, Tensor) for scale in value.features for t in scale)):
            found = f"{len(value.logits)} scales of logits, features {[[type(t).__name__ for t in s] for s in value.features]}"
            fix = "give features one tuple of tensors per scale (or none at all: features=())"
        if found is not None:
            raise ConfigError(
                f"{source} breaks the contract: a discriminator returns a Tensor of logits or a DiscriminatorOutput "
                "of per-scale logits and features\n"
                f"  found: {found}\n  fix: {fix}"
            )
        return value  # type: ignore[return-value]

    def without_features(self) -> DiscriminatorOutput:
        return DiscriminatorOutput(logits=self.logits) if self.features else self


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class GeneratorOutput:
    """What a generator returns when the image is not all: ``image`` (N x out_channels x H x W in [-1, 1]) and
    ``extras``, named tensors, batch first.

    Extras are what loss terms read (a term lists the names in ``generator_extras``: a KL term reads a VAE's
    ``mu`` and ``logvar``) and what the training method shows beside the output in TensorBoard (those of 4
    dimensions, N x C x h x w, such as attention maps). Inference keeps the image alone. A plain tensor returned by
    a generator is its image without extras; :meth:`of` reads both. A dataclass, as :class:`DiscriminatorOutput`,
    so that torch.compile and torch.export trace it.
    """

    image: Tensor
    extras: Mapping[str, Tensor] = dataclasses.field(default_factory=dict)

    @classmethod
    def of(cls, value: object, *, source: str = "the generator") -> GeneratorOutput:
        """What a generator returned, as a GeneratorOutput; ConfigError naming ``source`` and the fix for anything
        the contract does not allow."""
        from torch import Tensor

        if isinstance(value, Tensor):
            return cls(image=value)
        found = None
        if not isinstance(value, cls):
            found = f"a {type(value).__name__}"
        elif not isinstance(value.image, Tensor):
            found = f"image {type(value.image).__name__}"
        elif not isinstance(value.extras, Mapping) or not all(
            isinstance(name, str) and isinstance(extra, Tensor) for name, extra in value.extras.items()
        ):
            extras = value.extras.items() if isinstance(value.extras, Mapping) else ()
            found = f"extras {type(value.extras).__name__} of {[(type(n).__name__, type(e).__name__) for n, e in extras]}"
        if found is not None:
            raise ConfigError(
                f"{source} breaks the contract: a generator returns its image as a Tensor, or a GeneratorOutput of the "
                f"image and extras by name\n  found: {found}\n  fix: return the image, or GeneratorOutput(image=image, "
                "extras={'name': tensor, ...}) from p2p_core.protocols"
            )
        return value  # type: ignore[return-value]

    def shown(self) -> dict[str, Tensor]:
        """The extras to show beside the image: those of 4 dimensions with the image's batch (N x C x h x w), each
        scaled to the image's size and its values mapped to [-1, 1] by their own range, detached."""
        import torch.nn.functional as F

        shown = {}
        for name, extra in self.extras.items():
            if extra.dim() != 4 or extra.shape[0] != self.image.shape[0]:
                continue  # a vector (a VAE's mean) is not an image
            extra = F.interpolate(extra.detach().float(), size=self.image.shape[-2:], mode="nearest")
            low, high = extra.amin(), extra.amax()
            shown[name] = (extra - low) / (high - low).clamp_min(1e-12) * 2 - 1
        return shown


class Sample(NamedTuple):
    """One aligned pair: ``a`` is the generator's input, ``b`` its target (after any direction swap).

    ``path`` names the pair: the file it came from, or any string whose stem (the last part, without folders or
    suffix) tells the pairs of a split apart. ``p2p test`` names its output images after that stem (STEM.png; a
    stem seen twice gets _INDEX appended), and errors quote ``path``.

    ``labels``, where a dataset knows them, is the scene's class map: an H x W LongTensor aligned with both
    images (jittered with them), its values indices into the dataset's ``classes``. It is what an FCN-score
    scorer (``p2p_core.scoring``) learns and is measured against; datasets without labels leave it None.
    """

    a: Tensor
    b: Tensor
    path: str
    labels: Tensor | None = None


@runtime_checkable
class PairedDataset(Protocol):
    """An indexable collection of aligned pairs, each C x H x W in [-1, 1].

    Implementations are ``torch.utils.data.Dataset``s.
    Factories receive ``split`` ("train", "val" or "test") from the engine; random jitter applies to
    "train" only, and the same crop and flip always apply to both halves of a pair. ``root`` is the folder
    the dataset reads (p2p never writes into it), or None for data without one (generated, or held in memory).
    Each item is a :class:`Sample`; its ``path`` names the outputs of ``p2p test``.

    ``input_encoding`` (optional, default ``"image"``) says how a file becomes ``a``, so that inference reads files
    as training did: ``"image"`` (1, 3 or 4 channels of pixels) or ``"labels:N"`` (a class-index PNG as N one-hot
    channels, :func:`p2p_core.images.read_input`). Checkpoints record it; ``p2p predict``, ``demo`` and ``export``'s
    description follow it.
    """

    in_channels: int
    out_channels: int
    image_size: int
    root: Path | None

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Sample: ...


class DiscriminatorFn(Protocol):
    """The discriminator as a first-version loss term called it (``disc`` below): logits of one scale."""

    def __call__(self, x: Tensor) -> Tensor: ...


Needs = Literal["nothing", "logits", "features"]
"""What a loss term reads of the discriminator's outputs: nothing, the logits, or the logits and features."""


Penalises = Literal["real", "interpolated"]
"""Where a gradient penalty takes D's gradient: at the real pair (R1), or between the real and the fake one (WGAN-GP)."""


@runtime_checkable
class Loss(Protocol):
    """One term of the objective, e.g. the cGAN term or lambda * L1.

    ``discriminator_input`` says what an adversarial term shows the discriminator: "none" for a term that
    needs no discriminator (L1), "output" for an unconditional GAN (D sees y or G(x)), "input+output" for
    a conditional one (D sees x concatenated with y or G(x)). Both methods return a scalar; the engine sums
    the generator terms and halves the sum of the discriminator terms, as in the paper.

    The engine runs the discriminator once on the real pair and once on the fake one per update and hands
    every term the results as :class:`DiscriminatorOutput`s: ``d_real`` and ``d_fake`` (in D's step on
    G(x) detached). Terms never call the discriminator themselves. Optional attributes say what a term
    reads and gives, so the engine computes only that:

    - ``needs``: "nothing", "logits" or "features" (default: "logits" for an adversarial term, else
      "nothing"). A term that needs nothing gets None; one that needs logits gets outputs without features;
      one that needs features fails at once, with a message, on a discriminator that provides none.
    - ``generator_needs_real`` (default False): ``generator_loss`` also reads ``d_real`` (feature matching,
      relativistic GANs); the engine computes it without gradients. Otherwise ``d_real`` is None there.
    - ``value_range`` (default ``(0.0, math.inf)``): the values both losses take. A term that goes below 0 (a
      WGAN critic, SPADE's generator hinge ``-mean(D(fake))``) declares ``(-math.inf, math.inf)``; the
      conformance kit checks every value against it.
    - ``penalises`` ("real" or "interpolated", default none): the term is a gradient penalty (see
      :class:`Penalty`).
    - ``generator_extras`` (default none): the names of the generator's extras (:class:`GeneratorOutput`) that
      ``generator_loss`` reads, given to it as the keyword ``extras`` (a mapping of those names); a term without it
      is never passed the keyword.

    ``discriminator_loss`` (see :class:`AdversarialLoss`) is D's side of an adversarial term. A term with no
    discriminator side (feature matching, which only reads D) leaves it out (or sets it to None): the engine then
    neither calls it nor logs ``D/NAME``. A penalty has no generator side and leaves ``generator_loss`` out.

    A term with a network of its own (a perceptual loss over a fixed feature network) is an ``nn.Module``
    holding it: the engine moves it to the training device (and memory layout), puts it in eval mode and turns
    its parameters' gradients off, once, when the method builds the objective (``training.build_objective()``).
    It is in no optimizer; the generator's gradient flows through it to G(x). It is not compiled nor wrapped for
    DDP (it has nothing to synchronise: every process builds it alike), and runs under bf16 autocast with the rest
    of the step. Checkpoints leave it out (it is rebuilt from its options, e.g. a weights file) unless it sets
    ``saved = True``; then its ``state_dict()`` is saved and restored on resume. A network kept in a term that is
    not an ``nn.Module`` is invisible to the engine: the kit refuses it.

    A term of the first version (``generator_loss(*, x, fake, target, disc)``, calling ``disc`` itself)
    keeps working, with a DeprecationWarning, on discriminators of one scale.
    """

    discriminator_input: str

    def generator_loss(
        self, *, x: Tensor, fake: Tensor, target: Tensor, d_fake: DiscriminatorOutput | None, d_real: DiscriminatorOutput | None
    ) -> Tensor: ...


@runtime_checkable
class AdversarialLoss(Loss, Protocol):
    """A term that trains the discriminator too (cGAN, hinge): D minimises half the sum of these."""

    def discriminator_loss(
        self, *, x: Tensor, fake: Tensor, target: Tensor, d_fake: DiscriminatorOutput, d_real: DiscriminatorOutput
    ) -> Tensor: ...


@runtime_checkable
class Penalty(Protocol):
    """A term of the discriminator's objective alone that penalises D's gradient with respect to its input: R1
    (``penalises = "real"``) or WGAN-GP (``"interpolated"``).

    The engine computes the gradient once per D step for every penalty that asks for it: it runs D on the real
    pair (``"real"``; that run's outputs are also ``d_real`` for every term), or on ``eps * real + (1 - eps) *
    fake`` with one ``eps ~ U(0, 1)`` per sample drawn from torch's generator (``"interpolated"``), and hands
    ``discriminator_loss`` the gradient of the sum of the logits of every scale with respect to the image D
    judges (y or G(x), not the input x beside it): ``gradient``, N x C x H x W, float32, with its graph, so
    that the penalty trains D. That run of D is in float32 even under bf16 autocast (a second derivative in
    bf16's 8 bits of precision is mostly rounding), eager under torch.compile (compiled graphs take no double
    backward), and goes through the DDP-wrapped discriminator, whose gradients are then averaged as usual
    (DistributedDataParallel takes the double backward).

    A penalty leaves ``generator_loss`` out: the engine neither calls it nor logs ``G/NAME``.
    """

    discriminator_input: str
    penalises: Penalises

    def discriminator_loss(
        self, *, x: Tensor, fake: Tensor, target: Tensor, d_fake: DiscriminatorOutput | None,
        d_real: DiscriminatorOutput | None, gradient: Tensor
    ) -> Tensor: ...


Direction = Literal["AtoB", "BtoA"]
"""Which way a trained generator translates: a dataset's A images to B (its ``a`` to its ``b``), or back."""


@runtime_checkable
class Method(Protocol):
    """A training procedure: which networks it trains, and one step of training them (pix2pix, or a plugin's).

    A factory registered through ``p2p_methods`` receives ``training``, a :class:`p2p_core.training.Training`, and
    the user's options (``--method.OPTION``). In its constructor the method asks ``training`` for its networks by
    role (``training.network("generator", "generator", in_channels=3, out_channels=3)``: the component the run
    chose for that kind, built through the registry), for its optimizers (``training.optimizer(...)``), and reads
    ``training.spec`` (the loss, the components) as it needs. The core then does, once for every method, what a run
    needs: the paper's initialisation, the device and memory layout, DistributedDataParallel and torch.compile
    wrappers, bf16 autocast, the learning-rate schedule, non-finite checks, checkpoints of every network and
    optimizer, and the logging.

    ``directions`` names, for each way the trained model translates, the generator role that does it: pix2pix
    ``{"AtoB": "generator"}``; a method trained both ways ``{"AtoB": "generator_ab", "BtoA": "generator_ba"}``. ``p2p predict``,
    ``test``, ``export`` and ``demo`` take ``--direction`` and use that generator alone.

    ``train_step(batch)`` performs one training step on a batch of the run's dataset (a :class:`Sample` of batched
    tensors on the training device) through ``training.update`` (one call per optimizer step), and returns the
    scalars to log, by name (``"D/cgan"``, ``"G/l1"``). ``images()`` returns the latest step's images to show side
    by side in TensorBoard, by name in column order, each N x C x H x W in [-1, 1].

    A method with state of its own beyond networks and optimizers (an image pool of past outputs) also defines
    ``state_dict()`` and ``load_state_dict(state)``, plain tensors and data, so that a resumed run continues exactly.
    """

    directions: Mapping[str, str]

    def train_step(self, batch: Sample) -> Mapping[str, float]: ...

    def images(self) -> Mapping[str, Tensor]: ...



@runtime_checkable
class InferenceBackend(Protocol):
    """Runs a trained generator at inference: ``p2p predict|test|demo --backend NAME`` (p2p's torch and onnxruntime,
    or a plugin's, registered through ``p2p_backends``; `p2p list backends` shows them).

    ``supports`` maps each device type it runs on (``cpu``, ``cuda``) to the precisions it runs there, in
    :data:`p2p_core.spec.Precision`'s spelling; ``modes`` are the test-time modes it runs (``eval``; ``paper`` too only
    where dropout follows ``torch.manual_seed``, so that ``--seed`` repeats a run). ``auto_priority`` maps device types
    to how much ``--backend auto`` prefers it there: auto takes the highest of the backends that can run the mode and
    precision asked for (p2p's torch has 0), and never changes the precision. ``problem(device=...)`` says why it
    cannot run here although it supports the device (a package or a provider missing, with the command that installs
    it), else None. ``open(trained, device=..., precision=...)`` returns a :class:`p2p_core.backends.Runner`: it takes
    float32 N x C x H x W of any H x W on ``device`` and returns, float32 on the same device,
    :func:`p2p_core.inference.translate`'s output within the kit's tolerance for the precision
    (:data:`p2p_core.backends.TOLERANCE`). The core checks ``supports`` and ``modes`` before calling ``open``.

    Factories take no engine arguments, and building one must be cheap (`p2p list backends` builds each): import
    the runtime in ``problem`` and ``open``. ONNX-based backends can share p2p's cached export,
    :func:`p2p_core.backends.cached_onnx`.
    """

    supports: Mapping[str, tuple[str, ...]]
    modes: tuple[str, ...]
    auto_priority: Mapping[str, int]

    def problem(self, *, device: torch.device) -> str | None: ...

    def open(self, trained: TrainedGenerator, *, device: torch.device, precision: str) -> Runner: ...

"""The contract checks, one named function per property, each failing with what the contract is and how to fix it.

A check takes a :class:`Subject` (a registered component plus the options that keep it small) and raises
:class:`ContractViolation` (an ``AssertionError``) on a violation. Its docstring's first line is the contract
it enforces, which reports and CONTRIBUTING.md quote. Hypothesis drives the sizes, channel counts and inputs.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import torch
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from p2p_core.errors import ConfigError
from p2p_core.objective import (
    Objective,
    first_version,
    fix_network,
    has_discriminator_side,
    has_generator_side,
    needs,
    penalises,
    value_range,
)
from p2p_core.protocols import DiscriminatorOutput, GeneratorOutput, Sample, per_scale
from p2p_core.registry import Component, Registry
from p2p_core.spec import IMAGE_ENCODING, ComponentSpec, input_classes
from p2p_core.testing import strategies

# One bug per failure (several distinct ones would come as an exception group, each with its own example), and no
# explain phase, whose notes point at lines of the kit rather than of the component.
SETTINGS = settings(
    max_examples=8, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck), report_multiple_bugs=False,
    phases=[phase for phase in Phase if phase is not Phase.explain],
)
TRAINING_SIZES = (16, 32, 64)


@attrs.frozen
class Subject:
    """What a check runs against: a component, the options that keep it small, and its registry."""

    component: Component
    registry: Registry
    options: dict[str, Any] = attrs.field(factory=dict)

    @property
    def label(self) -> str:
        return f"{self.component.kind} {self.component.name!r} ({self.component.distribution})"

    def build(self, **engine_arguments: Any) -> Any:
        return self.registry.create(self.component.kind, self.component.name, **engine_arguments, **self.options)


class ContractViolation(AssertionError):
    """A component broke a contract. The message says which, what was found and the fix; with hypothesis's
    example (its notes) it is the whole report, which the kit's pytest plugin shows instead of a traceback."""

    error: Exception | None = None
    """What the component raised, when the violation is that it raised (for a debugger; the report has the rest)."""

    def report(self) -> str:
        return "\n".join([str(self), *getattr(self, "__notes__", [])])


def contract_of(check: Callable[[Subject], None]) -> str:
    """The contract ``check`` enforces, in one line: its docstring's first paragraph."""
    paragraph = inspect.cleandoc(check.__doc__ or check.__name__).split("\n\n")[0]
    return " ".join(paragraph.split()).replace("``", "`")


def _fail(subject: Subject, contract: str, found: str, fix: str) -> None:
    raise ContractViolation(f"{subject.label} breaks the contract: {contract}\n  found: {found}\n  fix: {fix}")


# -- generators ----------------------------------------------------------------------------------------------


def check_generator_output_shape_and_range(subject: Subject) -> None:
    """G maps N x C_in x H x W to N x C_out x H x W in [-1, 1] for any valid size and channel count."""

    @SETTINGS
    @given(in_channels=strategies.channel_counts(), out_channels=strategies.channel_counts(), batch=strategies.batch_sizes(),
           image_size=st.sampled_from(TRAINING_SIZES), seed=st.integers(0, 2**31 - 1), saturated=st.booleans(), data=st.data())
    def run(
        in_channels: int, out_channels: int, batch: int, image_size: int, seed: int, saturated: bool, data: st.DataObject
    ) -> None:
        torch.manual_seed(seed)  # its initialisation too, so that replaying an example replays its failure
        g = subject.build(in_channels=in_channels, out_channels=out_channels, image_size=image_size)
        # Drawn as the size itself, so that the falsifying example shows the size the found line names.
        size = data.draw(strategies.image_sizes(g.size_multiple, max_factor=2, max_size=2 * image_size), label="size")
        x = strategies.seeded_images(batch=batch, channels=in_channels, height=size, seed=seed, saturated=saturated)
        with torch.no_grad():
            y = _generated(subject, g(x)).image
        expected = (batch, out_channels, size, size)
        if tuple(y.shape) != expected:
            _fail(subject, "output shape N x out_channels x H x W", f"{tuple(y.shape)} for input {tuple(x.shape)}, expected {expected}",
                  "keep the spatial size (stride-2 downs matched by stride-2 ups) and end with out_channels channels")
        if not torch.isfinite(y).all() or y.abs().max() > 1:
            _fail(subject, "outputs in [-1, 1]", f"range {_range(y)} for input {tuple(x.shape)}",
                  "end the network with Tanh")

    run()


def _generated(subject: Subject, output: Any) -> GeneratorOutput:
    """What a generator returned, read as the engine reads it: a broken contract is a kit failure."""
    try:
        return GeneratorOutput.of(output, source=subject.label)
    except ConfigError as error:
        raise ContractViolation(str(error)) from None


def _takes_target(g: nn.Module) -> bool:
    return getattr(g, "takes_target", False) is True


def check_generator_extras_and_inference(subject: Subject) -> None:
    """G returns its image, or a GeneratorOutput whose extras are tensors with the batch first; one that declares
    ``takes_target`` works with the target (training) and without it (inference); inference keeps the image alone."""
    from p2p_core.inference import translate

    torch.manual_seed(0)
    g = subject.build(in_channels=3, out_channels=3, image_size=32).train()
    takes = getattr(g, "takes_target", False)
    if not isinstance(takes, bool):
        _fail(subject, "takes_target is a bool", repr(takes), "say takes_target = True for a generator given the target in training")
    x, target = (torch.rand(2, 3, 32, 32) * 2 - 1 for _ in range(2))
    calls = {"G(x)": {}, "G(x, target=y)": {"target": target}} if takes else {"G(x)": {}}
    for call, given in calls.items():
        with torch.no_grad():
            generated = _generated(subject, g(x, **given))
        if tuple(generated.image.shape) != (2, 3, 32, 32) or not generated.image.abs().max() <= 1:
            _fail(subject, "the image is N x out_channels x H x W in [-1, 1]",
                  f"{call} gave an image {tuple(generated.image.shape)} in {_range(generated.image)}",
                  "put the translation in GeneratorOutput.image, and the other tensors in extras")
        for name, extra in generated.extras.items():
            if extra.dim() < 1 or extra.shape[0] != 2:
                _fail(subject, "extras are tensors with the batch first", f"{call} gave {name!r} of shape {tuple(extra.shape)}",
                      "keep one row per image (N x ...), so that losses and logs can read each image's own")
    g.eval()
    side = g.size_multiple + 1  # padded up to two multiples and cropped back, as predict does
    with torch.no_grad():
        image = translate(g, torch.rand(1, 3, side, side) * 2 - 1)
    if not isinstance(image, Tensor) or tuple(image.shape) != (1, 3, side, side):
        _fail(subject, "inference gets the image alone", f"{type(image).__name__} {tuple(getattr(image, 'shape', ()))}",
              "give an image of the input's size in eval mode too: translate() pads the input to size_multiple and "
              "crops GeneratorOutput.image back to the input's size")


def check_generator_size_multiple(subject: Subject) -> None:
    """``size_multiple`` is a positive int, and the smallest input it allows, one multiple on each side, works."""
    g = subject.build(in_channels=3, out_channels=3, image_size=32).train()
    multiple = g.size_multiple
    if not isinstance(multiple, int) or multiple < 1:
        _fail(subject, "size_multiple is a positive int", repr(multiple), "set it to 2**(number of stride-2 downs)")
    try:
        _translate_at(g, multiple)
    except Exception as error:
        works = next((k * multiple for k in range(2, 9) if _translates_at(g, k * multiple)), None)
        if works is None:
            raise  # not about the size: reported as the crash it is, with its traceback
        _fail(subject, "the smallest input, size_multiple x size_multiple, works",
              f"{type(error).__name__}: {_first_line(error)} at {multiple} x {multiple}; {works} x {works} works",
              f"declare size_multiple = {works}: p2p pads images up to multiples of it, so it is also the smallest "
              "side the network must take")


def _translate_at(g: nn.Module, side: int) -> None:
    # Batch 1 in training mode, as pix2pix trains: the strictest case for normalisation layers.
    with torch.no_grad():
        g(torch.rand(1, 3, side, side) * 2 - 1)


def _translates_at(g: nn.Module, side: int) -> bool:
    try:
        _translate_at(g, side)
    except Exception:  # noqa: BLE001 - any failure means this size does not work
        return False
    return True


def _range(values: Tensor) -> str:
    """``[min, max]`` with the digits that tell a float32 from its neighbours: -1.00000012 is not -1."""
    return f"[{float(values.min()):.9g}, {float(values.max()):.9g}]"


def _first_line(error: BaseException) -> str:
    return next(iter(str(error).strip().splitlines()), "")


def check_generator_eval_is_deterministic(subject: Subject) -> None:
    """In eval mode the same input gives the same output (dropout off, running statistics)."""
    torch.manual_seed(0)
    g = subject.build(in_channels=3, out_channels=3, image_size=32).eval()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        first, second = _generated(subject, g(x)).image, _generated(subject, g(x)).image
    if not torch.equal(first, second):
        _fail(subject, "eval() makes G deterministic", f"max difference {(first - second).abs().max():.3g}",
              "draw noise only in training mode (nn.Dropout does this)")


def check_gradients_reach_every_parameter(subject: Subject) -> None:
    """A loss on the output sends a finite, non-zero gradient to every trainable parameter."""
    torch.manual_seed(0)
    model, x = _module_and_input(subject)
    model.train()
    # As training runs it: a generator that takes the target (its encoder's only input) is given one.
    given = {"target": torch.rand_like(x) * 2 - 1} if subject.component.kind == "generator" and _takes_target(model) else {}
    outputs = [out for out in _tensors(subject, model(x, **given)) if out.is_floating_point()]
    targets = [torch.rand_like(out) * 2 - 1 for out in outputs]
    sum((out - target).abs().mean() for out, target in zip(outputs, targets)).backward()
    dead = [name for name, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)]
    broken = [name for name, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    if dead or broken:
        _fail(subject, "every parameter receives a finite, non-zero gradient",
              f"no gradient: {dead[:5]}; non-finite: {broken[:5]}",
              "remove unused layers, or detach()/no_grad() that cuts the graph")


def check_state_dict_round_trip(subject: Subject) -> None:
    """Loading one instance's state_dict into a fresh one reproduces its outputs exactly."""
    torch.manual_seed(0)
    original, x = _module_and_input(subject)
    torch.manual_seed(1)
    copy_, _ = _module_and_input(subject)
    copy_.load_state_dict(original.state_dict())
    original.eval(), copy_.eval()
    with torch.no_grad():
        if not all(map(torch.equal, _tensors(subject, original(x)), _tensors(subject, copy_(x)))):
            _fail(subject, "state_dict holds all the state", "a reloaded copy computes different outputs",
                  "register tensors as parameters or buffers, not plain attributes")


def _tensors(subject: Subject, output: Any) -> list[Tensor]:
    """Every tensor a generator returned (its image and extras), or a discriminator: each scale's logits and features."""
    if subject.component.kind == "generator":
        generated = _generated(subject, output)
        return [generated.image, *generated.extras.values()]
    judged = _judged(subject, output)
    return [*judged.logits, *(f for scale in judged.features for f in scale)]


def _module_and_input(subject: Subject) -> tuple[nn.Module, Tensor]:
    if subject.component.kind == "generator":
        module = subject.build(in_channels=3, out_channels=3, image_size=32)
        return module, torch.rand(1, 3, 32, 32) * 2 - 1
    module = subject.build(in_channels=6)
    size = max(32, _discriminator_input_size(module))
    return module, torch.rand(2, 6, size, size) * 2 - 1


# -- discriminators --------------------------------------------------------------------------------------------


def _judged(subject: Subject, output: Any) -> DiscriminatorOutput:
    """What a discriminator returned, read as the engine reads it: a broken contract is a kit failure."""
    try:
        return DiscriminatorOutput.of(output, source=subject.label)
    except ConfigError as error:
        raise ContractViolation(str(error)) from None


def _discriminator_input_size(module: Any) -> int:
    """The smallest multiple of 16 that holds the largest receptive field and yields at least a 1x1 grid at every scale."""
    size = max(16, *per_scale(module.receptive_field))
    while min(per_scale(module.output_size(size))) < 1:
        size += 16
    return 16 * math.ceil(size / 16)


def check_discriminator_output_grid(subject: Subject) -> None:
    """D maps N x C x H x H to logits N x 1 x h x h with h == output_size(H) at each scale, for any channel
    count; its features, if any, are finite N x ... tensors."""

    @SETTINGS
    @given(channels=strategies.channel_counts().map(lambda c: c * 2), batch=strategies.batch_sizes(), data=st.data())
    def run(channels: int, batch: int, data: st.DataObject) -> None:
        d = subject.build(in_channels=channels)
        smallest = _discriminator_input_size(d)
        size = data.draw(st.sampled_from([smallest + 16 * extra for extra in range(3)]), label="size")
        with torch.no_grad():
            output = _judged(subject, d(torch.rand(batch, channels, size, size) * 2 - 1))
        shape = (batch, channels, size, size)
        sizes = per_scale(d.output_size(size))
        if len(sizes) != len(output.logits):
            _fail(subject, "output_size gives one size per scale of logits", f"{len(sizes)} sizes for {len(output.logits)} scales",
                  "return a tuple from output_size (and receptive_field) with one entry per scale, in the logits' order")
        for scale, (logits, side) in enumerate(zip(output.logits, sizes)):
            expected = (batch, 1, side, side)
            if tuple(logits.shape) != expected:
                _fail(subject, "logits N x 1 x output_size(H) x output_size(W)",
                      f"{tuple(logits.shape)} at scale {scale} for input {shape}, expected {expected}",
                      "end with a 1-channel convolution and make output_size() follow the layers' strides and padding")
            if not torch.isfinite(logits).all():
                _fail(subject, "finite logits", f"NaN or Inf at scale {scale} for input {shape}", "check the normalisation layers")
        for scale, features in enumerate(output.features):
            for feature in features:
                if feature.dim() < 2 or feature.shape[0] != batch or not torch.isfinite(feature).all():
                    _fail(subject, "features are finite tensors N x ...",
                          f"a feature of shape {tuple(feature.shape)} at scale {scale} for input {shape}",
                          "return the activations themselves, batch first (no pooling over the batch, no .item())")

    run()


MAP_NORMS = (nn.modules.instancenorm._InstanceNorm, nn.GroupNorm, nn.LayerNorm)
"""Normalisations whose statistics span the whole feature map, so that every logit depends on every pixel
through them: the receptive-field check measures with them as identities (batch norm, in eval mode, is
per-pixel already)."""


def check_receptive_field(subject: Subject) -> None:
    """The declared receptive_field is the width of input that one central logit depends on through the
    convolutions, at each scale (measured by gradient in eval mode, with instance, group and layer norm as
    identities: their statistics over the whole map would make it the whole input)."""
    torch.manual_seed(0)
    d = _without_map_norms(subject.build(in_channels=3).eval())
    fields = per_scale(d.receptive_field)
    size = 16 * math.ceil((max(fields) + 32) / 16)
    x = (torch.rand(1, 3, size, size) * 2 - 1).requires_grad_(True)
    output = _judged(subject, d(x))
    if len(fields) != len(output.logits):
        _fail(subject, "receptive_field gives one field per scale of logits", f"{len(fields)} fields for {len(output.logits)} scales",
              "return a tuple from receptive_field (and output_size) with one entry per scale, in the logits' order")
    for scale, (logits, field) in enumerate(zip(output.logits, fields)):
        x.grad = None
        h, w = logits.shape[-2:]
        logits[0, 0, h // 2, w // 2].backward(retain_graph=True)
        rows = x.grad.abs().sum(dim=(0, 1, 3)).nonzero()
        measured = int(rows.max() - rows.min() + 1) if len(rows) else 0
        if measured != field:
            where = f" at scale {scale}" if len(fields) > 1 else ""
            how = "by gradient, with instance, group and layer norm modules as identities"
            fix = "compute receptive_field from the layers: rf = rf * stride + (kernel - stride), innermost first"
            if measured == size:
                fix = ("every logit sees the whole input: make anything that spans the map (a normalisation computed "
                       "in forward, attention, global pooling) an nn.InstanceNorm2d/GroupNorm/LayerNorm module or "
                       f"remove it, or, if that is the design, declare receptive_field as the input size; else {fix}")
            _fail(subject, "receptive_field matches the network", f"declared {field}, measured {measured} pixels{where} ({how})", fix)


def _without_map_norms(module: nn.Module) -> nn.Module:
    """``module`` with every :data:`MAP_NORMS` layer in it replaced by an identity (in place)."""
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, MAP_NORMS):
                setattr(parent, name, nn.Identity())
    return module


def check_discriminator_every_scale_sees_the_input(subject: Subject) -> None:
    """Each scale's logits have a finite, non-zero gradient with respect to the input (no scale is cut off)."""
    torch.manual_seed(0)
    d, x = _module_and_input(subject)
    x.requires_grad_(True)
    output = _judged(subject, d(x))
    for scale, logits in enumerate(output.logits):
        (gradient,) = torch.autograd.grad(logits.sum(), x, retain_graph=True, allow_unused=True)
        if gradient is None or not torch.isfinite(gradient).all() or not gradient.abs().sum() > 0:
            _fail(subject, "every scale's logits depend on the input", f"no finite gradient reaches the input from scale {scale}",
                  "compute each scale from the input (e.g. avg-pooled), without detach() or no_grad()")


def check_discriminator_min_input_size(subject: Subject) -> None:
    """Its smallest input (``min_input_size`` where declared, else the smallest side that runs) trains: at batch 1
    and 2 in training mode it gives logits at every scale and gradients, and one pixel less fails or is refused when
    p2p builds the run."""
    from p2p_core.errors import PluginError
    from p2p_core.networks import check_discriminator, smallest_input

    torch.manual_seed(0)
    d = subject.build(in_channels=6).train()
    try:
        smallest = smallest_input(d)
    except PluginError as error:
        _fail(subject, "min_input_size is a positive int", str(error).splitlines()[1].strip().removeprefix("found: "),
              "declare the smallest side of the square inputs it takes, or leave it out")
    if smallest is None:
        return  # it does not run on the meta device (it reads values): nothing p2p derives to check
    runs_at = smallest_input(d, declared=False)
    for batch in (1, 2):
        try:
            _trains_at(subject, d, batch=batch, side=smallest)
        except ContractViolation:
            raise
        except Exception as error:
            _fail(subject, "it trains at its min_input_size",
                  f"{type(error).__name__}: {_first_line(error)} at {smallest} x {smallest}, batch {batch}",
                  f"declare min_input_size = {runs_at}, the smallest side it runs at" if runs_at else
                  "declare the smallest side it really takes")
    if smallest == 1:
        return
    # A declaration is the smallest side: a larger one would refuse crops it trains on. A derived one is p2p's to keep.
    smaller = (lambda: _trains_at(subject, d, batch=1, side=smallest - 1)) if runs_at != smallest else (
        lambda: check_discriminator(d, size=smallest - 1, batch=1, label=subject.label))
    try:
        smaller()
    except Exception:  # noqa: BLE001 - failing or refused: smallest is the smallest
        return
    _fail(subject, "min_input_size is the smallest side it takes",
          f"declared {smallest}, and it trains at {smallest - 1} x {smallest - 1} too" if runs_at != smallest else
          f"p2p accepts {smallest - 1} x {smallest - 1}, below the {smallest} it found",
          f"declare min_input_size = {runs_at}, or leave it out for p2p to find it" if runs_at != smallest else
          "report this to p2p")


def _trains_at(subject: Subject, d: nn.Module, *, batch: int, side: int) -> None:
    """D in training mode on a batch of ``side`` x ``side`` inputs: logits at every scale, and a backward pass."""
    output = _judged(subject, d(torch.rand(batch, d.in_channels, side, side) * 2 - 1))
    empty = [scale for scale, logits in enumerate(output.logits) if logits.numel() == 0]
    if empty:
        raise ValueError(f"no logits at scale {empty[0]}")
    sum(logits.mean() for logits in output.logits).backward()


# -- losses ----------------------------------------------------------------------------------------------------


class _TinyDiscriminator(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 1, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class _TinyMultiScaleDiscriminator(nn.Module):
    """``scales`` scales, each a hidden 3x3 convolution (its activation the features) and a 3x3 one to logits,
    on the input average-pooled by 2 per scale."""

    def __init__(self, channels: int, scales: int) -> None:
        super().__init__()
        self.hidden = nn.ModuleList(nn.Conv2d(channels, 4, 3, padding=1) for _ in range(scales))
        self.heads = nn.ModuleList(nn.Conv2d(4, 1, 3, padding=1) for _ in range(scales))

    def forward(self, x: Tensor) -> DiscriminatorOutput:
        logits, features = [], []
        for hidden, head in zip(self.hidden, self.heads):
            h = torch.nn.functional.leaky_relu(hidden(x), 0.2)
            logits.append(head(h))
            features.append((h,))
            x = torch.nn.functional.avg_pool2d(x, 2)
        return DiscriminatorOutput(logits=logits, features=features)


def _loss_inputs(term: Any, seed: int, scales: int = 1) -> dict[str, Any]:
    """G's input, output and target, and a discriminator: ``scales`` scales with features, or for one scale a
    plain tensor of logits unless the term needs features."""
    generator = torch.Generator().manual_seed(seed)
    x, target = (torch.rand(2, 3, 16, 16, generator=generator) * 2 - 1 for _ in range(2))
    fake = (torch.rand(2, 3, 16, 16, generator=generator) * 2 - 1).requires_grad_(True)
    channels = 6 if term.discriminator_input == "input+output" else 3
    disc: nn.Module | None = None
    if term.discriminator_input != "none":
        plain = scales == 1 and needs(term) != "features"
        disc = _TinyDiscriminator(channels) if plain else _TinyMultiScaleDiscriminator(channels, scales)
    # Extras shaped as images: any term must read them whatever they hold (a KL term's mean and log-variance).
    extras = {name: (torch.rand(2, 3, 16, 16, generator=generator) * 2 - 1).requires_grad_(True)
              for name in getattr(term, "generator_extras", ())}
    return {"x": x, "fake": fake, "target": target, "disc": disc, "extras": extras}


def check_loss_declares_discriminator_input(subject: Subject) -> None:
    """``discriminator_input`` is one of "none", "output", "input+output"."""
    term = subject.build()
    if term.discriminator_input not in ("none", "output", "input+output"):
        _fail(subject, 'discriminator_input in ("none", "output", "input+output")', repr(term.discriminator_input),
              'say "input+output" for a conditional GAN term, "output" for an unconditional one, "none" otherwise')


def check_loss_finite_non_negative_and_differentiable(subject: Subject) -> None:
    """Both losses are finite scalars in the term's ``value_range`` (>= 0 unless it declares another), and the
    generator's has a gradient with respect to G(x) (or the generator's extras it reads), given a discriminator of one
    scale (plain logits, unless the term needs features)."""

    @SETTINGS
    @given(seed=st.integers(0, 2**31 - 1))
    def run(seed: int) -> None:
        _check_loss_values(subject, seed, scales=1)

    run()


def check_loss_with_multiscale_features(subject: Subject) -> None:
    """Both losses are finite scalars in the term's ``value_range``, and the generator's has a gradient with respect
    to G(x) (or the generator's extras it reads), given a discriminator of two scales with features, of which the term
    reads only what it declares (``needs``,
    ``generator_needs_real``).

    Terms of the first Loss protocol read one scale only, and are skipped."""
    if first_version(subject.build()):
        return

    @SETTINGS
    @given(seed=st.integers(0, 2**31 - 1))
    def run(seed: int) -> None:
        _check_loss_values(subject, seed, scales=2)

    run()


def _check_loss_values(subject: Subject, seed: int, *, scales: int) -> None:
    term = subject.build()
    inputs = _loss_inputs(term, seed, scales)
    if has_generator_side(term):
        g_loss = _engine_loss(subject, term, "generator", inputs)
        _check_value(subject, term, "generator", g_loss)
        if g_loss.requires_grad:
            g_loss.backward()
        gradients = [t.grad for t in (inputs["fake"], *inputs["extras"].values()) if t.grad is not None]
        if not gradients or not all(torch.isfinite(gradient).all() for gradient in gradients):
            extras = " or in the generator's extras it reads" if inputs["extras"] else ""
            _fail(subject, f"generator_loss is differentiable in G(x){extras}",
                  f"no finite gradient reaches fake{' or the extras' if extras else ''}", "do not detach fake")
    if has_discriminator_side(term):
        d_loss = _engine_loss(subject, term, "discriminator", _discriminator_inputs(inputs))
        _check_value(subject, term, "discriminator", d_loss)


def _discriminator_inputs(inputs: dict[str, Any]) -> dict[str, Any]:
    """What D's step gives the objective: G(x) detached, and none of the generator's extras (they are its loss's)."""
    return {name: value for name, value in inputs.items() if name != "extras"} | {"fake": inputs["fake"].detach()}


def _check_value(subject: Subject, term: Any, role: str, value: Any) -> None:
    """``value`` is a finite scalar in the range ``term`` declares, which is a range."""
    declared = value_range(term)
    if not (isinstance(declared, tuple) and len(declared) == 2 and all(isinstance(v, (int, float)) for v in declared)
            and declared[0] <= declared[1]):
        _fail(subject, "value_range is (low, high) with low <= high", repr(declared),
              "declare the values the losses take, e.g. value_range = (-math.inf, math.inf), or leave it out for [0, inf)")
    low, high = declared
    if isinstance(value, Tensor) and value.dim() == 0 and bool(torch.isfinite(value)) and low <= value <= high:
        return
    fix = "reduce with mean() to a finite scalar"
    if isinstance(value, Tensor) and value.dim() == 0 and bool(torch.isfinite(value)):
        fix = ("reduce with mean(); use a loss bounded below by 0, or declare the range a term that goes below 0 by design "
               "takes (a WGAN term): value_range = (-math.inf, math.inf)") if low == 0 else \
              "keep the values in the declared range, or declare the range the term takes"
    found = repr(value)
    if isinstance(value, Tensor) and "\n" in found:  # by its shape: the values would spill over many lines of the report
        found = f"a tensor of shape {tuple(value.shape)}"
    _fail(subject, f"{role}_loss is a finite scalar in its value_range [{low:g}, {high:g}]", found, fix)


class _ReadsEverything:
    """A term declaring that it reads all of D's outputs: what tells a term that reads more than it declares
    from one that is broken otherwise."""

    needs = "features"
    generator_needs_real = True

    def __init__(self, term: Any) -> None:
        self.term, self.discriminator_input = term, term.discriminator_input
        if penalises(term) is not None:
            self.penalises = penalises(term)
        self.generator_extras = getattr(term, "generator_extras", ())

    def generator_loss(self, **arguments: Any) -> Any:
        return self.term.generator_loss(**arguments)

    def discriminator_loss(self, **arguments: Any) -> Any:
        return self.term.discriminator_loss(**arguments)


def _engine_loss(subject: Subject, term: Any, role: str, inputs: dict[str, Any]) -> Any:
    """The term's ``role`` loss as the engine computes it (the objective runs D and hands the term what it
    declares); the engine's contract errors, and a term that reads more than it declares, are kit failures."""
    name = subject.component.name

    def compute(declared: Any) -> Any:
        objective = Objective({name: declared}, {name: subject.component.distribution}, discriminator="the kit's discriminator")
        losses = objective.generator_losses if role == "generator" else objective.discriminator_losses
        return losses(**inputs)[name]

    try:
        return compute(term)
    except ConfigError as error:
        raise ContractViolation(str(error)) from None
    except Exception as error:
        if first_version(term) or not _succeeds(lambda: compute(_ReadsEverything(term))):
            raise
        _fail(subject, "a term reads only what it declares (needs, generator_needs_real)",
              f"{type(error).__name__}: {error} in {role}_loss, which works given all of D's outputs",
              "say needs = 'features' to get D's features, and generator_needs_real = True to get d_real in generator_loss")


def check_loss_penalty_trains_the_discriminator(subject: Subject) -> None:
    """A gradient penalty (``penalises`` "real" or "interpolated") gets D's gradient with respect to that input, and
    its discriminator loss, a finite scalar in its ``value_range``, sends a finite gradient into D's weights
    through it (it keeps the gradient's graph)."""
    term = subject.build()
    if penalises(term) is None:
        return
    inputs = _loss_inputs(term, seed=0)
    value = _engine_loss(subject, term, "discriminator", _discriminator_inputs(inputs))
    _check_value(subject, term, "discriminator", value)
    gradients = []
    if value.requires_grad:
        value.backward()
        gradients = [p.grad for p in inputs["disc"].parameters() if p.grad is not None]
    if not any(bool(g.abs().sum() > 0) for g in gradients) or not all(bool(torch.isfinite(g).all()) for g in gradients):
        _fail(subject, "the penalty trains D through D's gradient", "no finite, non-zero gradient reaches D's weights",
              "compute the penalty from `gradient` itself (p2p built it with create_graph), without detach() or no_grad()")


def check_loss_network_is_fixed(subject: Subject) -> None:
    """A term's own network is the term, an ``nn.Module``; fixed as training fixes it (on the device, eval mode, no
    gradients), it stays unchanged through the losses and gets no gradient (it is not trained)."""
    term = subject.build()
    if not isinstance(term, nn.Module):
        loose = [f"{name} ({type(value).__name__})" for name, value in vars(term).items() if isinstance(value, nn.Module)]
        if loose:
            _fail(subject, "a term's network is part of the term, an nn.Module",
                  f"{', '.join(loose)} in a term that is not an nn.Module, so p2p cannot see it",
                  "make the term an nn.Module (subclass it, super().__init__() first): p2p then keeps its network on "
                  "the training device, in eval mode, without gradients")
        return
    fix_network(term, torch.device("cpu"))
    before = {name: tensor.clone() for name, tensor in term.state_dict().items()}
    for seed in range(2):
        inputs = _loss_inputs(term, seed)
        for role, side in (("generator", has_generator_side), ("discriminator", has_discriminator_side)):
            if side(term):
                loss = _engine_loss(subject, term, role, _discriminator_inputs(inputs) if role == "discriminator" else inputs)
                if loss.requires_grad:
                    loss.backward()
    trained = [name for name, p in term.named_parameters() if p.requires_grad or p.grad is not None]
    changed = [name for name, tensor in term.state_dict().items() if not torch.equal(tensor, before[name])]
    if trained or changed or any(module.training for module in term.modules()):
        _fail(subject, "a term's network stays fixed", f"gradients for {trained[:3]}, changed {changed[:3]}, "
              f"training mode: {[n for n, m in term.named_modules() if m.training][:3]}",
              "do not switch it to train() or requires_grad_(True), nor change its tensors in the losses")


def _succeeds(compute: Callable[[], Any]) -> bool:
    try:
        compute()
    except Exception:  # noqa: BLE001 - any failure means the term is broken otherwise
        return False
    return True


# -- datasets --------------------------------------------------------------------------------------------------


def check_dataset_samples(subject: Subject) -> None:
    """Each item is a Sample(a, b, path): in_channels and out_channels x image_size^2 images in [-1, 1]; a declared
    ``input_encoding`` is "image" or "labels:N" with N input channels."""
    for split in ("train", "val"):
        dataset = subject.build(split=split)
        encoding = getattr(dataset, "input_encoding", IMAGE_ENCODING)
        try:
            classes = input_classes(encoding)
        except ConfigError as error:
            _fail(subject, "input_encoding is 'image' or 'labels:N'", repr(encoding), str(error).split("; ", 1)[1])
        if classes is not None and classes != dataset.in_channels:
            _fail(subject, "a labels:N input has N channels", f"{encoding} with in_channels {dataset.in_channels}",
                  "give the input one one-hot channel per class (p2p_core.images.read_input)")
        if len(dataset) < 1:
            _fail(subject, "a dataset has at least one pair", "len() == 0", "point it at data")
        for index in sorted({0, len(dataset) - 1}):
            sample = dataset[index]
            if not isinstance(sample, Sample):
                _fail(subject, "items are p2p_core.Sample(a, b, path)", type(sample).__name__, "return Sample(a, b, path)")
            expected_a = (dataset.in_channels, dataset.image_size, dataset.image_size)
            expected_b = (dataset.out_channels, dataset.image_size, dataset.image_size)
            if tuple(sample.a.shape) != expected_a or tuple(sample.b.shape) != expected_b:
                _fail(subject, "a: in_channels x S x S, b: out_channels x S x S with S = image_size",
                      f"a {tuple(sample.a.shape)}, b {tuple(sample.b.shape)}; expected {expected_a} and {expected_b}",
                      "crop or resize to image_size, and report the channels the samples really have")
            for half in (sample.a, sample.b):
                if half.dtype != torch.float32 or half.min() < -1 or half.max() > 1:
                    _fail(subject, "float32 values in [-1, 1]", f"{half.dtype} in {_range(half)}",
                          "use p2p_core.images.read_image / to_signed")


def check_dataset_is_reproducible(subject: Subject) -> None:
    """With the same torch seed, the same index gives the same pair (jitter draws only from torch's RNG)."""
    dataset = subject.build(split="train")
    torch.manual_seed(0)
    first = dataset[0]
    torch.manual_seed(0)
    second = dataset[0]
    if not (torch.equal(first.a, second.a) and torch.equal(first.b, second.b)):
        _fail(subject, "jitter is reproducible from torch's seed", "two draws under one seed differ",
              "draw randomness from torch (not random or numpy), so data-loader seeding covers it")


def check_dataset_jitter_keeps_pairs_aligned(subject: Subject) -> None:
    """Given options under which A equals B, every jittered train sample still has A == B."""
    dataset = subject.build(split="train")
    for index in range(min(len(dataset), 4)):
        for seed in range(3):
            torch.manual_seed(seed)
            sample = dataset[index]
            if not torch.equal(sample.a, sample.b):
                _fail(subject, "the same crop and flip apply to A and B",
                      f"item {index} under seed {seed}: A and B differ by up to {(sample.a - sample.b).abs().max():.3g}",
                      "draw the crop and flip once and apply them to both (p2p_core.images.PairedJitter does)")


# -- methods --------------------------------------------------------------------------------------------------

METHOD_SIZE = 32


def _training(subject: Subject, *, seed: int = 0, total_steps: int = 8, init_seed: int | None = None) -> Any:
    """The method trained on tiny networks (p2p's U-Net and 16x16 PatchGAN, 4 filters) and its own default
    objective, for 3 -> 3 channels at 32 x 32, with the run's ``seed``; its networks start from ``init_seed``
    (torch's global seed while they are built), the run's seed unless given."""
    from p2p_core.config import default_objective
    from p2p_core.spec import ComponentSpec, RunSpec, Shapes, TrainConfig
    from p2p_core.training import Training

    loss, loss_options = default_objective(subject.registry, subject.component.name)
    spec = RunSpec(generator=ComponentSpec("p2p:unet", {"ngf": 4}), disc=ComponentSpec("p2p:patch16", {"ndf": 4}),
                   data=ComponentSpec("p2p:synthetic"), method=ComponentSpec(subject.component.name, subject.options),
                   loss=loss, loss_options=loss_options, trainer=TrainConfig(num_workers=0, progress=False, seed=seed))
    torch.manual_seed(seed if init_seed is None else init_seed)
    shapes = Shapes(in_channels=3, out_channels=3, image_size=METHOD_SIZE)
    return Training.build(spec, shapes, total_steps=total_steps, registry=subject.registry)


def _batches(count: int, seed: int = 1) -> list[Sample]:
    random = torch.Generator().manual_seed(seed)
    return [Sample(*(torch.rand(2, 3, METHOD_SIZE, METHOD_SIZE, generator=random) * 2 - 1 for _ in range(2)), path="")
            for _ in range(count)]


def check_method_steps_return_finite_scalars_and_images(subject: Subject) -> None:
    """A step returns its logged values as finite scalars by name, and ``images()`` the step's images, each
    N x C x H x W in [-1, 1]."""
    training = _training(subject)
    for step, batch in enumerate(_batches(2), start=1):
        logged = training.train_step(batch)
        bad = {name: value for name, value in dict(logged).items()
               if not isinstance(name, str) or not isinstance(value, (int, float)) or not math.isfinite(value)}
        if not logged or bad:
            _fail(subject, "a step returns finite scalars by name", f"step {step} returned {dict(logged) if not logged else bad}",
                  "return {name: value} of the losses as floats: the values training.update returns")
    for name, image in dict(training.method.images()).items():
        if not isinstance(image, Tensor) or image.dim() != 4 or not bool(image.isfinite().all()) or image.abs().max() > 1 + 1e-5:
            found = type(image).__name__ if not isinstance(image, Tensor) else f"{tuple(image.shape)} in [{image.min():.6g}, {image.max():.6g}]"
            _fail(subject, "images() gives N x C x H x W images in [-1, 1]", f"{name!r}: {found}",
                  "return the latest step's inputs and outputs, detached, as batches")


def check_method_directions_name_its_generators(subject: Subject) -> None:
    """``directions`` maps AtoB and/or BtoA to generators the method built, and each translates a batch of its
    direction's input channels into its output channels."""
    from p2p_core.errors import PluginError

    try:
        training = _training(subject)
    except PluginError as error:
        if "directions" not in str(error):
            raise
        _fail(subject, "directions name the generators it built", str(error).splitlines()[1].strip().removeprefix("found: "),
              "build each generator with training.network(ROLE, 'generator', ...) and map the direction to ROLE")
    for direction, role in training.trained.directions.items():
        shape = training.trained.networks[role]
        x = torch.zeros(1, shape.in_channels, METHOD_SIZE, METHOD_SIZE)
        with torch.no_grad():
            output = _generated(subject, training.translator(direction).eval()(x)).image
        if tuple(output.shape) != (1, shape.out_channels, METHOD_SIZE, METHOD_SIZE):
            _fail(subject, "each direction's generator translates its input channels to its output channels",
                  f"{direction} ({role!r}) gave {tuple(output.shape)} for {tuple(x.shape)}",
                  "build that generator with the channels of its direction (B's in and A's out for BtoA)")


def check_method_state_round_trip(subject: Subject) -> None:
    """Training continues bit-identically from a checkpoint on the CPU: ``state_dict()`` (networks, optimizers,
    the method's own state) and the random state restore exactly what an uninterrupted run would do next."""
    first, second = _batches(2), _batches(2, seed=2)
    uninterrupted = _training(subject)
    for batch in first:
        uninterrupted.train_step(batch)
    state, rng = _through_a_file(uninterrupted.state_dict()), torch.get_rng_state()
    expected = [uninterrupted.train_step(batch) for batch in second]
    # A resumed run has the checkpoint's seed, but networks built from other weights, which the state replaces.
    resumed = _training(subject, init_seed=1)
    resumed.load_state_dict(state)
    torch.set_rng_state(rng)
    found = [resumed.train_step(batch) for batch in second]
    if found != expected:
        _fail(subject, "a resumed run continues exactly", f"after resuming, the steps logged {found}, not {expected}",
              "keep every piece of state that steps depend on (an image pool, a counter) in the method's "
              "state_dict()/load_state_dict(), as plain tensors, and draw random numbers from torch's generator")
    for role, network in uninterrupted.networks.items():
        for name, tensor in network.state_dict().items():
            if not torch.equal(tensor, resumed.networks[role].state_dict()[name]):
                _fail(subject, "a resumed run continues exactly", f"network {role!r}: {name} differs after resuming",
                      "keep every piece of state that steps depend on in the method's state_dict()")


def _through_a_file(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` as a checkpoint holds it: written, and read back as plain tensors and data (weights only)."""
    import io

    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def check_method_is_reproducible(subject: Subject) -> None:
    """Two runs from one seed agree: the same logged values, step for step."""
    runs = []
    for _ in range(2):
        training = _training(subject, seed=3)
        runs.append([training.train_step(batch) for batch in _batches(2)])
    if runs[0] != runs[1]:
        _fail(subject, "two runs from one seed agree", f"{runs[0]} and then {runs[1]}",
              "draw every random number from torch's generator (seeded by the run), not from time or os.urandom")


def check_method_updates_only_the_networks_it_steps(subject: Subject) -> None:
    """An update backpropagates into the networks of its own optimizer only: a network that judges another's
    update is frozen for it (``with training.frozen(ROLE):``), so it gets no gradient there."""
    training = _training(subject)
    leaks: list[str] = []

    def before_step(optimizer: torch.optim.Optimizer, *_: Any) -> None:
        own = {id(p) for group in optimizer.param_groups for p in group["params"]}
        name = next(n for n, o in training.optimizers.items() if o is optimizer)
        for role, network in training.networks.items():
            if any(id(p) not in own and p.grad is not None for p in network.parameters()):
                leaks.append(f"update {name!r} gave gradients to network {role!r}")

    def after_step(optimizer: torch.optim.Optimizer, *_: Any) -> None:
        for group in optimizer.param_groups:  # what it stepped is spent; whatever appears later is a leak
            for p in group["params"]:
                p.grad = None

    for optimizer in training.optimizers.values():
        optimizer.register_step_pre_hook(before_step)
        optimizer.register_step_post_hook(after_step)
    for batch in _batches(2):
        training.train_step(batch)
    if leaks:
        _fail(subject, "an update gives gradients only to the networks it steps", sorted(set(leaks))[0],
              "compute the judging network's part under `with training.frozen(ROLE):` and detach what another "
              "network's update must not reach (fake.detach() in a discriminator step)")


# -- inference backends ---------------------------------------------------------------------------------------

BACKEND_SIZES = ((2, 20, 30), (1, 7, 5), (1, 1, 1))
"""(batch, height, width) of the inputs a backend translates: not multiples of the generator's 16, a batch, one pixel."""


def check_backend_declares_what_it_runs(subject: Subject) -> None:
    """``supports`` maps torch device types to non-empty tuples of p2p's precisions (float32, bfloat16, float16),
    ``modes`` is a non-empty tuple of eval and paper, and ``auto_priority`` maps device types to ints."""
    from p2p_core.backends import PRECISIONS

    backend = subject.build()
    contract = "it declares the devices, precisions and modes it runs"
    supports, modes, priorities = (getattr(backend, name, None) for name in ("supports", "modes", "auto_priority"))
    if not isinstance(supports, Mapping) or not supports:
        _fail(subject, contract, f"supports = {supports!r}", "map device types to precisions: {'cpu': ('float32',)}")
    for device, precisions in supports.items():
        if not _is_device_type(device):
            _fail(subject, contract, f"device {device!r} in supports", "name torch's device types: cpu, cuda, mps, ...")
        if not isinstance(precisions, tuple) or not precisions or any(p not in PRECISIONS for p in precisions):
            _fail(subject, contract, f"supports[{device!r}] = {precisions!r}",
                  f"give a non-empty tuple of {', '.join(PRECISIONS)} (torch's dtype names; fp32 and bf16 are not read here)")
    if not isinstance(modes, tuple) or not modes or any(mode not in ("eval", "paper") for mode in modes):
        _fail(subject, contract, f"modes = {modes!r}", "give a non-empty tuple of 'eval' and 'paper'")
    if not isinstance(priorities, Mapping) or any(not _is_device_type(d) or type(v) is not int for d, v in priorities.items()):
        _fail(subject, contract, f"auto_priority = {priorities!r}", "map device types to ints (p2p's torch has 0 everywhere)")


def _is_device_type(name: object) -> bool:
    try:
        return isinstance(name, str) and torch.device(name).type == name
    except (RuntimeError, TypeError):
        return False


def check_backend_matches_translate(subject: Subject) -> None:
    """In eval mode, in every precision it runs on the device here (the CPU, else a GPU it runs on), the runner takes
    float32 N x C x H x W of any size and returns `translate`'s output there, float32, within the precision's
    tolerance, `p2p_core.backends.TOLERANCE` (float32 1e-4; float16 2 and bfloat16 4 8-bit levels)."""
    import tempfile
    from pathlib import Path

    from p2p_core.backends import TOLERANCE
    from p2p_core.downloads import cache_in
    from p2p_core.inference import translate

    backend = subject.build()
    here = [torch.device(d) for d in ("cpu", "cuda") if d in backend.supports and (d == "cpu" or torch.cuda.is_available())]
    if not here:
        _skip(subject, f"it runs on {', '.join(backend.supports)}, none of which is here")
    device = here[0]
    if problem := backend.problem(device=device):
        _skip(subject, f"it cannot run on {device.type} here: {problem}")
    with tempfile.TemporaryDirectory() as folder, cache_in(Path(folder) / "cache"):
        trained = _tiny_trained(subject.registry, Path(folder), device)
        random = torch.Generator().manual_seed(0)
        inputs = [(torch.rand(n, 3, h, w, generator=random) * 2 - 1).to(device) for n, h, w in BACKEND_SIZES]
        with torch.no_grad():
            expected = [translate(trained.module, x) for x in inputs]
        for precision in backend.supports[device.type]:
            runner = backend.open(trained, device=device, precision=precision)
            for x, wanted in zip(inputs, expected):
                found = runner(x)
                where = f"for {tuple(x.shape)} on {device.type} in {precision}"
                if not isinstance(found, Tensor) or found.shape != wanted.shape or found.dtype != torch.float32 or found.device != x.device:
                    shown = f"{type(found).__name__} {tuple(found.shape)} {found.dtype} on {found.device}" if isinstance(found, Tensor) else repr(found)
                    _fail(subject, "the runner returns float32 N x C_out x H x W on the input's device", f"{shown} {where}",
                          "pad to the generator's size_multiple and crop back as translate() does, and return float32")
                difference = float((found - wanted).abs().max())
                if not difference <= TOLERANCE[precision]:
                    _fail(subject, f"outputs within {TOLERANCE[precision]:.2g} of translate() in {precision}",
                          f"largest difference {difference:.3g} {where}",
                          "run the generator itself on the whole input, padded by reflection as translate() pads, in the "
                          "precision asked for")


def _tiny_trained(registry: Registry, folder: Any, device: torch.device) -> Any:
    """A checkpoint of p2p's U-Net for 16-pixel images (4 filters), loaded in eval mode on ``device``, its
    convolutions at torch's default initialisation so that outputs spread (the paper's N(0, 0.02) keeps them near 0)."""
    from p2p_core import checkpoint
    from p2p_core.inference import load_generator
    from p2p_core.spec import ComponentSpec, RunSpec, Shapes, TrainConfig
    from p2p_core.training import Training

    spec = RunSpec(generator=ComponentSpec("p2p:unet", {"ngf": 4}), disc=ComponentSpec("p2p:pixel", {"ndf": 4}),
                   data=ComponentSpec("p2p:synthetic"), trainer=TrainConfig(num_workers=0, progress=False, device="cpu"))
    torch.manual_seed(0)
    model = Training.build(spec, Shapes(in_channels=3, out_channels=3, image_size=16), total_steps=1, registry=registry)
    for module in model.networks["generator"].modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            module.reset_parameters()
    return load_generator(checkpoint.save(model.state_dict(), folder, 0), mode="eval", device=device, registry=registry)


def _skip(subject: Subject, reason: str) -> None:
    import pytest

    pytest.skip(f"{subject.label}: {reason}")


# -- every kind ------------------------------------------------------------------------------------------------


def check_options_round_trip_through_config(subject: Subject) -> None:
    """The component's options survive the CLI's YAML: parsed from the command line, written to config.yaml,
    read back, the same options; and they are its own (another component's defaults never leak in)."""
    from p2p_core.config import options_round_trip

    component = subject.component
    parsed, reparsed = options_round_trip(component.kind, component.name, subject.options, subject.registry)
    if parsed != reparsed:
        _fail(subject, "options survive the config", f"{parsed} became {reparsed}",
              "give every option a type annotation jsonargparse can parse and dump (int, float, str, Literal, Path)")
    own = {option.name for option in component.options}
    foreign = sorted(set(parsed) - own)
    if foreign:
        _fail(subject, "a component gets only its own options", f"options {foreign} that its factory does not take",
              "report this to p2p: the parser mixed in another component's options")
    defaults = {option.name: option.default for option in component.options if not option.required}
    # As the spec holds them (a Path as its text), which is what the parser gives.
    expected = ComponentSpec(name=component.name, options=defaults | subject.options).options
    wrong = {name: parsed[name] for name, value in expected.items() if name in parsed and parsed[name] != value}
    if wrong:
        _fail(subject, "defaults come from the component's own signature", f"{wrong} instead of the defaults and given options",
              "report this to p2p: the parser took a default from elsewhere")


CHECKS: dict[str, tuple[Callable[[Subject], None], ...]] = {
    "generator": (
        check_generator_output_shape_and_range,
        check_generator_extras_and_inference,
        check_generator_size_multiple,
        check_generator_eval_is_deterministic,
        check_gradients_reach_every_parameter,
        check_state_dict_round_trip,
        check_options_round_trip_through_config,
    ),
    "discriminator": (
        check_discriminator_output_grid,
        check_receptive_field,
        check_discriminator_every_scale_sees_the_input,
        check_discriminator_min_input_size,
        check_gradients_reach_every_parameter,
        check_state_dict_round_trip,
        check_options_round_trip_through_config,
    ),
    "loss": (
        check_loss_declares_discriminator_input,
        check_loss_finite_non_negative_and_differentiable,
        check_loss_with_multiscale_features,
        check_loss_penalty_trains_the_discriminator,
        check_loss_network_is_fixed,
        check_options_round_trip_through_config,
    ),
    "dataset": (check_dataset_samples, check_dataset_is_reproducible, check_options_round_trip_through_config),
    "backend": (check_backend_declares_what_it_runs, check_backend_matches_translate),
    "method": (
        check_method_steps_return_finite_scalars_and_images,
        check_method_directions_name_its_generators,
        check_method_state_round_trip,
        check_method_is_reproducible,
        check_method_updates_only_the_networks_it_steps,
        check_options_round_trip_through_config,
    ),
}
"""The checks every component of a kind must pass. ``check_dataset_jitter_keeps_pairs_aligned`` runs in
addition for datasets given ``identical_pairs`` options (options under which A equals B)."""


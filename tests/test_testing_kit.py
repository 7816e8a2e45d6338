"""The conformance kit itself: it fails deliberately broken components with the contract and the fix, passes
their repaired twins, and ``expected_failures`` turns a known failure into a strict xfail (which pytest then
reports as XFAIL, or as a failure should the case pass: see test_pytest_plugin.py)."""

from __future__ import annotations

import enum
import importlib
import math
import random
import re
import sys
from pathlib import Path
from typing import Literal

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn
from torch.utils.data import Dataset

import p2p_core
from p2p_core.protocols import Sample
from p2p_core.registry import OWN_DISTRIBUTION, Registry
from p2p_core.testing import CHECKS, ContractViolation, cases, parametrize_with_checks
from p2p_core.backends import Runner
from p2p_core.inference import translate
from p2p_core.testing.checks import (
    check_backend_declares_what_it_runs,
    check_backend_matches_translate,
    check_dataset_is_reproducible,
    check_dataset_jitter_keeps_pairs_aligned,
    check_dataset_samples,
    check_discriminator_every_scale_sees_the_input,
    check_discriminator_min_input_size,
    check_discriminator_output_grid,
    check_generator_eval_is_deterministic,
    check_generator_extras_and_inference,
    check_generator_output_shape_and_range,
    check_generator_size_multiple,
    check_gradients_reach_every_parameter,
    check_loss_declares_discriminator_input,
    check_loss_finite_non_negative_and_differentiable,
    check_loss_network_is_fixed,
    check_loss_penalty_trains_the_discriminator,
    check_loss_with_multiscale_features,
    check_method_directions_name_its_generators,
    check_method_is_reproducible,
    check_method_state_round_trip,
    check_method_steps_return_finite_scalars_and_images,
    check_method_updates_only_the_networks_it_steps,
    check_options_round_trip_through_config,
    check_receptive_field,
    check_state_dict_round_trip,
    contract_of,
)
from test_kit_methods import DrawsUnseededNoise, Flawed, ForgetsItsCounter, LeaksIntoItsJudge, LogsTensors, TranslatesWithItsJudge

CONTRIBUTING = Path(__file__).resolve().parents[1] / "CONTRIBUTING.md"


def signed(*images: Tensor) -> None:
    """What the kit promises a component: its images in [-1, 1] (one may rely on it, as a labels input does)."""
    for image in images:
        if image.abs().max() > 1:
            raise ValueError(f"an image in [{image.min():.3g}, {image.max():.3g}], outside [-1, 1]")


class UnboundedGenerator(nn.Module):
    """Forgot the final Tanh: outputs leave [-1, 1]."""

    size_multiple = 1

    def __init__(self, *, in_channels: int, out_channels: int, image_size: int, squash: bool = False) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.squash = in_channels, out_channels, squash
        self.conv = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        y = 10 * self.conv(x) + 5
        return torch.tanh(y) if self.squash else y


class ShrinkingGenerator(UnboundedGenerator):
    """Downsamples and never upsamples again."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.tanh(self.conv(x))[..., ::2, ::2]


class LargeShrinkingGenerator(UnboundedGenerator):
    """Halves inputs of 32 pixels and more: only some sizes break the shape contract."""

    size_multiple = 16

    def forward(self, x: Tensor) -> Tensor:
        y = torch.tanh(self.conv(x))
        return y[..., ::2, ::2] if x.shape[-1] >= 32 else y


class ExplodingGenerator(UnboundedGenerator):
    """Raises inside forward, as a component with a bug does."""

    def forward(self, x: Tensor) -> Tensor:
        raise RuntimeError(f"no kernel for {x.shape[-1]} columns")


class UnbuildableGenerator(UnboundedGenerator):
    """Raises when built, which the registry reports as its own error."""

    def __init__(self, *, in_channels: int, out_channels: int, image_size: int) -> None:
        raise TypeError("needs a width")


class NarrowBottleneckGenerator(nn.Module):
    """Divisible by 2 (one stride-2 down), but instance norm needs more than its 1 x 1 bottleneck of a 2 x 2 input:
    4 is the smallest side it takes."""

    def __init__(self, *, in_channels: int, out_channels: int, image_size: int, size_multiple: int = 2) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.size_multiple = in_channels, out_channels, size_multiple
        self.net = nn.Sequential(nn.Conv2d(in_channels, 4, 4, 2, 1), nn.InstanceNorm2d(4), nn.ReLU(),
                                 nn.ConvTranspose2d(4, out_channels, 4, 2, 1), nn.Tanh())

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class MisdeclaredDiscriminator(nn.Module):
    """One 4x4 convolution, so each logit sees 4 pixels, but it claims the 70 of the paper's PatchGAN."""

    def __init__(self, *, in_channels: int, receptive_field: int = 70) -> None:
        super().__init__()
        self.in_channels, self.receptive_field = in_channels, receptive_field
        self.conv = nn.Conv2d(in_channels, 1, 4)

    def output_size(self, input_size: int) -> int:
        return input_size - 3

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class FunctionallyNormedDiscriminator(MisdeclaredDiscriminator):
    """Normalises its logits over the whole map in forward, where the kit cannot swap the normalisation out."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.nn.functional.instance_norm(self.conv(x))


class ExplodingDiscriminator(MisdeclaredDiscriminator):
    def forward(self, x: Tensor) -> Tensor:
        raise ValueError(f"cannot score {x.shape[1]} channels")


class NegativeLoss:
    """The unbounded -mean(D(fake)) of a WGAN critic, declaring the default range [0, inf) unless told ``low``."""

    discriminator_input = "output"

    def __init__(self, *, shift: float = 0.0, low: float = 0.0) -> None:
        self.shift, self.value_range = shift, (low, math.inf)

    def generator_loss(self, *, x: Tensor, fake: Tensor, target: Tensor, disc) -> Tensor:
        return self.shift - disc(fake).mean() - 10

    def discriminator_loss(self, *, x: Tensor, fake: Tensor, target: Tensor, disc) -> Tensor:
        return (disc(fake) - disc(target)).abs().mean()


class SwitchedOffLoss:
    """A term weighted to zero (a warm-up not yet begun): it gives 0, and declares exactly that range."""

    discriminator_input = "output"
    value_range = (0.0, 0.0)

    def generator_loss(self, *, x: Tensor, fake: Tensor, target: Tensor, disc) -> Tensor:
        return 0 * disc(fake).mean()

    def discriminator_loss(self, *, x: Tensor, fake: Tensor, target: Tensor, disc) -> Tensor:
        return 0 * disc(fake).mean()


class DetachedPenalty:
    """An R1 penalty that detaches the gradient p2p hands it, so it cannot train D, unless ``detach`` is off."""

    discriminator_input = "input+output"
    penalises = "real"

    def __init__(self, *, detach: bool = True, reads_features: bool = False) -> None:
        self.detach, self.reads_features = detach, reads_features

    def discriminator_loss(self, *, x: Tensor, fake: Tensor, target: Tensor, d_fake, d_real, gradient: Tensor) -> Tensor:
        penalty = (gradient.detach() if self.detach else gradient).pow(2).flatten(1).sum(1).mean()
        # Unless told needs = "features", it gets none: reading them is reading more than it declares.
        return penalty + 0 * d_real.features[0][0].mean() if self.reads_features else penalty


class FeatureDistance(nn.Module):
    """A perceptual-style term: the distance between a fixed network's features of G(x) and of the target; it
    switches the network to training mode in its loss unless ``repaired``."""

    discriminator_input = "none"
    needs = "nothing"

    def __init__(self, *, repaired: bool = False) -> None:
        super().__init__()
        self.repaired = repaired
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Dropout(0.5))

    def generator_loss(self, *, x: Tensor, fake: Tensor, target: Tensor, d_fake: None, d_real: None) -> Tensor:
        if not self.repaired:
            self.train()
        return (self.features(fake) - self.features(target)).abs().mean()


class AttentionWeightedL1:
    """L1 weighted per pixel by an attention map among the generator's extras (as test_generator_outputs.py's
    Attending gives one): it reads the extras image by image, beside G(x)."""

    discriminator_input = "none"
    needs = "nothing"
    generator_extras = ("attention",)

    def generator_loss(self, *, x: Tensor, fake: Tensor, target: Tensor, d_fake: None, d_real: None, extras) -> Tensor:
        return (torch.sigmoid(extras["attention"]) * (fake - target).abs()).mean()


class OvershootingDataset(torch.utils.data.Dataset):
    """Black pairs one float step below -1 unless ``exact``: what a resize used to leave. ``root`` is a Path
    option with a default, which the config turns into text."""

    in_channels = out_channels = 3
    image_size = 8

    def __init__(self, *, split: str, exact: bool = False, root: Path = Path("black")) -> None:
        self.root = root
        self.value = -1.0 if exact else float(torch.nextafter(torch.tensor(-1.0), torch.tensor(-2.0)))

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> p2p_core.Sample:
        image = torch.full((3, 8, 8), self.value)
        return p2p_core.Sample(image, image.clone(), "black")


# -- one component of each kind with a switch for each way to get it wrong, so that every check has a component
# it must fail ("" is correct); ``shade`` is an Enum option, which config.yaml cannot hold (a plugin says Literal).


class Shade(enum.Enum):
    LIGHT = "light"
    DARK = "dark"


class FlawedGenerator(nn.Module):
    """A 1x1 convolution and Tanh, with ``broken`` naming its flaw."""

    size_multiple = 1

    def __init__(self, *, in_channels: int, out_channels: int, image_size: int, shade: Shade = Shade.LIGHT,
                 broken: Literal["", "noisy_in_eval", "unused_layer", "unregistered_state", "extras_without_batch",
                                 "int_takes_target", "unbounded_given_target", "shrinks_in_eval", "zero_size_multiple",
                                 "returns_a_pair", "needs_3_pixels"] = "", positional: bool = False) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.broken = in_channels, out_channels, broken
        # A learned offset per pixel, as a position embedding: it fits inputs of the image_size built for alone.
        self.position = nn.Parameter(torch.zeros(out_channels, image_size, image_size)) if positional else None
        if broken in ("int_takes_target", "unbounded_given_target"):
            self.takes_target = 1 if broken == "int_takes_target" else True
        if broken == "zero_size_multiple":
            self.size_multiple = 0
        self.conv = nn.Conv2d(in_channels, out_channels, 1)
        if broken == "unused_layer":
            self.unused = nn.Conv2d(in_channels, out_channels, 1)
        self.offset = torch.rand(()) if broken == "unregistered_state" else torch.zeros(())  # not a buffer

    def forward(self, x: Tensor, target: Tensor | None = None) -> Tensor | p2p_core.GeneratorOutput:
        signed(x, *([] if target is None else [target]))
        if self.broken == "needs_3_pixels" and x.shape[-1] < 3:  # its size_multiple 1 allows 1 x 1 and 2 x 2
            raise ValueError(f"needs 3 x 3 pixels, got {x.shape[-1]}")
        y = self.conv(x) + self.offset
        if self.position is not None:
            y = y + self.position
        if target is not None and self.broken == "unbounded_given_target":  # forgot the Tanh on its training path
            return y + 10
        image = torch.tanh(F.dropout(y, 0.5, training=True) if self.broken == "noisy_in_eval" else y)
        if not self.training and self.broken == "shrinks_in_eval":
            return image[..., ::2, ::2]
        if self.broken == "returns_a_pair":  # the image and its logits, where p2p reads a GeneratorOutput
            return image, y
        if self.broken == "extras_without_batch":  # one mean for the whole batch
            return p2p_core.GeneratorOutput(image=image, extras={"mean": y.mean()})
        return image


class FlawedDiscriminator(nn.Module):
    """A 3x3 convolution to logits (receptive field 3, same size), with ``broken`` naming its flaw."""

    receptive_field = 3

    def __init__(self, *, in_channels: int, shade: Shade = Shade.LIGHT,
                 broken: Literal["", "wrong_grid", "blind", "unused_layer", "unregistered_state", "overstated_min_input",
                                 "understated_min_input", "zero_min_input", "two_declared_scales", "nan_logits",
                                 "pooled_features", "squeezes_one_pixel"] = "") -> None:
        super().__init__()
        self.in_channels, self.broken = in_channels, broken
        if broken in ("overstated_min_input", "understated_min_input", "zero_min_input"):
            # It takes 1 x 1, unless understated: then 3 x 3.
            self.min_input_size = {"overstated_min_input": 4, "understated_min_input": 2, "zero_min_input": 0}[broken]
        if broken == "two_declared_scales":  # for the one scale of logits it has
            self.receptive_field = (3, 3)
        self.conv = nn.Conv2d(in_channels, 1, 3, padding=1)
        if broken == "unused_layer":
            self.unused = nn.Conv2d(in_channels, 1, 3, padding=1)
        self.offset = torch.rand(()) if broken == "unregistered_state" else torch.zeros(())  # not a buffer

    def output_size(self, input_size: int) -> int | tuple[int, int]:
        if self.broken == "two_declared_scales":
            return input_size, input_size
        if self.broken == "squeezes_one_pixel":
            return input_size // 16
        return input_size // 2 if self.broken == "wrong_grid" else input_size

    def forward(self, x: Tensor) -> Tensor | p2p_core.DiscriminatorOutput:
        if self.broken == "understated_min_input" and x.shape[-1] < 3:
            raise ValueError(f"needs 3 x 3 pixels, got {x.shape[-1]}")
        if x.device.type != "meta":  # p2p finds the sizes it runs at on the meta device, which holds no values
            signed(x)
        logits = self.conv(x.detach() if self.broken == "blind" else x) + self.offset
        if self.broken == "squeezes_one_pixel":  # a 16 x 16 patch per logit, a 1 x 1 map squeezed away
            logits = F.avg_pool2d(logits, 16)
            return logits.flatten(1) if logits.shape[-1] == 1 else logits
        if self.broken == "nan_logits":
            return logits * math.nan
        if self.broken == "pooled_features":  # one number for the whole batch
            return p2p_core.DiscriminatorOutput(logits=[logits], features=[(logits.mean(),)])
        return logits


class FlawedLoss:
    """L1 plus the mean of D's logits on the fake pair, shifted to stay >= 0, with ``broken`` naming its flaw."""

    def __init__(self, *, shade: Shade = Shade.LIGHT,
                 broken: Literal["", "undeclared_input", "undeclared_features", "loose_network", "detached",
                                 "unreduced", "inverted_range", "narrow_range", "misspelt_needs", "negative_on_bright_targets"] = "") -> None:
        self.broken = broken
        if broken == "misspelt_needs":
            self.needs = "feature"
        self.discriminator_input = "both" if broken == "undeclared_input" else "input+output"
        if broken in ("inverted_range", "narrow_range"):
            self.value_range = (1.0, 0.0) if broken == "inverted_range" else (0.25, 0.5)  # it takes about 1.2
        if broken == "loose_network":  # a network the term holds without being an nn.Module: p2p cannot fix it
            self.features = nn.Conv2d(3, 3, 1)

    def generator_loss(self, *, x: Tensor, fake: Tensor, target: Tensor, d_fake, d_real) -> Tensor:
        signed(x, fake, target)
        read = d_fake.features[0][0] if self.broken == "undeclared_features" else d_fake.logits[0]
        if self.broken == "unreduced":
            return (fake - target).abs() + torch.sigmoid(read)
        loss = (fake - target).abs().mean() + torch.sigmoid(read).mean()
        if self.broken == "negative_on_bright_targets":  # what the kit sees only if it shows targets above 0.5
            loss = loss - 8 * (target > 0.5).float().mean()
        return loss.detach() if self.broken == "detached" else loss

    def discriminator_loss(self, *, x: Tensor, fake: Tensor, target: Tensor, d_fake, d_real) -> Tensor:
        signed(x, fake, target)
        return torch.sigmoid(d_fake.logits[0]).mean() + 1 - torch.sigmoid(d_real.logits[0]).mean()


class FlawedPairs(Dataset):
    """Four 8 x 8 pairs, B a copy of A when ``identical``, both given one random contrast and flip, with ``broken``
    naming its flaw."""

    in_channels = out_channels = 3
    image_size = 8
    root = None

    def __init__(self, *, split: str, identical: bool = False, shade: Shade = Shade.LIGHT,
                 broken: Literal["", "out_of_range", "python_random", "flips_a_alone", "misspelt_encoding", "too_few_classes",
                                 "empty", "tuples", "wrong_size"] = "") -> None:
        self.identical, self.broken = identical, broken
        if broken in ("misspelt_encoding", "too_few_classes"):
            self.input_encoding = "label:3" if broken == "misspelt_encoding" else "labels:2"

    def __len__(self) -> int:
        return 0 if self.broken == "empty" else 4

    def __getitem__(self, index: int) -> Sample:
        generator = torch.Generator().manual_seed(index)
        a = torch.rand(3, 8, 8, generator=generator) * 2 - 1
        b = a.clone() if self.identical else torch.rand(3, 8, 8, generator=generator) * 2 - 1
        contrast = random.uniform(0.5, 1) if self.broken == "python_random" else float(torch.empty(()).uniform_(0.5, 1))
        a, b = contrast * a, contrast * b
        if torch.rand(()) < 0.5:
            a = a.flip(-1)
            b = b if self.broken == "flips_a_alone" else b.flip(-1)
        if self.broken in ("tuples", "wrong_size"):
            return (a, b) if self.broken == "tuples" else Sample(a[:, :4, :4], b, f"flawed/{index}")
        return Sample(2 * a if self.broken == "out_of_range" else a, b, f"flawed/{index}")


class ShadedMethod(Flawed):
    """The methods' flawed twin (test_kit_methods.py), without its flaw, with the Enum option."""

    def __init__(self, *, training, shade: Shade = Shade.LIGHT) -> None:
        super().__init__(training=training, repaired=True)


class FlawedBackend:
    """p2p's translate() on the CPU, with ``broken`` naming its flaw."""

    modes = ("eval",)
    auto_priority = {"cpu": -1}

    def __init__(self, *, broken: Literal["", "offset", "misspelt_precision", "no_supports", "misspelt_device", "no_modes",
                                          "float_priority", "half_output", "cuda_only"] = "", clamps: bool = False) -> None:
        self.broken, self.clamps = broken, clamps
        self.supports = {"cpu": ("fp32",) if broken == "misspelt_precision" else ("float32", "bfloat16")}
        if broken in ("no_supports", "misspelt_device"):
            self.supports = {} if broken == "no_supports" else {"gpu": ("float32",)}
        if broken in ("no_modes", "float_priority"):
            self.modes, self.auto_priority = ((), {"cpu": -1}) if broken == "no_modes" else (("eval",), {"cpu": 0.5})
        if broken == "cuda_only":  # whose driver is missing
            self.supports = {"cuda": ("float32",)}

    def problem(self, *, device: torch.device) -> str | None:
        return "no CUDA driver" if self.broken == "cuda_only" else None

    def open(self, trained, *, device: torch.device, precision: str) -> Runner:
        def run(batch: Tensor) -> Tensor:
            with torch.no_grad(), torch.autocast("cpu", dtype=getattr(torch, precision), enabled=precision != "float32"):
                # Clamping to the images' range [-1, 1], as an engine with a fixed input range may, changes no image.
                image = translate(trained.module, batch.clamp(-1, 1) if self.clamps else batch) + (0.25 if self.broken == "offset" else 0)
                return image.half() if self.broken == "half_output" else image.float()

        return Runner(backend="flawed", description="flawed", run=run)


class BrokenPlugin:
    @p2p_core.hookimpl
    def p2p_generators(self):
        return {"unbounded": UnboundedGenerator, "shrinking": ShrinkingGenerator, "large_shrinking": LargeShrinkingGenerator,
                "exploding": ExplodingGenerator, "narrow": NarrowBottleneckGenerator, "unbuildable": UnbuildableGenerator,
                "flawed": FlawedGenerator}

    @p2p_core.hookimpl
    def p2p_discriminators(self):
        return {"misdeclared": MisdeclaredDiscriminator, "exploding": ExplodingDiscriminator,
                "functionally_normed": FunctionallyNormedDiscriminator, "flawed": FlawedDiscriminator}

    @p2p_core.hookimpl
    def p2p_losses(self):
        return {"negative": NegativeLoss, "flawed": FlawedLoss, "detached_penalty": DetachedPenalty, "features": FeatureDistance,
                "attention_weighted": AttentionWeightedL1, "switched_off": SwitchedOffLoss}

    @p2p_core.hookimpl
    def p2p_datasets(self):
        return {"flawed": FlawedPairs, "overshooting": OvershootingDataset}

    @p2p_core.hookimpl
    def p2p_methods(self):
        return {"flawed": ShadedMethod, "logs_tensors": LogsTensors, "judge_translates": TranslatesWithItsJudge,
                "forgetful": ForgetsItsCounter, "unseeded": DrawsUnseededNoise, "leaky": LeaksIntoItsJudge}

    @p2p_core.hookimpl
    def p2p_backends(self):
        return {"flawed": FlawedBackend}


def broken_registry() -> Registry:
    """p2p's built-ins (the kit's config check builds p2p's parser, which needs them) and the broken components."""
    registry = Registry()
    registry.load_entry_points(allow=[OWN_DISTRIBUTION])
    registry.register(BrokenPlugin(), name="broken", distribution="broken-components", version="0")
    return registry


def _case(component: str, check, options: dict | None = None):
    options = {component: options or {}}
    (case,) = [c for c in cases([component], registry=broken_registry(), options=options, identical_pairs=options) if c.check is check]
    return case


def test_the_kit_takes_a_value_range_of_one_value():
    _case("loss:switched_off", check_loss_finite_non_negative_and_differentiable).run()


@pytest.mark.parametrize("check", [check_gradients_reach_every_parameter, check_state_dict_round_trip])
def test_the_kit_feeds_a_generator_the_image_size_it_built_it_for(check):
    _case("generator:flawed", check, {"positional": True}).run()


# Every check of the kit, by the kind it runs on: a check that cannot fail proves nothing about a plugin.
KIT_CHECKS = [(kind, check) for kind, checks in CHECKS.items() for check in checks] + [("dataset", check_dataset_jitter_keeps_pairs_aligned)]
BROKEN_FOR = {
    ("generator", check_generator_output_shape_and_range): ("unbounded", {}),
    ("generator", check_generator_size_multiple): ("narrow", {}),
    ("generator", check_generator_extras_and_inference): ("flawed", {"broken": "extras_without_batch"}),
    ("generator", check_generator_eval_is_deterministic): ("flawed", {"broken": "noisy_in_eval"}),
    ("generator", check_gradients_reach_every_parameter): ("flawed", {"broken": "unused_layer"}),
    ("generator", check_state_dict_round_trip): ("flawed", {"broken": "unregistered_state"}),
    ("generator", check_options_round_trip_through_config): ("flawed", {"shade": Shade.DARK}),
    ("discriminator", check_discriminator_output_grid): ("flawed", {"broken": "wrong_grid"}),
    ("discriminator", check_receptive_field): ("misdeclared", {}),
    ("discriminator", check_discriminator_every_scale_sees_the_input): ("flawed", {"broken": "blind"}),
    ("discriminator", check_discriminator_min_input_size): ("flawed", {"broken": "overstated_min_input"}),
    ("discriminator", check_gradients_reach_every_parameter): ("flawed", {"broken": "unused_layer"}),
    ("discriminator", check_state_dict_round_trip): ("flawed", {"broken": "unregistered_state"}),
    ("discriminator", check_options_round_trip_through_config): ("flawed", {"shade": Shade.DARK}),
    ("loss", check_loss_declares_discriminator_input): ("flawed", {"broken": "undeclared_input"}),
    ("loss", check_loss_finite_non_negative_and_differentiable): ("negative", {}),
    ("loss", check_loss_with_multiscale_features): ("flawed", {"broken": "undeclared_features"}),
    ("loss", check_loss_penalty_trains_the_discriminator): ("detached_penalty", {}),
    ("loss", check_loss_network_is_fixed): ("flawed", {"broken": "loose_network"}),
    ("loss", check_options_round_trip_through_config): ("flawed", {"shade": Shade.DARK}),
    ("dataset", check_dataset_samples): ("flawed", {"broken": "out_of_range"}),
    ("dataset", check_dataset_is_reproducible): ("flawed", {"broken": "python_random"}),
    ("dataset", check_dataset_jitter_keeps_pairs_aligned): ("flawed", {"identical": True, "broken": "flips_a_alone"}),
    ("dataset", check_options_round_trip_through_config): ("flawed", {"shade": Shade.DARK}),
    ("method", check_method_steps_return_finite_scalars_and_images): ("logs_tensors", {}),
    ("method", check_method_directions_name_its_generators): ("judge_translates", {}),
    ("method", check_method_state_round_trip): ("forgetful", {}),
    ("method", check_method_is_reproducible): ("unseeded", {}),
    ("method", check_method_updates_only_the_networks_it_steps): ("leaky", {}),
    ("method", check_options_round_trip_through_config): ("flawed", {"shade": Shade.DARK}),
    ("backend", check_backend_declares_what_it_runs): ("flawed", {"broken": "misspelt_precision"}),
    ("backend", check_backend_matches_translate): ("flawed", {"broken": "offset"}),
}


# Each further way a check fails a component, so that each of its verdicts is seen once with its three lines.
BROKEN_AGAIN = [
    ("generator", check_generator_extras_and_inference, "flawed", {"broken": "int_takes_target"}),
    ("generator", check_generator_extras_and_inference, "flawed", {"broken": "unbounded_given_target"}),
    ("generator", check_generator_extras_and_inference, "flawed", {"broken": "shrinks_in_eval"}),
    ("generator", check_generator_size_multiple, "flawed", {"broken": "zero_size_multiple"}),
    ("generator", check_generator_size_multiple, "flawed", {"broken": "needs_3_pixels"}),
    ("generator", check_generator_eval_is_deterministic, "flawed", {"broken": "returns_a_pair"}),
    ("discriminator", check_discriminator_output_grid, "flawed", {"broken": "two_declared_scales"}),
    ("discriminator", check_discriminator_output_grid, "flawed", {"broken": "nan_logits"}),
    ("discriminator", check_discriminator_output_grid, "flawed", {"broken": "pooled_features"}),
    # Broken at its smallest input alone (a 1 x 1 map squeezed away): the kit draws that size too.
    ("discriminator", check_discriminator_output_grid, "flawed", {"broken": "squeezes_one_pixel"}),
    ("discriminator", check_receptive_field, "flawed", {"broken": "two_declared_scales"}),
    ("discriminator", check_discriminator_min_input_size, "flawed", {"broken": "understated_min_input"}),
    ("discriminator", check_discriminator_min_input_size, "flawed", {"broken": "zero_min_input"}),
    ("loss", check_loss_finite_non_negative_and_differentiable, "flawed", {"broken": "detached"}),
    ("loss", check_loss_finite_non_negative_and_differentiable, "flawed", {"broken": "unreduced"}),
    ("loss", check_loss_finite_non_negative_and_differentiable, "flawed", {"broken": "inverted_range"}),
    ("loss", check_loss_with_multiscale_features, "flawed", {"broken": "narrow_range"}),
    ("loss", check_loss_network_is_fixed, "features", {}),
    ("loss", check_loss_finite_non_negative_and_differentiable, "flawed", {"broken": "misspelt_needs"}),
    # The kit's images span [-1, 1]: a term broken only on bright targets is seen too.
    ("loss", check_loss_finite_non_negative_and_differentiable, "flawed", {"broken": "negative_on_bright_targets"}),
    ("loss", check_loss_with_multiscale_features, "detached_penalty", {"detach": False, "reads_features": True}),
    ("dataset", check_dataset_samples, "flawed", {"broken": "misspelt_encoding"}),
    ("dataset", check_dataset_samples, "flawed", {"broken": "too_few_classes"}),
    ("dataset", check_dataset_samples, "flawed", {"broken": "empty"}),
    ("dataset", check_dataset_samples, "flawed", {"broken": "tuples"}),
    ("dataset", check_dataset_samples, "flawed", {"broken": "wrong_size"}),
    ("backend", check_backend_declares_what_it_runs, "flawed", {"broken": "no_supports"}),
    ("backend", check_backend_declares_what_it_runs, "flawed", {"broken": "misspelt_device"}),
    ("backend", check_backend_declares_what_it_runs, "flawed", {"broken": "no_modes"}),
    ("backend", check_backend_declares_what_it_runs, "flawed", {"broken": "float_priority"}),
    ("backend", check_backend_matches_translate, "flawed", {"broken": "half_output"}),
]


def assert_names_the_contract_what_was_found_and_the_fix(message: str, component: str, *, raised: bool = False) -> None:
    """The kit's report: which component broke which contract, then what was found and the fix, each said; three
    lines, unless the component ``raised`` (then the check's name and where it raised come too)."""
    kind, name = component.split(":")
    headline, *rest = message.splitlines()
    assert (rest[0].startswith("  check: ") if raised else len(rest) == 2), message
    contract = headline.removeprefix(f"{kind} {name!r} (broken-components) breaks the contract: ")
    found = [line.removeprefix("  found: ") for line in rest if line.startswith("  found: ")]
    fix = [line.removeprefix("  fix: ") for line in rest if line.startswith("  fix: ")]
    assert contract != headline and len(found) == len(fix) == 1, message
    assert all(part.strip() not in ("", "None") for part in (contract, *found, *fix)), message


def violation(case) -> ContractViolation:
    """What ``case`` raises on its broken component: a check that skips here has judged nothing, which is a failure."""
    try:
        case.run()
    except ContractViolation as raised:
        return raised
    except pytest.skip.Exception as skipped:
        pytest.fail(f"the check skipped the broken component: {skipped}")
    pytest.fail("the check passed the broken component")


@pytest.mark.parametrize(("kind", "check"), KIT_CHECKS, ids=[f"{kind}-{check.__name__}" for kind, check in KIT_CHECKS])
def test_every_check_of_the_kit_fails_a_component_broken_for_it(kind, check):
    assert (kind, check) in BROKEN_FOR, f"add a {kind} broken so that {check.__name__} must fail it, to BROKEN_FOR"
    name, options = BROKEN_FOR[kind, check]
    failure = violation(_case(f"{kind}:{name}", check, options))
    # The Enum option makes config.yaml's writer raise: the options check reports that as the component raising.
    raised = check is check_options_round_trip_through_config
    assert_names_the_contract_what_was_found_and_the_fix(str(failure), f"{kind}:{name}", raised=raised)


@pytest.mark.parametrize(("kind", "check", "name", "options"), BROKEN_AGAIN,
                         ids=[f"{kind}-{check.__name__}-{options.get('broken', name)}" for kind, check, name, options in BROKEN_AGAIN])
def test_each_way_a_check_fails_a_component_names_the_contract_and_the_fix(kind, check, name, options):
    failure = violation(_case(f"{kind}:{name}", check, options))
    assert_names_the_contract_what_was_found_and_the_fix(str(failure), f"{kind}:{name}")


def test_the_flawed_components_pass_every_check_when_not_broken():
    # So each broken example above fails for its flaw alone; the options check fails their Enum option whatever its value.
    for case in cases(["*:flawed"], registry=broken_registry(), identical_pairs={"dataset:flawed": {"identical": True}}):
        if case.check is not check_options_round_trip_through_config:
            case.run()


@pytest.mark.parametrize(
    ("component", "check", "contract", "found", "fix"),
    [
        ("generator:unbounded", check_generator_output_shape_and_range, "outputs in [-1, 1]", "range [", "end the network with Tanh"),
        ("generator:shrinking", check_generator_output_shape_and_range, "output shape N x out_channels x H x W", "expected",
         "keep the spatial size"),
        ("discriminator:misdeclared", check_receptive_field, "receptive_field matches the network", "declared 70, measured 4 pixels",
         "compute receptive_field from the layers"),
        ("loss:negative", check_loss_finite_non_negative_and_differentiable,
         "generator_loss is a finite scalar in its value_range [0, inf]", "tensor(-",
         "reduce with mean(); use a loss bounded below by 0, or declare the range a term that goes below 0 by design takes"),
        ("loss:detached_penalty", check_loss_penalty_trains_the_discriminator, "the penalty trains D through D's gradient",
         "no finite, non-zero gradient reaches D's weights", "compute the penalty from `gradient` itself"),
        ("discriminator:functionally_normed", check_receptive_field, "receptive_field matches the network",
         "declared 70, measured 112 pixels", "every logit sees the whole input: make anything that spans the map"),
        ("dataset:overshooting", check_dataset_samples, "float32 values in [-1, 1]", "torch.float32 in [-1.00000012, -1.00000012]",
         "use p2p_core.images.read_image / to_signed"),
    ],
)
def test_a_broken_component_fails_with_the_contract_and_the_fix(component, check, contract, found, fix):
    kind, name = component.split(":")
    with pytest.raises(AssertionError) as failure:
        _case(component, check).run()
    headline, found_line, fix_line = str(failure.value).splitlines()
    assert headline == f"{kind} {name!r} (broken-components) breaks the contract: {contract}"
    assert found_line.startswith("  found: ") and found in found_line
    assert fix_line.startswith(f"  fix: {fix}")


def test_a_generator_that_shrinks_its_output_in_eval_mode_is_told_to_keep_the_size():
    with pytest.raises(ContractViolation) as failure:
        _case("generator:flawed", check_generator_extras_and_inference, {"broken": "shrinks_in_eval"}).run()
    _, found, fix = str(failure.value).splitlines()
    side = FlawedGenerator.size_multiple + 1  # the kit's input in eval mode
    shrunk = (side + 1) // 2  # every other pixel
    assert found == f"  found: Tensor (1, 3, {shrunk}, {shrunk})"
    assert fix.startswith("  fix: give an image of the input's size in eval mode too"), fix


@pytest.mark.parametrize(
    ("component", "check", "repair"),
    [
        ("generator:unbounded", check_generator_output_shape_and_range, {"squash": True}),
        ("discriminator:misdeclared", check_receptive_field, {"receptive_field": 4}),
        ("loss:negative", check_loss_finite_non_negative_and_differentiable, {"shift": 1000.0}),
        ("loss:negative", check_loss_finite_non_negative_and_differentiable, {"low": -math.inf}),  # declared: a WGAN term
        ("loss:detached_penalty", check_loss_penalty_trains_the_discriminator, {"detach": False}),
        ("dataset:overshooting", check_dataset_samples, {"exact": True}),
        ("loss:features", check_loss_network_is_fixed, {"repaired": True}),
        ("generator:unbounded", check_options_round_trip_through_config, {}),  # p2p's own parser, which MISPARSED alters
        ("loss:attention_weighted", check_loss_finite_non_negative_and_differentiable, {}),  # a term that needs no repair
        ("loss:negative", check_loss_with_multiscale_features, {"low": -math.inf}),  # the first protocol's: one scale only
        ("backend:flawed", check_backend_matches_translate, {"clamps": True}),  # a correct backend for images in [-1, 1]
    ],
)
def test_the_same_check_passes_once_the_component_is_repaired(component, check, repair):
    _case(component, check, repair).run()


def test_the_generator_check_that_draws_examples_gives_the_same_report_twice():
    # Each example builds the generator afresh: initialised from the example's seed, the example shown is the one that
    # failed, and hypothesis, replaying it, sees it fail again (a flaw that the initialisation decides is not flaky).
    reports = []
    for _ in range(2):
        with pytest.raises(ContractViolation) as failure:
            _case("generator:unbounded", check_generator_output_shape_and_range).run()
        reports.append(failure.value.report())
    assert reports[0] == reports[1]


def test_a_violation_s_report_is_its_message_and_the_example_hypothesis_drew():
    with pytest.raises(ContractViolation) as drawn:
        _case("generator:unbounded", check_generator_output_shape_and_range).run()
    with pytest.raises(ContractViolation) as fixed:  # a check that draws nothing
        _case("generator:flawed", check_state_dict_round_trip, {"broken": "unregistered_state"}).run()
    assert drawn.value.__notes__ and drawn.value.report() == "\n".join([str(drawn.value), *drawn.value.__notes__])
    assert fixed.value.report() == str(fixed.value)


@pytest.mark.parametrize(("cuda", "reason"), [(True, "it cannot run on cuda here: no CUDA driver"), (False, "it runs on cuda, none of which is here")],
                         ids=["cuda", "no_cuda"])
def test_a_backend_that_cannot_run_here_is_skipped_with_the_reason(monkeypatch, cuda, reason):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    with pytest.raises(pytest.skip.Exception, match=re.escape(f"backend 'flawed' (broken-components): {reason}")):
        _case("backend:flawed", check_backend_matches_translate, {"broken": "cuda_only"}).run()


# What a parser that lost an option, mixed in another component's, or took a default from elsewhere would give.
MISPARSED = [
    (lambda parsed, reparsed: (parsed, {**reparsed, "squash": not reparsed["squash"]}), "options survive the config"),
    (lambda parsed, reparsed: ({**parsed, "ndf": 64}, {**reparsed, "ndf": 64}), "a component gets only its own options"),
    (lambda parsed, reparsed: ({**parsed, "squash": True}, {**reparsed, "squash": True}),
     "defaults come from the component's own signature"),
]


@pytest.mark.parametrize(("misparse", "contract"), MISPARSED, ids=["lost", "foreign", "default"])
def test_the_options_check_fails_a_parser_that_changes_the_options(monkeypatch, misparse, contract):
    import p2p_core.config

    round_trip = p2p_core.config.options_round_trip
    monkeypatch.setattr(p2p_core.config, "options_round_trip", lambda *arguments: misparse(*round_trip(*arguments)))
    with pytest.raises(ContractViolation) as failure:
        _case("generator:unbounded", check_options_round_trip_through_config).run()
    assert str(failure.value).splitlines()[0].endswith(f"breaks the contract: {contract}")
    assert_names_the_contract_what_was_found_and_the_fix(str(failure.value), "generator:unbounded")


@pytest.mark.parametrize("norm", ["instance", "batch", "none"])
def test_the_receptive_field_of_a_normalised_patchgan_is_that_of_its_convolutions(norm):
    (case,) = [c for c in cases(["discriminator:patch"], registry=broken_registry(), options={"discriminator:patch": {"ndf": 4, "norm": norm}})
               if c.check is check_receptive_field]
    case.run()


@pytest.mark.parametrize("options", [{}, {"root": Path("elsewhere")}])
def test_a_path_option_with_a_default_survives_the_config(options):
    _case("dataset:overshooting", check_options_round_trip_through_config, options).run()


def test_expected_failures_become_strict_xfails():
    mark = parametrize_with_checks(
        ["generator:unbounded"],
        registry=broken_registry(),
        expected_failures={
            "check_generator_output_shape_and_range": "no Tanh yet",  # by check name
            "generator:unbounded-check_state_dict_round_trip": "believed broken",  # by case id
        },
    )
    argnames, params = mark.args
    assert argnames == "case"
    xfails = {p.id: [(m.kwargs["reason"], m.kwargs["strict"]) for m in p.marks if m.name == "xfail"] for p in params}
    assert xfails == {
        "generator:unbounded-check_generator_output_shape_and_range": [("no Tanh yet", True)],
        "generator:unbounded-check_generator_extras_and_inference": [],
        "generator:unbounded-check_generator_size_multiple": [],
        "generator:unbounded-check_generator_eval_is_deterministic": [],
        "generator:unbounded-check_gradients_reach_every_parameter": [],
        "generator:unbounded-check_state_dict_round_trip": [("believed broken", True)],
        "generator:unbounded-check_options_round_trip_through_config": [],
    }


@pytest.mark.parametrize(
    ("component", "check", "raising", "found"),
    [
        ("generator:exploding", check_generator_output_shape_and_range, ExplodingGenerator.forward, "RuntimeError: no kernel for "),
        ("discriminator:exploding", check_discriminator_output_grid, ExplodingDiscriminator.forward, "ValueError: cannot score "),
        ("generator:unbuildable", check_generator_size_multiple, UnbuildableGenerator.__init__, "ConfigError: "),
    ],
)
def test_a_component_that_raises_fails_the_check_with_its_contract_and_only_its_own_lines(component, check, raising, found):
    kind, name = component.split(":")
    with pytest.raises(ContractViolation) as failure:
        _case(component, check).run()
    lines = failure.value.report().splitlines()
    assert lines[0] == f"{kind} {name!r} (broken-components) breaks the contract: {contract_of(check)}"
    assert lines[1] == f"  check: {check.__name__}"
    assert lines[2].startswith(f"  found: it raised {found}")
    assert lines[3].startswith("  fix: ")
    # The one frame in the component's code, where it raised: none of the kit's, hypothesis's or torch's.
    frames = [line.strip() for line in lines if re.fullmatch(r"\s+\S+:\d+ in \w+", line)]
    raise_line = raising.__code__.co_firstlineno + 1
    assert len(frames) == 1 and frames[0].endswith(f"{Path(__file__).name}:{raise_line} in {raising.__name__}")


def test_the_size_the_found_line_names_is_the_size_the_falsifying_example_shows():
    with pytest.raises(ContractViolation) as failure:
        _case("generator:large_shrinking", check_generator_output_shape_and_range).run()
    found = re.search(r"for input \(\d+, \d+, (\d+), (\d+)\)", str(failure.value))
    example = "\n".join(failure.value.__notes__)
    shown = re.findall(r"\bsize\b\W*(\d+)", example)  # 'size': 16, size=16, (size): 16, not image_size
    assert found and found[1] == "32" and shown and set(shown) == {found[1]}, (str(failure.value), example)


def test_a_crash_reports_the_size_it_crashed_at_in_the_example():
    with pytest.raises(ContractViolation) as failure:
        _case("generator:exploding", check_generator_output_shape_and_range).run()
    columns = re.search(r"no kernel for (\d+) columns", str(failure.value))[1]
    assert set(re.findall(r"\bsize\b\W*(\d+)", "\n".join(failure.value.__notes__))) == {columns}


def test_a_generator_whose_smallest_input_is_larger_than_its_size_multiple_fails_with_the_side_to_declare():
    with pytest.raises(ContractViolation) as failure:
        _case("generator:narrow", check_generator_size_multiple).run()
    headline, found, fix = str(failure.value).splitlines()
    assert headline.endswith("breaks the contract: the smallest input, size_multiple x size_multiple, works")
    assert found.startswith("  found: ") and found.endswith("at 2 x 2; 4 x 4 works")
    assert fix.startswith("  fix: declare size_multiple = 4")
    _case("generator:narrow", check_generator_size_multiple, {"size_multiple": 4}).run()
    _case("generator:narrow", check_generator_output_shape_and_range, {"size_multiple": 4}).run()


def test_contributing_lists_every_check_of_the_kit_with_what_it_requires():
    kinds: dict = {}
    for kind, checks in CHECKS.items():
        for check in checks:
            kinds.setdefault(check, []).append(kind)
    rows = ["| check | runs on | requires |", "| --- | --- | --- |"]
    rows += [f"| `{check.__name__}` | {', '.join(on)} | {contract_of(check)} |" for check, on in kinds.items()]
    rows.append(f"| `{check_dataset_jitter_keeps_pairs_aligned.__name__}` | dataset, given `identical_pairs` "
                f"| {contract_of(check_dataset_jitter_keeps_pairs_aligned)} |")
    text = CONTRIBUTING.read_text()
    listed = text[text.index("<!-- kit-checks:start -->") : text.index("<!-- kit-checks:end -->")].splitlines()[1:]
    assert listed == rows, "CONTRIBUTING.md's list of the kit's checks is out of date; make it:\n" + "\n".join(rows)


def test_contributing_dataset_example_keeps_the_kit(tmp_path, monkeypatch):
    text = CONTRIBUTING.read_text()
    source = re.search(r"<!-- dataset-example -->\n```python\n(.*?)^```$", text, re.MULTILINE | re.DOTALL)[1]
    # A module file, as a plugin has one: jsonargparse reads the options' documentation from the source.
    (tmp_path / "p2p_contributing_csv_pairs.py").write_text(source)
    monkeypatch.syspath_prepend(tmp_path)
    monkeypatch.delitem(sys.modules, "p2p_contributing_csv_pairs", raising=False)
    module = importlib.import_module("p2p_contributing_csv_pairs")
    generator = torch.Generator().manual_seed(0)
    for root, same in ((tmp_path / "pairs", False), (tmp_path / "same", True)):
        root.mkdir()
        for split in ("train", "val"):
            lines = []
            for index in range(2):
                a = torch.randint(0, 256, (40, 40, 3), generator=generator, dtype=torch.uint8)
                b = a if same else torch.randint(0, 256, (40, 40, 3), generator=generator, dtype=torch.uint8)
                for half, image in (("a", a), ("b", b)):
                    Image.fromarray(image.numpy()).save(root / f"{split}{index}{half}.png")
                lines.append(f"{split}{index}a.png,{split}{index}b.png\n")
            (root / f"{split}.csv").write_text("".join(lines))
    registry = Registry()
    registry.load_entry_points(allow=[OWN_DISTRIBUTION])
    registry.register(module, name="csv", distribution="contributing-example", version="0")
    small = {"load_size": 36, "crop_size": 32}
    found = cases(["dataset:csv_pairs"], registry=registry, options={"dataset:csv_pairs": {"root": tmp_path / "pairs", **small}},
                  identical_pairs={"dataset:csv_pairs": {"root": tmp_path / "same", **small}})
    assert {case.check for case in found} == {*CHECKS["dataset"], check_dataset_jitter_keeps_pairs_aligned}
    for case in found:
        case.run()

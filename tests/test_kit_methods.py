"""The kit's checks of training methods: each fails a method broken in its one way, with the contract and the fix,
and passes the same method once repaired."""

from __future__ import annotations

import random
from contextlib import nullcontext

import attrs
import pytest
import torch
from torch import Tensor

import p2p_core
from conftest import make_spec
from p2p_core.protocols import Sample
from p2p_core.registry import OWN_DISTRIBUTION, Registry
from p2p_core.spec import ComponentSpec, Shapes
from p2p_core.testing import cases
from p2p_core.testing.checks import (
    check_method_directions_name_its_generators,
    check_method_is_reproducible,
    check_method_state_round_trip,
    check_method_steps_return_finite_scalars_and_images,
    check_method_updates_only_the_networks_it_steps,
)
from p2p_core.training import Training


class Flawed:
    """A generator trained by L1 plus a judged term, with one flaw that its option repairs."""

    def __init__(self, *, training: Training, repaired: bool = False) -> None:
        shapes = training.shapes
        self.training, self.repaired, self.calls = training, repaired, 0
        self.generator = training.network("generator", "generator", in_channels=shapes.in_channels, out_channels=shapes.out_channels)
        training.network("judge", "discriminator", in_channels=shapes.out_channels)
        training.optimizer("generator", ["generator"])
        self.directions = {"AtoB": "generator"}
        self._last: dict[str, Tensor] = {}

    def losses(self, fake: Tensor, target: Tensor) -> dict[str, Tensor]:
        return {"G/l1": (fake - target).abs().mean(), "G/judged": 0.01 * self.training.module("judge")(fake).abs().mean()}

    def train_step(self, batch: Sample) -> dict[str, float]:
        with self.training.frozen("judge"):
            fake = self.training.module("generator")(batch.a)
            logged = self.training.update("generator", self.losses(fake, batch.b))
        self._last = {"input": batch.a, "output": fake.detach()}
        return logged

    def images(self) -> dict[str, Tensor]:
        return self._last


class LogsTensors(Flawed):
    def train_step(self, batch: Sample) -> dict:
        logged = super().train_step(batch)
        return logged if self.repaired else {name: torch.tensor(value) for name, value in logged.items()}


class TranslatesWithItsJudge(Flawed):
    def __init__(self, *, training: Training, repaired: bool = False) -> None:
        super().__init__(training=training, repaired=repaired)
        self.directions = {"AtoB": "generator" if repaired else "judge"}


class ForgetsItsCounter(Flawed):
    """Weighs its loss by how many steps it has taken: state that a checkpoint must keep."""

    def losses(self, fake: Tensor, target: Tensor) -> dict[str, Tensor]:
        self.calls += 1
        return {name: value * self.calls for name, value in super().losses(fake, target).items()}

    def state_dict(self) -> dict:
        return {"calls": torch.tensor(self.calls)} if self.repaired else {}

    def load_state_dict(self, state: dict) -> None:
        self.calls = int(state.get("calls", 0))


class UpdatesEveryThirdStep(ForgetsItsCounter):
    """Steps its generator on every third call and logs nothing: a forgotten counter shows in its weights alone."""

    losses = Flawed.losses

    def train_step(self, batch: Sample) -> dict[str, float]:
        self.calls += 1
        if self.calls % 3 == 0:
            Flawed.train_step(self, batch)
        return {}


class TranslatesToOneChannel(Flawed):
    """Keeps only the first channel of what the generator p2p built for three gives (a hook on the network)."""

    def __init__(self, *, training: Training, repaired: bool = False) -> None:
        super().__init__(training=training, repaired=repaired)
        if not repaired:
            self.generator.register_forward_hook(lambda module, inputs, output: output[:, :1])


class DrawsUnseededNoise(Flawed):
    def losses(self, fake: Tensor, target: Tensor) -> dict[str, Tensor]:
        noise = float(torch.rand(())) if self.repaired else random.SystemRandom().random()
        return {name: value * (1 + noise) for name, value in super().losses(fake, target).items()}


class ShowsAList(Flawed):
    """Shows its input as a list of images instead of a batch."""

    def images(self) -> dict:
        return {name: image if self.repaired else list(image) for name, image in super().images().items()}


class SeedsItsOwnNoise(Flawed):
    """Draws its noise from a generator of its own, seeded with the run's seed: as reproducible as torch's."""

    def __init__(self, *, training: Training, repaired: bool = False) -> None:
        super().__init__(training=training, repaired=repaired)
        self.noise = torch.Generator().manual_seed(training.spec.trainer.seed)

    def losses(self, fake: Tensor, target: Tensor) -> dict[str, Tensor]:
        noise = float(torch.rand((), generator=self.noise))
        return {name: value * (1 + noise) for name, value in super().losses(fake, target).items()}


class SeedsNoiseByStep(Flawed):
    """Draws each step's noise from a generator seeded with the run's seed and the step: nothing to keep, since a
    resumed run has the same seed and step."""

    def losses(self, fake: Tensor, target: Tensor) -> dict[str, Tensor]:
        noise = torch.Generator().manual_seed(self.training.spec.trainer.seed * 1000 + self.training.step)
        scale = 1 + float(torch.rand((), generator=noise))
        return {name: value * scale for name, value in super().losses(fake, target).items()}


class ShowsUnscaledImages(Flawed):
    """Shows its output mapped to [0, 2], where the viewers expect [-1, 1]."""

    def images(self) -> dict[str, Tensor]:
        return {name: image if self.repaired else image + 1 for name, image in super().images().items()}


class LeaksIntoItsJudge(Flawed):
    def train_step(self, batch: Sample) -> dict[str, float]:
        with self.training.frozen("judge") if self.repaired else nullcontext():
            fake = self.training.module("generator")(batch.a)
            return self.training.update("generator", self.losses(fake, batch.b))


class JudgedTwice(Flawed):
    """Two optional networks besides the generator: a checkpoint may hold either without the other."""

    def __init__(self, *, training: Training, repaired: bool = False) -> None:
        super().__init__(training=training, repaired=repaired)
        training.network("second_judge", "discriminator", in_channels=training.shapes.out_channels)


class Frozen:
    """Translates with a generator it never updates: a method without optimizers."""

    def __init__(self, *, training: Training, repaired: bool = False) -> None:
        shapes = training.shapes
        training.network("generator", "generator", in_channels=shapes.in_channels, out_channels=shapes.out_channels)
        self.directions = {"AtoB": "generator"}

    def train_step(self, batch: Sample) -> dict[str, float]:
        return {}

    def images(self) -> dict[str, Tensor]:
        return {}


class FlawedMethods:
    @p2p_core.hookimpl
    def p2p_methods(self):
        return {"logs_tensors": LogsTensors, "judge_translates": TranslatesWithItsJudge, "forgetful": ForgetsItsCounter,
                "unseeded": DrawsUnseededNoise, "leaky": LeaksIntoItsJudge, "unscaled": ShowsUnscaledImages, "judged_twice": JudgedTwice, "frozen": Frozen,
                "every_third": UpdatesEveryThirdStep, "one_channel": TranslatesToOneChannel, "own_noise": SeedsItsOwnNoise, "noise_by_step": SeedsNoiseByStep,
                "a_list": ShowsAList}


def flawed_registry() -> Registry:
    registry = Registry()
    registry.load_entry_points(allow=[OWN_DISTRIBUTION])
    registry.register(FlawedMethods(), name="flawed", distribution="flawed-methods", version="0")
    return registry


def case(name: str, check, *, repaired: bool):
    component = f"method:{name}"
    found = cases([component], registry=flawed_registry(), options={component: {"repaired": repaired}})
    (chosen,) = [c for c in found if c.check is check]
    return chosen


FLAWS = [
    ("logs_tensors", check_method_steps_return_finite_scalars_and_images, "a step returns finite scalars by name",
     "tensor(", "return {name: value} of the losses as floats"),
    ("judge_translates", check_method_directions_name_its_generators, "directions name the generators it built",
     "AtoB: 'judge'", "build each generator with training.network(ROLE, 'generator'"),
    ("forgetful", check_method_state_round_trip, "a resumed run continues exactly", "after resuming, the steps logged",
     "keep every piece of state that steps depend on"),
    ("every_third", check_method_state_round_trip, "a resumed run continues exactly", "network 'generator': ",
     "keep every piece of state that steps depend on in the method's state_dict()"),
    ("one_channel", check_method_directions_name_its_generators,
     "each direction's generator translates its input channels to its output channels", "AtoB ('generator') gave (1, 1, ",
     "build that generator with the channels of its direction"),
    ("unscaled", check_method_steps_return_finite_scalars_and_images, "images() gives N x C x H x W images in [-1, 1]",
     "'input': (2, 3, 32, 32) in [0", "return the latest step's inputs and outputs, detached, as batches"),
    ("a_list", check_method_steps_return_finite_scalars_and_images, "images() gives N x C x H x W images in [-1, 1]",
     "'input': list", "return the latest step's inputs and outputs, detached, as batches"),
    ("unseeded", check_method_is_reproducible, "two runs from one seed agree", "and then", "draw every random number from torch's"),
    ("leaky", check_method_updates_only_the_networks_it_steps, "an update gives gradients only to the networks it steps",
     "update 'generator' gave gradients to network 'judge'", "compute the judging network's part under"),
]


@pytest.mark.parametrize(("name", "check", "contract", "found", "fix"), FLAWS, ids=[flaw[0] for flaw in FLAWS])
def test_a_flawed_method_fails_its_check_with_the_contract_and_the_fix(name, check, contract, found, fix):
    with pytest.raises(AssertionError) as failure:
        case(name, check, repaired=False).run()
    headline, found_line, fix_line = str(failure.value).splitlines()
    assert headline == f"method {name!r} (flawed-methods) breaks the contract: {contract}"
    assert found_line.startswith("  found: ") and found in found_line
    assert fix_line.startswith(f"  fix: {fix}")


@pytest.mark.parametrize(("name", "check"), [flaw[:2] for flaw in FLAWS], ids=[flaw[0] for flaw in FLAWS])
def test_the_same_check_passes_the_repaired_method(name, check):
    case(name, check, repaired=True).run()


def test_a_method_that_seeds_its_own_generator_with_the_run_s_seed_is_reproducible():
    case("own_noise", check_method_is_reproducible, repaired=False).run()


def test_a_method_that_seeds_each_steps_noise_with_the_run_s_seed_and_step_resumes():
    # The resumed run has the checkpoint's seed: the check builds it from other initial weights, not another seed.
    case("noise_by_step", check_method_state_round_trip, repaired=False).run()


def flawed_training(name: str) -> Training:
    spec = attrs.evolve(make_spec(generator=("unet", {"ngf": 4, "dropout": 0.0}), disc=("patch16", {"ndf": 4})),
                        method=ComponentSpec(name, {"repaired": True}))
    return Training.build(spec, Shapes(in_channels=3, out_channels=3, image_size=32), total_steps=2, registry=flawed_registry())


def test_a_checkpoint_and_a_method_each_without_the_other_s_method_state_still_load():
    """A method that keeps state reads a checkpoint saved before it kept any (its state stays as it is); a method
    that keeps none reads a checkpoint that holds some (and ignores it)."""
    keeping, keeping_none = flawed_training("forgetful"), flawed_training("leaky")
    keeping.method.calls = 5
    saved = keeping.state_dict()
    assert saved["method_state"] == {"calls": torch.tensor(5)}
    keeping.load_state_dict({name: value for name, value in saved.items() if name != "method_state"})
    assert keeping.method.calls == 5  # nothing to read: left as it was
    keeping_none.load_state_dict(saved)
    assert keeping_none.step == saved["step"]


def test_weights_load_into_every_network_the_checkpoint_holds_past_one_it_lacks():
    saved, training = flawed_training("judged_twice").state_dict()["models"], flawed_training("judged_twice")
    untouched = {name: value.clone() for name, value in training.networks["judge"].state_dict().items()}
    training.load_weights({"generator": saved["generator"], "second_judge": saved["second_judge"]}, source="an export")
    for role, expected in (("generator", saved["generator"]), ("second_judge", saved["second_judge"]), ("judge", untouched)):
        loaded = training.networks[role].state_dict()
        assert all(torch.equal(value, loaded[name]) for name, value in expected.items()), role


def test_a_method_without_optimizers_reports_the_configured_rate():
    training = flawed_training("frozen")
    assert training.optimizers == {}
    assert training.learning_rate() == training.config.lr * training.config.learning_rate_factor(0, 2)

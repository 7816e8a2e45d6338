"""The training step and schedule of the paper."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

import p2p_core
from conftest import make_spec
from p2p_core.errors import ConfigError, DataError, NumericalError
from p2p_core.model import Pix2Pix
from p2p_core.objective import Objective
from p2p_core.protocols import DiscriminatorOutput, Sample
from p2p_core.registry import Registry, default_registry
from p2p_core.run import Run
from p2p_core.spec import Shapes
from p2p_core.training import Training

DATA = ("synthetic", {"length": 2, "load_size": 36, "crop_size": 32})


def trainer(tmp_path, *, loss="cgan+l1", **train) -> Run:
    spec = make_spec(generator=("unet", {"ngf": 4, "dropout": 0.0}), disc=("patch16", {"ndf": 4}), data=DATA, loss=loss,
                     **{"max_steps": 2, "n_epochs": 2, "n_epochs_decay": 3, **train})
    return Run(spec, out_dir=tmp_path, name="run")


def test_discriminator_steps_first_on_half_the_objective_then_the_generator_on_the_updated_discriminator(tmp_path):
    run = trainer(tmp_path, loss="cgan")
    t = run.model
    sample = run.dataset[0]
    x, y = sample.a[None], sample.b[None]
    generator, discriminator = t.networks["generator"], t.networks["discriminator"]
    generator.train()
    torch.manual_seed(0)
    with torch.no_grad():
        fake = generator(x)
        real_logits = discriminator(torch.cat([x, y], 1))
        fake_logits = discriminator(torch.cat([x, fake], 1))
        expected_d = 0.5 * (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
                            + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))
    d_before = {k: v.clone() for k, v in discriminator.state_dict().items()}

    torch.manual_seed(0)
    losses = t.train_step(Sample(x, y, ""))

    assert losses["D/cgan"] == pytest.approx(expected_d.item(), rel=1e-5)
    # G's loss was measured with the discriminator as it was after its own step.
    with torch.no_grad():
        updated_logits = discriminator(torch.cat([x, fake], 1))
    g_expected = F.binary_cross_entropy_with_logits(updated_logits, torch.ones_like(updated_logits))
    assert losses["G/cgan"] == pytest.approx(g_expected.item(), rel=1e-4)
    assert any(not torch.equal(v, discriminator.state_dict()[k]) for k, v in d_before.items())
    assert all(p.requires_grad for p in discriminator.parameters())  # frozen for G's step only
    assert all(p.grad is None or p.grad.abs().sum() > 0 for p in generator.parameters())


def test_each_update_uses_its_own_steps_gradient_alone():
    # Two steps against one step from the state after the first: gradients left over from step 1 would make
    # the second update differ. Dropout off and batch norm in the state, so nothing else can tell them apart.
    spec = make_spec(generator=("unet", {"ngf": 4, "dropout": 0.0}), disc=("patch16", {"ndf": 4}), max_steps=2)
    shapes = Shapes(in_channels=3, out_channels=3, image_size=32)
    noise = torch.Generator().manual_seed(0)
    first, second = (torch.rand(2, 2, 3, 32, 32, generator=noise) * 2 - 1 for _ in range(2))
    twice = Pix2Pix.build(spec, shapes, total_steps=2)
    twice.train_step(*first)
    after_first = copy.deepcopy(twice.state_dict())
    twice.train_step(*second)
    once = Pix2Pix.build(spec, shapes, total_steps=2)
    once.load_state_dict(after_first)
    once.train_step(*second)
    differing = {}
    for role, model in twice.models.items():
        expected = once.models[role].state_dict()
        differing[role] = [name for name, value in model.state_dict().items() if not torch.equal(value, expected[name])]
    assert differing == {"generator": [], "discriminator": []}, "the second update differs from one step on that batch alone"


def test_l1_alone_trains_without_a_discriminator(tmp_path):
    run = trainer(tmp_path, loss="l1")
    t = run.model
    assert set(t.networks) == {"generator"} and set(t.optimizers) == {"generator"}
    losses = t.train_step(Sample(run.dataset[0].a[None], run.dataset[0].b[None], ""))
    assert set(losses) == {"G/l1"}


def test_adam_uses_the_papers_settings(tmp_path):
    t = trainer(tmp_path).model
    for optimizer in t.optimizers.values():
        group = optimizer.param_groups[0]
        assert (group["lr"], group["betas"]) == (2e-4, (0.5, 0.999))


def test_weights_start_from_normal_0_002(tmp_path):
    t = trainer(tmp_path).model
    convs = [m.weight for m in t.networks["generator"].modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    weights = torch.cat([w.detach().flatten() for w in convs])
    assert abs(weights.mean()) < 1e-3 and weights.std() == pytest.approx(0.02, rel=0.05)
    norms = torch.cat([m.weight.detach() for m in t.networks["generator"].modules() if isinstance(m, torch.nn.BatchNorm2d)])
    assert norms.mean() == pytest.approx(1.0, abs=0.01)


def test_learning_rate_is_constant_then_decays_linearly_to_zero(tmp_path):
    run = trainer(tmp_path, n_epochs=3, n_epochs_decay=4, max_steps=None)  # 7 epochs of 2 samples: 14 steps
    assert run.total_steps == 14
    factors = [run.config.learning_rate_factor(step, run.total_steps) for step in range(run.total_steps + 1)]
    assert factors[:6] == [1.0] * 6  # the first 3/7 of the steps
    steps = [a - b for a, b in zip(factors[6:], factors[7:])]
    assert all(step == pytest.approx(steps[0]) for step in steps)
    assert factors[-1] == pytest.approx(0.0)


def test_max_steps_shortens_the_schedule_too(tmp_path):
    run = trainer(tmp_path, n_epochs=100, n_epochs_decay=100, max_steps=10)
    assert run.total_steps == 10
    factors = [run.config.learning_rate_factor(step, 10) for step in range(11)]
    assert factors[:5] == [1.0] * 5 and factors[5] < 1.0  # half constant, half decaying, as 100 + 100 epochs
    assert factors[9] > 0 and factors[10] == pytest.approx(0.0)


def test_the_model_applies_the_scheduled_rate_at_each_step(tmp_path):
    run = trainer(tmp_path, loss="l1", n_epochs=1, n_epochs_decay=1, max_steps=4)
    sample = run.dataset[0]
    rates = []
    for _ in range(4):
        run.model.train_step(Sample(sample.a[None], sample.b[None], ""))
        rates.append(run.model.optimizers["generator"].param_groups[0]["lr"])
    assert rates[:2] == [2e-4, 2e-4] and rates[2] > rates[3] > 0


def test_total_steps_follow_epochs_unless_capped(tmp_path):
    t = trainer(tmp_path, max_steps=None, n_epochs=2, n_epochs_decay=3, batch_size=1)
    assert t.total_steps == 5 * 2  # 5 epochs of 2 samples


def test_objective_rejects_one_discriminator_for_conditional_and_unconditional_terms():
    with pytest.raises(ConfigError, match="disagree"):
        Objective.parse("gan+cgan", {}, default_registry())


def test_objective_rejects_options_for_terms_it_does_not_use():
    with pytest.raises(ConfigError, match=r"\['l1'\]"):
        Objective.parse("cgan", {"l1": {"weight": 10}}, default_registry())


def test_loss_options_reach_the_term():
    objective = Objective.parse("l1", {"l1": {"weight": 10.0}}, default_registry())
    zeros, halves = torch.zeros(1, 3, 2, 2), torch.full((1, 3, 2, 2), 0.5)
    assert objective.generator_losses(x=zeros, fake=zeros, target=halves, disc=None)["l1"].item() == pytest.approx(5.0)


@pytest.mark.parametrize(("name", "seen"), [("cgan", "input+output"), ("gan", "output")])
@pytest.mark.parametrize("weight", [None, 3.0], ids=["default", "weighted"])
def test_the_gan_terms_are_the_papers_cross_entropy_times_their_weight(name, seen, weight):
    term = p2p_core.create("loss", name, **({} if weight is None else {"weight": weight}))
    fake_logits, real_logits = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))[:, None]
    d_fake, d_real = DiscriminatorOutput(logits=[fake_logits]), DiscriminatorOutput(logits=[real_logits])
    images = dict.fromkeys(("x", "fake", "target"), torch.zeros(1, 3, 4, 4))
    scale = 1.0 if weight is None else weight
    assert term.discriminator_input == seen
    assert term.generator_loss(**images, d_fake=d_fake, d_real=None).item() == pytest.approx(
        scale * F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits)).item())
    assert term.discriminator_loss(**images, d_fake=d_fake, d_real=d_real).item() == pytest.approx(
        scale * (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
                 + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))).item())


@pytest.mark.parametrize("fault", ["value", "gradient"])
@pytest.mark.parametrize("on_nonfinite", ["stop", "skip"])
def test_an_update_with_a_non_finite_value_or_gradient_stops_or_is_skipped(fault, on_nonfinite):
    spec = make_spec(generator=("unet", {"ngf": 4, "dropout": 0.0}), loss="l1", on_nonfinite=on_nonfinite)
    model = Training.build(spec, Shapes(in_channels=3, out_channels=3, image_size=32), total_steps=1)
    weight = next(model.networks["generator"].parameters())
    before = weight.detach().clone()
    # A NaN loss, or a finite one (sqrt(0) = 0) whose gradient is infinite.
    def term():
        return weight.sum() * float("nan") if fault == "value" else torch.sqrt(weight - weight.detach()).sum()
    if on_nonfinite == "stop":
        with pytest.raises(NumericalError, match="step 1: " + ("loss term G/l1 is nan" if fault == "value" else "the generator's gradient is")):
            model.update("generator", {"G/l1": term()})
    else:
        for _ in range(2):
            with pytest.warns(UserWarning, match="update skipped"):
                model.update("generator", {"G/l1": term()})
        assert model.skipped_updates == 2 and torch.equal(weight, before)


def test_an_update_that_reaches_no_weight_changes_nothing_and_serves_the_forward_translator():
    spec = make_spec(generator=("unet", {"ngf": 4, "dropout": 0.0}), loss="l1")
    model = Training.build(spec, Shapes(in_channels=3, out_channels=3, image_size=32), total_steps=1)
    before = copy.deepcopy(model.networks["generator"].state_dict())
    assert model.update("generator", {"G/l1": torch.ones((), requires_grad=True)}) == {"G/l1": 1.0}
    assert all(torch.equal(value, before[name]) for name, value in model.networks["generator"].state_dict().items())
    assert model.translator() is model.networks["generator"]


def test_each_optimizer_follows_the_schedule_from_its_own_rate_and_non_finite_weights_are_named(tmp_path):
    spec = make_spec(generator=("unet", {"ngf": 4, "dropout": 0.0}), loss="l1", lr=2e-4, n_epochs=1, n_epochs_decay=1)
    model = Training.build(spec, Shapes(in_channels=3, out_channels=3, image_size=32), total_steps=4)
    slow = model.optimizer("slow", ["generator"], lr=1e-5)
    model.step = 2  # halfway: the decay has begun
    factor = spec.trainer.learning_rate_factor(2, 4)
    assert model.learning_rate() == pytest.approx(2e-4 * factor) and model.learning_rate("slow") == pytest.approx(1e-5 * factor)
    model.train_step(Sample(torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 32, 32), ""))
    assert slow.param_groups[0]["lr"] == pytest.approx(1e-5 * factor)
    with torch.no_grad():
        next(model.networks["generator"].parameters()).view(-1)[:2] = float("inf")
    with pytest.raises(NumericalError, match=r"step 3: the generator's \S+ holds 2 value\(s\) that are not finite"):
        model.check_finite()


def test_weights_load_without_optimizers_or_discriminator_and_missing_or_misfit_ones_are_named():
    shapes = Shapes(in_channels=3, out_channels=3, image_size=32)
    spec = make_spec(generator=("unet", {"ngf": 4, "dropout": 0.0}), disc=("patch16", {"ndf": 4}))
    state, model = Training.build(spec, shapes, total_steps=1).state_dict(), Training.build(spec, shapes, total_steps=1)
    # What an imported model holds: a generator, no discriminator, no optimizer moments.
    model.load_state_dict({"step": 0, "models": {"generator": state["models"]["generator"]}})
    loaded = model.networks["generator"].state_dict()
    assert all(torch.equal(value, loaded[name]) for name, value in state["models"]["generator"].items())
    with pytest.raises(DataError, match="^the checkpoint holds no generator weights$"):
        model.load_state_dict({"step": 0, "models": {"discriminator": state["models"]["discriminator"]}})
    wider = Training.build(make_spec(generator=("unet", {"ngf": 8, "dropout": 0.0}), disc=("patch16", {"ndf": 4})), shapes,
                           total_steps=1).state_dict()["models"]
    with pytest.raises(RuntimeError) as torch_error:
        copy.deepcopy(model.networks["generator"]).load_state_dict(wider["generator"])
    with pytest.raises(DataError) as error:
        model.load_state_dict({"step": 0, "models": wider})
    last_line = str(torch_error.value).splitlines()[-1].strip()
    assert str(error.value) == f"the generator weights in the checkpoint do not fit this generator: {last_line}"


def test_l1_gives_a_discriminator_nothing_to_learn():
    # A method that sums every term's discriminator loss must get a finite zero scalar from L1, not an error.
    images = dict.fromkeys(("x", "fake", "target"), torch.ones(1, 3, 4, 4))
    value = p2p_core.create("loss", "l1").discriminator_loss(**images, d_fake=None, d_real=None)
    assert value.dim() == 0 and value.item() == 0.0


class PerSample:
    """L1 per sample: forgot to reduce over the batch."""

    discriminator_input = "none"

    def generator_loss(self, *, x, fake, target, disc):
        return (fake - target).abs().flatten(1).mean(1)

    def discriminator_loss(self, *, x, fake, target, disc):
        return fake.new_zeros(())


class PerSampleLosses:
    @p2p_core.hookimpl
    def p2p_losses(self):
        return {"persample": PerSample}


def test_a_loss_term_that_is_not_a_scalar_stops_the_first_step_naming_its_plugin(tmp_path):
    registry = Registry()
    registry.load_entry_points(allow=["p2p"])
    registry.register(PerSampleLosses(), name="persample", distribution="p2p-fake-losses", version="2.0")
    spec = make_spec(generator=("unet", {"ngf": 4, "dropout": 0.0}), data=DATA, loss="persample", max_steps=1, batch_size=2)
    run = Run(spec, out_dir=tmp_path, name="run", registry=registry)
    with pytest.raises(ConfigError, match=r"loss 'persample' \(plugin 'persample' from p2p-fake-losses 2.0\) breaks the contract: "
                                          r"generator_loss returns a finite scalar\n  found: Tensor of shape \(2,\)"):
        run.fit()


class PerSampleDiscriminatorLoss:
    """A GAN term whose discriminator side forgot to reduce over the batch."""

    discriminator_input = "output"
    needs = "logits"

    def generator_loss(self, *, x, fake, target, d_fake, d_real):
        return d_fake.logits[0].mean()

    def discriminator_loss(self, *, x, fake, target, d_fake, d_real):
        return d_real.logits[0].flatten(1).mean(1) - d_fake.logits[0].flatten(1).mean(1)


class PerSampleDiscriminatorLosses:
    @p2p_core.hookimpl
    def p2p_losses(self):
        return {"persample_d": PerSampleDiscriminatorLoss}


def test_a_discriminator_loss_that_is_not_a_scalar_stops_the_first_step_and_the_step_shows_its_images():
    registry = Registry()
    registry.load_entry_points(allow=["p2p"])
    registry.register(PerSampleDiscriminatorLosses(), name="persample_d", distribution="p2p-fake-losses", version="2.0")
    shapes = Shapes(in_channels=3, out_channels=3, image_size=32)
    x, y = torch.zeros(2, 3, 32, 32), torch.ones(2, 3, 32, 32)
    spec = make_spec(generator=("unet", {"ngf": 4, "dropout": 0.0}), disc=("patch16", {"ndf": 4}), loss="persample_d")
    with pytest.raises(ConfigError, match=r"loss 'persample_d' \(plugin 'persample_d' from p2p-fake-losses 2.0\) breaks the "
                                          r"contract: discriminator_loss returns a finite scalar\n  found: Tensor of shape \(2,\)"):
        Training.build(spec, shapes, total_steps=1, registry=registry).train_step(Sample(x, y, ""))
    model = Training.build(make_spec(generator=("unet", {"ngf": 4, "dropout": 0.0}), disc=("patch16", {"ndf": 4})), shapes, total_steps=1)
    model.train_step(Sample(x, y, ""))
    images = model.method.images()
    assert images.keys() == {"input", "output", "target"}
    assert images["input"] is x and images["target"] is y and images["output"].shape == y.shape


class ReadsEverything:
    """A term of the current protocol that reads the input and the target on both sides."""

    discriminator_input = "input+output"

    def generator_loss(self, *, x, fake, target, d_fake, d_real):
        return (fake - x).abs().mean() + (fake - target).abs().mean() + 0 * d_fake.logits[0].mean()

    def discriminator_loss(self, *, x, fake, target, d_fake, d_real):
        return (target - x).abs().mean() + 0 * d_real.logits[0].mean()


class Bare:
    """A term without ``needs``: what it reads follows from what it shows the discriminator."""

    def __init__(self, discriminator_input, needs=None):
        self.discriminator_input = discriminator_input
        if needs:
            self.needs = needs

    def generator_loss(self, *, x, fake, target, d_fake, d_real):
        return fake.mean()

    def discriminator_loss(self, *, x, fake, target, d_fake, d_real):
        return fake.mean()


def test_the_objective_passes_the_input_and_target_and_checks_its_terms_and_what_they_read():
    x, fake, target = torch.zeros(1, 3, 4, 4), torch.ones(1, 3, 4, 4), torch.full((1, 3, 4, 4), 3.0)
    objective = Objective({"reads": ReadsEverything()})
    disc = lambda pair: torch.zeros(1, 1, 2, 2)  # noqa: E731
    assert objective.generator_losses(x=x, fake=fake, target=target, disc=disc)["reads"].item() == 3.0
    assert objective.discriminator_losses(x=x, fake=fake, target=target, disc=disc)["reads"].item() == 3.0
    assert Objective({"a": Bare("none"), "b": Bare("output")}).needs == {"a": "nothing", "b": "logits"}
    with pytest.raises(ConfigError, match="at least one term"):
        Objective({})
    with pytest.raises(ConfigError, match=r"discriminator_input must be one of .*, got \['pixels'\]"):
        Objective({"a": Bare("pixels")})
    with pytest.raises(ConfigError, match=r"loss 'a' breaks the contract: needs is one of"):
        Objective({"a": Bare("output", needs="pixels")})
    with pytest.raises(ConfigError, match="names a term twice"):
        Objective.parse("l1+l1", {}, default_registry())
    with pytest.raises(ConfigError, match=r"loss 'fm' needs the discriminator's features"):
        Objective({"fm": Bare("output", needs="features")}).check_output(DiscriminatorOutput(logits=[torch.zeros(1, 1, 2, 2)]))
    for value, found in [(torch.tensor(float("nan")), "nan"), (1.0, r"float of shape \(\)")]:
        with pytest.raises(ConfigError, match=f"found: {found} at the first step"):
            objective.check("generator", {"reads": value})


def test_a_crop_the_generator_cannot_take_is_refused_with_the_largest_crop_it_can():
    # A U-Net of depth 3 takes multiples of 8: a 20 x 20 crop is refused, and 16 offered.
    spec = make_spec(generator=("unet", {"ngf": 4, "depth": 3}), data=("synthetic", {"length": 4, "load_size": 24, "crop_size": 20}))
    with pytest.raises(ConfigError, match=r"needs image sides that are multiples of 8, but the training crops are 20x20; "
                                          r"use --data\.crop_size 16 "):
        Training.build(spec, Shapes(in_channels=3, out_channels=3, image_size=20), total_steps=1)


@pytest.mark.parametrize(("loss", "adversarial"), [("cgan+l1", True), ("l1", False)])
def test_the_trained_spec_says_whether_a_discriminator_was_trained(loss, adversarial):
    training = Training.build(make_spec(loss=loss), Shapes(in_channels=3, out_channels=3, image_size=32), total_steps=1)
    assert training.trained.adversarial is adversarial


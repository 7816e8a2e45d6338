"""Training methods as plugins: pix2pix is the built-in ``Method``, and the core trains, saves and serves any method."""

from __future__ import annotations

import copy
from typing import Literal

import attrs
import pytest
import torch
import torch.nn.functional as F

import p2p_core
from conftest import fit_smoke, make_spec
from p2p_core import checkpoint
from p2p_core.errors import DataError, PluginError
from p2p_core.inference import load_generator
from p2p_core.protocols import Sample
from p2p_core.registry import Registry
from p2p_core.spec import ComponentSpec, Shapes, read_checkpoint
from p2p_core.training import Training

SHAPES = Shapes(in_channels=3, out_channels=3, image_size=32)


class Mirror:
    """Two generators, A -> B and B -> A, each trained by L1 alone."""

    directions = {"AtoB": "forward", "BtoA": "backward"}

    def __init__(self, *, training: Training, weight: float = 1.0) -> None:
        shapes = training.shapes
        training.network("forward", "generator", in_channels=shapes.in_channels, out_channels=shapes.out_channels)
        training.network("backward", "generator", in_channels=shapes.out_channels, out_channels=shapes.in_channels)
        training.optimizer("both", ["forward", "backward"])
        self.training, self.weight, self._last = training, weight, {}

    def train_step(self, batch: Sample) -> dict[str, float]:
        t = self.training
        fake_b, fake_a = t.module("forward")(batch.a), t.module("backward")(batch.b)
        self._last = {"a": batch.a, "fake_b": fake_b.detach()}
        return t.update("both", {"L1/ab": self.weight * (fake_b - batch.b).abs().mean(),
                                 "L1/ba": self.weight * (fake_a - batch.a).abs().mean()})

    def images(self) -> dict[str, torch.Tensor]:
        return self._last


class TranslatesWithADiscriminator(Mirror):
    """Names a discriminator as the network that translates."""

    directions = {"AtoB": "judge"}

    def __init__(self, *, training: Training) -> None:
        training.network("judge", "discriminator", in_channels=3)
        self.training = training


class Careless(Mirror):
    """Asks for its networks as ``mistake`` says: one role twice, an optimizer for a network it did not build, or nothing."""

    directions = {"AtoB": "forward"}

    def __init__(self, *, training: Training,
                 mistake: Literal["network_twice", "optimizer_for_nothing", "optimizer_twice", "builds_nothing"]) -> None:
        for _ in range({"network_twice": 2, "builds_nothing": 0}.get(mistake, 1)):
            training.network("forward", "generator", in_channels=3, out_channels=3)
        if mistake == "optimizer_for_nothing":
            training.optimizer("generator", ["forwards"])
        for _ in range(2 if mistake == "optimizer_twice" else 0):
            training.optimizer("generator", ["forward"])


class Methods:
    @p2p_core.hookimpl
    def p2p_methods(self):
        return {"mirror": Mirror, "judging": TranslatesWithADiscriminator, "careless": Careless}


def registry() -> Registry:
    found = Registry()
    found.load_entry_points(allow=["p2p", "p2p-plugin-example"])
    found.register(Methods(), name="methods", distribution="p2p-fake-methods", version="2.0")
    return found


def batches(count: int) -> list[Sample]:
    generator = torch.Generator().manual_seed(1)
    return [Sample(*(torch.rand(2, 3, 32, 32, generator=generator) * 2 - 1 for _ in range(2)), path="") for _ in range(count)]


@pytest.mark.parametrize(("loss", "disc"), [("cgan+l1", "patch70"), ("gan+l1", "patch16"), ("lsgan+l1", "patch70")])
def test_pix2pix_is_the_papers_step_to_the_bit(loss, disc):
    """The method's losses for 3 steps at seed 0 equal, exactly, the paper's step written out here in plain torch:
    one D step on half the objective, then one G step through the updated D, each network with its own fused Adam."""
    torch.manual_seed(0)
    spec = make_spec(generator=("unet", {"ngf": 8}), disc=(disc, {"ndf": 8}), loss=loss)
    training = Training.build(spec, SHAPES, total_steps=10, registry=registry())
    g, d = (copy.deepcopy(training.networks[role]) for role in ("generator", "discriminator"))
    g_adam, d_adam = (torch.optim.Adam(m.parameters(), lr=2e-4, betas=(0.5, 0.999), fused=True) for m in (g, d))
    term = loss.removesuffix("+l1")

    def adversarial(logits: torch.Tensor, real: bool) -> torch.Tensor:
        if term == "lsgan":
            return (logits - float(real)).pow(2).mean()
        return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, float(real)))

    def judged(x: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return d(image if term == "gan" else torch.cat([x, image], 1))

    for batch in batches(3):
        torch.manual_seed(7)  # the same dropout in both
        logged = training.train_step(batch)
        torch.manual_seed(7)
        x, y = batch.a, batch.b
        fake = g(x)
        d_adam.zero_grad()
        d_loss = 0.5 * (adversarial(judged(x, y), True) + adversarial(judged(x, fake.detach()), False))
        d_loss.backward()
        d_adam.step()
        d.requires_grad_(False)
        g_adam.zero_grad()
        g_gan, g_l1 = adversarial(judged(x, fake), True), 100 * (fake - y).abs().mean()
        torch.stack([g_gan, g_l1]).sum().backward()
        g_adam.step()
        d.requires_grad_(True)
        assert logged == {f"D/{term}": d_loss.item(), f"G/{term}": g_gan.item(), "G/l1": g_l1.item()}


def test_a_checkpoint_records_the_method_and_its_provider(tmp_path, capsys):
    state = checkpoint.load(fit_smoke(tmp_path, capsys, "--trainer.max_steps", "1"))
    assert state["spec"]["method"] == {"name": "pix2pix", "g_lr": None, "d_lr": None, "n_critic": 1}
    assert state["providers"]["method"].startswith("p2p ")
    assert state["directions"] == {"AtoB": "generator"}
    assert {role: shape["kind"] for role, shape in state["networks"].items()} == {"generator": "generator",
                                                                                 "discriminator": "discriminator"}


def test_a_checkpoint_from_before_methods_is_a_pix2pix_one_that_resumes(tmp_path, capsys):
    state = checkpoint.load(fit_smoke(tmp_path, capsys, "--trainer.max_steps", "1"))
    del state["networks"], state["directions"], state["spec"]["method"]
    trained = read_checkpoint(state, source="old")
    assert trained.run.method.name == "pix2pix" and trained.directions == {"AtoB": "generator"}
    assert trained.networks["discriminator"].in_channels == trained.shapes.disc_in_channels == 6
    training = Training.build(trained.run, trained.shapes, total_steps=4)
    training.load_state_dict(state)
    assert training.step == 1
    for role in ("generator", "discriminator"):
        for name, tensor in training.networks[role].state_dict().items():
            assert torch.equal(tensor, state["models"][role][name]), (role, name)


def test_a_method_of_two_directions_serves_each_generator(tmp_path):
    spec = attrs.evolve(make_spec(), method=ComponentSpec("mirror", {"weight": 2.0}), loss="l1")
    found = registry()
    training = Training.build(spec, SHAPES, total_steps=2, registry=found)
    logged = training.train_step(batches(1)[0])
    assert set(logged) == {"L1/ab", "L1/ba"} and set(training.optimizers) == {"both"}
    saved = checkpoint.save(training.state_dict(), tmp_path / "run", training.step)
    backward = load_generator(saved, mode="eval", direction="BtoA", registry=found)
    for name, tensor in training.networks["backward"].state_dict().items():
        assert torch.equal(backward.module.state_dict()[name], tensor), name
    assert (backward.in_channels, backward.out_channels, backward.direction) == (3, 3, "BtoA")
    assert read_checkpoint(checkpoint.load(saved), source="x").run.method.options == {"weight": 2.0}


def test_a_pix2pix_model_asked_to_translate_backwards_says_what_it_translates(tmp_path, capsys):
    with pytest.raises(DataError, match="translates AtoB only, not BtoA; use --direction AtoB"):
        load_generator(fit_smoke(tmp_path, capsys, "--trainer.max_steps", "1"), mode="eval", direction="BtoA")


def test_a_method_whose_direction_names_no_generator_breaks_the_contract():
    spec = attrs.evolve(make_spec(), method=ComponentSpec("judging"))
    with pytest.raises(PluginError) as error:
        Training.build(spec, SHAPES, total_steps=1, registry=registry())
    headline, found, fix = str(error.value).splitlines()
    assert headline.startswith("method 'judging' breaks the contract: directions maps AtoB and/or BtoA to generator")
    assert found == "  found: AtoB: 'judge' (built: judge (discriminator))"
    assert fix.startswith("  fix: build the generator with training.network(ROLE, 'generator'")


@pytest.mark.parametrize(("mistake", "message"), [
    ("network_twice", "method 'careless' asked for network 'forward' twice; give each network a role of its own"),
    ("optimizer_for_nothing", "optimizer 'generator': no network 'forwards' (built: forward)"),
    ("optimizer_twice", "optimizer 'generator': a second optimizer of that name"),
    ("builds_nothing", "method 'careless' breaks the contract: directions maps AtoB and/or BtoA to generator roles it built\n"
                       "  found: AtoB: 'forward' (built: nothing)\n"
                       "  fix: build the generator with training.network(ROLE, 'generator', ...) and name that ROLE"),
])
def test_a_method_asking_for_its_networks_wrongly_is_told_what_it_asked(mistake, message):
    spec = attrs.evolve(make_spec(), method=ComponentSpec("careless", {"mistake": mistake}))
    with pytest.raises(PluginError) as error:
        Training.build(spec, SHAPES, total_steps=1, registry=registry())
    assert str(error.value) == message


def test_frozen_networks_get_no_gradient_and_keep_what_the_plugin_froze_itself():
    training = Training.build(make_spec(), SHAPES, total_steps=1, registry=registry())
    disc = training.networks["discriminator"]
    kept_frozen = next(disc.parameters())
    kept_frozen.requires_grad_(False)
    with training.frozen("discriminator"):
        assert not any(p.requires_grad for p in disc.parameters())
        fake = torch.zeros(1, 6, 32, 32, requires_grad=True)
        training.module("discriminator")(fake).mean().backward()
    assert fake.grad is not None and all(p.grad is None for p in disc.parameters())  # through D, not for D
    assert not kept_frozen.requires_grad and all(p.requires_grad for p in list(disc.parameters())[1:])


def test_an_option_of_one_network_overrides_its_kinds_and_survives_the_checkpoint(tmp_path):
    from p2p_core.config import parse_spec

    found = registry()
    spec, _ = parse_spec(["--method", "mirror", "--loss", "l1", "--generator.ngf", "4", "--backward.ngf", "8"], found)
    assert spec.roles == {"backward": {"ngf": 8}}
    training = Training.build(spec, SHAPES, total_steps=1, registry=found)
    widths = {role: next(net.parameters()).shape[0] for role, net in training.networks.items()}
    assert widths == {"forward": 4, "backward": 8}
    saved = checkpoint.save(training.state_dict(), tmp_path / "run", 0)
    assert next(load_generator(saved, mode="eval", direction="BtoA", registry=found).module.parameters()).shape[0] == 8


def test_an_option_for_a_network_the_method_lacks_names_the_ones_it_has():
    from p2p_core.config import parse_spec

    found = registry()
    spec, _ = parse_spec(["--method", "mirror", "--loss", "l1", "--backwards.ngf", "8"], found)
    with pytest.raises(p2p_core.ConfigError, match=r"method 'mirror' has no network 'backwards'; did you mean 'backward'.*\? "
                                                   r"its networks: forward, backward"):
        Training.build(spec, SHAPES, total_steps=1, registry=found)


def pix2pix(**options) -> Training:
    """pix2pix with ``options`` (--method.OPTION), tiny networks, 4 steps of one epoch constant and one decaying."""
    spec = attrs.evolve(make_spec(generator=("unet", {"ngf": 8}), disc=("patch16", {"ndf": 8}), n_epochs=1, n_epochs_decay=1),
                        method=ComponentSpec("pix2pix", options))
    return Training.build(spec, SHAPES, total_steps=4, registry=registry())


def test_each_network_trains_at_its_own_rate_and_the_schedule_scales_both():
    training = pix2pix(g_lr=1e-4, d_lr=4e-4)
    rates = []
    for batch in batches(4):
        training.train_step(batch)
        rates.append({name: optimizer.param_groups[0]["lr"] for name, optimizer in training.optimizers.items()})
    # Constant for the first half of the 4 steps, then linear decay: 1, 1, 2/3, 1/3 of each network's own rate.
    for rate, factor in zip(rates, (1, 1, 2 / 3, 1 / 3)):
        assert rate == pytest.approx({"generator": 1e-4 * factor, "discriminator": 4e-4 * factor}, rel=1e-12)


def test_the_rates_default_to_the_trainers():
    training = pix2pix()
    assert {name: o.param_groups[0]["lr"] for name, o in training.optimizers.items()} == {"generator": 2e-4, "discriminator": 2e-4}


def adam_steps(training: Training, name: str) -> int:
    return int(training.optimizers[name].state[next(iter(training.optimizers[name].param_groups[0]["params"]))]["step"])


def test_n_critic_updates_d_on_every_batch_and_g_on_every_nth():
    training = pix2pix(n_critic=2)
    logged = [set(training.train_step(batch)) for batch in batches(4)]
    assert (adam_steps(training, "discriminator"), adam_steps(training, "generator")) == (4, 2)
    assert logged == [{"D/cgan"}, {"D/cgan", "G/cgan", "G/l1"}] * 2  # G after the second D update of each pair


def test_a_resumed_run_continues_the_critic_phase_exactly():
    def steps(training: Training, chosen: list[Sample]) -> list[dict[str, float]]:
        logged = []
        for batch in chosen:
            torch.manual_seed(7)  # the same dropout in both runs
            logged.append(training.train_step(batch))
        return logged

    chosen = batches(4)
    torch.manual_seed(0)
    whole = steps(pix2pix(n_critic=3), chosen)
    torch.manual_seed(0)
    first = pix2pix(n_critic=3)
    steps(first, chosen[:1])
    resumed = pix2pix(n_critic=3)
    resumed.load_state_dict(copy.deepcopy(first.state_dict()))
    assert steps(resumed, chosen[1:]) == whole[1:]


class WarmedUp:
    """L1 whose weight rises linearly from 0 over the run: a term with a schedule of its own."""

    discriminator_input = "none"

    def __init__(self) -> None:
        self.weight, self.seen = 0.0, []

    def at_step(self, step: int, total_steps: int) -> None:
        self.seen.append((step, total_steps))
        self.weight = step / total_steps

    def generator_loss(self, *, x, fake, target, d_fake, d_real):
        return self.weight * (fake - target).abs().mean()


class WarmedUpTerms:
    @p2p_core.hookimpl
    def p2p_losses(self):
        return {"warm_l1": WarmedUp}


def test_a_term_with_a_schedule_learns_each_step_before_it():
    found = registry()
    found.register(WarmedUpTerms(), name="terms", distribution="p2p-fake-terms")
    spec = attrs.evolve(make_spec(generator=("unet", {"ngf": 8}), loss="cgan+warm_l1"))
    training = Training.build(spec, SHAPES, total_steps=4, registry=found)
    logged = [training.train_step(batch)["G/warm_l1"] for batch in batches(3)]
    term = training.method.objective.terms["warm_l1"]
    assert term.seen == [(0, 4), (1, 4), (2, 4)]
    assert logged[0] == 0 and logged[1] > 0 and logged[2] > 0


@pytest.mark.parametrize(("options", "message"), [
    ({"g_lr": 0.0}, "g_lr (Adam's learning rate) must be in (0, 1], got 0.0; leave it unset for --trainer.lr"),
    ({"d_lr": 2.0}, "d_lr (Adam's learning rate) must be in (0, 1], got 2.0; leave it unset for --trainer.lr"),
    ({"n_critic": 1001}, "n_critic (D updates per G update) must be from 1 to 1,000, got 1001"),
])
def test_pix2pix_refuses_an_option_out_of_range_naming_it_and_the_value(options, message):
    with pytest.raises(p2p_core.ConfigError) as error:
        pix2pix(**options)
    assert message in str(error.value)


def test_pix2pix_takes_n_critic_up_to_1000():
    assert pix2pix(n_critic=1000).method.n_critic == 1000


def test_critic_options_without_a_discriminator_are_refused_naming_them():
    spec = attrs.evolve(make_spec(loss="l1"), method=ComponentSpec("pix2pix", {"n_critic": 2}))
    with pytest.raises(p2p_core.ConfigError) as error:
        Training.build(spec, SHAPES, total_steps=1, registry=registry())
    assert str(error.value).startswith("method 'pix2pix' refused its options n_critic=2: d_lr and n_critic set the "
                                       "discriminator's training, but --loss 'l1' trains none")

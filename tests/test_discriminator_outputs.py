"""Discriminator outputs of several scales with features, and loss terms that read them (#14, points 3 and 4):
the engine runs D once on the real pair and once on the fake one, and hands each term what it declared."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import p2p_core
from conftest import make_spec
from p2p_core.commands import fit, fit_arguments
from p2p_core.errors import ConfigError
from p2p_core.objective import Objective
from p2p_core.protocols import DiscriminatorOutput, Sample, per_scale
from p2p_core.registry import Registry, default_registry
from p2p_core.spec import Shapes
from p2p_core.testing import ContractViolation, cases
from p2p_core.testing.checks import check_discriminator_min_input_size
from p2p_core.training import Training
from p2p_patchgan import PatchGAN

DATA = ("synthetic", {"length": 2, "load_size": 36, "crop_size": 32})
SHAPES = Shapes(in_channels=3, out_channels=3, image_size=32)


class TwoScales(nn.Module):
    """Two 4x4 convolutions, the second on the input average-pooled by 4, each with its activation as a feature;
    counts its calls. ``shape`` "list" returns the logits as a bare list instead of a DiscriminatorOutput."""

    def __init__(self, *, in_channels: int, shape: str = "output") -> None:
        super().__init__()
        self.in_channels, self.shape, self.calls = in_channels, shape, 0
        self.hidden = nn.ModuleList(nn.Conv2d(in_channels, 4, 4, 2, 1) for _ in range(2))
        self.heads = nn.ModuleList(nn.Conv2d(4, 1, 3, 1, 1) for _ in range(2))

    @property
    def receptive_field(self) -> tuple[int, int]:
        return (8, 32)

    def output_size(self, input_size: int) -> tuple[int, int]:
        return (input_size // 2, input_size // 8)

    def forward(self, x: Tensor) -> DiscriminatorOutput | list[Tensor]:
        self.calls += 1
        logits, features = [], []
        for hidden, head in zip(self.hidden, self.heads):
            h = F.leaky_relu(hidden(x), 0.2)
            logits.append(head(h))
            features.append((h,))
            x = F.avg_pool2d(x, 4)
        return logits if self.shape == "list" else DiscriminatorOutput(logits=logits, features=features)


def listing(*, in_channels: int) -> TwoScales:
    """Returns its scales as a bare list."""
    return TwoScales(in_channels=in_channels, shape="list")


class Matching:
    """Feature matching between real and fake; records what it was handed."""

    discriminator_input = "input+output"
    needs = "features"
    generator_needs_real = True

    def __init__(self) -> None:
        self.seen: list[tuple[str, DiscriminatorOutput | None, DiscriminatorOutput | None]] = []

    def generator_loss(self, *, x, fake, target, d_fake, d_real):
        self.seen.append(("generator", d_fake, d_real))
        layers = [(f - r).abs().mean() for fs, rs in zip(d_fake.features, d_real.features) for f, r in zip(fs, rs)]
        return torch.stack(layers).mean()

    def discriminator_loss(self, *, x, fake, target, d_fake, d_real):
        self.seen.append(("discriminator", d_fake, d_real))
        return fake.new_zeros(())


class MatchingOnly(Matching):
    """Feature matching without a discriminator side."""

    discriminator_loss = None


class Recording:
    """A cGAN-like term on logits that records what it was handed."""

    discriminator_input = "input+output"

    def __init__(self) -> None:
        self.seen: list[tuple[str, DiscriminatorOutput | None, DiscriminatorOutput | None]] = []

    def generator_loss(self, *, x, fake, target, d_fake, d_real):
        self.seen.append(("generator", d_fake, d_real))
        return F.softplus(-d_fake.logits[0]).mean()

    def discriminator_loss(self, *, x, fake, target, d_fake, d_real):
        self.seen.append(("discriminator", d_fake, d_real))
        return F.softplus(-d_real.logits[0]).mean() + F.softplus(d_fake.logits[0]).mean()


class FirstVersionCGAN:
    """The built-in cGAN term as the first Loss protocol wrote it: it calls D itself."""

    discriminator_input = "input+output"

    def generator_loss(self, *, x, fake, target, disc):
        logits = disc(torch.cat([x, fake], dim=1))
        return F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))

    def discriminator_loss(self, *, x, fake, target, disc):
        real_logits = disc(torch.cat([x, target], dim=1))
        fake_logits = disc(torch.cat([x, fake], dim=1))
        real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
        return real + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))


class FirstVersionL1:
    """A term of the first Loss protocol that shows D nothing: it takes ``disc`` and never calls it."""

    discriminator_input = "none"

    def generator_loss(self, *, x, fake, target, disc):
        return (fake - target).abs().mean()


class NeedsEverything:
    discriminator_input = "none"
    needs = "features"

    def generator_loss(self, *, x, fake, target, d_fake, d_real):
        return fake.new_zeros(())

    def discriminator_loss(self, *, x, fake, target, d_fake, d_real):
        return fake.new_zeros(())


class Deep(nn.Module):
    """Three stride-2 convolutions, instance norm and a 1x1 head: logits for any 8x8 crop by output_size, but
    instance norm needs more than the 1x1 map that 8x8 leaves it."""

    receptive_field = 22

    def __init__(self, *, in_channels: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.net = nn.Sequential(*(nn.Conv2d(c, 4, 4, 2, 1) for c in (in_channels, 4, 4)), nn.InstanceNorm2d(4), nn.Conv2d(4, 1, 1))

    def output_size(self, input_size: int) -> int:
        return input_size // 8

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class Reading(nn.Module):
    """Reads a value of its input (.item()), which the meta device cannot give: its dry run is on the CPU."""

    receptive_field = 4

    def __init__(self, *, in_channels: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.conv = nn.Conv2d(in_channels, 1, 4)

    def output_size(self, input_size: int) -> int:
        return input_size - 3

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x) / max(1.0, x.abs().max().item())


class Sized(TwoScales):
    """Two scales that declare the smallest input they take: 16 x 16, larger than the grid needs."""

    min_input_size = 16


class DeclaredReading(Reading):
    """Reading, declaring its smallest input (p2p cannot find it on the meta device): 4 x 4, one logit."""

    min_input_size = 4


class Understated(Deep):
    """Deep, declaring a smaller input than its instance norm takes (it needs 16 x 16 in training)."""

    min_input_size = 8


class Unreduced:
    """L1 without the mean: a tensor, not the scalar the contract asks for."""

    discriminator_input = "none"

    def generator_loss(self, *, x, fake, target, d_fake, d_real):
        return (fake - target).abs()

    def discriminator_loss(self, *, x, fake, target, d_fake, d_real):
        return fake.new_zeros(())


class Components:
    @p2p_core.hookimpl
    def p2p_discriminators(self):
        return {"two_scales": TwoScales, "listing": listing, "deep": Deep, "reading": Reading, "sized": Sized,
                "understated": Understated, "declared_reading": DeclaredReading}

    @p2p_core.hookimpl
    def p2p_losses(self):
        return {"matching": Matching, "recording": Recording, "first_cgan": FirstVersionCGAN, "first_l1": FirstVersionL1, "needs_everything": NeedsEverything,
                "unreduced": Unreduced, "matching_only": MatchingOnly}


def registry() -> Registry:
    found = Registry()
    found.load_entry_points(allow=["p2p"])
    found.register(Components(), name="outputs", distribution="p2p-fake-outputs", version="3.0")
    return found


def model(loss: str, disc: str = "two_scales", seed: int = 0) -> Training:
    torch.manual_seed(seed)
    spec = make_spec(generator=("unet", {"ngf": 4, "dropout": 0.0}), disc=(disc, {} if disc != "patch16" else {"ndf": 4}),
                     data=DATA, loss=loss)
    return Training.build(spec, SHAPES, total_steps=4, registry=registry())


def batch() -> Sample:
    generator = torch.Generator().manual_seed(1)
    return Sample(*(torch.rand(2, 3, 32, 32, generator=generator) * 2 - 1 for _ in range(2)), path="")


def test_a_multiscale_discriminator_trains_with_the_builtin_terms_averaging_its_scales():
    pix2pix = model("cgan+l1")
    losses = pix2pix.train_step(batch())
    assert set(losses) == {"D/cgan", "G/cgan", "G/l1"}
    # The cGAN term is the cross-entropy averaged over the scales: check G's against D as it now is.
    x, target, _, _ = batch()
    with torch.no_grad():
        output = pix2pix.networks["discriminator"](torch.cat([x, pix2pix.method.images()["output"]], 1))
    expected = sum(F.binary_cross_entropy_with_logits(l, torch.ones_like(l)) for l in output.logits) / 2
    assert losses["G/cgan"] == pytest.approx(expected.item(), rel=1e-4)


def test_d_runs_once_on_real_and_once_on_fake_per_update_for_all_terms_together():
    pix2pix = model("cgan+matching+l1")
    pix2pix.train_step(batch())
    # D's step: real and fake; G's step: fake, and real for the feature-matching term, shared with cGAN.
    assert pix2pix.networks["discriminator"].calls == 4
    logits_only = model("cgan+l1")
    logits_only.train_step(batch())
    assert logits_only.networks["discriminator"].calls == 3  # nothing in G's step reads D on the real pair


def test_each_term_gets_only_what_it_declares():
    pix2pix = model("recording+matching")
    pix2pix.train_step(batch())
    recording, matching = pix2pix.method.objective.terms["recording"], pix2pix.method.objective.terms["matching"]
    for role, d_fake, d_real in recording.seen:
        assert len(d_fake.logits) == 2 and d_fake.features == ()
        assert (d_real is None) == (role == "generator")
    for _, d_fake, d_real in matching.seen:
        assert len(d_fake.features) == len(d_real.features) == 2
    (_, _, g_real), = [seen for seen in matching.seen if seen[0] == "generator"]
    assert not g_real.logits[0].requires_grad  # D on the real pair in G's step: without gradients


def test_a_feature_term_on_a_discriminator_without_features_stops_with_the_contract():
    with pytest.raises(ConfigError) as error:
        model("cgan+matching", disc="patch16").train_step(batch())
    headline, found, fix = str(error.value).splitlines()
    assert headline.startswith("loss 'matching' (plugin 'outputs' from p2p-fake-outputs 3.0) needs the discriminator's features")
    assert "discriminator 'patch16' (p2p 0.1.0)" in headline
    assert found.startswith("  found: logits only") and fix.startswith("  fix: choose a discriminator that returns its features")


def test_a_discriminator_returning_a_bare_list_is_told_to_wrap_it():
    with pytest.raises(ConfigError) as error:
        model("cgan+l1", disc="listing").train_step(batch())
    headline, found, fix = str(error.value).splitlines()
    assert headline.startswith("discriminator 'listing' (p2p-fake-outputs 3.0) breaks the contract: a discriminator returns a Tensor")
    assert found == "  found: a list of 2 tensors"
    assert "DiscriminatorOutput(logits=" in fix


def test_a_term_reading_d_without_showing_it_anything_is_refused():
    with pytest.raises(ConfigError, match=r"loss 'needs_everything' .* breaks the contract: needs is one of .*\n  found: needs = "
                                          r"'features' with discriminator_input = 'none'"):
        Objective.parse("needs_everything", {}, registry())


def test_output_size_and_receptive_field_per_scale_or_plain():
    assert per_scale(70) == (70,) and per_scale((70, 141)) == (70, 141)
    with pytest.raises(ConfigError, match="no output for 4x4 images"):  # the coarser scale has none
        Training.build(make_spec(generator=("unet", {"ngf": 4, "depth": 2}), disc=("two_scales", {}), data=DATA),
                      Shapes(in_channels=3, out_channels=3, image_size=4),
                      total_steps=1, registry=registry())


def test_a_first_version_term_keeps_working_with_a_warning_and_the_same_numbers():
    with pytest.warns(DeprecationWarning, match=r"loss 'first_cgan' .* uses the first Loss protocol"):
        old = model("first_cgan+l1", disc="patch16", seed=3)
    new = model("cgan+l1", disc="patch16", seed=3)
    for _ in range(2):
        assert old.train_step(batch()) == {key.replace("cgan", "first_cgan"): value
                                             for key, value in new.train_step(batch()).items()}


def test_a_first_version_term_beside_a_current_one_leaves_it_its_discriminator_loss():
    with pytest.warns(DeprecationWarning):
        pix2pix = model("first_cgan+recording", disc="patch16")
    assert set(pix2pix.train_step(batch())) == {"D/first_cgan", "D/recording", "G/first_cgan", "G/recording"}


def test_a_first_version_term_that_shows_d_nothing_trains_beside_a_discriminator_of_several_scales():
    with pytest.warns(DeprecationWarning):
        pix2pix = model("cgan+first_l1", disc="two_scales")
    assert set(pix2pix.train_step(batch())) == {"D/cgan", "G/cgan", "G/first_l1"}


def test_a_first_version_term_is_told_it_reads_one_scale_only_when_the_model_is_built():
    with pytest.warns(DeprecationWarning), pytest.raises(
        ConfigError, match=r"loss 'first_cgan' .* reads one tensor of logits\n  found: discriminator "
                           r"'two_scales' \(p2p-fake-outputs 3.0\) returns 2 scales"):
        model("first_cgan")


def test_the_objective_check_names_the_plugin_and_the_distribution():
    objective = Objective.parse("l1", {}, default_registry())
    with pytest.raises(ConfigError, match=r"loss 'l1' \(plugin 'gan_losses' from p2p 0.1.0\) breaks the contract"):
        objective.check("generator", {"l1": torch.zeros(2)})


def test_a_discriminator_returning_discriminator_output_compiles_forward_and_backward():
    # --trainer.compile builds the output inside the compiled graph; fullgraph: no graph break either.
    torch.manual_seed(0)
    eager = TwoScales(in_channels=3)
    copy = TwoScales(in_channels=3)
    copy.load_state_dict(eager.state_dict())
    compiled = torch.compile(copy, fullgraph=True)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    results = []
    for module in (eager, compiled):
        output = DiscriminatorOutput.of(module(x))
        sum(logits.mean() for logits in output.logits).backward()
        results.append((output, [p.grad for p in module.parameters()]))
    (expected, expected_grads), (found, found_grads) = results
    assert isinstance(found, DiscriminatorOutput) and len(found.logits) == len(found.features) == 2
    assert all(torch.allclose(f, e, atol=1e-6) for f, e in zip(found.logits, expected.logits))
    assert all(torch.allclose(f, e, atol=1e-6) for f, e in zip(found_grads, expected_grads))


def fit_refused(tmp_path, *options: str) -> str:
    """The ConfigError of `p2p fit` with ``options`` on tiny synthetic data; no run folder may exist after it."""
    arguments = fit_arguments(["--generator.ngf", "4", "--data", "synthetic", "--data.length", "2", "--data.load_size", "8",
                               "--data.crop_size", "8", "--out_dir", str(tmp_path), *options], registry())
    with pytest.raises(ConfigError) as error:
        fit(**arguments, registry=registry(), argv=[])
    assert not any(tmp_path.iterdir())
    return str(error.value)


def test_a_discriminator_too_deep_for_the_crop_is_refused_before_the_run_folder_exists(tmp_path):
    message = fit_refused(tmp_path, "--disc", "deep")
    assert message.startswith("discriminator 'deep' (p2p-fake-outputs 3.0) is too deep for 8x8 training crops")
    assert "use --data.crop_size 16" in message


def test_a_crop_below_the_declared_min_input_size_is_refused_before_the_run_folder_exists(tmp_path):
    message = fit_refused(tmp_path, "--disc", "sized")
    assert message == ("discriminator 'sized' (p2p-fake-outputs 3.0) takes inputs of at least 16x16 (its min_input_size), "
                       "but the training crops are 8x8; use --data.crop_size 16 (or larger), or fewer scales or layers in "
                       "the discriminator")


def test_a_patchgan_without_output_at_the_crop_is_refused_with_the_smallest_crop_that_has_one(tmp_path):
    message = fit_refused(tmp_path, "--disc", "patch70", "--disc.ndf", "4")
    assert message.startswith("discriminator 'patch70' (p2p ") and "has no output for 8x8 images" in message
    smallest = int(message.split("--data.crop_size ")[1].split()[0])
    patchgan = registry().create("discriminator", "patch70", in_channels=6)
    assert patchgan.output_size(smallest) == 1 and patchgan.output_size(smallest - 1) < 1


def test_the_kit_checks_that_the_smallest_input_trains():
    # declared_reading: a declaration p2p cannot derive (it reads values), which one pixel less refutes by failing.
    for name in ("patch16", "patch70", "two_scales", "deep", "declared_reading"):
        case(f"discriminator:{name}", check_discriminator_min_input_size).run()
    with pytest.raises(ContractViolation) as failure:
        case("discriminator:understated", check_discriminator_min_input_size).run()
    assert "at 8 x 8, batch 1" in str(failure.value) and "declare min_input_size = 16" in str(failure.value)


def case(component: str, check):
    (found,) = [c for c in cases([component], registry=registry()) if c.check is check]
    return found


def test_a_term_needing_features_of_a_discriminator_without_is_refused_before_the_run_folder_exists(tmp_path):
    message = fit_refused(tmp_path, "--disc", "patch16", "--loss", "cgan+matching")
    assert message.startswith("loss 'matching' (plugin 'outputs' from p2p-fake-outputs 3.0) needs the discriminator's features")


def test_a_discriminator_that_reads_values_is_checked_on_the_cpu_and_trains():
    assert set(model("cgan+l1", disc="reading").train_step(batch())) == {"D/cgan", "G/cgan", "G/l1"}


def test_the_dry_run_leaves_the_discriminator_as_it_was():
    pix2pix = model("cgan+matching+l1")
    assert pix2pix.networks["discriminator"].calls == 0
    assert all(p.device.type == "cpu" for p in pix2pix.networks["discriminator"].parameters())


def test_a_run_failing_in_its_first_step_leaves_no_run_folder(tmp_path):
    message = fit_refused(tmp_path, "--disc", "patch16", "--loss", "cgan+unreduced")
    assert message.startswith("loss 'unreduced' (plugin 'outputs' from p2p-fake-outputs 3.0) breaks the contract")


def test_a_term_without_a_discriminator_side_is_not_logged_for_d():
    assert set(model("cgan+matching_only+l1").train_step(batch())) == {"D/cgan", "G/cgan", "G/matching_only", "G/l1"}
    assert set(model("matching_only").train_step(batch())) == {"G/matching_only"}  # D then has nothing to learn


@pytest.mark.parametrize("name", ["patch16", "patch70", "pixel"])
def test_a_patchgan_predicts_its_own_logit_grid_for_sizes_its_strides_do_not_divide(name):
    patchgan = registry().create("discriminator", name, in_channels=2, ndf=4)
    for size in (45, 67):
        predicted = patchgan.output_size(size)
        assert type(predicted) is int and predicted == patchgan(torch.zeros(1, 2, size, size)).shape[-1]


def test_a_patchgan_names_a_kernel_size_it_cannot_build():
    with pytest.raises(ValueError, match=r"^kernel_size must be 4 \(PatchGAN\) or 1 \(PixelGAN\), got 3$"):
        PatchGAN(in_channels=3, kernel_size=3)

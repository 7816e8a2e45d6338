"""The conformance kit itself: it fails deliberately broken components with the contract and the fix, passes
their repaired twins, and ``expected_failures`` turns a known failure into a strict xfail (which pytest then
reports as XFAIL, or as a failure should the case pass: see test_pytest_plugin.py)."""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import Tensor, nn

import p2p_core
from p2p_core.registry import OWN_DISTRIBUTION, Registry
from p2p_core.testing import CHECKS, ContractViolation, cases, parametrize_with_checks
from p2p_core.testing.checks import (
    check_dataset_jitter_keeps_pairs_aligned,
    check_dataset_samples,
    check_discriminator_output_grid,
    check_generator_output_shape_and_range,
    check_generator_size_multiple,
    check_loss_finite_non_negative_and_differentiable,
    check_options_round_trip_through_config,
    check_receptive_field,
    contract_of,
)

CONTRIBUTING = Path(__file__).resolve().parents[1] / "CONTRIBUTING.md"


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
    """The unbounded -mean(D(fake)) of a WGAN critic, which p2p's objective contract rules out."""

    discriminator_input = "output"

    def __init__(self, *, shift: float = 0.0) -> None:
        self.shift = shift

    def generator_loss(self, *, x: Tensor, fake: Tensor, target: Tensor, disc) -> Tensor:
        return self.shift - disc(fake).mean() - 10

    def discriminator_loss(self, *, x: Tensor, fake: Tensor, target: Tensor, disc) -> Tensor:
        return (disc(fake) - disc(target)).abs().mean()


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


class BrokenPlugin:
    @p2p_core.hookimpl
    def p2p_generators(self):
        return {"unbounded": UnboundedGenerator, "shrinking": ShrinkingGenerator, "large_shrinking": LargeShrinkingGenerator,
                "exploding": ExplodingGenerator, "narrow": NarrowBottleneckGenerator, "unbuildable": UnbuildableGenerator}

    @p2p_core.hookimpl
    def p2p_discriminators(self):
        return {"misdeclared": MisdeclaredDiscriminator, "exploding": ExplodingDiscriminator,
                "functionally_normed": FunctionallyNormedDiscriminator}

    @p2p_core.hookimpl
    def p2p_losses(self):
        return {"negative": NegativeLoss}

    @p2p_core.hookimpl
    def p2p_datasets(self):
        return {"overshooting": OvershootingDataset}


def broken_registry() -> Registry:
    """p2p's built-ins (the kit's config check builds p2p's parser, which needs them) and the broken components."""
    registry = Registry()
    registry.load_entry_points(allow=[OWN_DISTRIBUTION])
    registry.register(BrokenPlugin(), name="broken", distribution="broken-components", version="0")
    return registry


def _case(component: str, check, options: dict | None = None):
    (case,) = [c for c in cases([component], registry=broken_registry(), options={component: options or {}}) if c.check is check]
    return case


@pytest.mark.parametrize(
    ("component", "check", "contract", "found", "fix"),
    [
        ("generator:unbounded", check_generator_output_shape_and_range, "outputs in [-1, 1]", "range [", "end the network with Tanh"),
        ("generator:shrinking", check_generator_output_shape_and_range, "output shape N x out_channels x H x W", "expected",
         "keep the spatial size"),
        ("discriminator:misdeclared", check_receptive_field, "receptive_field matches the network", "declared 70, measured 4 pixels",
         "compute receptive_field from the layers"),
        ("loss:negative", check_loss_finite_non_negative_and_differentiable, "generator_loss is a finite scalar >= 0", "tensor(-",
         "reduce with mean(); use a loss bounded below by 0"),
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


@pytest.mark.parametrize(
    ("component", "check", "repair"),
    [
        ("generator:unbounded", check_generator_output_shape_and_range, {"squash": True}),
        ("discriminator:misdeclared", check_receptive_field, {"receptive_field": 4}),
        ("loss:negative", check_loss_finite_non_negative_and_differentiable, {"shift": 1000.0}),
        ("dataset:overshooting", check_dataset_samples, {"exact": True}),
    ],
)
def test_the_same_check_passes_once_the_component_is_repaired(component, check, repair):
    _case(component, check, repair).run()


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

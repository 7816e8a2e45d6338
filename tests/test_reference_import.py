"""Importing the PyTorch reference's (junyanz/pytorch-CycleGAN-and-pix2pix) state dicts into p2p's components.

The shared files are real reference models and their outputs; the synthetic tests turn p2p modules into the
reference's layout with a small inverse of the layout rules (checked against a real file's keys and shapes
where the shared data is present) to cover other depths, widths, channels and norms.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch
from torch import nn

import p2p_core
from p2p_core.errors import DataError
from p2p_core.reference import Converted, convert, load_reference
from p2p_core.registry import Registry

SHARED = Path(os.environ.get("P2P_SHARED", Path(__file__).resolve().parents[2] / "shared"))
WEIGHTS = SHARED / "data" / "reference-weights"
needs_weights = pytest.mark.skipif(not (WEIGHTS / "cases.pt").is_file(), reason=f"no reference weights in {WEIGHTS}")
TOLERANCE = 1e-5

# What the shared README says each file was built as.
FILES = {
    "unet256_ngf8_batch": ("unet", {"ngf": 8, "norm": "batch", "depth": 8}),
    "unet256_ngf8_batch_legacy": ("unet", {"ngf": 8, "norm": "batch", "depth": 8}),
    "unet128_ngf8_instance": ("unet", {"ngf": 8, "norm": "instance", "depth": 7}),
    "patch70_ndf8_batch": ("patch", {"ndf": 8, "norm": "batch", "n_layers": 3}),
    "patch16_ndf8_batch": ("patch", {"ndf": 8, "norm": "batch", "n_layers": 1}),
    "pixel_ndf8_batch": ("pixel", {"ndf": 8, "norm": "batch"}),
}


def outputs(module: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The module's output in the two modes the shared cases record."""
    with torch.no_grad():
        module.eval()
        evaluated = module(x)
        module.train()
        for dropout in (m for m in module.modules() if isinstance(m, nn.Dropout)):
            dropout.eval()
        return {"eval": evaluated, "batch_stats_no_dropout": module(x)}


@needs_weights
@pytest.mark.parametrize("stem", FILES)
def test_reference_files_reproduce_the_reference_outputs(stem):
    case = torch.load(WEIGHTS / "cases.pt", weights_only=True)[stem.removesuffix("_legacy")]
    converted = load_reference(WEIGHTS / f"{stem}.pth")
    name, options = FILES[stem]
    assert converted.name == name and options.items() <= converted.options.items()
    assert converted.in_channels == case["input"].shape[1]
    for mode, output in outputs(converted.build(), case["input"]).items():
        assert (output - case[mode]).abs().max().item() <= TOLERANCE, mode


def dropout_blocks(unet: nn.Module) -> list[int]:
    """The decoder blocks with dropout, counted from the bottleneck."""
    return [i for i, block in enumerate(unet.decoder) if any(isinstance(m, nn.Dropout) for m in block)]


@needs_weights
def test_converted_unets_place_dropout_where_the_reference_does():
    """The reference's num_downs - 5 dropout blocks sit just outside the innermost: decoder blocks 1..depth-5."""
    for stem, blocks in [("unet256_ngf8_batch", [1, 2, 3]), ("unet128_ngf8_instance", [1, 2])]:
        assert dropout_blocks(load_reference(WEIGHTS / f"{stem}.pth").build()) == blocks


# -- the layout rules, on synthetic models ------------------------------------------------------------


def reference_layout(unet: nn.Module) -> dict[str, torch.Tensor]:
    """A p2p U-Net's state dict as the reference's nested UnetSkipConnectionBlocks name and order it."""
    state, depth, block = {}, unet.depth, "model.model"
    for level in range(depth):
        outermost, innermost = level == 0, level == depth - 1
        if outermost:
            down, up = f"{block}.0", f"{block}.3"
        else:
            down, up = f"{block}.1", f"{block}.3" if innermost else f"{block}.5"
        modules = {
            f"encoder.{level}.1": down,
            f"encoder.{level}.2": f"{block}.2",
            f"decoder.{depth - 1 - level}.1": up,
            f"decoder.{depth - 1 - level}.2": f"{block}.4" if innermost else f"{block}.6",
        }
        for key, tensor in unet.state_dict().items():
            module, _, leaf = key.rpartition(".")
            if module in modules:
                if module == f"decoder.{depth - 1 - level}.1" and leaf == "weight" and not innermost:
                    tensor = torch.cat(tensor.chunk(2)[::-1])  # the reference concatenates the skip first
                state[f"{modules[module]}.{leaf}"] = tensor.clone()
        block = f"{block}.1.model" if outermost else f"{block}.3.model"
    return state


def randomised(module: nn.Module) -> nn.Module:
    """Non-trivial weights and running statistics, so a misplaced tensor changes the output."""
    torch.manual_seed(0)
    with torch.no_grad():
        for tensor in module.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.rand_like(tensor) + 0.5 if tensor.dim() == 1 else torch.randn_like(tensor) * 0.1)
    return module


def unet(**options) -> nn.Module:
    options = {"in_channels": 1, "out_channels": 2, "image_size": 64, "ngf": 4, "norm": "batch", **options}
    return randomised(p2p_core.create("generator", "unet", **options))


@needs_weights
def test_the_tests_inverse_layout_matches_a_real_reference_file():
    real = torch.load(WEIGHTS / "unet256_ngf8_batch.pth", weights_only=True)
    made = reference_layout(unet(in_channels=3, out_channels=3, image_size=256, ngf=8))
    assert {k: v.shape for k, v in made.items()} == {k: v.shape for k, v in real.items()}


@pytest.mark.parametrize(
    ("options", "image_size"),
    [
        ({"norm": "batch", "depth": 6}, 64),
        ({"norm": "instance", "depth": 5, "ngf": 6}, 32),
        ({"norm": "batch", "depth": 9, "ngf": 2}, 512),
    ],
)
def test_unet_round_trips_through_the_reference_layout(options, image_size):
    original = unet(image_size=image_size, **options)
    converted = convert(reference_layout(original))
    assert (converted.role, converted.name) == ("generator", "unet")
    assert (converted.in_channels, converted.out_channels) == (1, 2)
    assert converted.options == {"ngf": 4, **options, "dropout_placement": "reference"}
    assert converted.image_size == image_size
    expected = original.state_dict()
    assert converted.state_dict.keys() == expected.keys()
    assert all(torch.equal(converted.state_dict[key], expected[key]) for key in expected)
    x = torch.rand(2, 1, image_size, image_size) * 2 - 1
    rebuilt = converted.build()
    assert torch.equal(outputs(rebuilt, x)["eval"], outputs(original, x)["eval"])


@pytest.mark.parametrize(
    ("name", "options"), [("patch", {"n_layers": 2, "norm": "instance"}), ("patch", {"n_layers": 4}), ("pixel", {})]
)
def test_discriminators_round_trip(name, options):
    original = randomised(p2p_core.create("discriminator", name, in_channels=4, ndf=4, **options))
    prefix = "net" if name == "pixel" else "model"  # the reference's PixelDiscriminator calls its Sequential net
    converted = convert({re.sub(r"^model\.", f"{prefix}.", key): t for key, t in original.state_dict().items()})
    assert (converted.role, converted.name, converted.in_channels) == ("discriminator", name, 4)
    assert converted.options == {"ndf": 4, "norm": "batch", **options}
    assert all(torch.equal(converted.state_dict[key], tensor) for key, tensor in original.state_dict().items())


def test_legacy_form_is_accepted_and_its_batch_counts_filled_in():
    original = unet(depth=5)
    state = {f"module.{key}": t for key, t in reference_layout(original).items() if not key.endswith("num_batches_tracked")}
    converted = convert(state)
    counts = {key: t for key, t in converted.state_dict.items() if key.endswith("num_batches_tracked")}
    assert len(counts) == sum(isinstance(m, nn.BatchNorm2d) for m in original.modules())
    assert all(t.item() == 0 for t in counts.values())
    x = torch.rand(1, 1, 32, 32)
    assert torch.equal(outputs(converted.build(), x)["eval"], outputs(original, x)["eval"])


def test_legacy_instance_norm_statistics_are_dropped_as_the_reference_drops_them():
    original = unet(depth=5, norm="instance")
    state = reference_layout(original)
    state |= {"model.model.1.model.2.running_mean": torch.zeros(8), "model.model.1.model.2.running_var": torch.ones(8)}
    converted = convert(state)
    assert converted.options["norm"] == "instance"
    assert converted.state_dict.keys() == original.state_dict().keys()


def test_a_wrong_shape_is_an_error_naming_the_tensor():
    state = reference_layout(unet(depth=5))
    key = "model.model.1.model.3.model.2.running_var"
    state[key] = torch.ones(5)
    with pytest.raises(DataError, match=re.escape(key)):
        convert(state, source="shoes.pth")


@pytest.mark.parametrize("extra", ["model.model.1.model.3.model.7.weight", "model.model.1.model.1.running_mean", "model.model.9.bias"])
def test_an_extra_tensor_is_an_error_naming_it(extra):
    state = reference_layout(unet(depth=5)) | {extra: torch.zeros(8)}
    with pytest.raises(DataError, match=re.escape(extra)):
        convert(state)


def test_a_missing_tensor_is_an_error_naming_it():
    state = reference_layout(unet(depth=5))
    key = "model.model.1.model.3.model.5.weight"
    del state[key]
    with pytest.raises(DataError, match=re.escape(key)):
        convert(state)


def test_a_discriminator_with_an_extra_tensor_is_an_error_naming_it():
    state = {**p2p_core.create("discriminator", "patch", in_channels=6, ndf=4).state_dict(), "model.4.weight": torch.zeros(1)}
    with pytest.raises(DataError, match=re.escape("model.4.weight")):
        convert(state)


def test_reference_norm_none_is_refused_rather_than_given_biases():
    state = reference_layout(unet(depth=5, norm="none"))
    outermost_up = "model.model.3.bias"  # the reference gives the last layer a bias whatever the norm
    state = {key: t for key, t in state.items() if not key.endswith(".bias") or key == outermost_up}
    with pytest.raises(DataError, match="norm 'none'"):
        convert(state)


def test_other_architectures_are_refused():
    resnet_like = {"model.1.weight": torch.zeros(4, 3, 7, 7), "model.2.weight": torch.zeros(4)}
    with pytest.raises(DataError):
        convert(resnet_like)
    with pytest.raises(DataError):
        convert({"encoder.0.1.weight": torch.zeros(4, 3, 4, 4)})


def test_load_reference_finds_one_nested_state_dict_and_refuses_code(tmp_path):
    state = reference_layout(unet(depth=5))
    torch.save({"state_dict": state, "epoch": 200, "note": "netG"}, tmp_path / "nested.pth")
    assert load_reference(tmp_path / "nested.pth").options["depth"] == 5
    torch.save({"G": state, "D": state}, tmp_path / "two.pth")
    with pytest.raises(DataError, match="'G', 'D'"):
        load_reference(tmp_path / "two.pth")
    torch.save(nn.Linear(1, 1), tmp_path / "module.pth")  # a whole module: needs its classes to unpickle
    with pytest.raises(DataError, match="module.pth"):
        load_reference(tmp_path / "module.pth")


def test_reference_dropout_placement_keeps_the_papers_parameters():
    paper, reference = (unet(image_size=256, dropout_placement=p) for p in ("paper", "reference"))
    assert [p.shape for p in paper.parameters()] == [p.shape for p in reference.parameters()]
    assert (dropout_blocks(paper), dropout_blocks(reference)) == ([0, 1, 2], [1, 2, 3])


# -- layouts from plugins (the p2p_import_layouts hook) ----------------------------------------------------------


class Layouts:
    """A plugin that reads p2p PixelGAN weights saved under ``wrapped.`` (and records what it was asked)."""

    def __init__(self) -> None:
        self.asked: list[list[str]] = []

    @p2p_core.hookimpl
    def p2p_import_layouts(self):
        return {"WrappedPixel": self.wrapped, "NotCallable": 3}

    def wrapped(self, state):
        self.asked.append(list(state))
        if not all(key.startswith("wrapped.") for key in state):
            return None
        if "wrapped.model.0.weight" not in state:
            raise DataError("missing tensor 'wrapped.model.0.weight', the first convolution of a wrapped PixelGAN")
        first = state["wrapped.model.0.weight"]
        return Converted(role="discriminator", name="pixel", options={"ndf": first.shape[0], "norm": "batch"},
                         in_channels=first.shape[1], out_channels=None, image_size=None,
                         state_dict={key.removeprefix("wrapped."): t for key, t in state.items()})


def layouts_registry() -> tuple[Registry, Layouts]:
    plugin = Layouts()
    found = Registry()
    found.load_entry_points(allow=["p2p"])
    found.register(plugin, name="layouts", distribution="p2p-fake-layouts", version="1.0")
    return found, plugin


def test_a_plugins_layout_converts_what_p2ps_own_do_not_read():
    registry, plugin = layouts_registry()
    original = randomised(p2p_core.create("discriminator", "pixel", in_channels=4, ndf=4))
    state = {f"module.wrapped.{key}": t for key, t in original.state_dict().items()}
    converted = convert(state, registry=registry)
    assert (converted.role, converted.name, converted.in_channels, converted.options) == ("discriminator", "pixel", 4, {"ndf": 4, "norm": "batch"})
    x = torch.rand(1, 4, 16, 16)
    assert torch.equal(outputs(converted.build(registry), x)["eval"], outputs(original, x)["eval"])
    assert all(key.startswith("wrapped.") for key in plugin.asked[-1])  # DataParallel's prefix went first
    # p2p's own layouts come first: a reference PatchGAN never reaches the plugin.
    asked = len(plugin.asked)
    convert(p2p_core.create("discriminator", "patch", in_channels=4, ndf=4).state_dict(), registry=registry)
    assert len(plugin.asked) == asked


def test_a_plugins_conversion_is_checked_and_its_errors_name_the_file():
    registry, _ = layouts_registry()
    state = {f"wrapped.{key}": t for key, t in p2p_core.create("discriminator", "pixel", in_channels=4, ndf=4).state_dict().items()}
    state["wrapped.model.3.weight"] = torch.ones(5)
    with pytest.raises(DataError, match=r"odd\.pth: tensor 'model\.3\.weight' has shape \(5,\)"):
        convert(state, source="odd.pth", registry=registry)
    with pytest.raises(DataError, match=r"^odd\.pth: missing tensor 'wrapped\.model\.0\.weight'"):
        convert({"wrapped.model.9.weight": torch.ones(1)}, source="odd.pth", registry=registry)


def test_an_unknown_layout_lists_p2ps_and_the_plugins_layouts():
    registry, _ = layouts_registry()
    with pytest.raises(DataError) as caught:
        convert({"encoder.0.weight": torch.zeros(1)}, source="other.pth", registry=registry)
    message = str(caught.value)
    assert "other.pth" in message and "'encoder.0.weight'" in message and "p2p_import_layouts" in message
    assert "UnetGenerator, NLayerDiscriminator, PixelDiscriminator, WrappedPixel from p2p-fake-layouts 1.0" in message
    # A layout that is not a function is the plugin's problem, reported, not a layout.
    assert "NotCallable" not in registry.import_layouts
    assert any("import layout 'NotCallable'" in problem for problem in registry.problems)
# -- files that claim more than they hold ---------------------------------------------------------------


def test_a_tensor_claiming_more_elements_than_its_storage_holds_is_refused_by_name(tmp_path):
    """A zero-stride tensor: a few bytes on disk that the first copy expands to its whole shape."""
    state = reference_layout(unet(depth=5))
    key = "model.model.1.model.1.weight"
    state[key] = torch.zeros(1).expand(state[key].shape)
    torch.save(state, tmp_path / "expanded.pth")
    with pytest.raises(DataError, match=re.escape(key)):
        load_reference(tmp_path / "expanded.pth")


def test_a_crafted_file_declaring_a_huge_network_is_refused_before_anything_is_allocated(tmp_path):
    """Every tensor expanded to the shapes of ngf 200000: a small file that would otherwise ask for terabytes."""
    ngf = 200_000
    shapes = {key: (t.shape[0] * ngf // 4, *t.shape[1:]) if t.dim() else () for key, t in reference_layout(unet(depth=5)).items()}
    torch.save({key: torch.zeros(1).expand(shape) if shape else torch.zeros(()) for key, shape in shapes.items()},
               tmp_path / "huge.pth")
    assert (tmp_path / "huge.pth").stat().st_size < 100_000
    with pytest.raises(DataError, match="claims shape"):
        load_reference(tmp_path / "huge.pth")


def test_a_network_too_large_for_one_image_is_refused_unless_the_limit_is_raised():
    """Well formed and small on disk, but 16 levels deep: every image is padded to 65536 pixels a side."""
    state = reference_layout(unet(depth=16, image_size=2**16, ngf=1))
    with pytest.raises(DataError, match="--max_memory_gb"):
        convert(state)
    assert convert(state, max_memory_gb=10_000).options["depth"] == 16


@pytest.mark.parametrize(
    ("value", "problem"),
    [(float("nan"), "NaN"), (float("inf"), "infinity"), (1j, "complex"), (3, "int8")],
)
def test_non_finite_and_non_float_weights_are_refused_naming_the_tensor(value, problem):
    state = reference_layout(unet(depth=5))
    key = "model.model.1.model.3.model.1.weight"
    bad = state[key].to(torch.complex64 if isinstance(value, complex) else torch.int8 if isinstance(value, int) else torch.float32)
    bad.view(-1)[0] = value
    state[key] = bad
    with pytest.raises(DataError, match=f"{re.escape(key)}.*{problem}"):
        convert(state)

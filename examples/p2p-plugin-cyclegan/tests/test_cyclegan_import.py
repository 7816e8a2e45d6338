"""`p2p import` of the reference's ResnetGenerator files: the shared real file and its recorded outputs, and
configurations built here in the reference's layout (6 or 9 blocks, batch or instance norm, dropout, files from
before PyTorch 0.4, DataParallel's prefix), each converted and compared with the module it came from."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch import nn

from p2p_core import checkpoint
from p2p_core.cli import main
from p2p_core.errors import DataError
from p2p_core.inference import load_generator
from p2p_core.reference import convert, load_reference
from p2p_cyclegan.catalogue import RESNET_9BLOCKS

SHARED = Path(os.environ.get("P2P_SHARED", Path(__file__).resolve().parents[4] / "shared"))
WEIGHTS = SHARED / "data" / "reference-weights-cyclegan"
needs_weights = pytest.mark.skipif(not (WEIGHTS / "cases.pt").is_file(), reason=f"no reference weights in {WEIGHTS}")
TOLERANCE = 1e-5


class ReferenceBlock(nn.Module):
    """The reference's residual block, as its layout's facts describe it: x + conv_block(x)."""

    def __init__(self, channels: int, norm: type[nn.Module], bias: bool, dropout: bool) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=bias), norm(channels), nn.ReLU(True),
            *([nn.Dropout(0.5)] if dropout else []),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=bias), norm(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ReferenceResnet(nn.Module):
    """A ResnetGenerator in the reference's module layout: one Sequential called model."""

    def __init__(self, in_channels: int, out_channels: int, *, ngf: int, n_blocks: int, norm: str, dropout: bool) -> None:
        super().__init__()
        # The reference's instance norm keeps neither affine parameters nor statistics, and gives the convs biases.
        layer = nn.BatchNorm2d if norm == "batch" else lambda channels: nn.InstanceNorm2d(channels, affine=False)
        bias = norm == "instance"
        model = [nn.ReflectionPad2d(3), nn.Conv2d(in_channels, ngf, 7, bias=bias), layer(ngf), nn.ReLU(True)]
        for width in (ngf, 2 * ngf):
            model += [nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=bias), layer(2 * width), nn.ReLU(True)]
        model += [ReferenceBlock(4 * ngf, layer, bias, dropout) for _ in range(n_blocks)]
        for width in (2 * ngf, ngf):
            model += [nn.ConvTranspose2d(2 * width, width, 3, stride=2, padding=1, output_padding=1, bias=bias),
                      layer(width), nn.ReLU(True)]
        model += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def reference(*, in_channels: int = 3, out_channels: int = 3, ngf: int = 4, n_blocks: int = 6, norm: str = "instance",
              dropout: bool = False) -> ReferenceResnet:
    """A reference module with weights, biases and running statistics as training leaves them (not 0 or 1)."""
    torch.manual_seed(0)
    module = ReferenceResnet(in_channels, out_channels, ngf=ngf, n_blocks=n_blocks, norm=norm, dropout=dropout)
    with torch.no_grad():
        for key, tensor in module.state_dict().items():
            if tensor.is_floating_point():
                tensor.copy_(torch.rand_like(tensor) + 0.5 if key.endswith("running_var") else torch.randn_like(tensor) * 0.1)
    return module.eval()


def imported(tmp_path: Path, state: dict[str, torch.Tensor], capsys) -> nn.Module:
    """``state`` saved as a .pth file, imported with `p2p import`, loaded back as p2p loads any run."""
    torch.save(state, tmp_path / "latest_net_G.pth")
    main(["import", str(tmp_path / "latest_net_G.pth"), "--out", str(tmp_path / "run")])
    assert "imported" in capsys.readouterr().out
    return load_generator(tmp_path / "run", mode="eval").module


def assert_same_outputs(module: nn.Module, original: nn.Module, in_channels: int = 3) -> None:
    x = torch.rand(2, in_channels, 32, 40) * 2 - 1
    with torch.no_grad():
        assert (module(x) - original(x)).abs().max().item() <= TOLERANCE


@needs_weights
def test_the_shared_reference_file_imports_and_reproduces_the_reference_outputs(tmp_path, capsys):
    case = torch.load(WEIGHTS / "cases.pt", weights_only=True)["resnet9_ngf8_instance"]
    main(["import", str(WEIGHTS / "resnet9_ngf8_instance.pth"), "--out", str(tmp_path / "run")])
    generator = load_generator(tmp_path / "run", mode="eval").module
    with torch.no_grad():
        assert (generator(case["input"]) - case["eval"]).abs().max().item() <= TOLERANCE
    spec = checkpoint.read(tmp_path / "run").spec.run.generator
    assert spec.name == "p2p-plugin-example:resnet9"
    assert {"ngf": 8, "n_blocks": 9, "norm": "instance", "dropout": 0.0, "conv_bias": "all"}.items() <= spec.options.items()
    assert sum(p.numel() for p in generator.parameters()) == 180_419  # the README's count


@pytest.mark.parametrize(
    "options",
    [
        {"n_blocks": 6, "norm": "instance"},
        {"n_blocks": 9, "norm": "batch"},
        {"n_blocks": 6, "norm": "instance", "dropout": True},
        {"n_blocks": 2, "norm": "batch", "dropout": True, "in_channels": 1, "out_channels": 2},
    ],
    ids=["6blocks-instance", "9blocks-batch", "instance-dropout", "batch-dropout-1to2"],
)
def test_reference_configurations_import_and_compute_what_they_computed(tmp_path, capsys, options):
    original = reference(**options)
    module = imported(tmp_path, original.state_dict(), capsys)
    assert_same_outputs(module, original, options.get("in_channels", 3))
    assert sum(isinstance(m, nn.Dropout) for m in module.modules()) == (options["n_blocks"] if options.get("dropout") else 0)


def test_files_from_before_pytorch_0_4_and_from_data_parallel_import(tmp_path):
    """Pre-0.4 files hold instance norms' running statistics (dropped, as the reference drops them) and no batch
    counts (filled in); DataParallel prefixes every key with module."""
    instance = reference(n_blocks=6, norm="instance")
    state = instance.state_dict()
    # Some of its norms, with their widths at ngf 4: the stem, the downsamplings, two blocks', the upsamplings'.
    norms = {"model.2": 4, "model.5": 8, "model.8": 16, "model.10.conv_block.2": 16, "model.15.conv_block.6": 16,
             "model.17": 8, "model.20": 4}
    for norm, width in norms.items():
        state |= {f"{norm}.running_mean": torch.randn(width), f"{norm}.running_var": torch.rand(width) + 0.5}
    torch.save({f"module.{key}": tensor for key, tensor in state.items()}, tmp_path / "instance.pth")
    converted = load_reference(tmp_path / "instance.pth")
    assert not any("running" in key for key in converted.state_dict)
    assert_same_outputs(converted.build(), instance)

    batch = reference(n_blocks=6, norm="batch")
    legacy = {key: tensor for key, tensor in batch.state_dict().items() if not key.endswith("num_batches_tracked")}
    torch.save(legacy, tmp_path / "batch.pth")
    assert_same_outputs(load_reference(tmp_path / "batch.pth").build().eval(), batch)


def test_the_catalogues_parameter_count_is_the_released_architectures():
    released = convert(reference(ngf=64, n_blocks=9, norm="instance").state_dict()).build()
    assert sum(p.numel() for p in released.parameters()) == RESNET_9BLOCKS


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda s: s.pop("model.23.weight"), r"missing tensor 'model\.23\.weight', the last convolution \(after 6 blocks\)"),
        (lambda s: s.update({"model.12.conv_block.9.weight": torch.zeros(16, 16, 3, 3)}), r"conv_block\.1, conv_block\.5, conv_block\.9"),
        (lambda s: [s.pop(k) for k in list(s) if k.startswith("model.11.")], r"model\.10, model\.12"),
        (lambda s: s.update({"model.16.weight": torch.zeros(16, 9, 3, 3)}), r"model\.16\.weight.*\(16, 9, 3, 3\)"),
        (lambda s: s.update({"model.3.weight": torch.zeros(4)}), r"model\.3\.weight"),
    ],
    ids=["no-last-conv", "odd-block", "block-gap", "wrong-shape", "extra-tensor"],
)
def test_a_damaged_file_is_refused_naming_the_file_and_the_tensor(tmp_path, change, named):
    state = reference(n_blocks=6).state_dict()
    change(state)
    torch.save(state, tmp_path / "damaged.pth")
    with pytest.raises(DataError, match=rf"damaged\.pth.*{named}"):
        load_reference(tmp_path / "damaged.pth")

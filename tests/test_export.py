"""p2p export: each format reproduces the PyTorch generator, at sizes other than the traced one."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import attrs
import pytest
import torch

from p2p_core import export as exporting
from p2p_core.cli import main
from p2p_core.errors import ConfigError, DataError
from p2p_core.inference import load_generator, translate

# Most tests here use TorchScript for its quick trace; its deprecation is tested once, at the end.
pytestmark = pytest.mark.filterwarnings("ignore:--format torchscript is deprecated:FutureWarning")
MULTIPLE = 32  # the U-Net trained on 32-pixel crops has 5 levels
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny U-Net trained for two steps on generated 3 -> 3 channel pairs."""
    root = tmp_path_factory.mktemp("export")
    main([
        "fit", "--generator.ngf", "8", "--disc.ndf", "8", "--data.crop_size", "32", "--data.load_size", "36", "--data.length", "2",
        "--trainer.max_steps", "2", "--trainer.num_workers", "0", "--trainer.progress", "false",
        "--out_dir", str(root), "--name", "run",
    ])  # fmt: skip
    return root / "run"


def onnx_available() -> None:
    for module in ("onnx", "onnxscript", "onnxruntime"):
        pytest.importorskip(module, reason="pip install 'p2p[export]' for ONNX export")


@pytest.mark.parametrize("format", ["torchscript", "exported-program", "onnx"])
def test_export_matches_the_model_at_other_sizes(run: Path, tmp_path: Path, format: str, capsys: pytest.CaptureFixture[str]):
    if format == "onnx":
        onnx_available()
    out = tmp_path / "generator.bin"
    main(["export", "--ckpt", str(run), "--format", format, "--out", str(out)])
    printed = capsys.readouterr().out
    if format == "torchscript":  # the bare generator: multiples of size_multiple only
        assert "matches the model at 1 x 3 x 96 x 32" in printed
    else:  # pads inside the graph: checked at odd sizes, a single pixel, and a multiple
        assert "matches the model at 1 x 3 x 37 x 100, 1 x 3 x 1 x 1, 1 x 3 x 300 x 257, 1 x 3 x 32 x 64" in printed

    description = json.loads((tmp_path / "generator.bin.json").read_text())
    assert description["size_multiple"] == MULTIPLE and description["mode"] == "eval"
    assert description["padding"]["mode"] == "reflect"
    assert description["padding"]["inside_graph"] is (format != "torchscript")
    assert (description["input"]["channels"], description["output"]["channels"]) == (3, 3)
    assert description["input"]["value_range"] == [-1.0, 1.0]
    assert description["checked"]["max_abs_difference"] <= TOLERANCE

    model = load_generator(run, mode="eval").module
    exported = exporting.load(out, format)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        # Batch, height and width all differ from the traced 2 x 64 x 96.
        for shape in [(1, 3, MULTIPLE, 4 * MULTIPLE), (3, 3, 3 * MULTIPLE, MULTIPLE)]:
            x = torch.rand(shape, generator=generator) * 2 - 1
            assert (exported(x) - model(x)).abs().max() <= TOLERANCE
        # With the JSON's size_multiple, translate() runs the export on any image size, as on the model.
        image = torch.rand(3, 45, 70, generator=generator) * 2 - 1
        found = translate(exported, image, size_multiple=description["size_multiple"])
        assert (found - translate(model, image)).abs().max() <= TOLERANCE


def test_paper_mode_keeps_dropout_and_batch_statistics(run: Path, tmp_path: Path):
    exporting.export(ckpt=run, format="torchscript", out=tmp_path / "g.pt", mode="paper")
    assert json.loads((tmp_path / "g.pt.json").read_text())["mode"] == "paper"
    exported, model = exporting.load(tmp_path / "g.pt", "torchscript"), load_generator(run, mode="paper").module
    x = torch.rand(1, 3, MULTIPLE, MULTIPLE) * 2 - 1
    with torch.no_grad():
        torch.manual_seed(5)
        first = exported(x)
        torch.manual_seed(5)
        assert torch.allclose(first, model(x), atol=TOLERANCE)
        assert not torch.allclose(first, exported(x))  # fresh dropout draws


def test_onnx_refuses_paper_mode(run: Path, tmp_path: Path):
    with pytest.raises(ConfigError, match="--mode eval"):
        exporting.export(ckpt=run, format="onnx", out=tmp_path / "g.onnx", mode="paper")


def test_export_never_overwrites_silently(run: Path, tmp_path: Path):
    exporting.export(ckpt=run, format="torchscript", out=tmp_path / "g.pt")
    with pytest.raises(DataError, match="already exists.*--overwrite"):
        exporting.export(ckpt=run, format="torchscript", out=tmp_path / "g.pt")
    exporting.export(ckpt=run, format="torchscript", out=tmp_path / "g.pt", overwrite=True)


def test_an_export_that_differs_from_the_model_is_refused_and_removed(run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    trace = exporting.WRITERS["torchscript"]

    def other_weights(module: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
        other = copy.deepcopy(module)
        with torch.no_grad():
            for parameter in other.parameters():
                parameter.add_(0.1)
        trace(other, example, path)

    monkeypatch.setitem(exporting.WRITERS, "torchscript", other_weights)
    with pytest.raises(ConfigError, match="differs from the model"):
        exporting.export(ckpt=run, format="torchscript", out=tmp_path / "g.pt")
    assert not (tmp_path / "g.pt").exists() and not (tmp_path / "g.pt.json").exists()


def test_torchscript_is_deprecated_when_chosen(run: Path, tmp_path: Path):
    with pytest.warns(FutureWarning, match="deprecated.*exported-program"):
        exporting.export(ckpt=run, format="torchscript", out=tmp_path / "g.pt")


class GatedBottleneck(torch.nn.Module):
    """Two stride-2 levels whose bottleneck an attention gate scales: a convolution to one channel (its psi)."""

    size_multiple = 4

    def __init__(self) -> None:
        super().__init__()
        nn = torch.nn
        self.down = nn.Sequential(nn.Conv2d(3, 4, 4, 2, 1), nn.ReLU(), nn.Conv2d(4, 4, 4, 2, 1))
        self.psi = nn.Sequential(nn.Conv2d(4, 1, 1), nn.Sigmoid())
        self.up = nn.Sequential(nn.ConvTranspose2d(4, 4, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(4, 3, 4, 2, 1), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bottleneck = self.down(x)
        return self.up(bottleneck * self.psi(bottleneck))


@pytest.mark.parametrize("format", ["exported-program", "onnx"])
def test_a_one_channel_convolution_at_the_bottleneck_exports_or_says_why(run: Path, tmp_path: Path, format: str):
    torch.manual_seed(0)
    trained = attrs.evolve(load_generator(run, mode="eval"), module=GatedBottleneck().eval())
    if format == "onnx":  # the way out the error names works
        onnx_available()
        assert exporting.write_checked(trained, format=format, out=tmp_path / "g").difference <= TOLERANCE
        return
    with pytest.raises(ConfigError) as error:
        exporting.write_checked(trained, format=format, out=tmp_path / "g")
    assert str(error.value).startswith("the exported-program export of generator 'unet' does not take every size")
    assert str(error.value).endswith("use --format onnx, which exports the same graph without it")
    assert not (tmp_path / "g").exists()

"""Generators that return more than the image (GeneratorOutput): a VAE-style generator given the target in training,
whose mean and log-variance a KL term reads; inference (predict, export, validation) keeps the image alone."""

from __future__ import annotations

import importlib
import re
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import Tensor, nn

import p2p_core
from conftest import make_spec
from p2p_core import export as exporting
from p2p_core.commands import fit, fit_arguments
from p2p_core.errors import ConfigError
from p2p_core.inference import load_generator, translate
from p2p_core.predict import predict
from p2p_core.protocols import GeneratorOutput, Sample
from p2p_core.registry import Registry
from p2p_core.spec import Shapes
from p2p_core.testing import cases
from p2p_core.training import Training

SHAPES = Shapes(in_channels=3, out_channels=3, image_size=32)


CONTRIBUTING = Path(__file__).resolve().parents[1] / "CONTRIBUTING.md"


def contributing_example(folder: Path):
    """CONTRIBUTING's VAE-style generator and KL term, as a plugin module (jsonargparse reads options from source)."""
    text = CONTRIBUTING.read_text()
    source = re.search(r"<!-- generator-outputs-example -->\n```python\n(.*?)^```$", text, re.MULTILINE | re.DOTALL)[1]
    (folder / "p2p_contributing_vae.py").write_text(source)
    sys.path.insert(0, str(folder))
    try:
        sys.modules.pop("p2p_contributing_vae", None)
        return importlib.import_module("p2p_contributing_vae")
    finally:
        sys.path.remove(str(folder))


SOURCE = tempfile.TemporaryDirectory(prefix="p2p-contributing-")  # removed when the tests end
EXAMPLE = contributing_example(Path(SOURCE.name))


class Attending(nn.Module):
    """A 3x3 convolution weighted by an attention map it computes at half size, which it returns as an extra."""

    size_multiple = 2

    def __init__(self, *, in_channels: int, out_channels: int, image_size: int) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        # Two channels: torch.export keeps a guard on the sizes of a one-channel map (see export's message).
        self.attention = nn.Conv2d(in_channels, 2, 2, stride=2)
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)

    def forward(self, x: Tensor) -> GeneratorOutput:
        attention = torch.sigmoid(self.attention(x))
        weights = nn.functional.interpolate(attention, size=x.shape[-2:]).mean(1, keepdim=True)
        return GeneratorOutput(image=torch.tanh(self.conv(x) * weights), extras={"attention": attention})


class RecordingKL(EXAMPLE.KL):
    """The KL term, recording the extras it was given."""

    def __init__(self, *, weight: float = 0.01) -> None:
        super().__init__(weight=weight)
        self.seen: list[list[str]] = []

    def generator_loss(self, *, extras, **arguments):
        self.seen.append(sorted(extras))
        return super().generator_loss(extras=extras, **arguments)


class Components:
    @p2p_core.hookimpl
    def p2p_generators(self):
        return {"attending": Attending}

    @p2p_core.hookimpl
    def p2p_losses(self):
        return {"recording_kl": RecordingKL}


def registry() -> Registry:
    found = Registry()
    found.load_entry_points(allow=["p2p"])
    found.register(EXAMPLE, name="vae", distribution="p2p-fake-vae", version="1.0")
    found.register(Components(), name="attending", distribution="p2p-fake-attending", version="1.0")
    return found


def model(loss: str, generator: str = "tiny_vae") -> Training:
    torch.manual_seed(0)
    spec = make_spec(generator=(generator, {"ngf": 4} if generator == "unet" else {}), disc=("patch16", {"ndf": 4}), loss=loss)
    return Training.build(spec, SHAPES, total_steps=4, registry=registry())


def batch(seed: int = 1) -> Sample:
    random = torch.Generator().manual_seed(seed)
    return Sample(*(torch.rand(2, 3, 32, 32, generator=random) * 2 - 1 for _ in range(2)), path="")


def test_a_kl_term_reads_the_mean_and_log_variance_and_the_encoder_trains():
    training = model("cgan+recording_kl+l1")
    encoder = [p.detach().clone() for p in training.networks["generator"].encoder.parameters()]
    logged = [training.train_step(batch(seed)) for seed in (1, 2)]
    assert all(step["G/recording_kl"] > 0 for step in logged)
    assert set(logged[0]) == {"D/cgan", "G/cgan", "G/recording_kl", "G/l1"}
    assert training.method.objective.terms["recording_kl"].seen == [["logvar", "mu"]] * 2
    assert all(not torch.equal(before, after) for before, after in zip(encoder, training.networks["generator"].encoder.parameters()))


def test_an_attention_map_is_shown_beside_the_output():
    training = model("l1", generator="attending")
    training.train_step(batch())
    images = training.method.images()
    assert list(images) == ["input", "output", "target", "attention"]
    assert images["attention"].shape == (2, 2, 32, 32) and images["attention"].abs().max() <= 1


def test_a_term_reading_extras_the_generator_lacks_is_named():
    with pytest.raises(ConfigError, match=r"loss 'kl' \(plugin 'vae' from p2p-fake-vae 1.0\) reads the generator's extras "
                                          r"mu, logvar, and the generator gives none"):
        model("kl+l1", generator="unet").train_step(batch())


def test_the_example_and_the_attention_keep_the_kit_contracts():
    for case in cases(["generator:tiny_vae", "loss:kl", "generator:attending"], registry=registry()):
        case.run()


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("vae")
    arguments = fit_arguments(["--generator", "tiny_vae", "--disc", "patch16", "--disc.ndf", "4", "--loss", "cgan+kl+l1",
                               "--data", "synthetic", "--data.length", "2", "--data.load_size", "36", "--data.crop_size", "32",
                               "--trainer.max_steps", "2", "--trainer.num_workers", "0", "--trainer.progress", "false",
                               "--trainer.validate_every", "1", "--out_dir", str(root), "--name", "run"], registry())
    fit(**arguments, registry=registry(), argv=[])  # validation runs the generator as inference does
    return root / "run"


def test_predict_writes_the_image_alone(run: Path, tmp_path: Path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    Image.new("RGB", (37, 30), (200, 40, 90)).save(inputs / "photo.png")
    predict(ckpt=run, input=inputs, output=tmp_path / "out", backend="torch", mode="eval", progress=False, registry=registry())
    with Image.open(tmp_path / "out" / "photo.png") as written:
        assert written.size == (37, 30) and written.mode == "RGB"


@pytest.mark.parametrize("format", ["exported-program", "onnx", "torchscript"])
def test_an_export_holds_the_image_alone(run: Path, tmp_path: Path, format: str):
    if format == "onnx":
        for module in ("onnx", "onnxscript", "onnxruntime"):
            pytest.importorskip(module, reason="pip install 'p2p[export]' for ONNX export")
    result = exporting.export(ckpt=run, format=format, out=tmp_path / "model", registry=registry())
    loaded = exporting.load(result.path, format)
    trained = load_generator(run, mode="eval", registry=registry())
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        found, expected = loaded(x), translate(trained.module, x)
    assert isinstance(found, Tensor) and torch.allclose(found, expected, atol=1e-4)


def test_a_generator_output_compiles_without_a_graph_break():
    # --trainer.compile builds the output inside the compiled graph (the eager backend: the tracing, not the kernels).
    torch.manual_seed(0)
    vae = EXAMPLE.TinyVAE(in_channels=3, out_channels=3, image_size=32)
    compiled = torch.compile(vae, backend="eager", fullgraph=True)
    x, target = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    outputs = []
    for module in (vae, compiled):
        torch.manual_seed(1)  # the same draw of the code
        outputs.append(GeneratorOutput.of(module(x, target=target)))
    (expected, found) = outputs
    assert torch.equal(found.image, expected.image) and set(found.extras) == {"mu", "logvar"}
    assert all(torch.equal(found.extras[name], expected.extras[name]) for name in found.extras)

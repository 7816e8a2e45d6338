"""Published pix2pix models and datasets in p2p, through the commands a user types: `p2p import`, `--ckpt
pretrained:NAME`, `p2p data download`, and everything p2p adds on top (predict, test, export, the demo, fine-tuning)."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn

from conftest import run, write_ab_folder
from p2p_core import checkpoint
from p2p_core.inference import load_generator
from p2p_core.networks import build_discriminator
from test_downloads import dataset_archive, server  # noqa: F401 - the local HTTP server fixture

WEIGHTS = Path(__file__).resolve().parents[2] / "shared" / "data" / "reference-weights"
needs_weights = pytest.mark.skipif(not (WEIGHTS / "cases.pt").is_file(), reason=f"no reference weights in {WEIGHTS}")
TOLERANCE = 1e-5
GENERATORS = ["unet256_ngf8_batch", "unet256_ngf8_batch_legacy", "unet128_ngf8_instance"]
DISCRIMINATORS = ["patch70_ndf8_batch", "patch16_ndf8_batch", "pixel_ndf8_batch"]


def _case(stem: str) -> dict[str, torch.Tensor]:
    return torch.load(WEIGHTS / "cases.pt", weights_only=True)[stem.removesuffix("_legacy")]


def _both_modes(module: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The reference's two recorded modes: eval, and batch statistics with dropout off."""
    with torch.no_grad():
        evaluated = module.eval()(x)
        module.train()
        for dropout in (m for m in module.modules() if isinstance(m, nn.Dropout)):
            dropout.eval()
        return {"eval": evaluated, "batch_stats_no_dropout": module(x)}


def _import(tmp_path: Path, capsys, generator: str, *extra: str) -> Path:
    out = tmp_path / generator
    code, stdout, err = run(["import", str(WEIGHTS / f"{generator}.pth"), "--out", str(out), *extra], capsys)
    assert code == 0, err
    return out


@needs_weights
@pytest.mark.parametrize("stem", GENERATORS)
def test_imported_generators_reproduce_the_reference_outputs(tmp_path, capsys, stem):
    folder = _import(tmp_path, capsys, stem)
    case = _case(stem)
    trained = load_generator(folder, mode="eval")
    for mode, output in _both_modes(trained.module, case["input"]).items():
        assert (output - case[mode]).abs().max().item() <= TOLERANCE, mode
    source = checkpoint.read(folder).state["source"]["generator"]
    assert len(source["sha256"]) == 64 and source["file"].endswith(f"{stem}.pth")


@needs_weights
@pytest.mark.parametrize("stem", DISCRIMINATORS)
def test_imported_discriminators_reproduce_the_reference_outputs(tmp_path, capsys, stem):
    folder = _import(tmp_path, capsys, "unet256_ngf8_batch", "--disc", str(WEIGHTS / f"{stem}.pth"))
    loaded = checkpoint.read(folder)
    assert loaded.spec.adversarial and loaded.spec.run.loss == "cgan+l1" and loaded.spec.shapes.disc_in_channels == 6
    discriminator = build_discriminator(loaded.spec.run, loaded.spec.shapes)
    discriminator.load_state_dict(loaded.state["models"]["discriminator"])
    case = _case(stem)
    for mode, output in _both_modes(discriminator, case["input"]).items():
        assert (output - case[mode]).abs().max().item() <= TOLERANCE, mode


@needs_weights
def test_a_discriminator_given_as_the_generator_is_refused_by_name(tmp_path, capsys):
    code, _, err = run(["import", str(WEIGHTS / "patch70_ndf8_batch.pth"), "--out", str(tmp_path / "x")], capsys)
    assert code == 2 and "holds a discriminator" in err and "--disc" in err
    assert not (tmp_path / "x").exists()


@needs_weights
def test_an_imported_model_predicts_tests_exports_serves_and_fine_tunes(tmp_path, capsys):
    folder = _import(tmp_path, capsys, "unet128_ngf8_instance")
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (150, 90), "white").save(images / "a.png")
    code, _, err = run(["predict", "--ckpt", str(folder), "--input", str(images), "--output", str(tmp_path / "out")], capsys)
    assert code == 0, err
    assert Image.open(tmp_path / "out" / "a.png").size == (150, 90)

    data = write_ab_folder(tmp_path / "ab", split="val", count=2, size=(128, 128))
    code, _, err = run(["test", "--ckpt", str(folder), "--mode", "eval", "--out", str(tmp_path / "test"),
                        "--data", f"{{root: {data}, load_size: 128, crop_size: 128}}"], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "test" / "metrics.json").read_text())["count"] == 2

    code, out, err = run(["export", "--ckpt", str(folder), "--format", "exported-program", "--out", str(tmp_path / "g.pt2")], capsys)
    assert code == 0, err

    flask = pytest.importorskip("flask")
    from p2p_core.demo import server as demo_server

    limits = demo_server.Limits(max_bytes=10**6, max_pixels=10**6, max_busy=1, timeout_s=5)
    app = demo_server.create_app(trained=load_generator(folder, mode="eval"), device=torch.device("cpu"), seed=0, limits=limits)
    upload = io.BytesIO()
    Image.new("RGB", (40, 30), "white").save(upload, format="PNG")
    response = app.test_client().post("/translate", data={"image": (io.BytesIO(upload.getvalue()), "a.png")})
    assert response.status_code == 200 and Image.open(io.BytesIO(response.data)).size == (40, 30)
    del flask

    write_ab_folder(tmp_path / "ab", split="train", count=2, size=(128, 128))
    code, _, err = run(["fit", "--init_from", str(folder), "--data", "aligned", "--data.root", str(data), "--data.load_size", "128",
                        "--data.crop_size", "128", "--disc", "pixel", "--disc.ndf", "4", "--trainer.max_steps", "1",
                        "--trainer.num_workers", "0", "--trainer.progress", "false", "--out_dir", str(tmp_path), "--name", "tuned"],
                       capsys)
    assert code == 0, err
    tuned = checkpoint.read(tmp_path / "tuned")
    imported = checkpoint.read(folder)
    # The architecture the weights fit, taken from the import (the parser adds the options it left at their defaults).
    assert tuned.spec.run.generator.name == "unet"
    assert imported.spec.run.generator.options.items() <= tuned.spec.run.generator.options.items()
    assert tuned.state["step"] == 1
    moved = [key for key, value in imported.state["models"]["generator"].items()
             if not torch.equal(value, tuned.state["models"]["generator"][key])]
    assert moved  # it trained from the imported weights...
    start = checkpoint.read(folder).state["models"]["generator"]["encoder.0.1.weight"]
    assert (tuned.state["models"]["generator"]["encoder.0.1.weight"] - start).abs().max() < 0.01  # ...one small step away


@needs_weights
def test_pretrained_name_downloads_imports_once_and_predicts(server, tmp_path, capsys):  # noqa: F811
    weights = (WEIGHTS / "unet256_ngf8_batch.pth").read_bytes()  # ngf 8: the user's own model, vouched for by its hash
    server.bodies["/env/facades_label2photo.pth"] = weights
    code, _, err = run(["pretrained", "download", "facades_label2photo", "--sha256", hashlib.sha256(weights).hexdigest()], capsys)
    assert code == 0, err
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (64, 48), "blue").save(images / "a.png")
    for attempt in range(2):
        code, _, err = run(["predict", "--ckpt", "pretrained:facades_label2photo", "--input", str(images),
                            "--output", str(tmp_path / f"out{attempt}"), "--mode", "eval"], capsys)
        assert code == 0, err
    assert server.requests["/env/facades_label2photo.pth"] == 1  # the second use is a cache hit
    assert torch.equal(torch.tensor(list(Image.open(tmp_path / "out0" / "a.png").getdata())),
                       torch.tensor(list(Image.open(tmp_path / "out1" / "a.png").getdata())))
    folder = tmp_path / "cache" / "pretrained" / "facades_label2photo"
    (next((tmp_path / "cache" / "pretrained").rglob("facades_label2photo.pth"))).write_bytes(weights[:-1] + b"x")
    code, _, err = run(["predict", "--ckpt", "pretrained:facades_label2photo", "--input", str(images),
                        "--output", str(tmp_path / "out2")], capsys)
    assert code != 0 and "changed after it was downloaded" in err  # a file swapped in the cache is caught on use
    loaded = checkpoint.read(folder)
    assert loaded.state["source"]["generator"]["url"] == f"{server.base}/env/facades_label2photo.pth"
    assert loaded.spec.run.data.options == {"root": "datasets/facades", "direction": "BtoA", "load_size": 286, "crop_size": 256}
    assert loaded.spec.run.generator.options["dropout_placement"] == "reference"


def test_an_unknown_pretrained_name_suggests_the_closest(server, tmp_path, capsys):  # noqa: F811
    (tmp_path / "in").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "in" / "a.png")
    code, _, err = run(["predict", "--ckpt", "pretrained:facades", "--input", str(tmp_path / "in"), "--output", str(tmp_path / "x")], capsys)
    # Installed plugins' entries may be suggested beside it (p2p-plugin-cyclegan's facades_photo2label).
    suggested = err.partition("did you mean ")[2].partition("?")[0]
    assert code == 2 and "unknown pretrained model 'facades'" in err and "'facades_label2photo'" in suggested
    code, _, err = run(["predict", "--ckpt", "pretrained:edges", "--input", str(tmp_path / "in"), "--output", str(tmp_path / "x")], capsys)
    assert code == 2 and "did you mean 'edges2shoes'?" in err  # a prefix is close too
    assert not server.requests


def test_data_download_then_fit_with_its_recipe(server, tmp_path, capsys, monkeypatch):  # noqa: F811
    server.bodies["/env/facades.tar.gz"] = dataset_archive("facades")
    monkeypatch.chdir(tmp_path)
    code, out, err = run(["data", "download", "facades", "--trust_unpinned"], capsys)
    assert code == 0, err
    assert "datasets/facades is ready" in out and "p2p fit --config facades" in out
    # The recipe by name, from a folder outside the checkout: it is installed with p2p.
    code, _, err = run(["fit", "--config", "facades", "--generator.ngf", "4", "--disc.ndf", "4", "--data.load_size", "36",
                        "--data.crop_size", "32", "--trainer.max_steps", "1", "--trainer.num_workers", "0",
                        "--trainer.progress", "false"], capsys)
    assert code == 0, err
    assert checkpoint.read(tmp_path / "runs" / "facades").spec.run.data.options["root"] == "datasets/facades"


def _reference_file(path: Path, **options) -> Path:
    from test_reference_import import reference_layout, unet

    torch.save(reference_layout(unet(in_channels=3, out_channels=3, **options)), path)
    return path


def test_import_predict_and_export_refuse_a_network_that_needs_more_memory_than_the_limit(tmp_path, capsys):
    """284 KB describing a U-Net 16 levels deep: each image is padded to 65536 pixels a side before it runs."""
    deep = _reference_file(tmp_path / "deep.pth", depth=16, image_size=2**16, ngf=1)
    code, _, err = run(["import", str(deep), "--out", str(tmp_path / "deep")], capsys)
    assert code != 0 and "p2p: error:" in err and "--max_memory_gb" in err and "Traceback" not in err
    assert not (tmp_path / "deep").exists()
    code, _, err = run(["import", str(deep), "--out", str(tmp_path / "deep"), "--max_memory_gb", "100000"], capsys)
    assert code == 0, err
    (tmp_path / "in").mkdir()
    Image.new("RGB", (64, 64)).save(tmp_path / "in" / "a.png")
    code, _, err = run(["predict", "--ckpt", str(tmp_path / "deep"), "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")], capsys)
    assert code != 0 and "--max_memory_gb" in err and not (tmp_path / "out").exists()
    code, _, err = run(["export", "--ckpt", str(tmp_path / "deep"), "--format", "exported-program", "--out", str(tmp_path / "g.pt2")], capsys)
    assert code != 0 and "--max_memory_gb" in err and not (tmp_path / "g.pt2").exists()


def test_fine_tuning_from_a_model_with_nan_weights_is_refused_naming_the_tensor(tmp_path, capsys):
    code, _, err = run(["import", str(_reference_file(tmp_path / "g.pth", depth=5, image_size=32)), "--out", str(tmp_path / "g")], capsys)
    assert code == 0, err
    state = checkpoint.read(tmp_path / "g").state
    state["models"]["generator"]["decoder.2.1.weight"][0, 0, 0, 0] = float("nan")
    checkpoint.save(state, tmp_path / "diverged", 0)
    data = write_ab_folder(tmp_path / "ab", count=2, size=(32, 32))
    code, _, err = run(["fit", "--init_from", str(tmp_path / "diverged"), "--data", "aligned", "--data.root", str(data),
                        "--data.load_size", "32", "--data.crop_size", "32", "--trainer.max_steps", "1", "--trainer.num_workers", "0",
                        "--trainer.progress", "false", "--out_dir", str(tmp_path), "--name", "tuned"], capsys)
    assert code != 0 and "decoder.2.1.weight" in err and "NaN" in err and "Traceback" not in err

"""p2p export --format safetensors: the file alone rebuilds the generator, every --ckpt reads it, nothing is unpickled,
and a file whose spec was tampered with fails with one clear line before anything is built."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from conftest import fit_tiny, run
from p2p_core.cli import main
from p2p_core.inference import load_generator
from p2p_core.model import Pix2Pix
from p2p_core.weights import METADATA_KEY

SEED_INPUT = torch.Generator().manual_seed(1)
IMAGE = torch.rand(1, 3, 16, 32, generator=SEED_INPUT) * 2 - 1


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny run and its safetensors export."""
    root = tmp_path_factory.mktemp("safetensors")
    folder = fit_tiny(root)
    main(["export", "--ckpt", str(folder), "--format", "safetensors", "--out", str(root / "model.safetensors")])
    return folder, root / "model.safetensors"


def hand_built(tmp_path: Path, source: Path, *, edit_spec=None, tensors=None, metadata=None) -> Path:
    """``source`` rewritten with its spec edited, other tensors or other metadata: what a hostile uploader can do."""
    with safe_open(source, framework="pt") as handle:
        stored = dict(handle.metadata())
    description = json.loads(stored[METADATA_KEY])
    if edit_spec is not None:
        edit_spec(description)
    path = tmp_path / "hostile.safetensors"
    save_file(load_file(source) if tensors is None else tensors, path,
              metadata={METADATA_KEY: json.dumps(description)} if metadata is None else metadata)
    return path


def test_the_file_alone_rebuilds_the_generator_and_translates_as_the_run(trained, monkeypatch: pytest.MonkeyPatch):
    folder, file = trained
    expected = load_generator(folder, mode="eval")

    def no_unpickling(*args, **kwargs):
        raise AssertionError("a safetensors file was read with torch.load")

    monkeypatch.setattr(torch, "load", no_unpickling)
    rebuilt = load_generator(file, mode="eval")
    with torch.no_grad():
        assert torch.equal(rebuilt.module(IMAGE), expected.module(IMAGE))
    # The file holds the one generator: the run's spec and shapes, and that network alone.
    assert (rebuilt.trained.run, rebuilt.trained.shapes, rebuilt.step) == (expected.trained.run, expected.trained.shapes, expected.step)
    assert rebuilt.trained.networks == {"generator": expected.shape} and rebuilt.trained.directions == {"AtoB": "generator"}


def test_the_metadata_holds_the_spec_mode_plugins_and_providers(trained):
    folder, file = trained
    with safe_open(file, framework="pt") as handle:
        description = json.loads(handle.metadata()[METADATA_KEY])
    assert description["spec"]["generator"]["name"] == "unet" and description["spec"]["generator"]["ngf"] == 4
    assert description["shapes"] == {"in_channels": 3, "out_channels": 3, "image_size": 16, "disc_in_channels": 6}
    assert description["mode"] == "eval" and description["step"] == 1
    assert description["providers"]["generator"].startswith("p2p ") and "p2p" in description["plugins"]
    assert description["source"] == "run/step_00000001.pt"  # no folder of this machine in a file to share


def test_a_model_folder_and_fit_init_from_read_it(trained, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    _, file = trained
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(file.read_bytes())
    assert load_generator(folder, mode="eval").path == folder / "model.safetensors"
    code, _, err = run([
        "fit", "--init_from", str(file), "--data", "synthetic", "--data.length", "2", "--data.load_size", "18",
        "--data.crop_size", "16", "--trainer.max_steps", "1", "--trainer.num_workers", "0", "--trainer.progress", "false",
        "--out_dir", str(tmp_path / "runs"), "--name", "tuned",
    ], capsys)  # fmt: skip
    assert code == 0, err
    tuned = load_generator(tmp_path / "runs" / "tuned", mode="eval")
    assert tuned.trained.run.generator == load_generator(file, mode="eval").trained.run.generator


def huge_ngf(description: dict) -> None:
    description["spec"]["generator"]["ngf"] = 2**16  # the largest the U-Net takes: built for real, terabytes


def unknown_generator(description: dict) -> None:
    description["spec"]["generator"]["name"] = "unett"


def third_party_generator(description: dict) -> None:
    description["spec"]["generator"]["name"] = "p2p-plugin-absent:fancy"
    description["providers"]["generator"] = "p2p-plugin-absent 2.1"


def negative_channels(description: dict) -> None:
    description["shapes"]["in_channels"] = -3


@pytest.mark.parametrize(("edit", "message"), [
    (huge_ngf, "needs encoder.0.1.weight of shape (65536, 3, 4, 4), but the checkpoint holds (4, 3, 4, 4)"),
    (unknown_generator, "unknown generator 'unett'; did you mean 'unet'"),
    (third_party_generator, "pip install 'p2p-plugin-absent==2.1'"),
    (negative_channels, "shapes.in_channels must be a positive whole number"),
])  # fmt: skip
def test_a_hostile_spec_fails_with_one_clear_line_and_builds_nothing(trained, tmp_path: Path, capsys, edit, message):
    hostile = hand_built(tmp_path, trained[1], edit_spec=edit)
    code, _, err = run(["test", "--ckpt", str(hostile), "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and message in err and "Traceback" not in err
    assert err.count("p2p: error:") == 1 and not (tmp_path / "out").exists()


def test_weights_that_do_not_fit_the_spec_are_refused(trained, tmp_path: Path, capsys):
    tensors = load_file(trained[1])
    tensors["encoder.0.1.weight"] = tensors["encoder.0.1.weight"][:2].contiguous()
    hostile = hand_built(tmp_path, trained[1], tensors=tensors)
    code, _, err = run(["export", "--ckpt", str(hostile), "--format", "safetensors", "--out", str(tmp_path / "x.safetensors")], capsys)
    assert code == 2 and "needs encoder.0.1.weight of shape (4, 3, 4, 4), but the checkpoint holds (2, 3, 4, 4)" in err


@pytest.mark.parametrize(("metadata", "message"), [
    ({}, "no p2p spec"),
    ({METADATA_KEY: "{not json"}, "metadata is not JSON"),
    ({METADATA_KEY: "[1, 2]"}, "must be a JSON object"),
])  # fmt: skip
def test_safetensors_without_a_p2p_spec_are_named_as_such(trained, tmp_path: Path, capsys, metadata, message):
    plain = hand_built(tmp_path, trained[1], metadata=metadata)
    code, _, err = run(["test", "--ckpt", str(plain)], capsys)
    assert code == 2 and message in err and str(plain) in err and "Traceback" not in err


def test_a_truncated_file_is_a_clear_error(trained, tmp_path: Path, capsys):
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(trained[1].read_bytes()[:-100])
    code, _, err = run(["test", "--ckpt", str(cut)], capsys)
    assert code == 2 and str(cut) in err and "Traceback" not in err


def test_fit_init_from_a_hostile_file_fails_before_building_anything(trained, tmp_path: Path, capsys, monkeypatch):
    hostile = hand_built(tmp_path, trained[1], edit_spec=huge_ngf)

    def no_build(*args, **kwargs):
        raise AssertionError("the networks were built before the spec was checked against the weights")

    monkeypatch.setattr(Pix2Pix, "build", no_build)
    code, _, err = run(["fit", "--init_from", str(hostile), "--data.length", "2", "--data.load_size", "18", "--data.crop_size", "16",
                        "--out_dir", str(tmp_path / "runs")], capsys)  # fmt: skip
    assert code == 2 and "needs encoder.0.1.weight of shape (65536, 3, 4, 4)" in err and "Traceback" not in err

"""`p2p` from the command line: training end to end, and clear errors for bad input."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from conftest import SMOKE, TINY_DATA, fit_smoke, run, write_ab_folder
from p2p_core import checkpoint
from p2p_core.spec import ComponentSpec

def test_fit_writes_config_checkpoints_and_tensorboard_events_that_predict_reuses(tmp_path, capsys):
    run_dir = fit_smoke(tmp_path, capsys)
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["generator"]["name"] == "unet" and config["generator"]["ngf"] == 8 and config["loss"] == "cgan+l1"
    assert [p.name for p in checkpoint.checkpoints(run_dir)] == ["step_00000002.pt", "step_00000004.pt"]
    assert list(run_dir.glob("events.out.tfevents.*"))

    loaded = checkpoint.read(run_dir)
    assert loaded.state["step"] == 4
    assert loaded.spec.run.generator.name == "unet"
    assert loaded.spec.plugins["p2p"]

    inputs = tmp_path / "inputs"
    inputs.mkdir()
    Image.new("RGB", (50, 40), "red").save(inputs / "a.png")
    code, out, err = run(["predict", "--ckpt", str(run_dir), "--input", str(inputs), "--output", str(tmp_path / "out")], capsys)
    assert code == 0, err
    assert Image.open(tmp_path / "out" / "a.png").size == (50, 40)


def test_tensorboard_holds_every_loss_term_lr_speed_and_an_image_grid(tmp_path, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    started = time.perf_counter()
    run_dir = fit_smoke(tmp_path, capsys, "--trainer.batch_size", "2")
    took = time.perf_counter() - started
    events = EventAccumulator(str(run_dir)).Reload()
    assert {"loss/G/cgan", "loss/G/l1", "loss/D/cgan", "lr", "perf/images_per_sec"} <= set(events.Tags()["scalars"])
    assert events.Tags()["images"] == ["train/input|output|target"]
    # The smoke recipe: 4 steps, scalars and a grid every 2, and at the first and the last step whatever the interval.
    logged = [step for step in range(1, 5) if step % 2 == 0 or step in (1, 4)]
    assert [event.step for event in events.Scalars("loss/G/l1")] == logged
    assert [event.step for event in events.Images("train/input|output|target")] == logged
    # Each speed is the interval's images over its time, which the whole run's time bounds: 2 images a step.
    images = [2 * (step - before) for before, step in zip([0, *logged], logged)]
    assert all(event.value * took >= count for event, count in zip(events.Scalars("perf/images_per_sec"), images, strict=True))
    # One row of input, output and target per sample (2 here), 64 x 64 pixels each, 2 pixels apart.
    grid = events.Images("train/input|output|target")[0]
    assert (grid.width, grid.height) == (3 * 66 + 2, 2 * 66 + 2)


def test_the_tensorboard_grid_shows_the_images_values_unstretched(tmp_path, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    # A flat dark input and a flat light target: a grid stretched to its own darkest and brightest pixels (what
    # make_grid does without a value range) would show them otherwise, and the output's range would decide how.
    (tmp_path / "flat" / "train").mkdir(parents=True)
    pair = np.concatenate([np.full((64, 64, 3), 64, np.uint8), np.full((64, 64, 3), 192, np.uint8)], axis=1)
    Image.fromarray(pair).save(tmp_path / "flat" / "train" / "0.png")
    run_dir = fit_smoke(tmp_path, capsys, "--data", "aligned", "--data.root", str(tmp_path / "flat"),
                        "--data.load_size", "64", "--data.crop_size", "64", "--trainer.max_steps", "1")
    grid = EventAccumulator(str(run_dir)).Reload().Images("train/input|output|target")[0]
    pixels = np.asarray(Image.open(io.BytesIO(grid.encoded_image_string)).convert("RGB")).astype(int)
    # The first row: input, output and target, 64 pixels each, 2 apart.
    assert np.abs(pixels[2:66, 2:66] - 64).max() <= 1
    assert np.abs(pixels[2:66, 134:198] - 192).max() <= 1


def test_resuming_a_finished_run_trains_no_further(tmp_path, capsys):
    run_dir = fit_smoke(tmp_path, capsys)
    before = checkpoint.read(run_dir).state["models"]["generator"]
    code, _, err = run(["fit", "--resume", str(run_dir)], capsys)
    assert code == 0 and "at step 4 of 4" in err, err
    after = checkpoint.read(run_dir)
    assert after.state["step"] == 4
    assert all(torch.equal(before[name], tensor) for name, tensor in after.state["models"]["generator"].items())


def test_short_names_and_per_component_options_on_the_command_line(tmp_path, capsys):
    args = ["fit", "--generator", "encoder_decoder", "--disc", "patch16", "--generator.ngf", "4", "--disc.ndf", "4",
            "--loss", "gan+l1", "--data.length", "2", *TINY_DATA, "--trainer.max_steps", "1", "--trainer.num_workers", "0",
            "--trainer.progress", "false", "--out_dir", str(tmp_path), "--name", "r"]
    code, _, err = run(args, capsys)
    assert code == 0, err
    trained = checkpoint.read(tmp_path / "r").spec
    assert trained.run.generator.name == "encoder_decoder"
    assert trained.run.disc == ComponentSpec("patch16", {"ndf": 4, "norm": "batch"}) and trained.shapes.disc_in_channels == 3


@pytest.mark.parametrize(("loss", "disc_channels"), [("l1", None), ("gan", 3), ("cgan", 6), ("gan+l1", 3), ("cgan+l1", 6)])
def test_all_five_objectives_of_table_1_train(tmp_path, capsys, loss, disc_channels):
    run_dir = fit_smoke(tmp_path, capsys, "--loss", loss, "--trainer.max_steps", "1")
    trained = checkpoint.read(run_dir).spec
    assert trained.shapes.disc_in_channels == disc_channels and trained.adversarial == (disc_channels is not None)


def test_saved_config_reproduces_the_run(tmp_path, capsys):
    first = fit_smoke(tmp_path, capsys)
    code, _, err = run(["fit", "--config", str(first / "config.yaml"), "--name", "again"], capsys)
    assert code == 0, err
    a, b = checkpoint.load(first), checkpoint.load(tmp_path / "runs" / "again")
    for key, value in a["models"]["generator"].items():
        assert torch.equal(value, b["models"]["generator"][key]), key


@pytest.mark.parametrize("length", [8, 2], ids=["mid-epoch", "epoch-boundary"])
def test_resume_continues_to_the_same_weights_as_an_uninterrupted_run(tmp_path, capsys, length):
    # The smoke recipe decays the learning rate over its second half, so a lost schedule step would show.
    straight = fit_smoke(tmp_path, capsys, "--data.length", str(length))
    fit_smoke(tmp_path, capsys, "--data.length", str(length), "--name", "split")
    split = tmp_path / "runs" / "split"
    # As if killed after the step-2 checkpoint: the step-4 one never happened.
    for path in checkpoint.checkpoints(split)[1:]:
        path.unlink()
        path.with_suffix(".sha256").unlink()
    code, _, err = run(["fit", "--resume", str(split)], capsys)
    assert code == 0, err
    assert "resuming" in err
    a, b = checkpoint.load(straight), checkpoint.load(tmp_path / "runs" / "split")
    assert b["step"] == 4
    for role in ("generator", "discriminator"):
        for key, value in a["models"][role].items():
            assert torch.equal(value, b["models"][role][key]), (role, key)


def test_fit_on_real_outlines(tmp_path, capsys, outlines):
    args = ["--data", "aligned", "--data.root", str(outlines), "--data.direction", "BtoA", *TINY_DATA, "--trainer.max_steps", "2"]
    run_dir = fit_smoke(tmp_path, capsys, *args)
    assert checkpoint.load(run_dir)["step"] == 2
    code, _, err = run(["predict", "--ckpt", str(run_dir), "--input", str(outlines / "val"), "--output", str(tmp_path / "out"),
                        "--mode", "eval"], capsys)
    assert code == 0, err
    assert len(list((tmp_path / "out").glob("*.png"))) == len(list((outlines / "val").glob("*.jpg")))


def test_print_config_shows_the_resolved_defaults(capsys):
    code, out, _ = run(["fit", "--print_config"], capsys)
    printed = yaml.safe_load(out)
    assert code == 0
    assert printed["generator"]["name"] == "unet" and printed["generator"]["ngf"] == 64
    assert printed["trainer"]["lr"] == 2e-4 and printed["trainer"]["beta1"] == 0.5


def test_list_and_describe(capsys):
    code, out, _ = run(["list", "disc"], capsys)
    assert code == 0 and "patch70" in out and f"p2p {version('p2p')}" in out and "unet" not in out
    code, out, _ = run(["describe", "generator", "unet"], capsys)
    assert code == 0 and "--generator.ngf" in out and "in_channels" in out


def test_console_script_runs_as_a_module():
    result = subprocess.run([sys.executable, "-m", "p2p_core", "list", "generator"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "encoder_decoder" in result.stdout


# -- bad input: a clear message and exit code 2, never a traceback -------------------------------------------


def broken_dataset(tmp_path: Path, kind: str) -> Path:
    root = write_ab_folder(tmp_path / kind, count=2)
    train = root / "train"
    if kind == "empty":
        for path in train.iterdir():
            path.unlink()
    elif kind == "corrupt":
        (train / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    elif kind == "odd":
        Image.new("RGB", (41, 20)).save(train / "0.png")
    elif kind == "small":
        Image.new("RGB", (40, 10)).save(train / "0.png")
    return root


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--generator", "unett"], "unknown generator 'unett'; did you mean 'unet'? available: encoder_decoder, unet"),
        (["--disc", "patch7"], "did you mean 'patch70'"),
        (["--loss", "cgan+l2"], "unknown loss 'l2'; did you mean 'l1'?"),
        (["--loss", "gan+cgan"], "disagree on what the one discriminator sees"),
        (["--data", "aligned", "--data.root", "/no/such/folder"], "data folder /no/such/folder/train does not exist"),
        (["--generator.ngf", "many"], "many"),
        (["--config", SMOKE, "--generator.depth", "0"],
         "depth (stride-2 blocks) must be at least 2, got 0; leave it unset to fit the image size (6 for 64)"),
        (["--trainer.device", "tpu"], "tpu"),
        pytest.param(["--config", SMOKE, "--trainer.device", "cuda"],
                     "--trainer.device cuda was asked for, but torch sees no CUDA device; use auto or cpu",
                     marks=pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")),
        (["--config", SMOKE, "--name", "../up"], "--name '../up' is not a single name (no /, no ..)"),
        (["--config", SMOKE, "--trainer.n_epochs", "0", "--trainer.n_epochs_decay", "0"],
         "the run has no steps: set --trainer.n_epochs, --trainer.n_epochs_decay or --trainer.max_steps above 0"),
        (["--config", "nope.yaml"], "config 'nope.yaml' is neither a file nor a recipe name"),
    ],
)
def test_bad_options_exit_2_with_a_message(tmp_path, capsys, args, message):
    code, _, err = run(["-p", "p2p", "fit", *args, "--out_dir", str(tmp_path)], capsys)  # built-ins only
    assert code == 2
    assert message in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("kind", "extra", "message", "caught_before_training"),
    [
        ("empty", [], "holds no images", True),
        ("corrupt", [], "cannot read image", False),  # the second file: found by a loader worker mid-run
        ("odd", [], "0.png: width 41 is odd", True),
        ("small", ["--data.preprocess", "crop"], "0.png: image 10x20 is smaller than crop_size 32", True),
    ],
)
def test_bad_data_exits_2_naming_the_file(tmp_path, capsys, kind, extra, message, caught_before_training):
    root = broken_dataset(tmp_path, kind)
    args = ["fit", "--config", SMOKE, "--data", "aligned", "--data.root", str(root), *TINY_DATA, *extra,
            "--trainer.num_workers", "1", "--out_dir", str(tmp_path / "runs")]
    code, _, err = run(args, capsys)
    assert code == 2, err
    assert message in err
    assert "Traceback" not in err
    assert (tmp_path / "runs").exists() is not caught_before_training


def test_demo_without_flask_says_how_to_install_it_before_loading_anything(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "flask", None)  # how importlib sees a package that is not installed
    code, _, err = run(["demo", "--ckpt", str(tmp_path / "no-such-run")], capsys)
    assert code == 2
    assert "p2p demo needs Flask, which is not installed: pip install -e '.[demo]'" in err
    assert "Traceback" not in err


def test_an_existing_run_folder_is_never_overwritten(tmp_path, capsys):
    run_dir = fit_smoke(tmp_path, capsys)
    before = (run_dir / "config.yaml").read_text()
    code, _, err = run(["fit", "--config", SMOKE, "--out_dir", str(tmp_path / "runs"), "--name", "smoke", "--generator.ngf", "4"], capsys)
    assert code == 2 and "already exists" in err and "--resume" in err
    assert (run_dir / "config.yaml").read_text() == before

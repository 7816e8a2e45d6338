"""The ``cyclegan`` method through p2p's own commands: it trains, resumes exactly after SIGKILL, trains under DDP,
and its two generators predict, test, export and serve, one per direction."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from p2p_core import checkpoint
from p2p_core.cli import main
from p2p_core.demo.server import Limits, create_app
from p2p_core.inference import load_generator
from p2p_cyclegan.method import ImagePool

TINY = [
    "--method", "cyclegan", "--generator", "resnet9", "--generator.ngf", "4", "--generator.n_blocks", "1",
    "--generator.norm", "instance", "--disc", "patch16", "--disc.ndf", "4", "--disc.norm", "instance",
    "--data", "synthetic_unpaired", "--data.length", "4", "--data.load_size", "36", "--data.crop_size", "32",
    "--method.pool_size", "2", "--trainer.num_workers", "0", "--trainer.progress", "false",
]  # fmt: skip


def fit(out: Path, name: str, *extra: str) -> Path:
    main(["fit", *TINY, "--trainer.max_steps", "3", "--out_dir", str(out), "--name", name, *extra])
    return out / name


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return fit(tmp_path_factory.mktemp("cyclegan"), "run")


def weights(run: Path) -> dict[str, torch.Tensor]:
    models = checkpoint.load(run)["models"]
    return {f"{role}.{name}": tensor for role, state in models.items() for name, tensor in state.items()}


def test_cyclegan_trains_four_networks_with_lsgan_by_default_and_records_both_directions(run_dir):
    state = checkpoint.load(run_dir)
    assert state["spec"]["method"]["name"] == "cyclegan" and state["spec"]["loss"] == "lsgan"
    assert state["spec"]["loss_options"] == {"lsgan": {"conditional": False, "weight": 1.0}}
    assert set(state["models"]) == {"generator_ab", "generator_ba", "disc_a", "disc_b"}
    assert set(state["optimizers"]) == {"generators", "discriminators"}
    assert state["directions"] == {"AtoB": "generator_ab", "BtoA": "generator_ba"}
    assert state["providers"]["method"].startswith("p2p-plugin-cyclegan ")
    assert [tuple(images.shape[1:]) for images in state["method_state"]["pools"].values()] == [(3, 32, 32)] * 2


def test_a_conditional_adversarial_term_is_refused_with_the_fix(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["fit", *TINY, "--loss", "cgan", "--out_dir", str(tmp_path), "--name", "conditional"])
    error = capsys.readouterr().err
    assert "cyclegan trains --loss 'cgan'" in error and "--loss gan" in error
    assert not (tmp_path / "conditional").exists()


def test_a_gradient_penalty_trains_both_discriminators_beside_an_unconditional_term(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = fit(tmp_path, "r1", "--loss", "lsgan+r1", "--loss_options.lsgan.conditional", "false",
              "--loss_options.r1.conditional", "false")
    logged = set(EventAccumulator(str(run)).Reload().Tags()["scalars"])
    assert {"loss/D_A/r1", "loss/D_B/r1"} <= logged and not {"loss/G_AB/r1", "loss/G_BA/r1"} & logged


@pytest.mark.parametrize("direction", ["AtoB", "BtoA"])
def test_each_direction_predicts_tests_exports_and_serves_with_its_own_generator(run_dir, tmp_path, direction, capsys):
    role = {"AtoB": "generator_ab", "BtoA": "generator_ba"}[direction]
    loaded = load_generator(run_dir, mode="eval", direction=direction)
    stored = checkpoint.load(run_dir)["models"][role]
    assert all(torch.equal(loaded.module.state_dict()[name], tensor) for name, tensor in stored.items())

    images = tmp_path / "in"
    images.mkdir()
    Image.new("RGB", (40, 32), (200, 30, 30)).save(images / "a.png")
    main(["predict", "--ckpt", str(run_dir), "--input", str(images), "--output", str(tmp_path / "out"),
          "--direction", direction, "--mode", "eval", "--backend", "torch", "--progress", "false"])
    assert Image.open(tmp_path / "out" / "a.png").size == (40, 32)

    main(["test", "--ckpt", str(run_dir), "--direction", direction, "--mode", "eval", "--backend", "torch",
          "--out", str(tmp_path / "page")])
    assert json.loads((tmp_path / "page" / "metrics.json").read_text())["checkpoint"].endswith(".pt")

    main(["export", "--ckpt", str(run_dir), "--direction", direction, "--format", "onnx", "--out", str(tmp_path / "g.onnx")])
    import onnxruntime

    session = onnxruntime.InferenceSession(str(tmp_path / "g.onnx"))
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    (exported,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        assert torch.allclose(torch.from_numpy(exported), loaded.module(x), atol=1e-4)

    app = create_app(trained=loaded, device=torch.device("cpu"), seed=0, backend="torch",
                     limits=Limits(max_bytes=10**6, max_pixels=10**6, max_busy=1, timeout_s=5.0))
    with open(images / "a.png", "rb") as upload:
        answer = app.test_client().post("/translate", data={"image": (upload, "a.png")}, content_type="multipart/form-data")
    assert answer.status_code == 200 and answer.mimetype == "image/png"
    capsys.readouterr()


def test_the_image_pool_returns_its_images_or_older_ones_and_round_trips():
    torch.manual_seed(0)
    pool = ImagePool(2)
    first, second = torch.zeros(2, 1, 2, 2), torch.ones(2, 1, 2, 2)
    assert torch.equal(pool.query(first), first)  # filling: the new images themselves
    mixed = pool.query(second)
    assert {float(image.mean()) for image in mixed} <= {0.0, 1.0}
    kept = ImagePool(2)
    kept.load_state_dict(pool.state_dict())
    torch.manual_seed(1)
    expected = pool.query(first + 2)
    torch.manual_seed(1)
    assert torch.equal(kept.query(first + 2), expected)
    assert torch.equal(ImagePool(0).query(second), second)


def fit_process(out: Path, name: str, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "p2p_core", "fit"]
    command += extra if extra[:1] == ("--resume",) else [*TINY, "--out_dir", str(out), "--name", name, *extra]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_a_run_killed_mid_training_resumes_to_the_weights_and_pools_of_an_uninterrupted_one(tmp_path):
    steps = ["--trainer.max_steps", "8", "--trainer.checkpoint_every", "1"]
    assert fit_process(tmp_path, "straight", *steps).wait(timeout=300) == 0
    process = fit_process(tmp_path, "killed", *steps)
    third = tmp_path / "killed" / checkpoint.FOLDER / "step_00000003.pt"
    deadline = time.monotonic() + 300
    while not third.is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.kill()
    process.wait(timeout=30)
    resumed_at = checkpoint.load(tmp_path / "killed")["step"]
    assert 3 <= resumed_at < 8  # killed while training, so the resume below proves something
    resumed = fit_process(tmp_path, "", "--resume", str(tmp_path / "killed"))
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    expected, found = weights(tmp_path / "straight"), weights(tmp_path / "killed")
    assert expected.keys() == found.keys() and all(torch.equal(expected[k], found[k]) for k in expected)
    pools = [checkpoint.load(tmp_path / run)["method_state"]["pools"] for run in ("straight", "killed")]
    assert all(torch.equal(pools[0][role], pools[1][role]) for role in pools[0])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="torchrun's CPU processes")
def test_cyclegan_trains_in_two_processes(tmp_path):
    result = subprocess.run([sys.executable, "-m", "p2p_core", "fit", *TINY, "--trainer.nproc", "2", "--trainer.max_steps", "2",
                             "--trainer.dist_timeout", "120", "--out_dir", str(tmp_path), "--name", "ddp"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    state = checkpoint.load(tmp_path / "ddp")
    assert state["step"] == 2 and set(state["models"]) == {"generator_ab", "generator_ba", "disc_a", "disc_b"}


def test_a_safetensors_export_holds_one_direction_and_says_so(run_dir, tmp_path, capsys):
    main(["export", "--ckpt", str(run_dir), "--direction", "BtoA", "--format", "safetensors", "--out", str(tmp_path / "ba.safetensors")])
    alone = load_generator(tmp_path / "ba.safetensors", mode="eval", direction="BtoA")
    stored = checkpoint.load(run_dir)["models"]["generator_ba"]
    assert all(torch.equal(alone.module.state_dict()[name], tensor) for name, tensor in stored.items())
    with pytest.raises(Exception, match="translates BtoA only, not AtoB; use --direction BtoA"):
        load_generator(tmp_path / "ba.safetensors", mode="eval")
    capsys.readouterr()

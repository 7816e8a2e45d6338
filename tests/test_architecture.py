"""The structure's promises: one registry for every command, one loader with the damaged-file fallback, a light
start-up, help that lists a component's own options, progress a log can read, and old runs that keep working."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

from conftest import SMOKE, TINY_GENERATOR, fit_smoke, run
from p2p_core import checkpoint, distributed
from p2p_core.registry import DISABLE_AUTOLOAD_ENV, default_registry, load_registry

FORMAT_1 = Path(__file__).parent / "data" / "format1"
"""A run folder written by p2p before the run spec existed (format 1 checkpoint, class_path config)."""

TINY_PLUGIN = {
    "modules": {"fake_tiny": TINY_GENERATOR + "\n@p2p_core.hookimpl\ndef p2p_generators():\n    return {'tiny': Tiny}\n"},
    "entry_points": {"tiny": "fake_tiny"},
}
SMALL = ["--data.length", "2", "--data.load_size", "32", "--data.crop_size", "32", "--disc", "pixel", "--disc.ndf", "4",
         "--trainer.max_steps", "2", "--trainer.num_workers", "0", "--trainer.progress", "false"]


def _damage_newest(run_dir: Path) -> Path:
    newest = checkpoint.checkpoints(run_dir)[-1]
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    newest.write_bytes(bytes(data))
    return newest


# -- start-up and help -------------------------------------------------------------------------------------------


def test_p2p_help_imports_neither_torch_nor_a_plugin():
    code = "import sys; from p2p_core.cli import main; main(['--help']); print(sorted(m for m in ('torch', 'torchvision', 'p2p_unet') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.splitlines()[-1] == "[]"
    assert "fit" in result.stdout and "predict" in result.stdout


def test_fit_help_lists_the_chosen_components_own_documented_options(capsys):
    code, out, _ = run(["fit", "--help"], capsys)
    assert code == 0
    assert "--generator.ngf" in out and "--data.crop_size" in out and "--loss_options.l1.weight" in out
    assert "Epochs at the initial learning rate" in out  # the trainer's options are described
    assert "torch.nn" not in out and len(out.splitlines()) < 300
    code, out, _ = run(["fit", "--generator", "encoder_decoder", "--disc", "pixel", "--help"], capsys)
    assert "encoder" in out.lower() and "--disc.ndf" in out and "--disc.n_layers" not in out


def test_an_unknown_command_names_the_closest_one(capsys):
    code, _, err = run(["fitt"], capsys)
    assert code == 2 and "unknown command 'fitt'; did you mean 'fit'" in err and "available: bench" in err


# -- options come from the chosen component alone --------------------------------------------------------------


def test_switching_component_drops_the_options_of_the_one_it_replaces(capsys):
    # smoke.yaml sets the U-Net's ngf to 8; the encoder-decoder chosen after it starts from its own defaults.
    code, out, _ = run(["fit", "--config", SMOKE, "--generator", "encoder_decoder", "--print_config"], capsys)
    assert code == 0
    printed = yaml.safe_load(out)["generator"]
    assert printed["name"] == "encoder_decoder" and printed["ngf"] == 64
    code, out, _ = run(["fit", "--config", SMOKE, "--generator.ngf", "16", "--print_config"], capsys)
    assert yaml.safe_load(out)["generator"]["ngf"] == 16  # an option for the same component still applies


def test_config_names_are_checked_against_the_registry_before_anything_is_imported(tmp_path, capsys, monkeypatch):
    (tmp_path / "evilmod.py").write_text(f"open({str(tmp_path / 'imported')!r}, 'w').close()\nclass G: pass\n")
    (tmp_path / "r.yaml").write_text("generator: {class_path: evilmod.G}\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(tmp_path)
    code, _, err = run(["fit", "--config", str(tmp_path / "r.yaml")], capsys)
    assert code == 2 and "unknown generator 'evilmod.G'" in err
    assert not (tmp_path / "imported").exists()


# -- every command gets the registry -p chose -------------------------------------------------------------------


@pytest.fixture
def tiny_run(install_distribution, tmp_path, monkeypatch, capsys) -> Path:
    """A run of a generator only the plugin distribution p2p-fake-tiny provides; autoload off afterwards."""
    install_distribution("p2p-fake-tiny", **TINY_PLUGIN)
    code, _, err = run(["-p", "p2p-fake-tiny", "fit", "--generator", "tiny", *SMALL, "--out_dir", str(tmp_path), "--name", "tiny"], capsys)
    assert code == 0, err
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")
    default_registry.cache_clear()
    yield tmp_path / "tiny"
    default_registry.cache_clear()


def test_export_uses_the_plugins_named_with_p(tiny_run, tmp_path, capsys):
    code, _, err = run(["export", "--ckpt", str(tiny_run), "--format", "exported-program", "--out", str(tmp_path / "a.pt2")], capsys)
    assert code == 2 and "unknown generator 'tiny'" in err  # autoload is off: without -p the plugin is absent
    code, out, err = run(["-p", "p2p-fake-tiny", "export", "--ckpt", str(tiny_run), "--format", "exported-program",
                          "--out", str(tmp_path / "b.pt2")], capsys)
    assert code == 0, err
    assert (tmp_path / "b.pt2").is_file()


def test_a_checkpoint_whose_plugin_is_missing_names_the_distribution_to_install(tiny_run, tmp_path, capsys):
    (tmp_path / "in").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "in" / "a.png")
    code, _, err = run(["predict", "--ckpt", str(tiny_run), "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")], capsys)
    assert code == 2
    assert "trained with generator 'tiny' from p2p-fake-tiny 1.0" in err and "pip install 'p2p-fake-tiny==1.0'" in err


def test_demo_uses_the_plugins_named_with_p(tiny_run, capsys):
    pytest.importorskip("flask")
    with socket.socket() as taken:  # an occupied port: the demo fails only after it has loaded the model
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        code, _, err = run(["-p", "p2p-fake-tiny", "demo", "--ckpt", str(tiny_run), "--port", port], capsys)
    assert code == 2
    assert "cannot listen" in err and "unknown generator" not in err


def test_p_survives_the_relaunch_under_torchrun(monkeypatch, tmp_path, capsys):
    launched: list[list[str]] = []

    class Relaunched(Exception):
        pass

    def execv(program: str, command: list[str]) -> None:
        launched.append(command)
        raise Relaunched

    monkeypatch.delenv(distributed.LAUNCHED_BY_TORCHRUN, raising=False)
    monkeypatch.setattr(distributed.os, "execv", execv)
    with pytest.raises(Relaunched):
        run(["-p", "p2p", "fit", "--config", SMOKE, "--trainer.nproc", "2", "--out_dir", str(tmp_path)], capsys)
    (command,) = launched
    assert command[command.index("p2p_core") + 1:][:3] == ["-p", "p2p", "fit"]


# -- one loader, with the fallback past a damaged checkpoint ----------------------------------------------------


def test_commands_given_a_run_folder_fall_back_past_a_damaged_newest_checkpoint(tmp_path, capsys):
    run_dir = fit_smoke(tmp_path, capsys)
    _damage_newest(run_dir)
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    Image.new("RGB", (20, 12), "blue").save(inputs / "a.png")
    with pytest.warns(UserWarning, match="step_00000004.pt is corrupt.*using step_00000002.pt"):
        code, out, err = run(["predict", "--ckpt", str(run_dir), "--input", str(inputs), "--output", str(tmp_path / "out")], capsys)
    assert code == 0, err
    with pytest.warns(UserWarning, match="using step_00000002.pt"):
        code, out, err = run(["test", "--ckpt", str(run_dir), "--out", str(tmp_path / "test"), "--data", "{length: 1}"], capsys)
    assert code == 0, err
    with pytest.warns(UserWarning, match="using step_00000002.pt"):
        code, out, err = run(["export", "--ckpt", str(run_dir), "--format", "exported-program", "--out", str(tmp_path / "g.pt2")], capsys)
    assert code == 0, err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("command", ["predict", "test"])
def test_a_missing_device_is_named_as_the_user_gave_it(tmp_path, capsys, command):
    (tmp_path / "in").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "in" / "a.png")
    args = {"predict": ["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")], "test": []}[command]
    code, _, err = run([command, "--ckpt", str(FORMAT_1), "--device", "cuda", *args], capsys)
    assert code == 2 and "--device cuda was asked for" in err and "--trainer.device" not in err


# -- a run reports itself ----------------------------------------------------------------------------------------


def test_a_log_file_gets_plain_progress_lines_and_the_first_step_reaches_tensorboard(tmp_path, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    code, _, err = run(["fit", "--config", SMOKE, "--out_dir", str(tmp_path), "--name", "run", "--trainer.progress", "true",
                        "--trainer.log_every", "3", "--trainer.image_every", "3"], capsys)
    assert code == 0, err
    run_dir = tmp_path / "run"
    lines = [line for line in err.splitlines() if line.startswith("step ")]
    # capsys is no terminal: plain lines at the first step, every log_every steps and the last, no carriage returns.
    assert [line.split()[1] for line in lines] == ["1/4", "3/4", "4/4"]
    assert all("img/s" in line and "G/l1" in line and "ETA" in line and "\r" not in line for line in lines)
    events = EventAccumulator(str(run_dir)).Reload()
    assert [event.step for event in events.Scalars("loss/G/l1")] == [1, 3, 4]
    assert [event.step for event in events.Images("train/input|output|target")] == [1, 3, 4]


# -- what today's p2p wrote keeps working -------------------------------------------------------------------------


def test_a_format_1_checkpoint_loads_predicts_and_resumes(tmp_path, capsys):
    loaded = checkpoint.read(FORMAT_1)
    assert loaded.state["format"] == 1
    assert (loaded.spec.run.generator.name, loaded.spec.run.disc.name, loaded.spec.run.data.name) == ("unet", "pixel", "synthetic")
    assert loaded.spec.shapes.image_size == 16 and loaded.spec.shapes.disc_in_channels == 6
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    Image.new("RGB", (20, 12), "red").save(inputs / "a.png")
    code, _, err = run(["predict", "--ckpt", str(FORMAT_1), "--input", str(inputs), "--output", str(tmp_path / "out")], capsys)
    assert code == 0, err
    assert Image.open(tmp_path / "out" / "a.png").size == (20, 12)
    # Its config.yaml names components by import path, as p2p wrote them then; resuming reads it and goes on.
    old = shutil.copytree(FORMAT_1, tmp_path / "old")
    code, _, err = run(["fit", "--resume", str(old), "--trainer.max_steps", "3"], capsys)
    assert code == 0, err
    resumed = checkpoint.read(old)
    assert resumed.state["format"] == 2 and resumed.state["step"] == 3 and resumed.spec.run.generator.options["ngf"] == 2


def test_the_checkpoint_spec_rejects_malformed_content_with_the_field_named(tmp_path):
    from p2p_core.errors import DataError
    from p2p_core.spec import read_checkpoint

    good = checkpoint.read(FORMAT_1).state
    with pytest.raises(DataError, match="components.generator.options must be a mapping"):
        read_checkpoint({**good, "components": {**good["components"], "generator": {**good["components"]["generator"], "options": [1]}}},
                        source="x.pt")
    with pytest.raises(DataError, match="in_channels must be a positive whole number"):
        read_checkpoint({**good, "components": {**good["components"], "generator": {**good["components"]["generator"], "in_channels": "3"}}},
                        source="x.pt")
    with pytest.raises(DataError, match="unknown checkpoint format 7"):
        read_checkpoint({"format": 7}, source="x.pt")


def test_moved_engine_names_still_import_with_a_deprecation_warning():
    from p2p_core import engine
    from p2p_core.spec import TrainConfig

    with pytest.warns(DeprecationWarning, match="p2p_core.spec.TrainConfig"):
        assert engine.TrainConfig is TrainConfig


# -- the registry ------------------------------------------------------------------------------------------------


def test_a_misspelt_hook_is_reported_like_any_broken_plugin(install_distribution):
    source = TINY_GENERATOR + "\n@p2p_core.hookimpl\ndef p2p_generator():\n    return {'tiny': Tiny}\n"
    install_distribution("p2p-fake-typo", modules={"fake_typo": source}, entry_points={"typo": "fake_typo"})
    registry = load_registry(["p2p-fake-typo"])
    (problem,) = registry.problems
    assert "p2p_generator: no such hook" in problem and "p2p_generators" in problem
    assert "tiny" not in registry.available("generator")


# -- one rule for pairing files by name --------------------------------------------------------------------------


def test_combine_the_folders_dataset_and_evaluate_share_one_duplicate_name_rule(tmp_path, capsys):
    import p2p_core
    from p2p_core.errors import DataError
    from p2p_core.evaluation import evaluate_folders

    for half in ("A", "B"):
        (tmp_path / "train" / half).mkdir(parents=True)
        for suffix in (".png", ".jpg") if half == "A" else (".png",):
            Image.new("RGB", (8, 8)).save(tmp_path / "train" / half / f"x{suffix}")
    with pytest.raises(DataError, match=r"several files named x \(different extensions\)"):
        p2p_core.create("dataset", "folders", root=tmp_path, load_size=8, crop_size=8)
    with pytest.raises(DataError, match=r"several files named x \(different extensions\)"):
        evaluate_folders(pred=tmp_path / "train" / "A", target=tmp_path / "train" / "B")
    code, _, err = run(["data", "combine", "--a", str(tmp_path / "train" / "A"), "--b", str(tmp_path / "train" / "B"),
                        "--out", str(tmp_path / "ab")], capsys)
    assert code == 2 and "several files named x (different extensions)" in err

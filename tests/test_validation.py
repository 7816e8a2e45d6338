"""Validation during training: scores logged, best.pt kept, and training left exactly as it would have been."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset

from conftest import make_spec
from p2p_core import checkpoint
from p2p_core.errors import ConfigError, DataError
from p2p_core.registry import default_registry
from p2p_core.run import Run
from p2p_core.validation import Validator

DATA = ("synthetic", {"length": 4, "load_size": 36, "crop_size": 32})


def validation_data() -> Dataset:
    return default_registry().create("dataset", DATA[0], split="val", **DATA[1])


def trainer(run_dir: Path, data: tuple[str, dict] = DATA, **train: object) -> Run:
    spec = make_spec(generator=("unet", {"ngf": 8}), disc=("patch70", {"ndf": 8}), data=data,
                     max_steps=4, log_every=2, image_every=4, **train)
    return Run(spec, out_dir=run_dir.parent, name=run_dir.name)


def test_validation_keeps_the_best_checkpoint(tmp_path: Path):
    run = trainer(tmp_path / "run", validate_every=2, validate_samples=3, best_metric="ssim")
    run.fit()
    best = torch.load(tmp_path / "run" / "checkpoints" / "best.pt", weights_only=True)
    assert best["best"]["metric"] == "ssim" and best["best"]["step"] in (2, 4)
    assert best["step"] == best["best"]["step"] and best["best"]["value"] == run.validator.best
    assert len(run.validator.pairs) == 3
    # best.pt is neither pruned nor mistaken for the newest step checkpoint.
    assert checkpoint.resolve(tmp_path / "run").name == "step_00000004.pt"
    # Every score of each validation is a TensorBoard scalar under val/.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "run")).Reload()
    assert {tag for tag in events.Tags()["scalars"] if tag.startswith("val/")} == {
        f"val/{name}" for name in ("l1", "psnr", "ssim", "hist_L", "hist_a", "hist_b")}
    assert [event.step for event in events.Scalars("val/ssim")] == [2, 4]


def test_validation_does_not_change_training(tmp_path: Path):
    plain = trainer(tmp_path / "plain")
    plain.fit()
    validated = trainer(tmp_path / "validated", validate_every=1, validate_samples=2, validate_mode="paper")
    validated.fit()
    for (name, a), b in zip(plain.model.networks["generator"].state_dict().items(), validated.model.networks["generator"].state_dict().values()):
        assert torch.equal(a, b), name


def test_validator_restores_mode_and_batchnorm_statistics(tmp_path: Path):
    generator = trainer(tmp_path / "run").model.networks["generator"].eval()
    before = {name: buffer.clone() for name, buffer in generator.named_buffers()}
    validator = Validator(dataset=validation_data(), samples=2, metric="l1", mode="paper", device=torch.device("cpu"))
    scores = validator(generator)
    assert set(scores) == {"l1", "psnr", "ssim", "hist_L", "hist_a", "hist_b"}
    assert not generator.training
    assert all(torch.equal(buffer, before[name]) for name, buffer in generator.named_buffers())
    assert validator(generator) == scores  # the same pairs and the same dropout every time


def test_improved_follows_each_metrics_direction_and_survives_resume():
    validator = Validator(dataset=validation_data(), samples=1, metric="l1", mode="eval", device=torch.device("cpu"))
    assert validator.improved({"l1": 0.5}, step=1)
    assert not validator.improved({"l1": 0.6}, step=2)
    assert validator.improved({"l1": 0.4}, step=3) and validator.best_step == 3
    resumed = Validator(dataset=validation_data(), samples=1, metric="l1", mode="eval", device=torch.device("cpu"))
    resumed.load_state_dict(validator.state_dict())
    assert not resumed.improved({"l1": 0.45}, step=4)
    higher = Validator(dataset=validation_data(), samples=1, metric="psnr", mode="eval", device=torch.device("cpu"))
    higher.load_state_dict(validator.state_dict())  # another metric's best does not carry over
    assert higher.best is None and higher.improved({"psnr": 20.0}, step=5) and not higher.improved({"psnr": 19.0}, step=6)


def test_bad_settings_name_the_fix(tmp_path: Path, ab_root: Path):
    with pytest.raises(ConfigError, match="best_metric 'fid'"):
        Validator(dataset=validation_data(), samples=1, metric="fid", mode="eval", device=torch.device("cpu"))
    with pytest.raises(ConfigError, match="validate_samples must be at least 1"):
        Validator(dataset=validation_data(), samples=0, metric="l1", mode="eval", device=torch.device("cpu"))
    (ab_root / "val").rename(ab_root / "test")
    aligned = ("aligned", {"root": ab_root, "load_size": 36, "crop_size": 32})
    with pytest.raises(DataError, match="validate_every 0"):
        trainer(tmp_path / "run", data=aligned, validate_every=2)


def test_a_run_resumes_from_a_checkpoint_with_or_without_a_best_score_whether_or_not_it_validates(tmp_path: Path):
    validating = trainer(tmp_path / "validating", validate_every=2, validate_samples=1)
    plain = trainer(tmp_path / "plain")
    validating.validator.best = 0.5
    with_best, without_best = validating.state_dict(), plain.state_dict()
    assert "best" in with_best and "best" not in without_best
    plain.load_state_dict(with_best)  # validation switched off on resume: the best score is not needed
    validating.load_state_dict(without_best)  # switched on: no best score yet
    assert validating.validator.best == 0.5
    validating.validator.best = None
    validating.load_state_dict(with_best)
    assert validating.validator.best == 0.5

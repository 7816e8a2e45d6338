"""Every numeric option of every command, given a value it cannot take: exit 2, one `p2p: error:` line naming the
problem, no traceback, and no file written anywhere."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from conftest import SMOKE, run

FORMAT_1 = Path(__file__).parent / "data" / "format1"
TEXT = st.sampled_from(["many", "1.5.2", "", "[1]", "{a: 1}", "0x", "true"])


def _floats(**bounds: float) -> st.SearchStrategy[str]:
    return st.floats(allow_nan=False, **bounds).map(repr)


POSITIVE_INT = st.integers(max_value=0).map(str) | TEXT
NON_NEGATIVE_INT = st.integers(max_value=-1).map(str) | TEXT
POSITIVE_FLOAT = _floats(max_value=0) | st.sampled_from(["nan", "inf", "-inf"]) | TEXT
FRACTION = _floats(min_value=1) | _floats(max_value=-1e-9) | st.sampled_from(["nan"]) | TEXT
PORT = st.integers(max_value=-1).map(str) | st.integers(min_value=65536).map(str) | TEXT

FIT = ["fit", "--config", SMOKE, "--out_dir", "runs"]
CASES: list[tuple[list[str], str, st.SearchStrategy[str]]] = [
    *((FIT, f"--trainer.{name}", POSITIVE_INT) for name in
      ("max_steps", "batch_size", "log_every", "image_every", "checkpoint_every", "nproc", "validate_samples")),
    *((FIT, f"--trainer.{name}", NON_NEGATIVE_INT) for name in ("n_epochs", "n_epochs_decay", "num_workers", "validate_every")),
    *((FIT, f"--trainer.{name}", POSITIVE_FLOAT) for name in ("lr", "init_gain", "dist_timeout")),
    *((FIT, f"--trainer.{name}", FRACTION) for name in ("beta1", "beta2")),
    (FIT, "--trainer.seed", TEXT),
    (FIT, "--generator.ngf", POSITIVE_INT),
    (FIT, "--generator.dropout", _floats(min_value=1.0001) | _floats(max_value=-1e-9) | TEXT),
    (FIT, "--generator.depth", st.integers(max_value=1).map(str) | st.integers(min_value=7, max_value=12).map(str) | TEXT),
    (FIT, "--disc.ndf", POSITIVE_INT),
    (FIT, "--data.crop_size", POSITIVE_INT | st.integers(min_value=1, max_value=63).filter(lambda n: n % 16).map(str)),
    (FIT, "--data.load_size", st.integers(max_value=63).map(str) | TEXT),
    (FIT, "--data.length", POSITIVE_INT),
    (FIT, "--loss_options.l1.weight", TEXT),
    (["bench", "--generator.ngf", "4", "--disc.ndf", "4", "--image_size", "32", "--steps", "1"], "--warmup", NON_NEGATIVE_INT),
    (["bench", "--generator.ngf", "4", "--disc.ndf", "4", "--warmup", "0"], "--image_size", POSITIVE_INT),
    (["bench", "--generator.ngf", "4", "--disc.ndf", "4", "--warmup", "0"], "--steps", POSITIVE_INT),
    (["predict", "--ckpt", str(FORMAT_1), "--input", "inputs", "--output", "out"], "--resize", POSITIVE_INT),
    (["test", "--ckpt", str(FORMAT_1), "--out", "out"], "--seed", TEXT),
    (["sweep", str(SMOKE), "--out_dir", "sweeps"], "--grid_rows", POSITIVE_INT),
    (["sweep", str(SMOKE), "--out_dir", "sweeps"], "--seeds", POSITIVE_INT),
    (["demo", "--ckpt", str(FORMAT_1)], "--port", PORT),
    *((["demo", "--ckpt", str(FORMAT_1)], f"--{name}", POSITIVE_INT) for name in ("max_pixels", "max_busy")),
    *((["demo", "--ckpt", str(FORMAT_1)], f"--{name}", POSITIVE_FLOAT) for name in ("max_upload_mb", "timeout_s")),
    (["data", "edges", "--photos", "inputs", "--out", "edges"], "--sigma", POSITIVE_FLOAT),
    (["data", "edges", "--photos", "inputs", "--out", "edges"], "--size", POSITIVE_INT),
    (["data", "edges", "--photos", "inputs", "--out", "edges"], "--min_fragment", NON_NEGATIVE_INT),
    (["data", "edges", "--photos", "inputs", "--out", "edges"], "--val_fraction", FRACTION),
    (["data", "combine", "--a", "inputs", "--b", "inputs2", "--out", "ab"], "--val_fraction", FRACTION),
]


def _files(folder: Path) -> set[Path]:
    return {path for path in folder.rglob("*")}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("fuzz")
    for name in ("inputs", "inputs2"):
        (folder / name).mkdir()
        Image.new("RGB", (40, 30), "white").save(folder / name / "a.png")
    return folder


BAD_VALUES = st.one_of(*(values.map(lambda value, prefix=prefix, option=option: (prefix, option, value))
                         for prefix, option, values in CASES))
# The first value out of each option's range, tried on every run: the one a check like `value or default` lets
# through (0 read as "not set"), which random draws reach only now and then.
JUST_OUT_OF_RANGE = {POSITIVE_INT: "0", NON_NEGATIVE_INT: "-1", POSITIVE_FLOAT: "0.0", FRACTION: "1.0", PORT: "65536"}
BOUNDARIES = [(prefix, option, JUST_OUT_OF_RANGE[values]) for prefix, option, values in CASES if values in JUST_OUT_OF_RANGE] + [
    (FIT, "--generator.depth", "0"), (FIT, "--generator.depth", "1"), (FIT, "--generator.dropout", "1.0001"),
    (FIT, "--data.crop_size", "63"), (FIT, "--data.load_size", "63"),
]


def with_boundaries(test):
    for case in BOUNDARIES:
        test = example(case=case)(test)
    return test


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@with_boundaries
@given(case=BAD_VALUES)
def test_a_bad_value_is_one_error_line_and_writes_nothing(workdir, capsys, monkeypatch, case):
    prefix, option, value = case
    monkeypatch.chdir(workdir)
    before = _files(workdir)
    code, _, err = run([*prefix, f"{option}={value}"], capsys)
    assert code == 2, (option, value, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("p2p: error:"), (option, value, err)
    assert "Traceback" not in err
    assert _files(workdir) == before, (option, value)


def test_the_fuzz_covers_every_numeric_trainer_option():
    from attrs import fields

    from p2p_core.spec import TrainConfig

    numeric = {f.name for f in fields(TrainConfig) if f.type in ("int", "float", "int | None")}
    covered = {option.removeprefix("--trainer.") for prefix, option, _ in CASES if option.startswith("--trainer.")}
    assert numeric <= covered, numeric - covered

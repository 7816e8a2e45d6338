"""Every numeric option of every command, given a value it cannot take (a 400-digit integer among them): exit 2,
one `p2p: error:` line naming the problem, no traceback, and no file written anywhere."""

from __future__ import annotations

import typing
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

NEGATIVE = st.integers(max_value=-1).map(str) | TEXT
HUGE = ["9" * 400, "-" + "9" * 400]
"""Integers no option can take: each must be refused while parsing or checking, never reach a computation."""

FIT = ["fit", "--config", SMOKE, "--out_dir", "runs"]
PREDICT = ["predict", "--ckpt", str(FORMAT_1), "--input", "inputs", "--output", "out"]
EDGES = ["data", "edges", "--photos", "inputs", "--out", "edges"]
CASES: list[tuple[list[str], str, st.SearchStrategy[str]]] = [
    *((FIT, f"--trainer.{name}", POSITIVE_INT) for name in
      ("max_steps", "batch_size", "log_every", "image_every", "checkpoint_every", "nproc", "validate_samples")),
    *((FIT, f"--trainer.{name}", NON_NEGATIVE_INT) for name in ("n_epochs", "n_epochs_decay", "num_workers", "validate_every")),
    *((FIT, f"--trainer.{name}", POSITIVE_FLOAT) for name in ("lr", "init_gain", "dist_timeout")),
    *((FIT, f"--trainer.{name}", FRACTION) for name in ("beta1", "beta2", "ema")),
    *((FIT, f"--method.{name}", POSITIVE_FLOAT | st.floats(min_value=1.0001, max_value=1e308).map(repr)) for name in ("g_lr", "d_lr")),
    (FIT, "--method.n_critic", POSITIVE_INT | st.integers(min_value=1001).map(str)),
    (FIT, "--trainer.seed", TEXT),
    (FIT, "--data.seed", TEXT),
    (FIT, "--loss_options.cgan.weight", TEXT),
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
    (PREDICT, "--resize", POSITIVE_INT),
    (PREDICT, "--batch_size", POSITIVE_INT),
    (PREDICT, "--seed", NEGATIVE),
    (PREDICT, "--tile", NEGATIVE | st.integers(min_value=1, max_value=10**6).filter(lambda n: n % 16).map(str)),
    (PREDICT, "--overlap", NEGATIVE),
    (["test", "--ckpt", str(FORMAT_1), "--out", "out"], "--seed", NEGATIVE),
    (["sweep", str(SMOKE), "--out_dir", "sweeps"], "--grid_rows", POSITIVE_INT),
    (["sweep", str(SMOKE), "--out_dir", "sweeps"], "--seeds", POSITIVE_INT),
    (["sweep", str(SMOKE), "--out_dir", "sweeps"], "--jobs", POSITIVE_INT),
    (["demo", "--ckpt", str(FORMAT_1)], "--port", PORT),
    (["demo", "--ckpt", str(FORMAT_1)], "--seed", NEGATIVE),
    *((["demo", "--ckpt", str(FORMAT_1)], f"--{name}", POSITIVE_INT) for name in ("max_pixels", "max_busy")),
    *((["demo", "--ckpt", str(FORMAT_1)], f"--{name}", POSITIVE_FLOAT) for name in ("max_upload_mb", "timeout_s")),
    (EDGES, "--sigma", POSITIVE_FLOAT | st.floats(min_value=86, max_value=1e308).map(repr)),
    (EDGES, "--size", POSITIVE_INT | st.integers(min_value=1, max_value=6).map(str)),
    (EDGES, "--seed", NEGATIVE),
    *((EDGES, f"--{name}", POSITIVE_FLOAT) for name in ("low_threshold", "high_threshold")),
    (EDGES, "--min_fragment", NON_NEGATIVE_INT),
    (EDGES, "--val_fraction", FRACTION),
    (["data", "combine", "--a", "inputs", "--b", "inputs2", "--out", "ab"], "--val_fraction", FRACTION),
    (["predict", "--ckpt", str(FORMAT_1), "--input", "inputs", "--output", "out"], "--max_memory_gb", POSITIVE_FLOAT),
    (["export", "--ckpt", str(FORMAT_1), "--format", "exported-program", "--out", "g.pt2"], "--max_memory_gb", POSITIVE_FLOAT),
    (["import", str(FORMAT_1), "--out", "imported"], "--max_memory_gb", POSITIVE_FLOAT),
    *((["data", "download", "facades"], f"--{name}", POSITIVE_FLOAT) for name in ("max_gb", "max_ratio", "deadline_min")),
    (["data", "download", "facades"], "--max_files", POSITIVE_INT),
    *((["pretrained", "download", "sat2map"], f"--{name}", POSITIVE_FLOAT) for name in ("max_gb", "deadline_min")),
    (["demo", "--ckpt", str(FORMAT_1)], "--deadline_s", POSITIVE_FLOAT),
    (["demo", "--ckpt", str(FORMAT_1)], "--max_connections", POSITIVE_INT),
    (["data", "combine", "--a", "inputs", "--b", "inputs2", "--out", "ab"], "--seed", NEGATIVE),
    *((["scorer", "fit", "--out", "scorer.pt"], f"--{name}", POSITIVE_INT) for name in ("steps", "batch_size")),
    (["scorer", "fit", "--out", "scorer.pt"], "--seed", NEGATIVE),
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


def assert_refused(workdir: Path, capsys, argv: list[str]) -> None:
    before = _files(workdir)
    code, _, err = run(argv, capsys)
    assert code == 2, (argv[-1][:60], err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("p2p: error:"), (argv[-1][:60], err)
    assert "Traceback" not in err
    assert _files(workdir) == before, argv[-1][:60]


@pytest.mark.parametrize("prefix, option", sorted({(tuple(prefix), option) for prefix, option, _ in CASES}))
@pytest.mark.parametrize("value", HUGE, ids=["huge", "-huge"])
def test_a_400_digit_integer_is_one_error_line_for_every_numeric_option(workdir, capsys, monkeypatch, prefix, option, value):
    monkeypatch.chdir(workdir)
    assert_refused(workdir, capsys, [*prefix, f"{option}={value}"])


def _numeric(hint: object) -> bool:
    return any(isinstance(kind, type) and issubclass(kind, (int, float)) and kind is not bool
               for kind in (hint, *typing.get_args(hint)))


def test_the_fuzz_covers_every_numeric_option_of_every_command():
    from p2p_core.cli import COMMANDS
    from p2p_core.registry import FLAGS, default_registry

    def leaves(commands, words):
        for command in commands:
            yield from leaves(command.subcommands, [*words, command.name]) if command.subcommands else [([*words, command.name], command)]

    numeric = set()
    for words, command in leaves(COMMANDS, []):
        if command.arguments is None:
            hints = typing.get_type_hints(command.function())
            numeric |= {(" ".join(words), f"--{name}") for name, hint in hints.items() if _numeric(hint)}
    registry = default_registry()
    for flag, kind in FLAGS.items():  # the default components' options, which fit takes
        component = registry.get(kind, registry.default(kind))
        numeric |= {("fit", f"--{flag}.{option.name}") for option in component.options
                    if {"int", "float"} & set(option.annotation.replace("|", " ").split())}
    covered = {(" ".join(word for word in prefix[:2] if word.isidentifier()), option) for prefix, option, _ in CASES}
    assert numeric <= covered, sorted(numeric - covered)


def test_the_fuzz_covers_every_numeric_trainer_option():
    from attrs import fields

    from p2p_core.spec import TrainConfig

    numeric = {f.name for f in fields(TrainConfig) if f.type in ("int", "float", "int | None")}
    covered = {option.removeprefix("--trainer.") for prefix, option, _ in CASES if option.startswith("--trainer.")}
    assert numeric <= covered, numeric - covered

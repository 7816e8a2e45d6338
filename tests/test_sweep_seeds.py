"""`p2p sweep --seeds N`: each recipe trained N times, summarised as mean +- std, with the baselines' rows."""

from __future__ import annotations

import csv
import statistics
from pathlib import Path

import pytest

from conftest import make_spec
from p2p_core import checkpoint, evaluation
from p2p_core.errors import ConfigError, P2PError
from p2p_core.evaluation import CONSTANT
from p2p_core.registry import default_registry
from p2p_core.spec import Shapes, TrainedSpec
from p2p_core.sweep import SweepRun, run_sweep, write_seed_tables

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
SMOKE = RECIPES / "smoke.yaml"


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path) as handle:
        return list(csv.DictReader(handle))


def test_each_recipe_runs_once_per_seed_and_is_summarised(tmp_path: Path):
    registry = default_registry()
    recipes = [str(RECIPES / "ablations" / "objective" / name) for name in ("l1.yaml", "l1-cgan.yaml")]
    sweep = run_sweep(recipes=recipes, base=[str(SMOKE)], out_dir=tmp_path / "s", seeds=2, grid_rows=2, registry=registry)
    names = ["l1-seed0", "l1-seed1", "l1-cgan-seed0", "l1-cgan-seed1"]
    assert sorted(path.name for path in (sweep / "runs").iterdir()) == sorted(names)
    seeds = [checkpoint.read(sweep / "runs" / name).spec.run.trainer.seed for name in names]
    assert seeds == [0, 1, 0, 1]

    runs = read_csv(sweep / "runs.csv")
    assert [(r["recipe"], r["seed"]) for r in runs] == [("l1", "0"), ("l1", "1"), ("l1-cgan", "0"), ("l1-cgan", "1")]
    l1_runs = [float(r["l1"]) for r in runs if r["recipe"] == "l1"]
    assert l1_runs[0] != l1_runs[1]  # another seed, another model
    summary = {row["run"]: row for row in read_csv(sweep / "results.csv")}
    assert set(summary) == {"l1", "l1-cgan"} and summary["l1"]["seeds"] == "2"
    assert float(summary["l1"]["l1"]) == pytest.approx(statistics.fmean(l1_runs))
    assert float(summary["l1"]["l1_std"]) == pytest.approx(statistics.stdev(l1_runs))
    table = (sweep / "results.md").read_text()
    assert f"{statistics.fmean(l1_runs):.4g} ± {statistics.stdev(l1_runs):.2g}" in table
    assert f"| baseline: {CONSTANT} |" in table
    baselines = read_csv(sweep / "baselines.csv")
    assert baselines[0]["run"] == f"baseline: {CONSTANT}" and 0 < float(baselines[0]["l1"]) < 1
    assert (sweep / "grid.png").is_file() and (sweep / "runs" / "l1-cgan-seed1").is_dir()


def fake_run(recipe: str, seed: int, l1: float, **scores: float) -> SweepRun:
    spec = make_spec(generator=("unet", {}), loss="l1")
    trained = TrainedSpec(run=spec, shapes=Shapes(in_channels=3, out_channels=3, image_size=32), adversarial=False)
    result = evaluation.TestResult(out_dir=Path("."), step=10, trained=trained, names=[], metrics={"l1": l1, **scores},
                                   evaluation=None, baselines={CONSTANT: {"l1": 0.3}})
    return SweepRun(name=f"{recipe}-seed{seed}", train_seconds=60.0, result=result, recipe=recipe, seed=seed)


def test_differences_beyond_the_spread_are_marked(tmp_path: Path):
    runs = {
        "best": [fake_run("best", 0, 0.10), fake_run("best", 1, 0.12)],  # 0.11 +- 0.014
        "close": [fake_run("close", 0, 0.10), fake_run("close", 1, 0.16)],  # 0.13 +- 0.042: gap 0.02 < 0.057
        "far": [fake_run("far", 0, 0.20), fake_run("far", 1, 0.22)],  # 0.21 +- 0.014: gap 0.10 > 0.028
        "worse": [fake_run("worse", 0, 0.40), fake_run("worse", 1, 0.20)],  # does not always beat the constant
    }
    write_seed_tables(runs, [], tmp_path, caption="test")
    rows = {line.split(" | ")[0].strip("| "): line for line in (tmp_path / "results.md").read_text().splitlines()}
    assert "**0.11 ± 0.014**" in rows["best"]
    assert "0.13 ± 0.042 |" in rows["close"] and "†" not in rows["close"]
    assert "0.21 ± 0.014 †" in rows["far"]
    assert rows["worse"].endswith("| NO/yes |") and rows["best"].endswith("| yes/yes |")


def test_the_scorers_realism_distances_are_tabled_lowest_best(tmp_path: Path):
    runs = {
        "near": [fake_run("near", 0, 0.2, pixel_acc=0.5, scorer_fd=1.0), fake_run("near", 1, 0.2, pixel_acc=0.5, scorer_fd=1.2)],
        "far": [fake_run("far", 0, 0.1, pixel_acc=0.9, scorer_fd=5.0), fake_run("far", 1, 0.1, pixel_acc=0.9, scorer_fd=5.2)],
    }
    write_seed_tables(runs, [], tmp_path, caption="test")
    rows = {line.split(" | ")[0].strip("| "): line for line in (tmp_path / "results.md").read_text().splitlines()}
    assert "**1.1 ± 0.14**" in rows["near"] and "**0.9 ± 0**" in rows["far"]
    assert float(read_csv(tmp_path / "results.csv")[1]["scorer_fd"]) == pytest.approx(5.1)


def test_seeds_must_be_positive(tmp_path: Path):
    with pytest.raises(ConfigError, match="--seeds must be at least 1, got 0"):
        run_sweep(recipes=[str(SMOKE)], base=[], out_dir=tmp_path / "s", seeds=0)


def test_runs_trained_in_parallel_match_runs_trained_one_by_one_and_every_mode_is_tabled(tmp_path: Path):
    recipe = str(RECIPES / "ablations" / "objective" / "l1.yaml")
    one_by_one = run_sweep(recipes=[recipe], base=[str(SMOKE)], out_dir=tmp_path / "serial", seeds=2, grid_rows=1)
    parallel = run_sweep(recipes=[recipe], base=[str(SMOKE)], out_dir=tmp_path / "parallel", seeds=2, jobs=2, grid_rows=1,
                         modes=("paper", "eval"))  # fmt: skip

    seeds = [checkpoint.read(parallel / "runs" / f"l1-seed{seed}").spec.run.trainer.seed for seed in (0, 1)]
    assert seeds == [0, 1]
    serial_runs = read_csv(one_by_one / "runs.csv")
    parallel_runs = {mode: read_csv(parallel / mode / "runs.csv") for mode in ("paper", "eval")}
    # Same seeds, same models: one thread per worker may only change the rounding.
    for serial, paired in zip(serial_runs, parallel_runs["paper"]):
        assert float(paired["l1"]) == pytest.approx(float(serial["l1"]), rel=1e-3)
    assert [float(r["l1"]) for r in parallel_runs["eval"]] != [float(r["l1"]) for r in parallel_runs["paper"]]
    for mode in ("paper", "eval"):
        assert f"{mode} test-time mode" in (parallel / mode / "results.md").read_text()
        assert (parallel / mode / "grid.png").is_file()


def test_a_failed_parallel_run_is_named(tmp_path: Path):
    # Both have no logits for the smoke's 64x64 images, so both fail at once, whichever is first.
    too_large = RECIPES / "ablations" / "discriminator" / "image286.yaml"
    (tmp_path / "also_too_large.yaml").write_text(too_large.read_text())
    with pytest.raises(P2PError, match="sweep run (image286|also_too_large): discriminator 'image286'"):
        run_sweep(recipes=[str(too_large), str(tmp_path / "also_too_large.yaml")], base=[str(SMOKE)], out_dir=tmp_path / "s", jobs=2)

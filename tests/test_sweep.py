"""`p2p sweep` on the smoke recipe: runs, one comparison table, one grid; and every ablation recipe parses."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from PIL import Image

from p2p_core.cli import main
from p2p_core.commands import fit, fit_arguments
from p2p_core.errors import ConfigError
from p2p_core.registry import default_registry
from p2p_core.sweep import run_sweep

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
SMOKE = RECIPES / "smoke.yaml"
ABLATIONS = sorted((RECIPES / "ablations").glob("[!s]*/*.yaml"))  # not small/: those are bases


def test_sweep_fits_tests_and_compares(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    recipes = [RECIPES / "ablations" / "objective" / name for name in ("l1.yaml", "l1-cgan.yaml")]
    main(["sweep", *map(str, recipes), "--base", str(SMOKE), "--out_dir", str(tmp_path), "--name", "s", "--grid_rows", "3"])
    sweep = tmp_path / "s"
    with open(sweep / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["run"], r["loss"], r["discriminator"], r["steps"]) for r in rows] == [
        ("l1", "l1", "-", "4"),
        ("l1-cgan", "cgan+l1", "patch70", "4"),
    ]
    assert all(0 < float(r["l1"]) < 1 and 0 < float(r["hist_a"]) <= 1 for r in rows)
    table = (sweep / "results.md").read_text()
    assert "| run | generator | loss |" in table and "| l1-cgan | unet | cgan+l1 | patch70 | 4 |" in table
    assert table in capsys.readouterr().out
    # input | l1 | l1-cgan | target, 3 rows of 128-pixel cells under a label row.
    assert Image.open(sweep / "grid.png").size == (4 * 130, 34 + 3 * 130)
    assert (sweep / "histograms.png").is_file()
    for name in ("l1", "l1-cgan"):
        assert (sweep / "runs" / name / "test_val_paper_step_00000004" / "index.html").is_file()


def test_sweep_refuses_clashing_names_and_existing_folders(tmp_path: Path):
    registry = default_registry()
    recipe = str(RECIPES / "ablations" / "objective" / "l1.yaml")

    def sweep(*recipes: str) -> Path:
        return run_sweep(recipes=recipes, base=[str(SMOKE)], out_dir=tmp_path, registry=registry)

    with pytest.raises(ConfigError, match="l1 share a file name"):
        sweep(recipe, recipe)
    with pytest.raises(ConfigError, match="already exists"):
        sweep(recipe)
    # Every command line is checked before the first run: a bad last recipe costs no training.
    with pytest.raises(ConfigError, match="missing.yaml"):
        run_sweep(recipes=[recipe, "missing.yaml"], base=[str(SMOKE)], out_dir=tmp_path / "new", registry=registry)
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("recipe", ABLATIONS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_ablation_recipe_parses_on_the_smoke_base(recipe: Path, tmp_path: Path):
    fit_arguments(["--config", str(SMOKE), "--config", str(recipe), "--out_dir", str(tmp_path)], default_registry())


def test_the_ablations_cover_the_papers_studies():
    assert {f"{p.parent.name}/{p.stem}" for p in ABLATIONS} == {
        *(f"objective/{name}" for name in ("l1", "gan", "cgan", "l1-gan", "l1-cgan")),
        *(f"generator/{g}-{loss}" for g in ("unet", "encoder_decoder") for loss in ("l1", "l1-cgan")),
        *(f"discriminator/{d}" for d in ("pixel", "patch16", "patch70", "image286")),
    }


def test_a_discriminator_too_large_for_the_images_is_refused_before_training(tmp_path: Path):
    # image286 on 64x64 images: the paper's study needs 128 pixels or more; say so instead of failing in a conv.
    recipe = RECIPES / "ablations" / "discriminator" / "image286.yaml"
    arguments = fit_arguments(["--config", str(SMOKE), "--config", str(recipe), "--out_dir", str(tmp_path)], default_registry())
    with pytest.raises(ConfigError, match=r"'image286' .*has no output for 64x64 images \(receptive field 286\)"):
        fit(**arguments, registry=default_registry(), argv=[])
    assert not any(tmp_path.iterdir())  # refused before the run folder was made

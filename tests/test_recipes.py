"""Recipes as installed package data: found by name through the ``p2p`` entry point, listed, described, and
able to point at data shipped beside them."""

from __future__ import annotations

import importlib.metadata
from importlib.resources import files
from pathlib import Path

import pytest
import yaml

from p2p_core import checkpoint
from p2p_core.cli import main
from p2p_core.config import parse_spec, read_config
from p2p_core.errors import ConfigError
from p2p_core.registry import ENTRY_POINT_GROUP, OWN_DISTRIBUTION, Registry, load_registry

CHECKOUT_RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def _loaded() -> Registry:
    registry = Registry()
    registry.load_entry_points()
    return registry


def test_the_builtin_recipes_are_package_data_registered_through_the_entry_point():
    (entry_point,) = [ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP, value="p2p_recipes")]
    assert entry_point.dist.name == OWN_DISTRIBUTION
    registry = load_registry()
    packaged = files("p2p_recipes")
    # Every YAML file of the checkout's recipes/, subfolders included, by its path without the suffix.
    names = {path.relative_to(CHECKOUT_RECIPES).with_suffix("").as_posix() for path in CHECKOUT_RECIPES.rglob("*.yaml")}
    assert {"facades", "smoke", "ablations/objective/l1-cgan"} <= names
    assert names <= set(registry.recipes)
    for name in names:
        assert registry.recipes[name].read_text() == packaged.joinpath(f"{name}.yaml").read_text()
        assert registry.origin("recipes", name).startswith(f"{OWN_DISTRIBUTION} ")


def test_recipes_are_found_by_name_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    registry = load_registry()
    assert read_config("facades", registry)["data"]["root"] == "datasets/facades"
    # What `p2p sweep ablations/objective/l1 --base ablations/small/synthetic` parses for each run.
    spec, _ = parse_spec(["--config", "ablations/small/synthetic", "--config", "ablations/objective/l1"], registry)
    assert (spec.loss, spec.generator.options["ngf"], spec.data.name) == ("l1", 16, "synthetic")
    main(["fit", "--config", "smoke", "--trainer.max_steps", "1", "--name", "run"])
    assert checkpoint.read(tmp_path / "runs" / "run").spec.run.generator.options["ngf"] == 8
    with pytest.raises(ConfigError, match="neither a file nor a recipe name"):
        read_config("smoke.yaml", registry)  # a file name only where the file is


def test_list_recipes_names_each_with_its_origin(capsys):
    main(["list", "recipes"])
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:] if line.strip()}
    assert f" {OWN_DISTRIBUTION} " in rows["ablations/objective/l1"]
    assert str(load_registry().recipes["facades"]) in rows["facades"]


def test_describe_recipe_shows_its_file_origin_choices_and_text(capsys):
    main(["describe", "recipe", "facades"])
    out = capsys.readouterr().out
    path = load_registry().recipes["facades"]
    assert f"file: {path}" in out and f"from: {OWN_DISTRIBUTION} " in out
    rows = {line.split()[0]: line for line in out.splitlines() if line.split()[:1] in (["data"], ["generator"], ["loss"])}
    assert "aligned" in rows["data"] and "root='datasets/facades'" in rows["data"] and "direction='BtoA'" in rows["data"]
    assert "unet" in rows["generator"] and "cgan+l1" in rows["loss"]
    assert path.read_text().strip() in out


def test_describe_an_unknown_recipe_names_the_closest(capsys):
    with pytest.raises(SystemExit):
        main(["describe", "recipe", "facade"])
    assert "did you mean 'facades'?" in capsys.readouterr().err


SHIPPED_RECIPE = """
from pathlib import Path

import p2p_core

HERE = Path(__file__).parent / "fake_shipping_recipes"


@p2p_core.hookimpl
def p2p_recipes():
    return {"shipped": HERE / "shipped.yaml"}
"""


def test_recipe_dir_is_the_folder_of_the_recipe_file(install_distribution, tmp_path, monkeypatch, capsys, fresh_default_registry):
    site = install_distribution("p2p-fake-shipping", modules={"fake_shipping": SHIPPED_RECIPE},
                                entry_points={"shipping": "fake_shipping"})
    folder = site / "fake_shipping_recipes"
    folder.mkdir()
    (folder / "shipped.yaml").write_text(yaml.safe_dump({
        "data": {"name": "aligned", "root": "${recipe_dir}/pairs"},
        "trainer": {"seed": 3},
        "notes": ["from ${recipe_dir}", 1],
    }))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    registry = _loaded()
    by_name = read_config("shipped", registry)
    assert by_name["data"]["root"] == f"{folder}/pairs"
    assert by_name["notes"] == [f"from {folder}", 1] and by_name["trainer"] == {"seed": 3}
    # A config given as a file, by a relative path, is its own folder too.
    assert read_config("../site-packages/fake_shipping_recipes/shipped.yaml", registry)["data"]["root"] == f"{folder}/pairs"
    main(["list", "recipes"])
    (row,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith("shipped ")]
    assert "p2p-fake-shipping 1.0" in row


def test_a_misspelt_recipe_name_suggests_the_closest():
    with pytest.raises(ConfigError, match=r"config 'ablations/objective/l1-cgn' is neither a file nor a recipe name; "
                                          r"did you mean 'ablations/objective/l1-cgan'"):
        read_config("ablations/objective/l1-cgn", load_registry())


def test_every_package_of_the_checkout_is_installed():
    # pyproject.toml lists the packages (discovery cannot map recipes/ onto p2p_recipes): a new one must be added.
    import tomllib

    root = CHECKOUT_RECIPES.parent
    setuptools = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {name: Path(setuptools["package-dir"].get(name, name.replace(".", "/"))) for name in setuptools["packages"]}
    found = {init.parent.relative_to(root) for top in ("p2p_core", "plugins", "recipes") for init in (root / top).rglob("__init__.py")}
    assert found == set(folders.values())
    assert folders["p2p_recipes"] == Path("recipes")

"""Loading plugins from real installed distributions: selection (as pytest selects its plugins), and what a
broken one does, namely one clear message naming its distribution while everything unrelated keeps working."""

from __future__ import annotations

import re
from importlib.metadata import version

import pytest

from conftest import TINY_GENERATOR
from p2p_core import checkpoint
from p2p_core.cli import main
from p2p_core.config import parse_spec
from p2p_core.errors import PluginError, UnknownComponentError
from p2p_core.registry import ALLOW_ENV, DISABLE_AUTOLOAD_ENV, Registry, default_registry, load_registry

GOOD = {"modules": {"fake_good": TINY_GENERATOR + "\n@p2p_core.hookimpl\ndef p2p_generators():\n    return {'tiny': Tiny}\n"},
        "entry_points": {"good": "fake_good"}}


def _loaded() -> Registry:
    registry = Registry()
    registry.load_entry_points()
    return registry


def _builtins_work(registry: Registry) -> None:
    generator = registry.create("generator", "unet", in_channels=3, out_channels=3, image_size=32, ngf=4)
    assert generator.size_multiple == 32
    assert registry.create("loss", "l1").weight == 100


def test_a_distribution_registers_its_components_under_its_own_name(install_distribution):
    install_distribution("p2p-fake-good", **GOOD, version="2.5")
    registry = _loaded()
    component = registry.get("generator", "tiny")
    assert (component.distribution, component.version, component.plugin) == ("p2p-fake-good", "2.5", "good")
    assert registry.create("generator", "tiny", in_channels=1, out_channels=3, image_size=8).out_channels == 3
    assert registry.get("generator", "unet").distribution == "p2p"


def test_disabling_autoload_leaves_the_builtins_and_the_named_plugins(install_distribution, monkeypatch):
    install_distribution("p2p-fake-good", **GOOD)
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")
    registry = load_registry()
    assert "tiny" not in registry.available("generator")
    assert {p.distribution for p in registry.plugins} == {"p2p"}
    _builtins_work(registry)
    monkeypatch.setenv(ALLOW_ENV, "p2p-fake-good")
    assert "tiny" in load_registry().available("generator")


def test_the_cli_honours_the_autoload_switch(install_distribution, monkeypatch, capsys, fresh_default_registry):
    install_distribution("p2p-fake-good", **GOOD)
    main(["list", "generator"])
    assert "tiny" in capsys.readouterr().out
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")
    default_registry.cache_clear()
    main(["list", "generator"])
    assert "tiny" not in capsys.readouterr().out


@pytest.mark.parametrize("flags", [["-p", "p2p-fake-good"], ["-pp2p_fake_good"], ["--plugin=good"], ["--plugin", "P2P.Fake.Good"]])
def test_p_loads_only_the_named_plugin_besides_the_builtins(install_distribution, capsys, flags):
    install_distribution("p2p-fake-good", **GOOD)
    install_distribution("p2p-fake-other", modules={"fake_other": GOOD["modules"]["fake_good"].replace("'tiny'", "'other'")},
                         entry_points={"other": "fake_other"})
    main([*flags, "list", "generator"])
    names = [line.split()[1] for line in capsys.readouterr().out.splitlines()[1:]]
    assert names == ["encoder_decoder", "tiny", "unet"]


def test_a_misspelt_plugin_name_is_an_error_with_the_closest_match(install_distribution, capsys):
    install_distribution("p2p-fake-good", **GOOD)
    with pytest.raises(SystemExit) as exit_:
        main(["-p", "p2p-fake-god", "list"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.startswith("p2p: error: unknown plugin 'p2p-fake-god'; did you mean 'p2p-fake-good'?")


def test_unknown_component_names_the_closest_match_and_the_choices(capsys):
    with pytest.raises(SystemExit):
        main(["-p", "p2p", "fit", "--generator", "unett"])
    assert capsys.readouterr().err == (
        "p2p: error: unknown generator 'unett'; did you mean 'unet'? available: encoder_decoder, unet. "
        "Missing a plugin? `p2p list plugins` shows what is installed.\n"
    )


def test_list_plugins_shows_distribution_version_module_and_registrations(install_distribution, capsys):
    install_distribution("p2p-fake-good", **GOOD, version="0.3")
    main(["-p", "p2p-fake-good", "list", "plugins"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["PLUGIN", "DISTRIBUTION", "VERSION", "MODULE", "REGISTERED"]
    rows = {line.split()[0]: line.split(maxsplit=4) for line in lines[1:]}
    assert rows["good"] == ["good", "p2p-fake-good", "0.3", "fake_good", "generator:tiny"]
    assert rows["unet"] == ["unet", "p2p", version("p2p"), "p2p_unet", "generator:unet, generator:encoder_decoder"]
    assert rows["ema"] == ["ema", "p2p", version("p2p"), "p2p_ema", "hook:p2p_train_start, hook:p2p_train_step_end"]
    assert set(rows) == {"good", "unet", "patchgan", "gan_losses", "datasets", "reference", "recipes", "pix2pix", "ema", "backends"}


def test_two_distributions_may_use_the_same_entry_point_name(install_distribution):
    install_distribution("p2p-fake-good", **GOOD)
    install_distribution("p2p-fake-other", modules={"fake_other": GOOD["modules"]["fake_good"].replace("'tiny'", "'other'")},
                         entry_points={"good": "fake_other"})
    registry = _loaded()
    assert {(p.name, p.distribution) for p in registry.plugins if p.name == "good"} == {("good", "p2p-fake-good"), ("good", "p2p-fake-other")}
    assert {"tiny", "other"} <= set(registry.available("generator"))
    assert not registry.problems


# -- broken plugins ---------------------------------------------------------------------------------------------

RAISES_ON_IMPORT = "import p2p_core\nraise RuntimeError('the weights file is missing')\n"
NO_RETURN_ANNOTATION = TINY_GENERATOR + """
def make(*, in_channels: int, out_channels: int, image_size: int):
    return Tiny(in_channels=in_channels, out_channels=out_channels, image_size=image_size)

@p2p_core.hookimpl
def p2p_generators():
    return {"made": make, "still_fine": Tiny}
"""
UNTYPED = TINY_GENERATOR + """
class Loose(Tiny):
    \"\"\"Tiny with options of no declared type.\"\"\"

    def __init__(self, *, in_channels: int, out_channels: int, image_size: int, gain=1.0, bias=None, label: str = "x") -> None:
        super().__init__(in_channels=in_channels, out_channels=out_channels, image_size=image_size)
        self.gain = gain

@p2p_core.hookimpl
def p2p_generators():
    return {"loose": Loose}
"""
NO_SIZE_MULTIPLE = TINY_GENERATOR + """
class Sizeless(nn.Module):
    \"\"\"Forgot the protocol's size_multiple.\"\"\"

    def __init__(self, *, in_channels: int, out_channels: int, image_size: int) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels

@p2p_core.hookimpl
def p2p_generators():
    return {"sizeless": Sizeless}
"""
DUPLICATE = TINY_GENERATOR + """
class Own(Tiny):
    \"\"\"The same network under a name of its own.\"\"\"

@p2p_core.hookimpl
def p2p_generators():
    return {"unet": Tiny, "own": Own}
"""


def _install_broken(install, source: str) -> None:
    install("p2p-fake-broken", modules={"fake_broken": source}, entry_points={"broken": "fake_broken"})
    install("p2p-fake-good", **GOOD)


def _problem(registry: Registry) -> str:
    (problem,) = registry.problems
    return problem


def test_a_plugin_that_raises_on_import_is_reported_and_the_rest_works(install_distribution):
    _install_broken(install_distribution, RAISES_ON_IMPORT)
    registry = _loaded()
    assert re.fullmatch(r"plugin 'broken' \(p2p-fake-broken 1\.0\) failed: RuntimeError: the weights file is missing "
                        r"\(at fake_broken\.py:2\)", _problem(registry))
    with pytest.raises(UnknownComponentError, match=r"Note: plugin\(s\) broken \(p2p-fake-broken\) failed to load"):
        registry.get("generator", "made_by_broken")
    assert "tiny" in registry.available("generator")
    _builtins_work(registry)


def test_a_factory_function_needs_no_return_annotation(install_distribution):
    # Options are read from the factory's own signature; nothing resolves it by what it returns.
    _install_broken(install_distribution, NO_RETURN_ANNOTATION)
    registry = _loaded()
    assert not registry.problems
    assert {"made", "still_fine", "tiny"} <= set(registry.available("generator"))
    assert registry.create("generator", "made", in_channels=3, out_channels=1, image_size=8).out_channels == 1
    with pytest.raises(UnknownComponentError) as error:
        registry.get("generator", "mad")
    assert error.value.close_matches == ["made"]
    _builtins_work(registry)


def test_untyped_options_are_reported_and_the_component_still_works(install_distribution, capsys):
    _install_broken(install_distribution, UNTYPED)
    registry = _loaded()
    assert _problem(registry) == (
        "plugin 'broken' (p2p-fake-broken 1.0): generator 'loose': option(s) gain, bias have no type annotation, so "
        "the command line takes any value; annotate them (e.g. `ngf: int = 64`)"
    )
    assert registry.create("generator", "loose", in_channels=3, out_channels=3, image_size=8, gain=2.0).gain == 2.0
    main(["-p", "p2p-fake-broken", "list", "plugins"])
    out = capsys.readouterr().out
    assert "generator:loose" in out and "FAILED" not in out and "option(s) gain, bias have no type annotation" in out


def test_a_component_that_breaks_its_protocol_fails_when_built_naming_its_distribution(install_distribution):
    _install_broken(install_distribution, NO_SIZE_MULTIPLE)
    registry = _loaded()
    assert not registry.problems  # nothing to see until it is built
    with pytest.raises(PluginError) as error:
        registry.create("generator", "sizeless", in_channels=3, out_channels=3, image_size=8)
    assert str(error.value) == (
        "generator 'sizeless' from p2p-fake-broken 1.0 (plugin 'broken') does not satisfy the Generator protocol: "
        "it lacks size_multiple"
    )
    assert registry.create("generator", "tiny", in_channels=3, out_channels=3, image_size=8)
    _builtins_work(registry)


def test_a_plugin_taking_a_builtin_name_leaves_it_to_the_builtin_and_is_reachable_qualified(install_distribution):
    _install_broken(install_distribution, DUPLICATE)
    with pytest.warns(UserWarning, match=r"generator 'unet' of p2p-fake-broken 1\.0 .*use this one as p2p-fake-broken:unet"):
        registry = _loaded()
    assert registry.get("generator", "unet").distribution == "p2p"
    _builtins_work(registry)
    for spelt in ("p2p-fake-broken:unet", "P2P_Fake.Broken:unet"):  # the distribution as pip matches it
        shadowed = registry.get("generator", spelt)
        assert (shadowed.distribution, shadowed.name) == ("p2p-fake-broken", "p2p-fake-broken:unet")
    assert registry.create("generator", "p2p-fake-broken:unet", in_channels=3, out_channels=1, image_size=8).out_channels == 1
    assert {"unet", "p2p-fake-broken:unet", "own", "tiny"} <= set(registry.available("generator"))
    assert any("p2p-fake-broken:unet" in problem for problem in registry.problems)


@pytest.mark.filterwarnings("ignore:generator 'unet' of p2p-fake-broken")  # after the first, which it checks
def test_a_plugin_taking_the_default_name_breaks_no_one_and_its_qualified_name_is_recorded(install_distribution, tmp_path, capsys):
    _install_broken(install_distribution, DUPLICATE)
    tiny = ["--disc", "patch16", "--disc.ndf", "4", "--data.length", "1", "--data.load_size", "16", "--data.crop_size", "16",
            "--trainer.max_steps", "1", "--trainer.num_workers", "0", "--trainer.progress", "false", "--out_dir", str(tmp_path)]
    with pytest.warns(UserWarning, match="p2p-fake-broken:unet"):
        main(["-p", "p2p-fake-broken", "fit", "--generator.ngf", "4", *tiny, "--name", "default"])
    assert checkpoint.read(tmp_path / "default").spec.run.generator.name == "unet"
    config = tmp_path / "recipe.yaml"
    config.write_text("generator: {name: p2p-fake-broken:unet}\n")
    main(["-p", "p2p-fake-broken", "fit", "--config", str(config), *tiny, "--name", "qualified"])
    trained = checkpoint.read(tmp_path / "qualified").spec.run.generator
    assert trained.name == "p2p-fake-broken:unet"
    assert load_registry().get("generator", trained.name).distribution == "p2p-fake-broken"
    capsys.readouterr()
    main(["-p", "p2p-fake-broken", "describe", "generator", "p2p-fake-broken:unet"])
    assert "from p2p-fake-broken 1.0" in capsys.readouterr().out


def test_two_plugins_sharing_a_name_make_it_ambiguous_and_each_qualified_name_works(install_distribution, capsys):
    install_distribution("p2p-fake-good", **GOOD)
    install_distribution("p2p-fake-other", modules={"fake_other": GOOD["modules"]["fake_good"]}, entry_points={"other": "fake_other"})
    registry = _loaded()
    with pytest.raises(PluginError, match="generator 'tiny' is registered by more than one plugin") as error:
        registry.get("generator", "tiny")
    assert "p2p-fake-good:tiny or p2p-fake-other:tiny" in str(error.value)
    assert registry.get("generator", "p2p-fake-good:tiny").distribution == "p2p-fake-good"
    assert registry.get("generator", "p2p-fake-other:tiny").distribution == "p2p-fake-other"
    available = registry.available("generator")
    assert "tiny" not in available and {"p2p-fake-good:tiny", "p2p-fake-other:tiny", "unet"} <= set(available)
    (problem,) = registry.problems
    assert problem.startswith("generator 'tiny' is registered twice: ") and "p2p-fake-good:tiny" in problem
    main(["list", "generator"])
    assert "p2p-fake-other:tiny" in capsys.readouterr().out


def test_every_component_has_a_qualified_name(capsys):
    registry = load_registry()
    assert registry.get("generator", "p2p:unet").factory is registry.get("generator", "unet").factory
    assert registry.create("loss", "p2p:l1", weight=10).weight == 10
    with pytest.raises(UnknownComponentError, match=r"unknown generator 'p2p:unett'; did you mean 'p2p:unet'\?"):
        registry.get("generator", "p2p:unett")
    with pytest.raises(UnknownComponentError, match=r"unknown loss 'nobody:l1' available: .*p2p:l1"):
        registry.get("loss", "nobody:l1")
    spec, _ = parse_spec(["--generator", "p2p:unet", "--generator.ngf", "4", "--loss", "cgan+p2p:l1",
                          "--loss_options.p2p:l1.weight", "7"], registry)
    assert (spec.generator.name, spec.generator.options["ngf"]) == ("p2p:unet", 4)
    assert (spec.loss, spec.loss_options["p2p:l1"]["weight"]) == ("cgan+p2p:l1", 7)

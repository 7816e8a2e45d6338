"""This package's components against p2p's conformance kit, with the options its plugin module declares."""

from __future__ import annotations

from p2p_core.testing import parametrize_with_checks
from p2p_cyclegan import P2P_CONFORMANCE


@parametrize_with_checks(distribution="p2p-plugin-cyclegan", **P2P_CONFORMANCE)
def test_component_keeps_its_contract(case):
    case.run()


def test_named_alone_it_loads_the_plugin_it_builds_on(monkeypatch):
    """`p2p -p p2p-plugin-cyclegan` and `pytest --p2p-plugin p2p-plugin-cyclegan` load p2p-plugin-example too: its
    resnet9 and lsgan are what this package's method and recipe train."""
    from p2p_core.registry import load_registry, with_dependencies

    monkeypatch.delenv("P2P_PLUGINS", raising=False)
    assert "p2p-plugin-example" in with_dependencies(["p2p-plugin-cyclegan"])
    assert load_registry(["p2p-plugin-cyclegan"]).get("loss", "lsgan").distribution == "p2p-plugin-example"

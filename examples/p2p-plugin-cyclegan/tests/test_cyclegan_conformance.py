"""This package's components against p2p's conformance kit, with the options its plugin module declares."""

from __future__ import annotations

from p2p_core.testing import parametrize_with_checks
from p2p_cyclegan import P2P_CONFORMANCE


@parametrize_with_checks(distribution="p2p-plugin-cyclegan", **P2P_CONFORMANCE)
def test_component_keeps_its_contract(case):
    case.run()

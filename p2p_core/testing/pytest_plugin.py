"""``pytest --p2p-plugin DIST``: the conformance kit run on every component of an installed plugin distribution.

No test code is needed. The distribution is loaded beside p2p's built-ins only, so other installed plugins
cannot interfere, and one extra case, ``plugin:DIST-check_loads_cleanly``, fails if it does not load cleanly.
``P2P_TEST_PLUGIN=DIST[,DIST...]`` does the same as the option (e.g. in CI).

A plugin module of the distribution (one its ``p2p`` entry point names) may export ``P2P_CONFORMANCE``, a
mapping of the keyword arguments of :func:`p2p_core.testing.parametrize_with_checks` it needs::

    P2P_CONFORMANCE = {
        "options": {"generator:resnet9": {"ngf": 8}},  # keep components small; point datasets at data
        "identical_pairs": {},  # datasets: options under which A equals B, to check that jitter keeps pairs aligned
        "expected_failures": {},  # case id or check name -> why it is known to fail (a strict xfail)
    }

Registered through the ``pytest11`` entry point of the ``p2p`` distribution, so installing p2p enables it.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import sys
from collections.abc import Generator, Mapping
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from p2p_core.testing import Case

TEST_PLUGIN_ENV = "P2P_TEST_PLUGIN"
CONFORMANCE_ATTRIBUTE = "P2P_CONFORMANCE"
CONFORMANCE_KEYS = ("options", "identical_pairs", "expected_failures")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("p2p").addoption(
        "--p2p-plugin",
        action="append",
        default=[],
        dest="p2p_plugins",
        metavar="DIST",
        help=f"run p2p's conformance kit on every component of the installed plugin distribution DIST "
        f"(repeatable; also {TEST_PLUGIN_ENV}=DIST[,DIST...])",
    )


# tryfirst: the items must be in place before -k and -m deselect, so that those select among them too.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    requested = [*config.getoption("p2p_plugins"), *os.environ.get(TEST_PLUGIN_ENV, "").split(",")]
    names = (name.strip() for name in requested if name.strip())
    # Spelt as installed, so that p2p_x and p2p-x are one distribution; a missing one is the collector's to report.
    for name in dict.fromkeys(_installed_name(name) or name for name in names):
        collector = DistributionCollector.from_parent(session, name=f"p2p-plugin[{name}]", nodeid=f"p2p-plugin[{name}]", distribution=name)
        # genitems reports the collection like pytest's own: counted, and a collector error fails the session.
        items.extend(session.genitems(collector))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A broken contract, in a kit case or in a test that runs one (``case.run()``), is reported as its message:
    the contract, what was found, the fix and the component's own frames, not a traceback through the kit."""
    report = yield
    # Looked up, not imported: no ContractViolation exists unless the kit (and torch) were imported already.
    checks = sys.modules.get("p2p_core.testing.checks")
    violation = call.excinfo.value if call.excinfo is not None else None
    if checks is not None and report.failed and isinstance(violation, checks.ContractViolation):
        report.longrepr = violation.report()
    return report


def _installed_name(name: str) -> str | None:
    """The installed distribution's own spelling of ``name`` (pip's matching: p2p_x finds p2p-x), or None."""
    try:
        return importlib.metadata.distribution(name).name
    except importlib.metadata.PackageNotFoundError:
        return None


class DistributionCollector(pytest.Collector):
    """The conformance cases of one distribution's components, plus the check that it loads cleanly."""

    def __init__(self, *, distribution: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.distribution = distribution

    def collect(self) -> list[pytest.Item]:
        # Imported here: pytest loads this module in every session, and most never need the kit and hypothesis.
        from p2p_core.errors import did_you_mean
        from p2p_core.registry import ENTRY_POINT_GROUP, OWN_DISTRIBUTION, Registry, with_dependencies
        from p2p_core.testing import cases

        dist_name = self.distribution
        if _installed_name(dist_name) is None:
            # Matched as `p2p -p` matches a plugin's name, among the distributions that have p2p plugins.
            plugins = {ep.dist.name for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.dist}
            raise self.CollectError(
                f"--p2p-plugin {dist_name}: no installed distribution has that name; install it "
                "(pip install -e PATH) or check the name with `pip list` or `p2p list plugins`"
                + did_you_mean(dist_name, plugins)
            )
        registry = Registry()
        registry.load_entry_points(allow=[*with_dependencies([dist_name]), OWN_DISTRIBUTION])
        plugins = [p for p in registry.plugins if p.distribution == dist_name]
        if not plugins:
            raise self.CollectError(
                f"--p2p-plugin {dist_name}: the distribution declares no entry point in the 'p2p' group; "
                'add one to its pyproject.toml ([project.entry-points.p2p] NAME = "your_module") and reinstall'
            )
        settings: dict[str, dict[str, Any]] = {key: {} for key in CONFORMANCE_KEYS}
        for plugin in plugins:
            if plugin.error is None:
                for key, value in self._declared_settings(plugin.module).items():
                    settings[key].update(value)
        expected = settings.pop("expected_failures")
        found = cases(distribution=dist_name, registry=registry, **settings)
        items: list[pytest.Item] = [
            LoadItem.from_parent(
                self,
                name=f"plugin:{dist_name}-check_loads_cleanly",
                distribution=dist_name,
                problems=registry.problems,
                empty=not any(p.components for p in plugins),
            )
        ]
        for case in found:
            item = CaseItem.from_parent(self, name=case.id, case=case)
            reason = case.expected_failure(expected)
            if reason:
                item.add_marker(pytest.mark.xfail(reason=reason, strict=True))
            items.append(item)
        return items

    def _declared_settings(self, module_name: str) -> Mapping[str, Mapping[str, Any]]:
        declared = getattr(importlib.import_module(module_name), CONFORMANCE_ATTRIBUTE, {})
        if not isinstance(declared, Mapping) or not set(declared) <= set(CONFORMANCE_KEYS) or not all(
            isinstance(value, Mapping) for value in declared.values()
        ):
            raise self.CollectError(
                f"{module_name}.{CONFORMANCE_ATTRIBUTE} must map some of {', '.join(CONFORMANCE_KEYS)} to mappings, "
                f"got {declared!r}; see p2p_core.testing.pytest_plugin"
            )
        return declared


class KitItem(pytest.Item):
    """An item of the kit; its failures are ContractViolations, which pytest_runtest_makereport reports."""

    def reportinfo(self) -> tuple[Any, int | None, str]:
        return self.path, None, self.name


class CaseItem(KitItem):
    """One (component, check) case of the kit."""

    def __init__(self, *, case: Case, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case = case

    def runtest(self) -> None:
        self.case.run()


class LoadItem(KitItem):
    """Fails when loading the distribution beside p2p's built-ins reported a problem, or registered nothing."""

    def __init__(self, *, distribution: str, problems: list[str], empty: bool, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.distribution, self.problems, self.empty = distribution, problems, empty

    def runtest(self) -> None:
        from p2p_core.testing import ContractViolation

        if self.problems:
            raise ContractViolation(
                f"{self.distribution} does not load cleanly beside p2p's built-ins:\n  " + "\n  ".join(self.problems)
                + "\n  fix: make its modules importable, its hooks return {name: factory}, and its names unique"
            )
        if self.empty:
            raise ContractViolation(
                f"{self.distribution} loads but registers nothing\n  fix: implement a hook such as p2p_generators "
                "with @p2p_core.hookimpl in the module its p2p entry point names"
            )

"""The conformance kit: every contract a component must keep, as pytest cases a plugin author can run.

    from p2p_core.testing import parametrize_with_checks

    @parametrize_with_checks(["generator:resnet9", "loss:lsgan"], options={"generator:resnet9": {"ngf": 8}})
    def test_conformance(case):
        case.run()

Each case is one (component, check) pair with an id like ``generator:resnet9-check_receptive_field``, so
``pytest -k check_receptive_field`` selects one property. The built-in components are tested with this kit.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from p2p_core.registry import KINDS, Registry, canonical_kind, default_registry
from p2p_core.testing.checks import CHECKS, Subject, check_dataset_jitter_keeps_pairs_aligned

__all__ = ["CHECKS", "Case", "cases", "parametrize_with_checks"]


@attrs.frozen
class Case:
    """One check of one component; ``run()`` raises AssertionError with the contract and the fix."""

    subject: Subject
    check: Callable[[Subject], None]

    @property
    def id(self) -> str:
        return f"{self.subject.component.kind}:{self.subject.component.name}-{self.check.__name__}"

    def run(self) -> None:
        self.check(self.subject)

    def expected_failure(self, reasons: Mapping[str, str]) -> str | None:
        """The reason ``reasons`` gives for this case to fail, keyed by its id or by its check's name."""
        return reasons.get(self.id) or reasons.get(self.check.__name__)


def cases(
    components: Iterable[str] | None = None,
    *,
    distribution: str | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    identical_pairs: Mapping[str, Mapping[str, Any]] | None = None,
    registry: Registry | None = None,
) -> list[Case]:
    """(component, check) cases for ``components`` given as "kind:name" patterns ("generator:*"), or for
    every component of ``distribution``, or for everything registered.

    ``options`` maps "kind:name" to options that keep a component small or point it at data (a dataset's
    ``root``); ``identical_pairs`` maps datasets to options under which A equals B, to check jitter alignment.
    """
    registry = registry or default_registry()
    options, identical_pairs = dict(options or {}), dict(identical_pairs or {})
    patterns = list(components) if components is not None else ["*:*"]
    selected = []
    for component in registry.components():
        key = f"{component.kind}:{component.name}"
        if distribution is not None and component.distribution != distribution:
            continue
        if any(fnmatch.fnmatchcase(key, _canonical_pattern(p)) for p in patterns):
            selected.append(component)
    result = []
    for component in selected:
        key = f"{component.kind}:{component.name}"
        subject = Subject(component, registry, dict(options.get(key, {})))
        result += [Case(subject, check) for check in CHECKS[component.kind]]
        if key in identical_pairs:
            result.append(Case(Subject(component, registry, dict(identical_pairs[key])), check_dataset_jitter_keeps_pairs_aligned))
    return result


def parametrize_with_checks(
    components: Iterable[str] | None = None,
    *,
    expected_failures: Mapping[str, str] | None = None,
    **selection: Any,
) -> Any:
    """``pytest.mark.parametrize("case", ...)`` over :func:`cases`; arguments as there.

    ``expected_failures`` maps a case id or a check name to the reason it is known to fail: it becomes xfail.
    """
    import pytest

    expected = dict(expected_failures or {})
    params = []
    for case in cases(components, **selection):
        reason = case.expected_failure(expected)
        marks = [pytest.mark.xfail(reason=reason, strict=True)] if reason else []
        params.append(pytest.param(case, id=case.id, marks=marks))
    return pytest.mark.parametrize("case", params)


def _canonical_pattern(pattern: str) -> str:
    kind, _, name = pattern.partition(":")
    if kind in KINDS or "*" in kind or "?" in kind:
        return f"{kind}:{name or '*'}"
    return f"{canonical_kind(kind)}:{name or '*'}"

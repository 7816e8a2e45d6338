"""The conformance kit: every contract a component must keep, as pytest cases a plugin author can run.

    from p2p_core.testing import parametrize_with_checks

    @parametrize_with_checks(["generator:resnet9", "loss:lsgan"], options={"generator:resnet9": {"ngf": 8}})
    def test_conformance(case):
        case.run()

Each case is one (component, check) pair with an id like ``generator:resnet9-check_receptive_field``, so
``pytest -k check_receptive_field`` selects one property. The built-in components are tested with this kit.

A case fails with a :class:`ContractViolation` that is the whole report: the component, the contract, what was
found and the fix; when the component raised, what it raised and where in its own code.
"""

from __future__ import annotations

import fnmatch
import sys
import sysconfig
import traceback
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs

from p2p_core.registry import KINDS, Registry, canonical_kind, default_registry
from p2p_core.testing.checks import CHECKS, ContractViolation, Subject, check_dataset_jitter_keeps_pairs_aligned, contract_of

__all__ = ["CHECKS", "Case", "ContractViolation", "cases", "parametrize_with_checks"]


@attrs.frozen
class Case:
    """One check of one component; ``run()`` raises :class:`ContractViolation` (an AssertionError) with the
    contract and the fix, also when the component itself raised."""

    subject: Subject
    check: Callable[[Subject], None]

    @property
    def id(self) -> str:
        return f"{self.subject.component.kind}:{self.subject.component.name}-{self.check.__name__}"

    def run(self) -> None:
        __tracebackhide__ = True  # pytest shows the report, not this frame
        try:
            self.check(self.subject)
        except ContractViolation:
            raise
        except Exception as error:  # the component crashed: that is this check failing, not the kit
            violation = ContractViolation(_crash_report(self, error))
            violation.__notes__ = list(getattr(error, "__notes__", []))  # hypothesis's example
            violation.error = error  # for a debugger; raised from None so the kit's long traceback is not shown
            raise violation from None

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


def _crash_report(case: Case, error: BaseException) -> str:
    message = str(error).strip().replace("\n", "\n    ")
    example = "; the example below is an input it raised on" if getattr(error, "__notes__", None) else ""
    lines = [
        f"{case.subject.label} breaks the contract: {contract_of(case.check)}",
        f"  check: {case.check.__name__}",
        f"  found: it raised {type(error).__name__}" + (f": {message}" if message else ""),
        f"  fix: keep the contract instead of raising{example}",
    ]
    frames = _own_frames(error)
    if frames:
        lines.append("  where it raised, in its own code (innermost last):")
        for frame in frames:
            lines.append(f"    {_shown_path(frame.filename)}:{frame.lineno} in {frame.name}")
            if frame.line:
                lines.append(f"      {frame.line}")
    return "\n".join(lines)


# The machinery between a check and the component, whose frames say nothing about the component's bug.
_MACHINERY = ("p2p_core", "_pytest", "pytest", "pluggy", "hypothesis", "torch")


def _own_frames(error: BaseException | None) -> list[traceback.FrameSummary]:
    """The frames of ``error``'s traceback in the component's code (and the libraries it calls), without p2p_core's
    (the kit, the registry that builds the component), pytest's, pluggy's, hypothesis's, torch's and the standard
    library's. Where there are none, those of the exception it was raised from: the registry, for one, reports a
    constructor's error as its own."""
    while error is not None:
        if frames := [frame for frame in traceback.extract_tb(error.__traceback__) if not _is_machinery(Path(frame.filename))]:
            return frames
        error = error.__cause__ or error.__context__
    return []


def _is_machinery(path: Path) -> bool:
    paths = sysconfig.get_paths()
    installed = [Path(paths["purelib"]), Path(paths["platlib"])]
    # Some installs keep site-packages inside the standard library's folder: those are not the standard library.
    if path.is_relative_to(Path(paths["stdlib"])) and not any(path.is_relative_to(p) for p in installed):
        return True
    roots = [Path(module.__file__).parent for name in _MACHINERY if (module := sys.modules.get(name)) and module.__file__]
    return any(path.is_relative_to(root) for root in roots)


def _shown_path(filename: str) -> str:
    path = Path(filename)
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else filename


def _canonical_pattern(pattern: str) -> str:
    kind, _, name = pattern.partition(":")
    if kind in KINDS or "*" in kind or "?" in kind:
        return f"{kind}:{name or '*'}"
    return f"{canonical_kind(kind)}:{name or '*'}"

"""Errors a user can act on. The CLI prints their message and exits non-zero; nothing else should reach them."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class P2PError(Exception):
    """Base of every error whose message tells the user what went wrong and how to fix it."""


def close_matches(name: str, available: Iterable[str]) -> list[str]:
    """Up to three of ``available`` that ``name`` is probably a misspelling of, for "did you mean" messages."""
    available = sorted(available)
    # A prefix counts as close too: `facade` is short for `facades_label2photo`, not a typo of it.
    return difflib.get_close_matches(name, available, n=3, cutoff=0.5) or [a for a in available if a.startswith(name)][:3]


def did_you_mean(name: str, available: Iterable[str]) -> str:
    """``; did you mean 'x'?`` naming the close matches of ``name``, or nothing."""
    return _guess(close_matches(name, available))


def _guess(close: list[str]) -> str:
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


class UnknownComponentError(P2PError, KeyError):
    def __init__(self, kind: str, name: str, available: Iterable[str], hint: str = "") -> None:
        available = sorted(available)
        close = close_matches(name, available)
        guess = _guess(close)
        listing = ", ".join(available) or "(none)"
        message = f"unknown {kind} {name!r}{guess} available: {listing}"
        message += hint or ". Missing a plugin? `p2p list plugins` shows what is installed."
        super().__init__(message)
        self.kind, self.name, self.close_matches = kind, name, close

    def __str__(self) -> str:  # KeyError would otherwise print the message quoted
        return self.args[0]


class PluginError(P2PError):
    """A plugin distribution failed to import, registered something invalid, or clashed with another."""


class DataError(P2PError):
    """A dataset or image cannot be used; the message names the file or folder."""


class ConfigError(P2PError):
    """A combination of options that cannot work together."""


class NumericalError(P2PError):
    """A loss or gradient became NaN or infinite; the message names the step and the term."""

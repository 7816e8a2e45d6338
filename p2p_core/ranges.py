"""The range of every number a command takes, declared once as its type.

Each is a type that jsonargparse checks while parsing (``steps: Steps = 300``), so a value out of range, a
400-digit integer, ``1e309`` or ``nan``, is one error line naming the option before anything is allocated or
run; the help shows the range.
"""

from __future__ import annotations

from typing import Any

from jsonargparse.typing import restricted_number_type

LARGEST = 2**63 - 1
"""What a 64-bit integer (torch's, numpy's) holds: seeds and counts beyond it cannot be used."""


def ranged(base: type, low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> Any:
    """``base`` numbers from ``low`` to ``high`` (each excluded when open), named by that range in ``--help``."""
    name = f"{base.__name__} in {'(' if low_open else '['}{_shown(low)}, {_shown(high)}{')' if high_open else ']'}"
    return restricted_number_type(name, base, [(">" if low_open else ">=", low), ("<" if high_open else "<=", high)])


def plain(value: Any) -> Any:
    """``value`` as the int or float it is: the parser's range types are classes made at run time, which YAML
    and pickle cannot write."""
    for base in (int, float):
        if isinstance(value, base) and type(value) not in (base, bool):
            return base(value)
    return value


def _shown(bound: float) -> str:
    return f"{bound:,}" if isinstance(bound, int) else f"{bound:g}"


Seed = ranged(int, 0, LARGEST)
Steps = ranged(int, 1, 10**9)
BatchSize = ranged(int, 1, 65536)
Pixels = ranged(int, 1, 65536)
"""An image side or count of pixels along one."""
Count = ranged(int, 1, 10_000)
"""How many of something a person asks for: runs per recipe, processes, rows of a grid."""
Fraction = ranged(float, 0, 1, high_open=True)
"""A share kept apart, such as the validation split: less than all of it."""

"""p2p's recipes: the paper's tasks and studies, as YAML files, registered like any plugin's recipes.

This folder is installed as the package ``p2p_recipes`` (pyproject.toml maps it), and its ``p2p`` entry point
names this module, so ``p2p fit --config facades`` works wherever p2p is installed, not only in a checkout.
A recipe's name is its path under this folder without ``.yaml``: ``smoke``, ``ablations/objective/l1``.
The recipes read their data from ``datasets/NAME`` under the working directory, where ``p2p data download``
puts it.
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib.resources import files
from importlib.resources.abc import Traversable

import p2p_core

SUFFIX = ".yaml"


def _recipes(folder: Traversable, prefix: str = "") -> Iterator[tuple[str, Traversable]]:
    for entry in folder.iterdir():
        if entry.is_dir():
            yield from _recipes(entry, f"{prefix}{entry.name}/")
        elif entry.name.endswith(SUFFIX):
            yield f"{prefix}{entry.name.removesuffix(SUFFIX)}", entry


@p2p_core.hookimpl
def p2p_recipes():
    return dict(sorted(_recipes(files(__name__))))

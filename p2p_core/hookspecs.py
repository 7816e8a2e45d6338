"""The hooks through which a plugin contributes components.

A plugin is a module named by an entry point in the ``p2p`` group; it implements any of these hooks with
``@p2p_core.hookimpl``. Every hook returns a mapping from a short name (what users type, e.g. ``unet``) to a
factory: a class, or a function annotated with the class it returns. The factory's keyword-only, typed
parameters are the component's options (``p2p describe`` lists them); its docstring's first line is the
summary shown by ``p2p list``. All implementations are called; none short-circuits another.

Untyped options are reported (``p2p list`` and the kit's ``check_loads_cleanly``): the command line could not
check or document them. A name is the plugin's to choose, but p2p's own components keep theirs: a plugin's
``unet`` is then reached as ``DIST:unet`` (its distribution's name as pip spells it), as every component can be.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from torch import Tensor

    from p2p_core.reference import Converted

hookspec = pluggy.HookspecMarker("p2p")
hookimpl = pluggy.HookimplMarker("p2p")

Factory = Callable[..., object]


@hookspec
def p2p_generators() -> Mapping[str, Factory]:
    """Return generators by name; each factory builds a :class:`p2p_core.Generator`.

    The engine passes ``in_channels``, ``out_channels`` and ``image_size`` (the training crop side).
    """


@hookspec
def p2p_discriminators() -> Mapping[str, Factory]:
    """Return discriminators by name; each factory builds a :class:`p2p_core.Discriminator`.

    The engine passes ``in_channels``: the output's channels, plus the input's for a conditional objective.
    """


@hookspec
def p2p_losses() -> Mapping[str, Factory]:
    """Return objective terms by name; each factory builds a :class:`p2p_core.Loss`.

    Users combine terms with ``+`` (``--loss cgan+l1``); no argument is passed by the engine.
    """


@hookspec
def p2p_datasets() -> Mapping[str, Factory]:
    """Return paired datasets by name; each factory builds a :class:`p2p_core.PairedDataset`.

    The engine passes ``split`` ("train", "val" or "test").
    """


@hookspec
def p2p_methods() -> Mapping[str, Factory]:
    """Return training methods by name; each factory builds a :class:`p2p_core.Method` (``--method NAME``).

    The engine passes ``training`` (:class:`p2p_core.training.Training`), through which the method builds its
    networks and optimizers; p2p's own ``pix2pix`` is the default.
    """


@hookspec
def p2p_backends() -> Mapping[str, Factory]:
    """Return inference backends by name; each factory builds a :class:`p2p_core.InferenceBackend`
    (``p2p predict --backend NAME``; p2p's own are ``torch`` and ``onnxruntime``).

    No argument is passed by the engine; building one must be cheap, since `p2p list backends` builds each.
    """


@hookspec
def p2p_recipes() -> Mapping[str, Path | Traversable]:
    """Return recipe YAML files by name, usable as ``p2p fit --config NAME`` and ``p2p describe recipe NAME``.

    Ship them as package data and find them with :func:`importlib.resources.files` (p2p's own recipes, the
    ``p2p_recipes`` package, do), so that they work from any installation. Names may contain ``/``
    (``ablations/objective/l1``). Relative paths in a recipe are relative to the working directory; to point at
    data shipped beside the recipe, write ``${recipe_dir}`` (``root: ${recipe_dir}/data``), which becomes the
    recipe file's folder when the recipe is loaded.
    """


@hookspec
def p2p_dataset_downloads() -> Mapping[str, object]:
    """Return datasets ``p2p data download NAME`` can fetch, by name: :class:`p2p_core.downloads.DatasetEntry`."""


@hookspec
def p2p_pretrained() -> Mapping[str, object]:
    """Return released generators by name (:class:`p2p_core.downloads.PretrainedEntry`): ``p2p pretrained list``
    shows them, and ``--ckpt pretrained:NAME`` downloads, imports and uses one."""


@hookspec
def p2p_import_layouts() -> Mapping[str, Callable[[Mapping[str, Tensor]], Converted | None]]:
    """Return state-dict layouts ``p2p import`` (and ``--ckpt pretrained:NAME``) can read, by name: each a converter
    from a state dict of tensors to a :class:`p2p_core.reference.Converted`, or None when the state dict is not in
    its layout.

    Name a layout after the class whose state dicts it reads (``UnetGenerator``); p2p lists the names when no layout
    reads a file. A converter gets the tensors with any ``module.`` prefix (DataParallel's) removed, and is asked
    only once p2p's own layouts (the reference's UnetGenerator, NLayerDiscriminator and PixelDiscriminator) have
    declined. It reads the architecture off the names and shapes and renames the tensors into the keys of a
    registered component; p2p then builds that component and checks every key and shape before anything is written.
    A state dict in its layout that is damaged (a tensor missing or unexplained) raises a
    :class:`p2p_core.DataError` naming the tensor; p2p adds the file's name.
    """

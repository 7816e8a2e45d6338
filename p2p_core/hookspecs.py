"""The hooks through which a plugin contributes components, and those through which it joins training.

A plugin is a module named by an entry point in the ``p2p`` group; it implements any of these hooks with
``@p2p_core.hookimpl``. Every hook returns a mapping from a short name (what users type, e.g. ``unet``) to a
factory: a class, or a function annotated with the class it returns. The factory's keyword-only, typed
parameters are the component's options (``p2p describe`` lists them); its docstring's first line is the
summary shown by ``p2p list``. All implementations are called; none short-circuits another.

Untyped options are reported (``p2p list`` and the kit's ``check_loads_cleanly``): the command line could not
check or document them. A name is the plugin's to choose, but p2p's own components keep theirs: a plugin's
``unet`` is then reached as ``DIST:unet`` (its distribution's name as pip spells it), as every component can be.

The training hooks (``p2p_train_start``, ``p2p_train_step_end``, ``p2p_discriminator_augment``, ``p2p_log``) are
callbacks, called in every run by every loaded plugin that implements them, the way pytest calls its plugins'
hooks around a test: a plugin reads its settings off ``training`` and does nothing when they leave it off. The
built-in ``p2p_ema`` (``--trainer.ema``) is written with them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from torch import Tensor

    from p2p_core.protocols import Sample
    from p2p_core.reference import Converted
    from p2p_core.training import Training

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
    """Return objective terms by name; each factory builds a :class:`p2p_core.Loss` (or a gradient penalty,
    :class:`p2p_core.protocols.Penalty`).

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


@hookspec
def p2p_train_start(training: Training) -> None:
    """Called once the method has built its networks and optimizers (placed, initialised and wrapped), before a
    resumed run loads its checkpoint: set up what the callback keeps on ``training``.

    ``training`` is the :class:`p2p_core.training.Training`: ``config`` (the trainer options), ``networks`` by
    role, ``method``, ``trained.directions``. Weights averaged over training go in ``training.averaged`` (role ->
    a module with the network's state-dict keys): checkpoints hold them, a resumed run gets them back, and
    ``predict``, ``test``, ``export`` and ``demo`` use them in place of the trained weights.
    """


@hookspec
def p2p_train_step_end(training: Training, batch: Sample, logged: dict[str, float]) -> None:
    """Called after every step's updates, with the batch it trained on (on the device) and the scalars the method
    logged; ``training.step`` already counts the step. Scalars added to ``logged`` are averaged and logged with the
    method's (TensorBoard's ``loss/NAME``). Random draws come from torch's generator, which checkpoints hold, so a resumed run repeats them.
    """


@hookspec
def p2p_discriminator_augment(training: Training, role: str) -> Callable[[Tensor], Tensor] | None:
    """Return a function applied to everything the discriminator ``role`` sees, or None to leave it alone.

    Called once per discriminator when the method is built. The function gets each N x C x H x W batch D is run on
    (real pairs and fakes, in D's updates and in G's; for a conditional D the input and output concatenated, so one
    draw moves both) and returns what D sees instead: differentiable, since G's gradient flows through it
    (DiffAugment's translation and cutout), with random draws from torch's generator. Several plugins' functions
    apply one after another.
    """


@hookspec
def p2p_log(training: Training, run_dir: Path, step: int, scalars: Mapping[str, float]) -> None:
    """Called by ``p2p fit`` on the process that logs, wherever it writes TensorBoard's scalars: ``scalars`` by their
    TensorBoard tag (``loss/G/l1``, each the mean since the last call; ``lr``; ``perf/images_per_sec``) at ``step``.
    ``run_dir`` is the run folder, to write a log of your own into."""

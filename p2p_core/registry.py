"""The component registry: plugins found through the ``p2p`` entry-point group, managed by pluggy.

Nothing here imports a plugin by name. Built-in components arrive through the same entry points as a
third-party package's, so what works for one works for the other.

Every component has a qualified name, ``DIST:NAME`` (its distribution's name as pip spells it, e.g.
``p2p-plugin-example:resnet9``), accepted wherever a name is. The short name is what users usually type; when
two distributions register one, p2p's own component keeps it (a plugin cannot break the defaults everyone
uses), and between two plugins it is ambiguous: each is then reachable by its qualified name only.
"""

from __future__ import annotations

import functools
import importlib.metadata
import inspect
import os
import re
import traceback
import typing
import warnings
from collections.abc import Callable, Iterable, Mapping
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import attrs
import pluggy
from torch import nn
from torch.utils.data import Dataset

from p2p_core import hookspecs
from p2p_core.errors import ConfigError, PluginError, UnknownComponentError
from p2p_core.protocols import Discriminator, Generator, InferenceBackend, Loss, Method, PairedDataset, Penalty

ENTRY_POINT_GROUP = "p2p"
DISABLE_AUTOLOAD_ENV = "P2P_DISABLE_PLUGIN_AUTOLOAD"
ALLOW_ENV = "P2P_PLUGINS"
OWN_DISTRIBUTION = "p2p"
QUALIFIER = ":"
"""Between a distribution and a component name: ``p2p-plugin-example:resnet9``."""

HOOKS = {
    "generator": "p2p_generators",
    "discriminator": "p2p_discriminators",
    "loss": "p2p_losses",
    "dataset": "p2p_datasets",
    "method": "p2p_methods",
    "backend": "p2p_backends",
}
KINDS = tuple(HOOKS)
CATALOGUES = {
    "p2p_recipes": "recipes",
    "p2p_dataset_downloads": "dataset_downloads",
    "p2p_pretrained": "pretrained",
    "p2p_import_layouts": "import_layouts",
}
"""Hooks that contribute named things other than components, and the registry property that lists each."""
TRAINING_HOOKS = ("p2p_train_start", "p2p_train_step_end", "p2p_discriminator_augment", "p2p_log")
"""Callbacks that training calls on every plugin implementing them (:attr:`Registry.hook`)."""
FLAGS = {"generator": "generator", "disc": "discriminator", "data": "dataset", "method": "method"}
"""How the command line and configs name each chosen kind: ``--disc patch70``, ``data: {name: aligned}``."""
ALIASES = {flag: kind for flag, kind in FLAGS.items() if flag != kind}
DEFAULTS = {"generator": "unet", "discriminator": "patch70", "dataset": "synthetic", "method": "pix2pix"}
"""What ``p2p fit`` trains when a kind is not named: pix2pix's U-Net and 70x70 PatchGAN, on generated data."""
PROTOCOLS: dict[str, type] = {
    "generator": Generator,
    "discriminator": Discriminator,
    "loss": Loss,
    "dataset": PairedDataset,
    "method": Method,
    "backend": InferenceBackend,
}
# What each kind's instances must also be: the engine trains modules and batches datasets, and the CLI
# resolves factories by what they return.
BASE_CLASSES: dict[str, type] = {"generator": nn.Module, "discriminator": nn.Module, "dataset": Dataset, "loss": object,
                                 "method": object, "backend": object}
RESERVED_OPTION = "name"
# Keywords the engine fills in from the data and the objective; they are not user options.
ENGINE_ARGUMENTS: dict[str, frozenset[str]] = {
    "generator": frozenset({"in_channels", "out_channels", "image_size"}),
    "discriminator": frozenset({"in_channels"}),
    "loss": frozenset(),
    "dataset": frozenset({"split"}),
    "method": frozenset({"training"}),
    "backend": frozenset(),
}


def canonical_kind(kind: str) -> str:
    kind = ALIASES.get(kind, kind)
    if kind not in HOOKS:
        raise UnknownComponentError("component kind", kind, [*KINDS, *ALIASES], hint=".")
    return kind


def qualified_name(distribution: str, name: str) -> str:
    """``DIST:NAME``, the name of component ``name`` of ``distribution`` that no other plugin can take."""
    return f"{_canonical_name(distribution)}{QUALIFIER}{name}"


def flag_for(kind: str) -> str:
    """The command-line flag of a chosen kind: ``discriminator`` -> ``disc``."""
    kind = canonical_kind(kind)
    return next(flag for flag, flagged in FLAGS.items() if flagged == kind)


@attrs.frozen
class Option:
    """One user-settable keyword of a component's factory."""

    name: str
    annotation: str
    default: Any
    required: bool


@attrs.frozen
class Component:
    kind: str
    name: str
    factory: Callable[..., object]
    summary: str
    plugin: str
    distribution: str
    version: str

    @property
    def import_path(self) -> str:
        return f"{self.factory.__module__}.{self.factory.__qualname__}"

    @property
    def qualified_name(self) -> str:
        return qualified_name(self.distribution, self.name.rpartition(QUALIFIER)[2])

    @property
    def options(self) -> tuple[Option, ...]:
        hidden = ENGINE_ARGUMENTS[self.kind]
        try:
            hints = typing.get_type_hints(self.factory.__init__ if inspect.isclass(self.factory) else self.factory)
        except Exception:  # noqa: BLE001 - unresolvable annotations still show as written
            hints = {}
        return tuple(
            Option(
                name=p.name,
                annotation=_annotation_text(hints.get(p.name, p.annotation)),
                default=None if p.default is p.empty else p.default,
                required=p.default is p.empty,
            )
            for p in inspect.signature(self.factory).parameters.values()
            if p.name not in hidden and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
        )


@attrs.frozen
class Plugin:
    """A loaded (or failed) plugin module and what it registered."""

    name: str
    module: str
    distribution: str
    version: str
    components: tuple[str, ...] = ()
    error: str | None = None
    warnings: tuple[str, ...] = ()
    """What works but breaks a documented rule (an untyped option); ``p2p list`` and the kit report it."""


class Registry:
    """Components of every kind, gathered from plugin modules through pluggy hooks."""

    def __init__(self) -> None:
        self._manager = pluggy.PluginManager(ENTRY_POINT_GROUP)
        self._manager.add_hookspecs(hookspecs)
        # By qualified name; a Component's own ``name`` is its short one.
        self._components: dict[str, dict[str, Component]] = {kind: {} for kind in KINDS}
        # Keyed by distribution too: two distributions may both name an entry point e.g. "models".
        self._plugins: dict[tuple[str, str], Plugin] = {}
        self._catalogues: dict[str, dict[str, tuple[Any, str]]] = {attribute: {} for attribute in CATALOGUES.values()}

    # -- loading ------------------------------------------------------------------------------------------

    def load_entry_points(self, allow: Iterable[str] | None = None) -> None:
        """Load every ``p2p`` entry point, or only those whose entry-point or distribution name is in ``allow``.

        Distribution names match as pip matches them: ``p2p_plugin_example`` selects ``p2p-plugin-example``.
        """
        allowed = None if allow is None else {_canonical_name(name) for name in allow}
        for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = entry_point.dist
            dist_name = dist.name if dist else "(unknown distribution)"
            if allowed is not None and not {_canonical_name(entry_point.name), _canonical_name(dist_name)} & allowed:
                continue
            version = dist.version if dist else "?"
            try:
                module = entry_point.load()
            except Exception as error:  # noqa: BLE001 - a broken plugin must not take the others down
                self._plugins[dist_name, entry_point.name] = Plugin(
                    name=entry_point.name,
                    module=entry_point.value,
                    distribution=dist_name,
                    version=version,
                    error=_describe_exception(error),
                )
                continue
            self.register(module, name=entry_point.name, distribution=dist_name, version=version)

    def register(self, module: object, *, name: str, distribution: str, version: str = "?") -> None:
        """Register one plugin module and collect its components; failures are recorded, not raised."""
        module_name = getattr(module, "__name__", repr(module))
        try:
            self._manager.register(module, name=f"{distribution}:{name}")
        except Exception as error:  # noqa: BLE001 - e.g. a hookimpl pluggy rejects
            self._plugins[distribution, name] = Plugin(name, module_name, distribution, version, error=_describe_exception(error))
            return
        added: list[str] = []
        notes: list[str] = []
        errors = [f"{hook}: no such hook (misspelt? the hooks are {', '.join(sorted(self.hook_names))})"
                  for hook in self._unknown_hooks(module)]
        # Each contribution is gathered by calling the hook through pluggy, for this plugin alone, so a
        # component is always known with the distribution that provided it.
        others = [plugin for plugin in self._manager.get_plugins() if plugin is not module]
        for kind, hook_name in HOOKS.items():
            try:
                contributions = self._manager.subset_hook_caller(hook_name, remove_plugins=others)()
                for contributed in contributions:
                    names, rejected = self._add_components(kind, contributed, name, distribution, version)
                    added += [f"{kind}:{n}" for n in names]
                    errors += [f"{hook_name}: {problem}" for problem in rejected]
                    notes += [_untyped_note(self._components[kind][qualified_name(distribution, n)]) for n in names]
            except Exception as error:  # noqa: BLE001 - a hook that raises is this plugin's problem alone
                errors.append(f"{hook_name}: {_describe_exception(error)}")
        for hook_name, attribute in CATALOGUES.items():
            try:
                for contributed in self._manager.subset_hook_caller(hook_name, remove_plugins=others)():
                    for entry_name, value in dict(contributed).items():
                        problem = self._add_to_catalogue(attribute, entry_name, value, f"{distribution} {version} (plugin {name!r})")
                        errors += [f"{hook_name}: {problem}"] if problem else []
                        added += [] if problem else [f"{attribute}:{entry_name}"]
            except Exception as error:  # noqa: BLE001 - a hook that raises is this plugin's problem alone
                errors.append(f"{hook_name}: {_describe_exception(error)}")
        added += [f"hook:{caller.name}" for caller in self._manager.get_hookcallers(module) or [] if caller.name in TRAINING_HOOKS]
        self._plugins[distribution, name] = Plugin(
            name, module_name, distribution, version, tuple(added), error="; ".join(errors) or None,
            warnings=tuple(note for note in notes if note),
        )

    def _add_components(
        self, kind: str, contributed: object, plugin: str, distribution: str, version: str
    ) -> tuple[list[str], list[str]]:
        """Add the valid factories; return their names and one message per rejected one."""
        if not isinstance(contributed, Mapping):
            return [], [f"must return a mapping of name -> factory, got {type(contributed).__name__}"]
        names, rejected = [], []
        for name, factory in contributed.items():
            problem = _factory_problem(kind, name, factory)
            if problem:
                rejected.append(problem)
                continue
            component = Component(
                kind=kind,
                name=name,
                factory=factory,
                summary=_summary(factory),
                plugin=plugin,
                distribution=distribution,
                version=version,
            )
            existing = self._components[kind].get(component.qualified_name)
            if existing is not None:
                if existing.factory is not factory:
                    rejected.append(f"{kind} {name!r} is already registered by {_origin(existing)}; this one is ignored")
                continue
            self._components[kind][component.qualified_name] = component
            names.append(name)
            self._warn_if_shadowed(kind, name)
        return names, rejected

    def _warn_if_shadowed(self, kind: str, name: str) -> None:
        """Say, as a plugin's component loses its short name to p2p's own, how it is reached instead."""
        group = self._named(kind, name)
        if len(group) > 1 and any(c.distribution == OWN_DISTRIBUTION for c in group):
            # Whichever of the two loaded last, the plugin's is the one to warn about, once.
            latest = group[-1]
            for component in group[:-1] if latest.distribution == OWN_DISTRIBUTION else [latest]:
                warnings.warn(_shadowed_note(component), stacklevel=2)

    def _add_to_catalogue(self, attribute: str, name: str, value: Any, origin: str) -> str | None:
        """Add a recipe, dataset, pretrained entry or import layout; the first of a name stays, a second is a problem."""
        existing = self._catalogues[attribute].get(name)
        if existing is not None:
            return f"{attribute} entry {name!r} is already provided by {existing[1]}; this one is ignored"
        if attribute == "import_layouts" and not callable(value):
            return f"import layout {name!r}: {value!r} is not callable; give a function from a state dict to a Converted"
        if attribute == "recipes" and not isinstance(value, Traversable):
            value = Path(value)
        self._catalogues[attribute][name] = (value, origin)
        return None

    @property
    def hook(self) -> pluggy.HookRelay:
        """Every loaded plugin's implementations, by hook: ``registry.hook.p2p_train_step_end(training=..., ...)``
        calls them all (the training callbacks of :mod:`p2p_core.hookspecs`)."""
        return self._manager.hook

    @property
    def hook_names(self) -> list[str]:
        return [*HOOKS.values(), *CATALOGUES, *TRAINING_HOOKS]

    def _unknown_hooks(self, module: object) -> list[str]:
        """Hooks ``module`` implements that no hookspec declares: what pluggy's check_pending() reports."""
        return [caller.name for caller in self._manager.get_hookcallers(module) or [] if not caller.has_spec()]

    # -- queries ------------------------------------------------------------------------------------------

    def providers(self, run: Any) -> dict[str, str]:
        """Flag -> "distribution version" of each component a RunSpec names, as checkpoints record it."""
        return {flag: f"{self.get(kind, getattr(run, flag).name).distribution} {self.get(kind, getattr(run, flag).name).version}"
                for flag, kind in FLAGS.items()}

    def default(self, kind: str) -> str:
        """The name ``p2p fit`` uses when ``kind`` is not chosen."""
        return DEFAULTS[canonical_kind(kind)]

    def available(self, kind: str) -> list[str]:
        """The names ``p2p list`` shows: the short name, or the qualified one where the short one is not this
        component's (p2p's own has it, or two plugins share it)."""
        return sorted(self._reachable(canonical_kind(kind)))

    def _named(self, kind: str, name: str) -> list[Component]:
        """The components whose short name is ``name``, in the order they loaded."""
        return [component for component in self._components[kind].values() if component.name == name]

    def _reachable(self, kind: str) -> dict[str, Component]:
        """Every component of ``kind`` by the name it is listed under, as a Component of that name."""
        reachable = {}
        for component in self._components[kind].values():
            group = self._named(kind, component.name)
            own = [c for c in group if c.distribution == OWN_DISTRIBUTION]
            if component in (own or group) and len(own or group) == 1:
                reachable[component.name] = component
            else:
                reachable[component.qualified_name] = attrs.evolve(component, name=component.qualified_name)
        return reachable

    def get(self, kind: str, name: str) -> Component:
        """The component ``name`` (short or ``DIST:NAME``) of ``kind``; its ``name`` is the one to record for it."""
        kind = canonical_kind(kind)
        distribution, qualified, short = name.rpartition(QUALIFIER)
        if qualified:
            component = self._components[kind].get(qualified_name(distribution, short))
            if component is not None:
                return attrs.evolve(component, name=component.qualified_name)
            raise UnknownComponentError(kind, name, self._components[kind], hint=self._broken_hint())
        reachable = self._reachable(kind)
        if name in reachable:
            return reachable[name]
        group = self._named(kind, name)
        if group:
            raise PluginError(
                f"{kind} {name!r} is registered by more than one plugin: {' and '.join(map(_origin, group))}. "
                f"Choose one by its qualified name, {' or '.join(c.qualified_name for c in group)}, uninstall one, "
                f"or limit loading with {ALLOW_ENV}=<distribution,...>."
            )
        # Configs written before names were kept (config.yaml of older runs) hold the factory's import path.
        for component in reachable.values():
            if component.import_path == name:
                return component
        raise UnknownComponentError(kind, name, reachable, hint=self._broken_hint())

    def create(self, kind: str, name: str, **options: Any) -> Any:
        """Build the component ``name`` of ``kind`` with ``options``, checking both the options and the result."""
        component = self.get(kind, name)
        parameters = inspect.signature(component.factory).parameters
        accepts_any = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
        unknown = [key for key in options if key not in parameters and not accepts_any]
        if unknown:
            raise UnknownComponentError(
                f"option of {component.kind} {name!r}",
                unknown[0],
                [o.name for o in component.options],
                hint=f". `p2p describe {component.kind} {name}` lists them.",
            )
        missing = [p.name for p in parameters.values() if p.default is p.empty and p.name not in options
                   and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
        if missing:
            raise PluginError(f"{component.kind} {name!r} needs option(s) {', '.join(missing)}")
        try:
            instance = component.factory(**options)
        except (ValueError, TypeError, AssertionError) as error:
            user = {key: value for key, value in options.items() if key not in ENGINE_ARGUMENTS[component.kind]}
            # A factory's own check of its options (ngf 0, dropout 2, depth 1): the user's to fix, not a crash.
            raise ConfigError(
                f"{component.kind} {name!r} refused its options {options_text(user)}: {str(error).strip().splitlines()[0]}. "
                f"`p2p describe {component.kind} {name}` lists them"
            ) from None
        base = BASE_CLASSES[component.kind]
        if not isinstance(instance, base):
            raise PluginError(
                f"{component.kind} {name!r} from {_origin(component)} built a {type(instance).__name__}, "
                f"which is not a {base.__module__}.{base.__qualname__}"
            )
        protocol = PROTOCOLS[component.kind]
        if component.kind == "loss" and getattr(instance, "penalises", None) is not None:
            protocol = Penalty  # a gradient penalty has D's side alone
        if not isinstance(instance, protocol):
            lacking = [m for m in _protocol_members(protocol) if not hasattr(instance, m)]
            raise PluginError(
                f"{component.kind} {name!r} from {_origin(component)} does not satisfy the {protocol.__name__} "
                f"protocol: it lacks {', '.join(lacking)}"
            )
        return instance

    def components(self, kind: str | None = None) -> list[Component]:
        """Every component, under the name ``p2p list`` shows (see :meth:`available`)."""
        kinds = KINDS if kind is None else (canonical_kind(kind),)
        return [component for k in kinds for _, component in sorted(self._reachable(k).items())]

    @property
    def plugins(self) -> list[Plugin]:
        return list(self._plugins.values())

    @property
    def recipes(self) -> dict[str, Path | Traversable]:
        """Recipe files by name, as ``p2p fit --config NAME`` finds them."""
        return {name: value for name, (value, _) in self._catalogues["recipes"].items()}

    @property
    def dataset_downloads(self) -> dict[str, Any]:
        """What ``p2p data download NAME`` can fetch, by name."""
        return {name: value for name, (value, _) in self._catalogues["dataset_downloads"].items()}

    @property
    def pretrained(self) -> dict[str, Any]:
        """Released generators ``pretrained:NAME`` can use, by name."""
        return {name: value for name, (value, _) in self._catalogues["pretrained"].items()}

    @property
    def import_layouts(self) -> dict[str, Callable[[Mapping[str, Any]], Any]]:
        """Plugins' converters of other programs' state dicts, by layout name, as ``p2p import`` tries them."""
        return {name: value for name, (value, _) in self._catalogues["import_layouts"].items()}

    def origin(self, attribute: str, name: str) -> str:
        """Which distribution contributed catalogue entry ``name`` (a recipe, dataset download, pretrained model or
        import layout)."""
        return self._catalogues[attribute][name][1]

    @property
    def problems(self) -> list[str]:
        """One line per broken plugin, shared name or plugin warning, for ``p2p list`` and the kit."""
        lines = [f"plugin {p.name!r} ({p.distribution} {p.version}) failed: {p.error}" for p in self.plugins if p.error]
        lines += [f"plugin {p.name!r} ({p.distribution} {p.version}): {warning}" for p in self.plugins for warning in p.warnings]
        for kind in KINDS:
            for name in sorted({c.name for c in self._components[kind].values()}):
                group = self._named(kind, name)
                if len(group) < 2:
                    continue
                if any(c.distribution == OWN_DISTRIBUTION for c in group):
                    lines += [_shadowed_note(c) for c in group if c.distribution != OWN_DISTRIBUTION]
                else:
                    lines.append(f"{kind} {name!r} is registered twice: {' and '.join(map(_origin, group))}; "
                                 f"choose one as {' or '.join(c.qualified_name for c in group)}")
        return lines

    def _broken_hint(self) -> str:
        broken = [p for p in self.plugins if p.error]
        if not broken:
            return ". Missing a plugin? `p2p list plugins` shows what is installed."
        names = ", ".join(f"{p.name} ({p.distribution})" for p in broken)
        return f". Note: plugin(s) {names} failed to load; `p2p list plugins` says why."


def load_registry(plugins: Iterable[str] = ()) -> Registry:
    """A registry of every installed plugin, or, when plugins are named (``plugins``, P2P_PLUGINS) or autoload is
    off (P2P_DISABLE_PLUGIN_AUTOLOAD), of p2p's built-ins and the named ones only.

    The built-ins always load, as pytest's own plugins do: the CLI's defaults are among them. A name that matches
    no installed plugin raises, since a typo would otherwise silently leave the plugin out.
    """
    allow = [*plugins, *(name.strip() for name in os.environ.get(ALLOW_ENV, "").split(",") if name.strip())]
    registry = Registry()
    if not allow and not os.environ.get(DISABLE_AUTOLOAD_ENV):
        registry.load_entry_points()
        return registry
    installed = {name for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP) for name in (ep.name, ep.dist and ep.dist.name) if name}
    for name in allow:
        if _canonical_name(name) not in {_canonical_name(known) for known in installed}:
            raise UnknownComponentError(
                "plugin", name, installed, hint=". Name a plugin by its entry point or its distribution, as `p2p list plugins` shows."
            )
    registry.load_entry_points(allow=[*with_dependencies(allow), OWN_DISTRIBUTION])
    return registry


def with_dependencies(names: Iterable[str]) -> list[str]:
    """``names`` and the installed plugin distributions they require, transitively: a plugin built on another's
    components (its metadata's Requires-Dist names that one) loads with it."""
    plugin_distributions = {_canonical_name(ep.dist.name): ep.dist.name
                            for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.dist}
    found, seen, pending = [], set(), list(names)
    while pending:
        name = pending.pop(0)
        if _canonical_name(name) in seen:
            continue
        seen.add(_canonical_name(name))
        found.append(name)
        try:
            requirements = importlib.metadata.requires(plugin_distributions.get(_canonical_name(name), name)) or []
        except importlib.metadata.PackageNotFoundError:  # an entry point's name rather than a distribution's
            continue
        for requirement in requirements:
            required = re.match(r"[A-Za-z0-9._-]+", requirement)
            if required and "extra ==" not in requirement and _canonical_name(required[0]) in plugin_distributions:
                pending.append(plugin_distributions[_canonical_name(required[0])])
    return found


@functools.cache
def default_registry() -> Registry:
    """The registry of installed plugins, honouring P2P_DISABLE_PLUGIN_AUTOLOAD and P2P_PLUGINS (see load_registry)."""
    return load_registry()


def available(kind: str) -> list[str]:
    """Names of the registered components of ``kind`` (generator, discriminator, loss, dataset, method)."""
    return default_registry().available(kind)


def describe(kind: str, name: str) -> Component:
    """The component's summary, options and the distribution that provided it."""
    return default_registry().get(kind, name)


def create(kind: str, name: str, **options: Any) -> Any:
    """Build a registered component: ``create("generator", "unet", in_channels=3, ...)``."""
    return default_registry().create(kind, name, **options)


def _factory_problem(kind: str, name: object, factory: object) -> str | None:
    """Why ``factory`` cannot be registered as ``name``, or None."""
    if not isinstance(name, str) or not name.isidentifier():
        return f"{kind} name {name!r} must be an identifier such as 'unet'"
    if not callable(factory):
        return f"{kind} {name!r}: factory {factory!r} is not callable; give a class or a function"
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return f"{kind} {name!r}: the options of factory {factory!r} cannot be read from its signature"
    if RESERVED_OPTION in parameters:
        return (f"{kind} {name!r}: option {RESERVED_OPTION!r} is reserved (configs say `{RESERVED_OPTION}: {name}` to choose "
                f"the component); rename the option")
    return None


def _canonical_name(name: str) -> str:
    """A distribution name as pip compares them (PEP 503): case, '-', '_' and '.' do not matter."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _summary(factory: object) -> str:
    doc = inspect.getdoc(factory) or ""
    return doc.strip().splitlines()[0] if doc.strip() else "(no summary)"


def _origin(component: Component) -> str:
    return f"{component.distribution} {component.version} (plugin {component.plugin!r})"


def _shadowed_note(component: Component) -> str:
    return (f"{component.kind} {component.name!r} of {_origin(component)} has the name of p2p's own {component.kind}, "
            f"which keeps it; use this one as {component.qualified_name} (or rename it in the plugin)")


def _untyped_note(component: Component) -> str | None:
    """The note on a component whose options lack annotations: the CLI cannot check or document them."""
    options = {option.name for option in component.options}
    parameters = inspect.signature(component.factory).parameters.values()
    untyped = [p.name for p in parameters if p.name in options and p.annotation is p.empty]
    if not untyped:
        return None
    return (f"{component.kind} {component.name!r}: option(s) {', '.join(untyped)} have no type annotation, so the "
            f"command line takes any value; annotate them (e.g. `ngf: int = 64`)")


def _protocol_members(protocol: type) -> list[str]:
    members = set(getattr(protocol, "__annotations__", {}))
    members |= {n for n, v in vars(protocol).items() if callable(v) and not n.startswith("_")}
    return sorted(members)


def _annotation_text(annotation: object) -> str:
    if annotation is inspect.Parameter.empty:
        return "Any"
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "").replace("pathlib.", "")


def _describe_exception(error: BaseException) -> str:
    where = traceback.extract_tb(error.__traceback__)
    location = f" (at {Path(where[-1].filename).name}:{where[-1].lineno})" if where else ""
    return f"{type(error).__name__}: {error}{location}"


def options_text(options: Mapping[str, Any]) -> str:
    """Options as a user wrote them, for messages: ``ngf=0, norm='batch'``."""
    return ", ".join(f"{key}={value!r}" for key, value in options.items()) or "(none)"

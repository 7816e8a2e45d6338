"""Run specs from the command line and YAML: ``p2p fit --generator unet --generator.ngf 8 --config recipe``.

Parsing happens in two steps, so that every component's options come from its own signature and nothing else:

1. :func:`expand` reads argv once: each ``--config`` (a file or a recipe name) is loaded and checked against the
   registry (names only: nothing is imported), ``--generator NAME`` becomes ``--generator.name NAME``, and the
   chosen names and loss terms are noted. Choosing another component than an earlier argument or config did
   drops that earlier component's options, so a switch never inherits options that merely share a name.
2. :func:`spec_parser` builds a jsonargparse parser for exactly the chosen components (their options, typed
   and documented, under ``--generator.OPTION``), the loss terms (``--loss_options.l1.weight``) and the
   trainer; the parsed namespace becomes a :class:`~p2p_core.spec.RunSpec`.

In YAML a component is ``generator: unet`` or ``generator: {name: unet, ngf: 8}``; the jsonargparse form
``{class_path: unet, init_args: {ngf: 8}}`` of older recipes and configs is read too. ``${recipe_dir}`` in a
string value is the config file's own folder: how a plugin's recipe names data shipped beside it
(``root: ${recipe_dir}/data``); other relative paths are relative to the working directory.

Every YAML text p2p reads, configs and option values alike (jsonargparse's too), goes through
:class:`BoundedLoader`: no anchors or aliases (a 500-byte "billion laughs" would otherwise expand to gigabytes),
at most :data:`MAX_DEPTH` levels of nesting, and no key given twice in one mapping.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import attrs
import yaml
from jsonargparse import ActionConfigFile, ArgumentParser, Namespace, get_loader, set_loader, set_parsing_settings

from p2p_core.errors import ConfigError, P2PError, did_you_mean
from p2p_core.registry import ENGINE_ARGUMENTS, FLAGS, RESERVED_OPTION, Registry
from p2p_core.spec import SPEC_KEY, SPEC_VERSION, ComponentSpec, RunSpec, TrainConfig, check_trainer

CONFIG_FLAGS = ("--config", "-c")
RECIPE_DIR = "${recipe_dir}"
DEFAULT_LOSS = "cgan+l1"
# The trainer's options (and a plugin's attrs options) are documented by the string under each field.
set_parsing_settings(docstring_parse_attribute_docstrings=True)
MAX_DEPTH = 50
"""Nesting levels a YAML document may have; a config needs four or five."""


class OutOfBoundsError(yaml.MarkedYAMLError):
    """A YAML document that :class:`BoundedLoader` refuses; ``problem`` says why, ``problem_mark`` where."""


class BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, bounded while it composes, before anything is built: anchors and aliases are
    refused (so a document expands to nothing larger than its text), nesting stops at :data:`MAX_DEPTH`, and
    a mapping may not give a key twice (YAML would keep the last one silently)."""

    depth = 0

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise OutOfBoundsError(
                problem="YAML anchors and aliases (&NAME, *NAME) are not accepted; write the value out", problem_mark=event.start_mark
            )
        if self.depth >= MAX_DEPTH:
            raise OutOfBoundsError(problem=f"nested deeper than {MAX_DEPTH} levels", problem_mark=event.start_mark)
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        mapping = super().construct_mapping(node, deep=deep)
        if len(mapping) < len(node.value):
            keys = [self.construct_object(key) for key, _ in node.value]
            again = next(index for index, key in enumerate(keys) if key in keys[:index])
            raise OutOfBoundsError(problem=f"{str(keys[again])[:80]!r} is given twice; give each key once",
                                   problem_mark=node.value[again][0].start_mark)
        return mapping


def load_yaml(text: str) -> Any:
    """``text`` as YAML, within :class:`BoundedLoader`'s bounds (a ``yaml.YAMLError`` names the line)."""
    return yaml.load(text, Loader=BoundedLoader)  # noqa: S506 - a SafeLoader subclass


class _PlainDumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump_yaml(value: Any) -> str:
    """``value`` as YAML that :func:`load_yaml` reads back: an object met twice is written out twice, never as
    an anchor and an alias."""
    return yaml.dump(value, Dumper=_PlainDumper, sort_keys=False)


_JSONARGPARSE_LOAD = get_loader("yaml")


def _jsonargparse_load(text: str) -> Any:
    # jsonargparse re-reads the config text expand() dumps and parses option values such as --data '{...}':
    # the bounds first, then its own loader, whose number rules its parsers rely on.
    load_yaml(text)
    return _JSONARGPARSE_LOAD(text)


set_loader("yaml", _jsonargparse_load)


@attrs.frozen(kw_only=True)
class Expanded:
    """argv with its configs inlined and component names checked, and what it chose."""

    tokens: list[str]
    names: dict[str, str]
    """Flag -> the component name chosen (by argv or a config), for the flags that were chosen."""
    loss: str | None


def expand(
    argv: list[str], registry: Registry, *, flags: Mapping[str, str] = FLAGS, accepted: Collection[str] | None = None
) -> Expanded:
    """Inline every ``--config``, check names against the registry, and drop options a later choice replaced.

    ``accepted``: the top-level keys a config may hold (all when None)."""
    items: list[_Item] = []
    names: dict[str, str] = {}
    roles: dict[str, dict[str, Any]] = {}
    loss: str | None = None
    tokens = list(argv)
    position = 0

    def value_of(option: str, equals: str, value: str) -> str:
        nonlocal position
        if equals:
            return value
        if position >= len(tokens) or tokens[position].startswith("--"):
            raise ConfigError(f"{option} needs a value")
        position += 1
        return tokens[position - 1]

    while position < len(tokens):
        token = tokens[position]
        position += 1
        option, equals, value = token.partition("=")
        if option in CONFIG_FLAGS:
            content = read_config(value_of(option, equals, value), registry, flags=flags, accepted=accepted)
            for role, options in (content.pop("roles", None) or {}).items():
                if not isinstance(options, dict):
                    raise ConfigError(f"config {value}: roles.{role} must be a mapping of options, e.g. {{ngf: 16}}")
                roles.setdefault(str(role), {}).update(options)
            for flag in flags:
                if isinstance(content.get(flag), dict) and "name" in content[flag]:
                    _choose(items, names, flag, content[flag]["name"])
            if isinstance(content.get("loss"), str):
                loss = _checked_loss(content["loss"], registry)
            items.append(_Item(tokens=[option, dump_yaml(content)], content=content))
        elif option.startswith("--") and (option[2:] in flags or option[2:].removesuffix(".name") in flags):
            flag = option[2:].removesuffix(".name")
            name = registry.get(flags[flag], value_of(option, equals, value)).name
            _choose(items, names, flag, name)
            items.append(_Item(tokens=[f"--{flag}.name", name]))
        elif option == "--loss":
            loss = _checked_loss(value_of(option, equals, value), registry)
            items.append(_Item(tokens=["--loss", loss]))
        elif _role_option(option, flags):
            role, _, name = option[2:].partition(".")
            raw = value_of(option, equals, value)
            try:
                roles.setdefault(role, {})[name] = yaml.safe_load(raw)
            except yaml.YAMLError:
                roles.setdefault(role, {})[name] = raw
        else:
            owner = next((flag for flag in flags if option.startswith(f"--{flag}.")), None)
            item = _Item(tokens=[token], flag=owner)
            # Its value travels with it, so a later switch of component drops both.
            if owner and not equals and position < len(tokens) and not tokens[position].startswith("--"):
                item.tokens.append(tokens[position])
                position += 1
            items.append(item)
    tokens = [token for item in items for token in item.tokens]
    if roles:  # after every config, so that the command line's role options win
        tokens += ["--roles", yaml.safe_dump(roles, default_flow_style=True).strip()]
    return Expanded(tokens=tokens, names=names, loss=loss)


GROUPS = ("trainer", "loss_options", "roles")
"""The parser's own groups of dotted options; any other ``--ROLE.OPTION`` sets an option of one network of the method."""


def _role_option(option: str, flags: Mapping[str, str]) -> bool:
    head, dot, _ = option.removeprefix("--").partition(".")
    return option.startswith("--") and bool(dot) and head.isidentifier() and head not in flags and head not in GROUPS


@attrs.define
class _Item:
    tokens: list[str]
    content: dict[str, Any] | None = None
    """A config's content, whose component entries a later switch may drop."""
    flag: str | None = None
    """The component flag an ``--flag.option value`` argument belongs to."""


def _choose(items: list[_Item], names: dict[str, str], flag: str, name: str) -> None:
    """Note ``flag``'s new choice; on a switch, forget what earlier arguments and configs set for the old one."""
    if names.get(flag, name) != name:
        for item in items:
            if item.flag == flag:
                item.tokens.clear()
            elif item.content is not None and flag in item.content:
                del item.content[flag]
                item.tokens[1] = dump_yaml(item.content)
    names[flag] = name


def _checked_loss(loss: str, registry: Registry) -> str:
    terms = [term.strip() for term in loss.split("+") if term.strip()]
    if not terms:
        raise ConfigError(f"--loss {loss!r} names no term; e.g. --loss cgan+l1")
    return "+".join(registry.get("loss", term).name for term in terms)


def read_config(
    value: str, registry: Registry, *, flags: Mapping[str, str] = FLAGS, accepted: Collection[str] | None = None
) -> dict[str, Any]:
    """A config file or recipe name as a mapping whose components are ``{name: NAME, **options}``; a top-level
    key outside ``accepted`` (when given) is refused before anything looks inside the document."""
    path = registry.recipes.get(value) or Path(value)
    if not path.is_file():
        known = ", ".join(sorted(registry.recipes)) or "none"
        raise ConfigError(f"config {value!r} is neither a file nor a recipe name{did_you_mean(value, registry.recipes)} "
                          f"(recipes: {known})")
    try:
        content = load_yaml(path.read_text())
    except OutOfBoundsError as error:
        raise ConfigError(f"config {path}, line {error.problem_mark.line + 1}: {error.problem}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise ConfigError(f"config {path} is not a YAML text file: {str(error).splitlines()[0]}") from None
    if not isinstance(content, dict):
        raise ConfigError(f"config {path} must be a YAML mapping of options, e.g. 'generator: unet'")
    if accepted is not None:
        unknown = [key for key in content if str(key).split(".")[0] not in {*accepted, SPEC_KEY}]
        if unknown:
            raise ConfigError(f"config {path}: option {str(unknown[0])[:80]!r} is not accepted{did_you_mean(str(unknown[0]), accepted)} "
                              f"(options: {', '.join(sorted(accepted))})")
    version = content.pop(SPEC_KEY, SPEC_VERSION)
    if not isinstance(version, int) or version > SPEC_VERSION:
        raise ConfigError(f"config {path} has {SPEC_KEY}: {version!r}; this p2p reads up to {SPEC_VERSION}, so upgrade p2p")
    content = _with_recipe_dir(content, os.path.dirname(os.path.abspath(str(path))))
    for flag, kind in flags.items():
        if flag in content:
            content[flag] = _component_entry(content[flag], kind, f"{path}: {flag}", registry)
    return content


def _with_recipe_dir(value: Any, folder: str) -> Any:
    """``value`` with ``${recipe_dir}`` in every string, at any depth, replaced by ``folder``."""
    if isinstance(value, str):
        return value.replace(RECIPE_DIR, folder)
    if isinstance(value, dict):
        return {key: _with_recipe_dir(item, folder) for key, item in value.items()}
    if isinstance(value, list):
        return [_with_recipe_dir(item, folder) for item in value]
    return value


def _component_entry(entry: Any, kind: str, where: str, registry: Registry) -> dict[str, Any]:
    if isinstance(entry, str):
        entry = {"name": entry}
    if not isinstance(entry, dict):
        raise ConfigError(f"{where} must be a name or a mapping such as {{name: NAME, OPTION: VALUE}}, got {entry!r:.60}")
    if "class_path" in entry:  # the jsonargparse form of older recipes and run folders
        options = entry.get("init_args") or {}
        extra = sorted(set(entry) - {"class_path", "init_args"})
        if not isinstance(options, dict) or extra:
            raise ConfigError(f"{where}: expected class_path and init_args (a mapping) only")
        entry = {"name": entry["class_path"], **options}
    if "name" in entry:
        if not isinstance(entry["name"], str):
            raise ConfigError(f"{where}.name must be a component name, got {entry['name']!r:.60}")
        # Checked by name before anything is built: an unknown name never leads to an import.
        entry = {**entry, "name": registry.get(kind, entry["name"]).name}
    return dict(entry)


def spec_parser(
    registry: Registry,
    names: Mapping[str, str],
    loss: str,
    *,
    flags: Mapping[str, str] = FLAGS,
    description: str = "",
    prog: str | None = None,
) -> ArgumentParser:
    """A parser for exactly these components, loss terms and the trainer's options."""
    parser = ArgumentParser(prog=prog, description=description, exit_on_error=False)
    parser.add_argument(*CONFIG_FLAGS, action=ActionConfigFile, help="A recipe: a YAML file or a recipe name (p2p list recipes).")
    for flag, kind in flags.items():
        component = registry.get(kind, names.get(flag) or registry.default(kind))
        _add_factory_arguments(parser, component.factory, flag, skip=ENGINE_ARGUMENTS[kind], what=f"{kind} {component.name!r}")
        parser.add_argument(
            f"--{flag}.{RESERVED_OPTION}",
            type=str,
            default=component.name,
            help=f"The {kind}, by name: {', '.join(registry.available(kind))}. Written --{flag} NAME.",
        )
    parser.add_argument("--loss", type=str, default=default_loss(registry, names.get("method")),
                        help="Objective terms joined by '+', e.g. l1, cgan, gan+l1, cgan+l1 (default: the method's).")
    for term in loss.split("+"):
        component = registry.get("loss", term)
        _add_factory_arguments(parser, component.factory, f"loss_options.{term}", skip=frozenset(), what=f"loss {term!r}")
    own_loss, own_options = default_objective(registry, names.get("method"))
    if loss == own_loss:  # the method's own objective, with its own settings
        for term, options in own_options.items():
            parser.set_defaults({f"loss_options.{term}.{option}": value for option, value in options.items()})
    parser.add_class_arguments(TrainConfig, "trainer", instantiate=False)
    parser.add_argument("--roles", type=dict[str, dict[str, Any]], default={},
                        help="Options of one network of the method over its kind's, by role: --generator_ab.ngf 16, or "
                             "in YAML roles: {generator_ab: {ngf: 16}}. The roles: p2p describe method NAME.")
    _describe_group_options(parser, flags)
    return parser


def default_loss(registry: Registry, method: str | None) -> str:
    """The objective a method trains when ``--loss`` is not given: its ``default_loss``, else pix2pix's cGAN + L1."""
    return default_objective(registry, method)[0]


def default_objective(registry: Registry, method: str | None) -> tuple[str, dict[str, dict[str, Any]]]:
    """A method's ``default_loss`` and ``default_loss_options`` (the settings of its terms it trains by default)."""
    factory = registry.get("method", method or registry.default("method")).factory
    return getattr(factory, "default_loss", DEFAULT_LOSS), {k: dict(v) for k, v in getattr(factory, "default_loss_options", {}).items()}


def _add_factory_arguments(parser: ArgumentParser, factory: Any, key: str, *, skip: frozenset[str], what: str) -> None:
    """The factory's keyword parameters as ``--KEY.OPTION``, typed and documented from its signature and docstring."""
    import inspect

    adder = parser.add_class_arguments if inspect.isclass(factory) else parser.add_function_arguments
    try:
        adder(factory, key, skip=set(skip), fail_untyped=False)
    except ValueError as error:
        raise ConfigError(f"the options of {what} cannot be read from its signature: {error}") from None


def _describe_group_options(parser: ArgumentParser, flags: Mapping[str, str]) -> None:
    # jsonargparse gives every group a --KEY CONFIG option; for a component, --KEY takes its name instead
    # (expand() rewrites it), so say that rather than "Path to a configuration file".
    for action in parser._actions:
        for flag in flags:
            if action.option_strings == [f"--{flag}"]:
                action.metavar, action.help = "NAME", f"Which {flags[flag]}: a name from `p2p list {flag}`."


def parse_spec(
    argv: list[str],
    registry: Registry,
    *,
    flags: Mapping[str, str] = FLAGS,
    extend: Any = None,
    description: str = "",
    prog: str | None = None,
) -> tuple[RunSpec, Namespace]:
    """A RunSpec from argv (``extend(parser)`` adds a command's own options); returns it with the namespace."""
    expanded = expand(argv, registry, flags=flags, accepted=_top_level_keys(flags, extend))
    loss = expanded.loss or default_loss(registry, expanded.names.get("method"))
    parser = spec_parser(registry, expanded.names, loss, flags=flags, description=description, prog=prog)
    if extend is not None:
        extend(parser)
    namespace = parse(parser, expanded.tokens)
    return spec_from(namespace, registry, flags=flags), namespace


def _top_level_keys(flags: Mapping[str, str], extend: Any) -> set[str]:
    """The keys a config may hold at its top: the spec's, and what ``extend`` adds for one command."""
    command = ArgumentParser(exit_on_error=False)
    if extend is not None:
        extend(command)
    return {*flags, "loss", "loss_options", "trainer", "roles"} | {action.dest for action in command._actions if action.dest != "help"}


_OUT_OF_RANGE = re.compile(r'Parser key "([^"]+)".*?Not of type (\w+ in [\[(][^\])]*[\])])(?:: (\S+) does not conform)?')


def parse(parser: ArgumentParser, tokens: list[str]) -> Namespace:
    """Parse, turning jsonargparse's complaints into one-line ConfigErrors."""
    try:
        return parser.parse_args(tokens)
    except P2PError:
        raise
    except Exception as error:  # noqa: BLE001 - jsonargparse raises ArgumentError and others
        # jsonargparse explains over several indented lines; the CLI prints one.
        message = " ".join(line.strip() for line in str(error).strip().splitlines() if line.strip())
        out_of_range = _OUT_OF_RANGE.search(message)
        if out_of_range:  # a p2p_core.ranges type: say the range, not jsonargparse's restriction syntax
            key, kind, value = out_of_range.groups()
            message = f"--{key} must be {'an' if kind.startswith('int') else 'a'} {kind}" + (f", got {value}" if value else "")
        raise ConfigError(message or f"{type(error).__name__} while parsing {' '.join(tokens)}") from None


def spec_from(namespace: Namespace, registry: Registry, *, flags: Mapping[str, str] = FLAGS) -> RunSpec:
    def component(flag: str) -> ComponentSpec:
        if flag not in flags:
            return ComponentSpec(registry.default(FLAGS[flag]))
        options = namespace[flag].as_dict()
        return ComponentSpec(options.pop(RESERVED_OPTION), options)

    parsed = namespace.get("loss_options")
    loss_options = parsed.as_dict() if parsed else {}
    # jsonargparse keys options by Python name, `-` as `_`; a term's options stay under the term's own name
    # (p2p-plugin-example:lsgan).
    for term in namespace.loss.split("+"):
        if term.replace("-", "_") in loss_options:
            loss_options[term] = loss_options.pop(term.replace("-", "_"))
    return RunSpec(
        generator=component("generator"),
        disc=component("disc"),
        data=component("data"),
        method=component("method"),
        loss=namespace.loss,
        loss_options=loss_options,
        trainer=check_trainer(namespace.trainer.as_dict()),
        roles=namespace.get("roles") or {},
    )


def options_round_trip(kind: str, name: str, options: Mapping[str, Any], registry: Registry) -> tuple[dict, dict]:
    """The options as parsed from argv, and again after a trip through ``config.yaml``: they must be equal.

    What the conformance kit checks for every component; public so that it needs nothing private of the CLI.
    """
    import tempfile

    if kind == "loss":
        argv = ["--loss", name, *_option_arguments(f"loss_options.{name}", options)]
        read = lambda spec: dict(spec.loss_options.get(name, {}))  # noqa: E731
    else:
        flag = next(f for f, k in FLAGS.items() if k == kind)
        argv = [f"--{flag}", name, *_option_arguments(flag, options)]
        read = lambda spec: dict(getattr(spec, flag).options)  # noqa: E731
    spec, _ = parse_spec(argv, registry)
    with tempfile.TemporaryDirectory() as folder:
        saved = Path(folder, "config.yaml")
        saved.write_text(dump_yaml(spec.to_dict()))
        again, _ = parse_spec(["--config", str(saved)], registry)
    return read(spec), read(again)


def _option_arguments(key: str, options: Mapping[str, Any]) -> list[str]:
    plain = {k: os.fspath(v) if hasattr(v, "__fspath__") else v for k, v in options.items()}
    return [arg for option, value in plain.items() for arg in (f"--{key}.{option}", dump_yaml(value).strip().removesuffix("\n..."))]


"""The ``p2p`` command: a table of commands, each a typed function whose parser is generated from its signature.

``p2p [-p PLUGIN ...] COMMAND [OPTIONS]``. The table below names each command's function by import path, so
``p2p --help`` imports neither torch nor a plugin, and a command imports only what it runs. Options, their
types and their help come from the function's signature and docstring (jsonargparse); ``fit`` and ``bench``
choose components, so their options come from the chosen components (:mod:`p2p_core.config`). Every command
gets the same registry: the one ``-p`` selected.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import sys
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from p2p_core.errors import ConfigError, P2PError, UnknownComponentError

PLUGIN_FLAGS = ("-p", "--plugin")


@attrs.frozen
class Command:
    """One command: its function, its one-line help, and, for fit and bench, what reads its options."""

    name: str
    target: str
    """``module:function``, imported when the command runs."""
    help: str
    arguments: str | None = None
    """``module:function(argv, registry) -> kwargs`` for commands whose options depend on their choices."""
    subcommands: tuple[Command, ...] = ()

    def function(self) -> Callable[..., Any]:
        module, _, name = self.target.partition(":")
        return getattr(importlib.import_module(module), name)


COMMANDS = (
    Command("fit", "p2p_core.commands:fit", "Train a model (defaults: the paper's U-Net, 70x70 PatchGAN, cGAN + L1).",
            arguments="p2p_core.commands:fit_arguments"),
    Command("predict", "p2p_core.predict:predict", "Translate a folder of images with a trained model."),
    Command("test", "p2p_core.commands:test", "Test a trained model: images, metrics.json and an HTML page."),
    Command("evaluate", "p2p_core.commands:evaluate", "L1, PSNR, SSIM, Lab colour histograms (and FID) of translated images."),
    Command("sweep", "p2p_core.commands:sweep", "Run a set of recipes (e.g. recipes/ablations/...) and compare them."),
    Command("export", "p2p_core.export:export", "Save a trained generator for use without p2p."),
    Command("demo", "p2p_core.demo:demo", "Draw in the browser and watch a trained model translate it."),
    Command("push", "p2p_core.publish:push", "Publish a trained model on the Hugging Face Hub, with its model card."),
    Command("import", "p2p_core.commands:import_model", "Turn a pix2pix reference .pth into a p2p run folder."),
    Command("pretrained", "", "The released pix2pix generators: list, download (or --ckpt pretrained:NAME).", subcommands=(
        Command("list", "p2p_core.commands:pretrained_list", "List them, with what they translate and their source."),
        Command("download", "p2p_core.commands:pretrained_download", "Download and import one into the cache."),
    )),
    Command("data", "", "Datasets: download the pix2pix ones, combine A/B folders, or make edges from photos.", subcommands=(
        Command("download", "p2p_core.commands:data_download", "Download a pix2pix dataset into the layout its recipe reads."),
        Command("combine", "p2p_core.datatools:combine", "Pair A/ and B/ folders into the aligned AB layout."),
        Command("edges", "p2p_core.datatools:edges", "Make edges->photo pairs from photos (Canny edges)."),
    )),
    Command("scorer", "", "The paper's FCN-score: a segmenter that judges generated photos.", subcommands=(
        Command("fit", "p2p_core.commands:scorer_fit", "Train a scorer on a labelled task's real photos (synthetic)."),
    )),
    Command("bench", "p2p_core.commands:bench", "Measure images/s, FLOPs and memory of a model.",
            arguments="p2p_core.commands:bench_arguments"),
    Command("list", "p2p_core.commands:list_components", "List components, plugins or recipes."),
    Command("describe", "p2p_core.commands:describe", "Show a component's options."),
)


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        plugins, rest = split_plugin_options(argv)
        command, rest, prog = _find(COMMANDS, rest, "p2p")
        if command is None:
            return
        from p2p_core.registry import default_registry, load_registry

        registry = load_registry(plugins) if plugins else default_registry()
        function = command.function()
        if command.arguments is not None:
            module, _, name = command.arguments.partition(":")
            arguments = getattr(importlib.import_module(module), name)(rest, registry)
        else:
            arguments = parse_function_arguments(function, rest, prog=prog)
        accepted = inspect.signature(function).parameters
        extra = {"registry": registry, "argv": argv}
        result = function(**arguments, **{key: value for key, value in extra.items() if key in accepted})
        if result is not None:  # library functions (export, data tools) return a report of what they did
            print(result)
    except P2PError as error:
        print(f"p2p: error: {_first_cause(error)}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print("p2p: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except BrokenPipeError:  # `p2p --help | head` closed the pipe: what was read is all that was wanted
        # Python would complain again when it flushes stdout at exit; point stdout where writes are dropped.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(141) from None


def _find(commands: Sequence[Command], argv: list[str], prog: str) -> tuple[Command | None, list[str], str]:
    """The command argv names (descending into groups such as ``data``), or None after printing an overview."""
    if not argv or argv[0] in ("-h", "--help"):
        print(overview(commands, prog))
        return None, [], prog
    name, rest = argv[0], argv[1:]
    known = {command.name: command for command in commands}
    if name not in known:
        raise UnknownComponentError("command", name, known, hint=f". `{prog} --help` describes them.")
    command = known[name]
    if command.subcommands:
        return _find(command.subcommands, rest, f"{prog} {name}")
    return command, rest, f"{prog} {name}"


def overview(commands: Sequence[Command], prog: str) -> str:
    width = max(len(command.name) for command in commands)
    lines = [f"usage: {prog} [-p PLUGIN ...] COMMAND [OPTIONS]" if prog == "p2p" else f"usage: {prog} COMMAND [OPTIONS]", ""]
    if prog == "p2p":
        lines += ["pix2pix image-to-image translation with pluggable components.", "",
                  "-p, --plugin NAME   Load p2p's built-ins and only the plugins named (entry point or distribution;",
                  "                    repeatable), as P2P_PLUGINS does.", ""]
    lines += ["commands:"] + [f"  {command.name.ljust(width)}  {command.help}" for command in commands]
    lines += ["", f"`{prog} COMMAND --help` shows a command's options."]
    return "\n".join(lines)


def function_parser(function: Callable[..., object], *, prog: str) -> Any:
    """Options from a function's typed keyword parameters, their help from its docstring's Args section.

    Parameters before the ``*`` are positional arguments (``p2p describe generator unet``); ``registry`` and
    ``argv`` are given by the CLI, not typed by users.
    """
    import docstring_parser
    from jsonargparse import ActionYesNo, ArgumentParser

    doc = inspect.getdoc(function) or ""
    parser = ArgumentParser(prog=prog, description=doc.split("\n\nArgs:")[0], exit_on_error=False)
    parameters, hints = inspect.signature(function).parameters, typing.get_type_hints(function)
    helps = {param.arg_name: param.description for param in docstring_parser.parse(doc).params}
    positional = {name: p for name, p in parameters.items() if p.kind is p.POSITIONAL_OR_KEYWORD}
    for parameter in positional.values():
        hint = hints[parameter.name]
        many = typing.get_origin(hint) is list
        nargs = "+" if many else ("?" if parameter.default is not parameter.empty else None)
        parser.add_argument(parameter.name, type=typing.get_args(hint)[0] if many else hint, nargs=nargs, help=helps.get(parameter.name))
    # Lists are typed as people type them, one value after another: --base a.yaml b.yaml.
    lists = {name: _list_item(hints[name]) for name in parameters if name not in positional and _list_item(hints.get(name))}
    for name, item in lists.items():
        parser.add_argument(f"--{name}", type=item, nargs="+", default=parameters[name].default, help=helps.get(name))
    switches = [name for name in parameters if hints.get(name) is bool]
    parser.add_function_arguments(function, as_group=False, skip={*switches, *lists, *positional, "registry", "argv"})
    for name in switches:
        # A plain jsonargparse bool needs a value (--overwrite true); a switch also works alone, as people type it.
        parser.add_argument(f"--{name}", action=ActionYesNo, nargs="?", default=parameters[name].default, help=helps.get(name))
    return parser


def _list_item(hint: Any) -> Any:
    """X for ``list[X]`` or ``list[X] | None``, else None."""
    options = [hint, *typing.get_args(hint)] if typing.get_origin(hint) in (typing.Union, types.UnionType) else [hint]
    for option in options:
        if typing.get_origin(option) is list:
            return typing.get_args(option)[0]
    return None


def parse_function_arguments(function: Callable[..., object], argv: list[str], *, prog: str) -> dict[str, Any]:
    """``argv`` parsed against ``function``'s signature, as its keyword arguments."""
    from p2p_core.config import parse
    from p2p_core.ranges import plain

    return {key: plain(value) for key, value in parse(function_parser(function, prog=prog), argv).as_dict().items()}


def split_plugin_options(argv: list[str]) -> tuple[list[str], list[str]]:
    """Take the leading ``-p NAME`` / ``-pNAME`` / ``--plugin[=]NAME`` options off ``argv``: (names, the rest)."""
    names, rest = [], list(argv)
    while rest and (rest[0] in PLUGIN_FLAGS or rest[0].startswith(("-p", "--plugin="))):
        token = rest.pop(0)
        if token in PLUGIN_FLAGS:
            if not rest:
                raise ConfigError(f"{token} needs a plugin name, e.g. p2p {token} p2p-plugin-example list")
            names.append(rest.pop(0))
        else:
            names.append(token.removeprefix("--plugin=").removeprefix("-p"))
    return names, rest


def _first_cause(error: BaseException) -> str:
    # DataLoader workers re-raise with the worker's traceback in the message; the user needs its last line.
    text = str(error)
    if "Original Traceback" in text:
        text = text.strip().splitlines()[-1].split(": ", 1)[-1]
    # A 400-digit number is named by its length, so that the line stays readable.
    return re.sub(r"\d{20,}", lambda digits: f"{digits[0][:6]}... ({len(digits[0])} digits)", text)

"""The ``p2p`` command: fit, predict, export, demo, data, list, describe.

jsonargparse reads options, config files and ``--print_config``; components are chosen jsonargparse's way
(``--generator NAME --generator.ngf 8``, or ``class_path``/``init_args`` in YAML). jsonargparse resolves class
paths, while users type registry names, so names are translated to their factories' import paths at the one
place input enters (``normalise``), after the plugins have loaded.
"""

from __future__ import annotations

import inspect
import signal
import sys
import time
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import docstring_parser
import yaml
from jsonargparse import ActionConfigFile, ActionYesNo, ArgumentParser, Namespace

from p2p_core import checkpoint, datatools, distributed
from p2p_core.demo import demo
from p2p_core.engine import Choice, Trainer, TrainConfig, resolve_device
from p2p_core.errors import ConfigError, P2PError
from p2p_core.export import export
from p2p_core.inference import Mode
from p2p_core.registry import BASE_CLASSES, ENGINE_ARGUMENTS, KINDS, Registry, canonical_kind, default_registry

# Command-line flag -> registry kind, for the components chosen by name.
COMPONENT_FLAGS = {"generator": "generator", "disc": "discriminator", "data": "dataset"}
DEFAULTS = {"generator": "unet", "disc": "patch70", "data": "synthetic"}
CONFIG_FLAGS = ("--config", "-c")
LIST_TOPICS = (*KINDS, "disc", "data", "plugins", "recipes")
DATA_TOOLS = {"combine": datatools.combine, "edges": datatools.edges}


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        registry = default_registry()
        parser, fit_parser = build_parser(registry)
        config = parser.parse_args(normalise(argv, registry))
        command = config.subcommand
        arguments = config[command]
        if command == "fit":
            fit(arguments, argv, parser, fit_parser, registry)
        elif command == "predict":
            predict(arguments, registry)
        elif command == "export":
            print(export(**arguments.as_dict()))
        elif command == "demo":
            demo(**arguments.as_dict())
        elif command == "data":
            print(DATA_TOOLS[arguments.tool](**arguments[arguments.tool].as_dict()))
        elif command == "list":
            print(list_text(arguments.topic, registry))
        elif command == "describe":
            print(describe_text(arguments.kind, arguments.name, registry))
    except P2PError as error:
        print(f"p2p: error: {_first_cause(error)}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print("p2p: interrupted", file=sys.stderr)
        raise SystemExit(130) from None


def build_parser(registry: Registry) -> tuple[ArgumentParser, ArgumentParser]:
    parser = ArgumentParser(prog="p2p", description="pix2pix image-to-image translation with pluggable components.")
    commands = parser.add_subcommands(dest="subcommand")
    fit_parser = _fit_parser(registry)
    commands.add_subcommand("fit", fit_parser, help="Train a model (defaults: the paper's U-Net, 70x70 PatchGAN, cGAN + L1).")

    predict_parser = ArgumentParser(
        description="Translate a folder of images with a trained generator; each output keeps its input's size."
    )
    predict_parser.add_argument("--ckpt", type=Path, required=True, help="Checkpoint file, or a run folder (its newest).")
    predict_parser.add_argument("--input", type=Path, required=True, help="Folder of input images.")
    predict_parser.add_argument("--output", type=Path, required=True, help="Folder for the translated images (PNG).")
    predict_parser.add_argument("--device", type=Literal["auto", "cpu", "cuda"], default="auto")
    predict_parser.add_argument(
        "--mode",
        type=Mode,
        default="paper",
        help="paper: dropout on and batch statistics at test time, as in the paper; eval: standard eval mode.",
    )
    predict_parser.add_argument(
        "--resize",
        type=int | None,
        default=None,
        help="Scale each image so its shorter side is this many pixels (e.g. the training size) before translating, "
        "and the result back. Default: translate at the image's own size.",
    )
    commands.add_subcommand("predict", predict_parser, help="Translate images with a trained model.")
    commands.add_subcommand("export", _function_parser(export), help="Save a trained generator for use without p2p.")
    commands.add_subcommand("demo", _function_parser(demo), help="Draw in the browser and watch a trained model translate it.")

    data_parser = ArgumentParser(description="Make paired datasets in the AB layout of the aligned dataset.")
    commands.add_subcommand("data", data_parser, help="Make paired datasets: combine A/B folders, or edges from photos.")
    tools = data_parser.add_subcommands(dest="tool")  # jsonargparse wants the outer level added first
    for name, function in DATA_TOOLS.items():
        tools.add_subcommand(name, _function_parser(function), help=inspect.getdoc(function).splitlines()[0])

    list_parser = ArgumentParser(description="List registered components, plugins or recipes.")
    list_parser.add_argument("topic", type=Literal[LIST_TOPICS] | None, nargs="?", default=None)
    commands.add_subcommand("list", list_parser, help="List components, plugins or recipes.")

    describe_parser = ArgumentParser(description="Show a component's summary and options.")
    describe_parser.add_argument("kind", type=Literal[(*KINDS, "disc", "data")])
    describe_parser.add_argument("name", type=str)
    commands.add_subcommand("describe", describe_parser, help="Show a component's options.")
    return parser, fit_parser


def _function_parser(function: Callable[..., object]) -> ArgumentParser:
    """Options from a function's typed keyword parameters, their help from its docstring's Args section."""
    doc = inspect.getdoc(function) or ""
    parser = ArgumentParser(description=doc.split("\n\nArgs:")[0])
    parameters, hints = inspect.signature(function).parameters, typing.get_type_hints(function)
    switches = [name for name in parameters if hints.get(name) is bool]
    parser.add_function_arguments(function, skip=set(switches))
    helps = {param.arg_name: param.description for param in docstring_parser.parse(doc).params}
    for name in switches:
        # A plain jsonargparse bool needs a value (--overwrite true); a switch also works alone, as people type it.
        parser.add_argument(f"--{name}", action=ActionYesNo, nargs="?", default=parameters[name].default, help=helps.get(name))
    return parser


def _fit_parser(registry: Registry) -> ArgumentParser:
    parser = ArgumentParser(description="Train pix2pix. Components: p2p list; their options: p2p describe KIND NAME.")
    parser.add_argument("-c", "--config", action=ActionConfigFile, help="A recipe: a YAML file or a recipe name.")
    for flag, kind in COMPONENT_FLAGS.items():
        parser.add_subclass_arguments(
            BASE_CLASSES[kind],
            flag,
            skip=set(ENGINE_ARGUMENTS[kind]),
            required=False,
            default={"class_path": registry.get(kind, DEFAULTS[flag]).import_path},
            instantiate=False,
            help=f"The {kind}: a name from `p2p list {kind}`; its options as --{flag}.OPTION.",
        )
    parser.add_argument("--loss", type=str, default="cgan+l1", help="Objective terms joined by '+', e.g. l1, cgan, gan+l1.")
    parser.add_argument(
        "--loss_options", type=dict[str, dict[str, Any]], default={}, help="Per-term options, e.g. '{l1: {weight: 10}}'."
    )
    parser.add_class_arguments(TrainConfig, "trainer")
    parser.add_argument("--out_dir", type=Path, default=Path("runs"), help="Where run folders are made.")
    parser.add_argument("--name", type=str | None, default=None, help="Run folder name (default: time and components).")
    parser.add_argument("--resume", type=Path | None, default=None, help="A run folder to continue from its newest checkpoint.")
    return parser


def normalise(argv: list[str], registry: Registry) -> list[str]:
    """Replace registry names with import paths in ``fit``'s component flags and config files."""
    if not argv or argv[0] != "fit":
        return argv
    result = [argv[0]]
    tokens = iter(argv[1:])
    for token in tokens:
        flag, equals, value = token.partition("=")
        if flag in CONFIG_FLAGS or flag.lstrip("-") in COMPONENT_FLAGS and flag.startswith("--"):
            if not equals:
                value = next(tokens, None)
                if value is None:
                    result.append(token)
                    break
            if flag in CONFIG_FLAGS:
                value = _normalised_config(value, registry)
            else:
                value = _import_path(COMPONENT_FLAGS[flag.lstrip("-")], value, registry)
            result += [flag, value]
        else:
            result.append(token)
    return result


def _import_path(kind: str, value: str, registry: Registry) -> str:
    looks_like_name = value.isidentifier()
    return registry.get(kind, value).import_path if looks_like_name else value


def _normalised_config(value: str, registry: Registry) -> str:
    path = registry.recipes.get(value) or Path(value)
    if not path.is_file():
        known = ", ".join(sorted(registry.recipes)) or "none"
        raise ConfigError(f"config {value!r} is neither a file nor a recipe name (recipes: {known})")
    try:
        content = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"config {path} is not valid YAML: {error}") from None
    if not isinstance(content, dict):
        raise ConfigError(f"config {path} must be a YAML mapping of options, e.g. 'generator: unet'")
    for flag, kind in COMPONENT_FLAGS.items():
        entry = content.get(flag)
        if isinstance(entry, str):
            content[flag] = {"class_path": _import_path(kind, entry, registry)}
        elif isinstance(entry, dict) and isinstance(entry.get("class_path"), str):
            entry["class_path"] = _import_path(kind, entry["class_path"], registry)
    return yaml.safe_dump(content, sort_keys=False)


def _choice(kind: str, spec: Namespace, registry: Registry) -> Choice:
    component = registry.by_import_path(kind, spec.class_path)
    options = spec.init_args.as_dict() if spec.get("init_args") else {}
    return Choice(component.name, options)


def fit(arguments: Namespace, argv: list[str], parser: ArgumentParser, fit_parser: ArgumentParser, registry: Registry) -> None:
    if arguments.trainer.nproc > 1 and not distributed.launched_by_torchrun():
        distributed.relaunch_with_torchrun(arguments.trainer.nproc, argv)
    resuming = arguments.resume is not None
    if resuming:
        run_dir = Path(arguments.resume)
        saved = run_dir / "config.yaml"
        if not saved.is_file():
            raise ConfigError(f"--resume {run_dir}: no config.yaml there; is it a run folder of `p2p fit`?")
        # The saved config first, then whatever else was given (e.g. more steps) on top of it.
        arguments = parser.parse_args(normalise(["fit", "--config", str(saved), *_without_resume(argv[1:])], registry)).fit
    train = TrainConfig(**arguments.trainer.as_dict())
    context = distributed.init(device=resolve_device(train.device), timeout_s=train.dist_timeout)
    if not resuming:
        choices = {flag: _choice(kind, arguments[flag], registry).name for flag, kind in COMPONENT_FLAGS.items()}
        default_name = f"{time.strftime('%Y%m%d-%H%M%S')}-{choices['generator']}-{choices['disc']}"
        run_dir = Path(arguments.out_dir) / (arguments.name or distributed.broadcast(context, default_name))
        if context.is_main and run_dir.exists():
            raise ConfigError(f"run folder {run_dir} already exists; pick another --name, or continue it with --resume {run_dir}")

    config_text = fit_parser.dump(arguments)
    trainer = Trainer(
        generator=_choice("generator", arguments.generator, registry),
        discriminator=_choice("discriminator", arguments.disc, registry),
        loss=arguments.loss,
        loss_options=arguments.loss_options,
        data=_choice("dataset", arguments.data, registry),
        train=train,
        run_dir=run_dir,
        config_text=config_text,
        registry=registry,
    )
    if context.is_main:
        checkpoint.check_writable(run_dir, needed_bytes=2 * trainer.checkpoint_bytes)
        if not resuming:
            run_dir.mkdir(parents=True)
            checkpoint.write_atomically(run_dir / "config.yaml", config_text.encode())
    distributed.barrier(context)
    if resuming and checkpoint.checkpoints(run_dir):
        trainer.resume()
        _say(context, f"resuming {run_dir} at step {trainer.step} of {trainer.total_steps}")
    elif resuming:  # stopped before its first checkpoint: start over with the saved config
        _say(context, f"{run_dir} has no checkpoint yet; starting it from step 0")
    last = trainer.fit()
    distributed.shutdown()
    if context.is_main:
        print(f"checkpoint: {last}\nlogs: tensorboard --logdir {run_dir}")
    if trainer.stopped_by is not None:
        name = signal.Signals(trainer.stopped_by).name
        _say(context, f"p2p: stopped by {name} at step {trainer.step}; continue with: p2p fit --resume {run_dir}")
        raise SystemExit(128 + trainer.stopped_by)


def _say(context: distributed.Context, message: str) -> None:
    if context.is_main:
        print(message, file=sys.stderr)


def _without_resume(args: list[str]) -> list[str]:
    kept, skip_value = [], False
    for arg in args:
        if skip_value:
            skip_value = False
        elif arg == "--resume":
            skip_value = True
        elif not arg.startswith("--resume="):
            kept.append(arg)
    return kept


def predict(arguments: Namespace, registry: Registry) -> None:
    import torch
    from tqdm.auto import tqdm

    from p2p_core.images import list_images, read_image, write_image
    from p2p_core.inference import load_generator, translate

    device = resolve_device(arguments.device)
    trained = load_generator(arguments.ckpt, mode=arguments.mode, device=device, registry=registry)
    files = list_images(Path(arguments.input))
    with torch.inference_mode():
        for path in tqdm(files, unit="image", dynamic_ncols=True):
            image = read_image(path, channels=trained.spec["in_channels"]).to(device)
            output = translate(trained.module, image, shorter_side=arguments.resize)
            write_image(output, Path(arguments.output) / f"{path.stem}.png")
    print(f"{len(files)} image(s) written to {arguments.output} ({arguments.mode} mode)")


def list_text(topic: str | None, registry: Registry) -> str:
    if topic == "plugins":
        rows = [
            (p.name, p.distribution, p.version, p.module, "FAILED: " + p.error if p.error else ", ".join(p.components))
            for p in registry.plugins
        ]
        text = _table(("PLUGIN", "DISTRIBUTION", "VERSION", "MODULE", "REGISTERED"), rows)
    elif topic == "recipes":
        text = _table(("RECIPE", "FILE"), [(name, str(path)) for name, path in sorted(registry.recipes.items())])
    else:
        kind = None if topic is None else canonical_kind(topic)
        rows = [(c.kind, c.name, c.summary, f"{c.distribution} {c.version}") for c in registry.components(kind)]
        text = _table(("KIND", "NAME", "SUMMARY", "FROM"), rows)
    problems = registry.problems
    return text + ("\n\nproblems:\n" + "\n".join(f"  {line}" for line in problems) if problems else "")


def describe_text(kind: str, name: str, registry: Registry) -> str:
    component = registry.get(kind, name)
    flag = next(f for f, k in COMPONENT_FLAGS.items() if k == component.kind) if component.kind != "loss" else None
    lines = [
        f"{component.kind} {component.name!r}: {component.summary}",
        f"  from {component.distribution} {component.version} (plugin {component.plugin!r}), factory {component.import_path}",
        "",
    ]
    doc = inspect.getdoc(component.factory) or ""
    lines += [f"  {line}" for line in doc.splitlines()[1:] if line.strip()]
    rows = []
    for option in component.options:
        written = f"--{flag}.{option.name}" if flag else f"--loss_options '{{{component.name}: {{{option.name}: ...}}}}'"
        rows.append((option.name, option.annotation, "(required)" if option.required else repr(option.default), written))
    lines.append(_table(("OPTION", "TYPE", "DEFAULT", "ON THE COMMAND LINE"), rows) if rows else "  (no options)")
    engine = sorted(ENGINE_ARGUMENTS[component.kind])
    if engine:
        lines.append(f"\nset by the engine: {', '.join(engine)}")
    return "\n".join(lines)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    return "\n".join("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [header, *rows])


def _first_cause(error: BaseException) -> str:
    # DataLoader workers re-raise with the worker's traceback in the message; the user needs its last line.
    text = str(error)
    if "Original Traceback" in text:
        text = text.strip().splitlines()[-1].split(": ", 1)[-1]
    return text

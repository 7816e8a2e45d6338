"""The ``p2p`` command: fit, predict, test, evaluate, sweep, export, demo, data, bench, list, describe.

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
from p2p_core.registry import BASE_CLASSES, ENGINE_ARGUMENTS, KINDS, Registry, canonical_kind, default_registry, load_registry
from p2p_core.test_time import MODES, Mode

# Command-line flag -> registry kind, for the components chosen by name.
COMPONENT_FLAGS = {"generator": "generator", "disc": "discriminator", "data": "dataset"}
DEFAULTS = {"generator": "unet", "discriminator": "patch70", "dataset": "synthetic"}
CONFIG_FLAGS = ("--config", "-c")
LIST_TOPICS = (*KINDS, "disc", "data", "plugins", "recipes")
DATA_TOOLS = {"combine": datatools.combine, "edges": datatools.edges}
PLUGIN_FLAGS = ("-p", "--plugin")


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        plugins, argv = split_plugin_options(argv)
        registry = load_registry(plugins) if plugins else default_registry()
        parser, fit_parser = build_parser(registry)
        config = parser.parse_args(normalise(argv, registry))
        command = config.subcommand
        arguments = config[command]
        if command == "fit":
            fit(arguments, argv, parser, fit_parser, registry)
        elif command == "predict":
            predict(arguments, registry)
        elif command == "bench":
            bench(arguments, registry)
        elif command == "export":
            print(export(**arguments.as_dict()))
        elif command == "demo":
            demo(**arguments.as_dict())
        elif command == "data":
            print(DATA_TOOLS[arguments.tool](**arguments[arguments.tool].as_dict()))
        elif command == "test":
            test(arguments, registry)
        elif command == "evaluate":
            evaluate(arguments)
        elif command == "sweep":
            sweep(arguments, registry)
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
    # Only for --help: main() takes these off argv first, because the parser itself is built from the plugins.
    parser.add_argument(
        *PLUGIN_FLAGS,
        action="append",
        metavar="NAME",
        help="Load p2p's built-ins and only the plugins named (entry point or distribution; repeatable), as P2P_PLUGINS does.",
    )
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
    _add_mode(predict_parser)
    predict_parser.add_argument(
        "--resize",
        type=int | None,
        default=None,
        help="Scale each image so its shorter side is this many pixels (e.g. the training size) before translating, "
        "and the result back. Default: translate at the image's own size.",
    )
    commands.add_subcommand("predict", predict_parser, help="Translate images with a trained model.")
    commands.add_subcommand("export", _function_parser(export), help="Save a trained generator for use without p2p.")
    commands.add_subcommand("bench", _bench_parser(registry), help="Measure images/s, FLOPs and memory of a model.")
    commands.add_subcommand("demo", _function_parser(demo), help="Draw in the browser and watch a trained model translate it.")

    data_parser = ArgumentParser(description="Make paired datasets in the AB layout of the aligned dataset.")
    commands.add_subcommand("data", data_parser, help="Make paired datasets: combine A/B folders, or edges from photos.")
    tools = data_parser.add_subcommands(dest="tool")  # jsonargparse wants the outer level added first
    for name, function in DATA_TOOLS.items():
        tools.add_subcommand(name, _function_parser(function), help=inspect.getdoc(function).splitlines()[0])

    test_parser = ArgumentParser(description="Translate a split with a trained model; write images, metrics and a page.")
    test_parser.add_argument("--ckpt", type=Path, required=True, help="Checkpoint file, or a run folder (its newest).")
    test_parser.add_argument("--split", type=Literal["val", "test"], default="val")
    test_parser.add_argument(
        "--data", type=dict[str, Any], default={}, help="Dataset options replacing the stored ones, e.g. '{root: DIR}'."
    )
    _add_mode(test_parser)
    test_parser.add_argument("--out", type=Path | None, default=None, help="Results folder (default: RUN/test_SPLIT_MODE_CKPT).")
    test_parser.add_argument("--seed", type=int, default=0, help="Seeds the dropout that paper mode samples.")
    _add_fid(test_parser)
    test_parser.add_argument("--device", type=Literal["auto", "cpu", "cuda"], default="auto")
    commands.add_subcommand("test", test_parser, help="Test a trained model: images, metrics.json and an HTML page.")

    evaluate_parser = ArgumentParser(description="Measure translated images against targets with the same file names.")
    evaluate_parser.add_argument("--pred", type=Path, required=True, help="Folder of translated images.")
    evaluate_parser.add_argument("--target", type=Path, required=True, help="Folder of ground-truth images.")
    evaluate_parser.add_argument("--out", type=Path | None, default=None, help="Folder for metrics.json and histograms.png.")
    _add_fid(evaluate_parser)
    commands.add_subcommand("evaluate", evaluate_parser, help="L1, PSNR, SSIM, Lab colour histograms (and FID).")

    sweep_parser = ArgumentParser(description="Fit and test several recipes, then compare them in a table and a grid.")
    sweep_parser.add_argument("recipes", type=str, nargs="+", help="Recipe files or names, one run each.")
    sweep_parser.add_argument("--base", type=str, nargs="+", default=[], help="Configs applied before each recipe (task, scale).")
    sweep_parser.add_argument("--out_dir", type=Path, default=Path("runs"), help="Where sweep folders are made.")
    sweep_parser.add_argument("--name", type=str | None, default=None, help="Sweep folder name (default: the time).")
    sweep_parser.add_argument("--split", type=Literal["val", "test"], default="val")
    _add_mode(sweep_parser)
    sweep_parser.add_argument("--grid_rows", type=int, default=4, help="Test images shown in grid.png.")
    _add_fid(sweep_parser)
    commands.add_subcommand("sweep", sweep_parser, help="Run a set of recipes (e.g. recipes/ablations/...) and compare.")

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


def _add_mode(parser: ArgumentParser) -> None:
    parser.add_argument("--mode", type=Mode, default="paper", help="Test-time behaviour. " + "; ".join(MODES.values()))


def _add_fid(parser: ArgumentParser) -> None:
    parser.add_argument(
        "--fid_weights", type=Path | None, default=None, help="Local FID Inception weights; FID is skipped without them."
    )


def _fit_parser(registry: Registry) -> ArgumentParser:
    parser = ArgumentParser(description="Train pix2pix. Components: p2p list; their options: p2p describe KIND NAME.")
    parser.add_argument("-c", "--config", action=ActionConfigFile, help="A recipe: a YAML file or a recipe name.")
    _add_model_arguments(parser, registry, COMPONENT_FLAGS)
    parser.add_argument("--out_dir", type=Path, default=Path("runs"), help="Where run folders are made.")
    parser.add_argument("--name", type=str | None, default=None, help="Run folder name (default: time and components).")
    parser.add_argument("--resume", type=Path | None, default=None, help="A run folder to continue from its newest checkpoint.")
    return parser


def _bench_parser(registry: Registry) -> ArgumentParser:
    parser = ArgumentParser(description="Measure training and inference images/s, FLOPs and memory of a model.")
    parser.add_argument("-c", "--config", action=ActionConfigFile, help="A recipe, for its components and trainer options.")
    _add_model_arguments(parser, registry, {flag: kind for flag, kind in COMPONENT_FLAGS.items() if kind != "dataset"})
    parser.add_argument("--image_size", type=int, default=256, help="Side of the square training images.")
    parser.add_argument("--steps", type=int, default=10, help="Timed steps.")
    parser.add_argument("--warmup", type=int, default=2, help="Untimed steps first (allocation, compilation).")
    parser.add_argument("--inference", action=ActionYesNo, nargs="?", default=True, help="Also time the generator alone.")
    parser.add_argument("--json", action=ActionYesNo, nargs="?", default=False, help="Print the figures as JSON.")
    return parser


def _add_model_arguments(parser: ArgumentParser, registry: Registry, flags: dict[str, str]) -> None:
    """The components (``--generator NAME --generator.OPTION ...``), the objective and the trainer's options."""
    for flag, kind in flags.items():
        # A default that a broken or clashing plugin made unusable must not take down `p2p list` or a fit that
        # names another component; main() reports it when a fit relies on it.
        default = registry.get(kind, DEFAULTS[kind]).import_path if DEFAULTS[kind] in registry.available(kind) else None
        parser.add_subclass_arguments(
            BASE_CLASSES[kind],
            flag,
            skip=set(ENGINE_ARGUMENTS[kind]),
            required=False,
            default={"class_path": default} if default else None,
            instantiate=False,
            help=f"The {kind}: a name from `p2p list {kind}`; its options as --{flag}.OPTION.",
        )
    parser.add_argument("--loss", type=str, default="cgan+l1", help="Objective terms joined by '+', e.g. l1, cgan, gan+l1.")
    parser.add_argument(
        "--loss_options", type=dict[str, dict[str, Any]], default={}, help="Per-term options, e.g. '{l1: {weight: 10}}'."
    )
    parser.add_class_arguments(TrainConfig, "trainer")


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


def normalise(argv: list[str], registry: Registry) -> list[str]:
    """Replace registry names with import paths in the component flags and config files of fit and bench."""
    if not argv or argv[0] not in ("fit", "bench"):
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


def _choice(kind: str, spec: Namespace | None, registry: Registry) -> Choice:
    if spec is None:  # left to a default that a broken or clashing plugin made unusable: get() says why
        registry.get(kind, DEFAULTS[kind])
    component = registry.by_import_path(kind, spec.class_path)
    options = spec.init_args.as_dict() if spec.get("init_args") else {}
    return Choice(component.name, options)


def fit(arguments: Namespace, argv: list[str], parser: ArgumentParser, fit_parser: ArgumentParser, registry: Registry) -> Path:
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
    return run_dir


def _say(context: distributed.Context, message: str) -> None:
    if context.is_main:
        print(message, file=sys.stderr)


def bench(arguments: Namespace, registry: Registry) -> None:
    from p2p_core import bench as benchmark

    result = benchmark.run(
        generator=_choice("generator", arguments.generator, registry),
        discriminator=_choice("discriminator", arguments.disc, registry),
        loss=arguments.loss,
        loss_options=arguments.loss_options,
        train=TrainConfig(**arguments.trainer.as_dict()),
        image_size=arguments.image_size,
        steps=arguments.steps,
        warmup=arguments.warmup,
        inference=arguments.inference,
        registry=registry,
    )
    benchmark.report(result, as_json=arguments.json)


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


def prepare_fit(argv: list[str], registry: Registry) -> Callable[[], Path]:
    """Parse a ``fit`` command line now (errors surface at once); the result runs it and returns the run folder."""
    parser, fit_parser = build_parser(registry)
    arguments = parser.parse_args(normalise(argv, registry)).fit
    return lambda: fit(arguments, argv, parser, fit_parser, registry)


def test(arguments: Namespace, registry: Registry) -> None:
    from p2p_core.evaluation import run_test, summary_text

    result = run_test(
        ckpt=arguments.ckpt,
        split=arguments.split,
        data=arguments.data,
        mode=arguments.mode,
        out=arguments.out,
        device=arguments.device,
        fid_weights=arguments.fid_weights,
        seed=arguments.seed,
        registry=registry,
    )
    print(summary_text(result.metrics), *result.evaluation.notes, sep="\n")
    print(f"{len(result.names)} image(s), {arguments.mode} mode: {result.out_dir / 'index.html'}")


def evaluate(arguments: Namespace) -> None:
    from p2p_core.evaluation import evaluate_folders, summary_text

    content = evaluate_folders(pred=arguments.pred, target=arguments.target, out=arguments.out, fid_weights=arguments.fid_weights)
    print(f"{content['count']} image pair(s): {summary_text(content['metrics'])}", *content["notes"], sep="\n")
    if arguments.out is not None:
        print(f"written: {arguments.out / 'metrics.json'}, {arguments.out / 'histograms.png'}")


def sweep(arguments: Namespace, registry: Registry) -> None:
    from p2p_core.sweep import run_sweep

    name = arguments.name or time.strftime("sweep-%Y%m%d-%H%M%S")
    out_dir = run_sweep(
        recipes=arguments.recipes,
        base=arguments.base,
        out_dir=Path(arguments.out_dir) / name,
        prepare_fit=lambda argv: prepare_fit(argv, registry),
        split=arguments.split,
        mode=arguments.mode,
        fid_weights=arguments.fid_weights,
        grid_rows=arguments.grid_rows,
        registry=registry,
    )
    print((out_dir / "results.md").read_text() + f"\ntable: {out_dir / 'results.csv'}\ngrid: {out_dir / 'grid.png'}")


def predict(arguments: Namespace, registry: Registry) -> None:
    from p2p_core.images import list_images
    from p2p_core.inference import load_generator, translate_files

    device = resolve_device(arguments.device)
    trained = load_generator(arguments.ckpt, mode=arguments.mode, device=device, registry=registry)
    files = list_images(Path(arguments.input))
    rate = translate_files(trained, files, Path(arguments.output), shorter_side=arguments.resize)
    print(f"{len(files)} image(s) written to {arguments.output} ({arguments.mode} mode, {rate:.2f} images/s)")


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

"""What each ``p2p`` command does, one typed function per command; :mod:`p2p_core.cli` makes their parsers.

Every function here is keyword-only and typed, with an ``Args:`` docstring: the CLI generates each command's
options and help from that. Functions import what they need when they run, so ``p2p --help`` and the help of
one command stay fast. ``fit`` and ``bench`` choose components, whose options depend on the choice; their
parsers come from :mod:`p2p_core.config` (see :func:`fit_arguments`, :func:`bench_arguments`).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from p2p_core.errors import ConfigError
from p2p_core.registry import Registry
from p2p_core.spec import MODES, Mode, RunSpec

if TYPE_CHECKING:
    from jsonargparse import ArgumentParser

Device = Literal["auto", "cpu", "cuda"]
MODE_HELP = "Test-time behaviour. " + "; ".join(MODES.values())
LIST_TOPICS = ("generator", "discriminator", "loss", "dataset", "disc", "data", "plugins", "recipes")
DescribeKind = Literal["generator", "discriminator", "loss", "dataset", "disc", "data"]


# -- fit ----------------------------------------------------------------------------------------------------


def fit_arguments(argv: list[str], registry: Registry) -> dict[str, Any]:
    """``p2p fit``'s options as keyword arguments of :func:`fit`; ``--resume DIR`` starts from DIR's config."""
    from p2p_core.config import parse_spec

    resume = _resume_folder(argv)
    if resume is not None:
        saved = resume / "config.yaml"
        if not saved.is_file():
            raise ConfigError(f"--resume {resume}: no config.yaml there; is it a run folder of `p2p fit`?")
        # The saved config first, then whatever else was given (e.g. more steps) on top of it.
        argv = ["--config", str(saved), *_without_resume(argv)]

    def extend(parser: ArgumentParser) -> None:
        parser.add_argument("--out_dir", type=Path, default=Path("runs"), help="Where run folders are made.")
        parser.add_argument("--name", type=str | None, default=None, help="Run folder name (default: time and components).")
        parser.add_argument("--resume", type=Path | None, default=None, help="A run folder to continue from its newest good checkpoint.")

    spec, namespace = parse_spec(
        argv, registry, extend=extend, prog="p2p fit",
        description="Train pix2pix. Components: p2p list; their options: p2p describe KIND NAME, or --help after choosing one.",
    )
    return {"spec": spec, "out_dir": Path(namespace.out_dir), "name": namespace.name, "resume": resume}


def fit(*, spec: RunSpec, out_dir: Path, name: str | None, resume: Path | None, registry: Registry, argv: list[str]) -> None:
    """Train a model (defaults: the paper's U-Net, 70x70 PatchGAN, cGAN + L1)."""
    import signal

    from p2p_core import distributed

    if spec.trainer.nproc > 1 and not distributed.launched_by_torchrun():
        distributed.relaunch_with_torchrun(spec.trainer.nproc, argv)
    from p2p_core.run import Run

    outcome = Run(spec, out_dir=out_dir, name=name, resume=resume, registry=registry)()
    if outcome.is_main:
        print(f"checkpoint: {outcome.checkpoint}\nlogs: tensorboard --logdir {outcome.run_dir}")
    if outcome.stopped_by is not None:
        if outcome.is_main:
            stopped = signal.Signals(outcome.stopped_by).name
            print(f"p2p: stopped by {stopped} at step {outcome.step}; continue with: p2p fit --resume {outcome.run_dir}",
                  file=sys.stderr)
        raise SystemExit(128 + outcome.stopped_by)


def _resume_folder(argv: list[str]) -> Path | None:
    for index, token in enumerate(argv):
        if token == "--resume":
            if index + 1 >= len(argv):
                raise ConfigError("--resume needs a run folder")
            return Path(argv[index + 1])
        if token.startswith("--resume="):
            return Path(token.removeprefix("--resume="))
    return None


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


# -- bench --------------------------------------------------------------------------------------------------


def bench_arguments(argv: list[str], registry: Registry) -> dict[str, Any]:
    """``p2p bench``'s options as keyword arguments of :func:`bench`."""
    from jsonargparse import ActionYesNo

    from p2p_core.config import parse_spec
    from p2p_core.registry import FLAGS

    def extend(parser: ArgumentParser) -> None:
        parser.add_argument("--image_size", type=int, default=256, help="Side of the square training images.")
        parser.add_argument("--steps", type=int, default=10, help="Timed steps.")
        parser.add_argument("--warmup", type=int, default=2, help="Untimed steps first (allocation, compilation).")
        parser.add_argument("--inference", action=ActionYesNo, nargs="?", default=True, help="Also time the generator alone.")
        parser.add_argument("--json", action=ActionYesNo, nargs="?", default=False, help="Print the figures as JSON.")

    flags = {flag: kind for flag, kind in FLAGS.items() if kind != "dataset"}
    spec, namespace = parse_spec(argv, registry, flags=flags, extend=extend, prog="p2p bench",
                                 description="Measure training and inference images/s, FLOPs and memory of a model.")
    for option in ("image_size", "steps"):
        if namespace[option] < 1:
            raise ConfigError(f"--{option} must be at least 1, got {namespace[option]}")
    if namespace.warmup < 0:
        raise ConfigError(f"--warmup must be at least 0, got {namespace.warmup}")
    return {"spec": spec, **{key: namespace[key] for key in ("image_size", "steps", "warmup", "inference", "json")}}


def bench(*, spec: RunSpec, image_size: int, steps: int, warmup: int, inference: bool, json: bool, registry: Registry) -> None:
    """Measure images/s, FLOPs and memory of a model."""
    from p2p_core import bench as benchmark

    result = benchmark.run(spec=spec, image_size=image_size, steps=steps, warmup=warmup, inference=inference, registry=registry)
    benchmark.report(result, as_json=json)


# -- using trained models -----------------------------------------------------------------------------------


def predict(
    *,
    ckpt: Path,
    input: Path,
    output: Path,
    device: Device = "auto",
    mode: Mode = "paper",
    resize: int | None = None,
    registry: Registry,
) -> None:
    """Translate a folder of images with a trained generator; each output keeps its input's size.

    Args:
        ckpt: Checkpoint file, or a run folder (its newest checkpoint that loads).
        input: Folder of input images.
        output: Folder for the translated images (PNG).
        device: Where the generator runs.
        mode: Test-time behaviour. paper: dropout on and batch statistics, as in the paper; eval: PyTorch eval mode.
        resize: Scale each image so its shorter side is this many pixels (e.g. the training size) before
            translating, and the result back. Default: translate at the image's own size.
    """
    from p2p_core.devices import resolve_device
    from p2p_core.images import list_images
    from p2p_core.inference import load_generator, translate_files

    if resize is not None and resize < 1:
        raise ConfigError(f"--resize must be at least 1 pixel, got {resize}")
    trained = load_generator(ckpt, mode=mode, device=resolve_device(device), registry=registry)
    files = list_images(Path(input))
    rate = translate_files(trained, files, Path(output), shorter_side=resize)
    print(f"{len(files)} image(s) written to {output} ({mode} mode, {rate:.2f} images/s)")


def test(
    *,
    ckpt: Path,
    split: Literal["val", "test"] = "val",
    data: dict[str, Any] | None = None,
    mode: Mode = "paper",
    out: Path | None = None,
    seed: int = 0,
    fid_weights: Path | None = None,
    device: Device = "auto",
    registry: Registry,
) -> None:
    """Translate a split with a trained model; write images, metrics and an HTML page.

    Args:
        ckpt: Checkpoint file, or a run folder (its newest checkpoint that loads).
        split: Which split of the checkpoint's dataset.
        data: Dataset options replacing the stored ones, e.g. '{root: DIR}'.
        mode: Test-time behaviour. paper: dropout on and batch statistics, as in the paper; eval: PyTorch eval mode.
        out: Results folder (default: RUN/test_SPLIT_MODE_CKPT).
        seed: Seeds the dropout that paper mode samples.
        fid_weights: Local FID Inception weights; FID is skipped without them.
        device: Where the generator runs.
    """
    from p2p_core.evaluation import run_test, summary_text

    result = run_test(ckpt=ckpt, split=split, data=data or {}, mode=mode, out=out, device=device,
                      fid_weights=fid_weights, seed=seed, registry=registry)
    print(summary_text(result.metrics), *result.evaluation.notes, sep="\n")
    print(f"{len(result.names)} image(s), {mode} mode: {result.out_dir / 'index.html'}")


def evaluate(*, pred: Path, target: Path, out: Path | None = None, fid_weights: Path | None = None) -> None:
    """Measure translated images against targets with the same file names: L1, PSNR, SSIM, Lab colour (and FID).

    Args:
        pred: Folder of translated images.
        target: Folder of ground-truth images.
        out: Folder for metrics.json and histograms.png.
        fid_weights: Local FID Inception weights; FID is skipped without them.
    """
    from p2p_core.evaluation import evaluate_folders, summary_text

    content = evaluate_folders(pred=pred, target=target, out=out, fid_weights=fid_weights)
    print(f"{content['count']} image pair(s): {summary_text(content['metrics'])}", *content["notes"], sep="\n")
    if out is not None:
        print(f"written: {out / 'metrics.json'}, {out / 'histograms.png'}")


def sweep(
    recipes: list[str],
    *,
    base: list[str] | None = None,
    out_dir: Path = Path("runs"),
    name: str | None = None,
    split: Literal["val", "test"] = "val",
    mode: Mode = "paper",
    grid_rows: int = 4,
    fid_weights: Path | None = None,
    registry: Registry,
) -> None:
    """Fit and test several recipes (e.g. recipes/ablations/...), then compare them in a table and a grid.

    Args:
        recipes: Recipe files or names, one run each.
        base: Configs applied before each recipe (task, scale).
        out_dir: Where sweep folders are made.
        name: Sweep folder name (default: the time).
        split: Which split the runs are tested on.
        mode: Test-time behaviour. paper: dropout on and batch statistics, as in the paper; eval: PyTorch eval mode.
        grid_rows: Test images shown in grid.png.
        fid_weights: Local FID Inception weights; FID is skipped without them.
    """
    from p2p_core.sweep import run_sweep

    if grid_rows < 1:
        raise ConfigError(f"--grid_rows must be at least 1, got {grid_rows}")
    folder = Path(out_dir) / (name or time.strftime("sweep-%Y%m%d-%H%M%S"))
    done = run_sweep(recipes=recipes, base=base or [], out_dir=folder, split=split, mode=mode, fid_weights=fid_weights,
                     grid_rows=grid_rows, registry=registry)
    print((done / "results.md").read_text() + f"\ntable: {done / 'results.csv'}\ngrid: {done / 'grid.png'}")


# -- the registry -------------------------------------------------------------------------------------------


def list_components(topic: Literal[LIST_TOPICS] | None = None, *, registry: Registry) -> None:
    """List registered components, plugins or recipes.

    Args:
        topic: A kind (generator, discriminator, loss, dataset), plugins or recipes; all components when left out.
    """
    from p2p_core.registry import canonical_kind

    if topic == "plugins":
        rows = [
            (p.name, p.distribution, p.version, p.module, "FAILED: " + p.error if p.error else ", ".join(p.components))
            for p in registry.plugins
        ]
        text = table(("PLUGIN", "DISTRIBUTION", "VERSION", "MODULE", "REGISTERED"), rows)
    elif topic == "recipes":
        text = table(("RECIPE", "FILE"), [(name, str(path)) for name, path in sorted(registry.recipes.items())])
    else:
        kind = None if topic is None else canonical_kind(topic)
        rows = [(c.kind, c.name, c.summary, f"{c.distribution} {c.version}") for c in registry.components(kind)]
        text = table(("KIND", "NAME", "SUMMARY", "FROM"), rows)
    problems = registry.problems
    print(text + ("\n\nproblems:\n" + "\n".join(f"  {line}" for line in problems) if problems else ""))


def describe(kind: DescribeKind, name: str, *, registry: Registry) -> None:
    """Show a component's summary and options.

    Args:
        kind: generator, discriminator (disc), loss or dataset (data).
        name: The component's name, as `p2p list` shows it.
    """
    import inspect

    from p2p_core.registry import ENGINE_ARGUMENTS, flag_for

    component = registry.get(kind, name)
    flag = flag_for(component.kind) if component.kind != "loss" else None
    lines = [
        f"{component.kind} {component.name!r}: {component.summary}",
        f"  from {component.distribution} {component.version} (plugin {component.plugin!r}), factory {component.import_path}",
        "",
    ]
    doc = inspect.getdoc(component.factory) or ""
    lines += [f"  {line}" for line in doc.splitlines()[1:] if line.strip()]
    rows = []
    for option in component.options:
        written = f"--{flag}.{option.name}" if flag else f"--loss_options.{component.name}.{option.name}"
        rows.append((option.name, option.annotation, "(required)" if option.required else repr(option.default), written))
    lines.append(table(("OPTION", "TYPE", "DEFAULT", "ON THE COMMAND LINE"), rows) if rows else "  (no options)")
    engine = sorted(ENGINE_ARGUMENTS[component.kind])
    if engine:
        lines.append(f"\nset by the engine: {', '.join(engine)}")
    print("\n".join(lines))


def table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    return "\n".join("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [header, *rows])

"""What each ``p2p`` command does, one typed function per command; :mod:`p2p_core.cli` makes their parsers.

Every function here is keyword-only and typed, with an ``Args:`` docstring: the CLI generates each command's
options and help from that. Functions import what they need when they run, so ``p2p --help`` and the help of
one command stay fast. ``fit`` and ``bench`` choose components, whose options depend on the choice; their
parsers come from :mod:`p2p_core.config` (see :func:`fit_arguments`, :func:`bench_arguments`).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from p2p_core.errors import ConfigError
from p2p_core.protocols import Direction
from p2p_core.ranges import BatchSize, Count, Pixels, Seed, Steps, plain, ranged
from p2p_core.registry import Registry
from p2p_core.spec import MAX_MEMORY_GB, Mode, Precision, RunSpec

if TYPE_CHECKING:
    from jsonargparse import ArgumentParser

Device = Literal["auto", "cpu", "cuda"]
Warmup = ranged(int, 0, 10**9)
PLURAL_KINDS = {"generators": "generator", "discriminators": "discriminator", "losses": "loss", "datasets": "dataset",
                "methods": "method", "backends": "backend"}
LIST_TOPICS = ("generator", "discriminator", "loss", "dataset", "method", "backend", "disc", "data", *PLURAL_KINDS, "plugins",
               "recipes", "pretrained", "downloads")
DescribeKind = Literal["generator", "discriminator", "loss", "dataset", "method", "backend", "disc", "data", "recipe"]


# -- fit ----------------------------------------------------------------------------------------------------


def fit_arguments(argv: list[str], registry: Registry) -> dict[str, Any]:
    """``p2p fit``'s options as keyword arguments of :func:`fit`; ``--resume DIR`` starts from DIR's config."""
    from p2p_core.config import parse_spec

    resume = _option_value(argv, "--resume")
    init_from = _option_value(argv, "--init_from")
    if resume is not None and init_from is not None:
        raise ConfigError("--resume continues a run and --init_from starts a new one from its weights; give one of them")
    if resume is not None:
        saved = Path(resume) / "config.yaml"
        if not saved.is_file():
            raise ConfigError(f"--resume {resume}: no config.yaml there; is it a run folder of `p2p fit`?")
        # The saved config first, then whatever else was given (e.g. more steps) on top of it.
        argv = ["--config", str(saved), *argv]
    with tempfile.TemporaryDirectory() as scratch:
        if init_from is not None:
            init_from = _with_source_components(argv, init_from, Path(scratch), registry)

        def extend(parser: ArgumentParser) -> None:
            parser.add_argument("--out_dir", type=Path, default=Path("runs"), help="Where run folders are made.")
            parser.add_argument("--name", type=str | None, default=None, help="Run folder name (default: time and components).")
            parser.add_argument("--resume", type=Path | None, default=None,
                                help="A run folder to continue from its newest good checkpoint.")
            parser.add_argument("--init_from", type=str | None, default=None,
                                help="Fine-tune: start from the weights of a checkpoint, run folder, safetensors file, pretrained:NAME "
                                     "or hf:OWNER/NAME[@REVISION] "
                                     "(its generator and discriminator, unless chosen otherwise), with a fresh optimizer and schedule.")

        spec, namespace = parse_spec(
            argv, registry, extend=extend, prog="p2p fit",
            description="Train pix2pix. Components: p2p list; their options: p2p describe KIND NAME, or --help after choosing one.",
        )
    return {"spec": spec, "out_dir": Path(namespace.out_dir), "name": namespace.name,
            "resume": None if resume is None else Path(resume), "init_from": init_from}


def _with_source_components(argv: list[str], init_from: str, scratch: Path, registry: Registry) -> Path:
    """Locate ``--init_from`` and put its components into ``argv`` as a config after the recipes: the run builds
    the networks the weights fit, and options given on the command line still apply on top."""
    from p2p_core import checkpoint
    from p2p_core.inference import check_generator
    from p2p_core.config import dump_yaml
    from p2p_core.interop import locate

    source = locate(init_from, registry=registry)
    loaded = checkpoint.read(source)
    check_generator(loaded, registry=registry)  # a spec that does not fit its weights fails here, before the build
    trained = loaded.spec
    components = {"generator": trained.run.generator.to_dict()}
    if trained.adversarial:
        components["disc"] = trained.run.disc.to_dict()
    config = scratch / "init_from.yaml"
    config.write_text(dump_yaml(components))
    configs = [index for index, token in enumerate(argv) if token in ("--config", "-c")]
    position = configs[-1] + 2 if configs else 0
    argv[position:position] = ["--config", str(config)]
    return source


def fit(
    *,
    spec: RunSpec,
    out_dir: Path,
    name: str | None,
    resume: Path | None,
    init_from: Path | None = None,
    registry: Registry,
    argv: list[str],
) -> None:
    """Train a model (defaults: the paper's U-Net, 70x70 PatchGAN, cGAN + L1)."""
    import signal

    from p2p_core import distributed

    if spec.trainer.nproc > 1 and not distributed.launched_by_torchrun():
        distributed.relaunch_with_torchrun(spec.trainer.nproc, argv)
    from p2p_core.run import Run

    outcome = Run(spec, out_dir=out_dir, name=name, resume=resume, init_from=init_from, registry=registry)()
    if outcome.is_main:
        print(f"checkpoint: {outcome.checkpoint}\nlogs: tensorboard --logdir {outcome.run_dir}")
    if outcome.stopped_by is not None:
        if outcome.is_main:
            stopped = signal.Signals(outcome.stopped_by).name
            print(f"p2p: stopped by {stopped} at step {outcome.step}; continue with: p2p fit --resume {outcome.run_dir}",
                  file=sys.stderr)
        raise SystemExit(128 + outcome.stopped_by)


def _option_value(argv: list[str], option: str) -> str | None:
    """The value of ``option`` in argv (``--option V`` or ``--option=V``), read before the parser exists."""
    for index, token in enumerate(argv):
        if token == option:
            if index + 1 >= len(argv):
                raise ConfigError(f"{option} needs a value")
            return argv[index + 1]
        if token.startswith(f"{option}="):
            return token.removeprefix(f"{option}=")
    return None


# -- bench --------------------------------------------------------------------------------------------------


def bench_arguments(argv: list[str], registry: Registry) -> dict[str, Any]:
    """``p2p bench``'s options as keyword arguments of :func:`bench`."""
    from jsonargparse import ActionYesNo

    from p2p_core.config import parse_spec
    from p2p_core.registry import FLAGS

    def extend(parser: ArgumentParser) -> None:
        parser.add_argument("--image_size", type=Pixels, default=256, help="Side of the square training images.")
        parser.add_argument("--steps", type=Steps, default=10, help="Timed steps.")
        parser.add_argument("--warmup", type=Warmup, default=2, help="Untimed steps first (allocation, compilation).")
        parser.add_argument("--inference", action=ActionYesNo, nargs="?", default=True, help="Also time the generator alone.")
        parser.add_argument("--json", action=ActionYesNo, nargs="?", default=False, help="Print the figures as JSON.")

    flags = {flag: kind for flag, kind in FLAGS.items() if kind != "dataset"}
    spec, namespace = parse_spec(argv, registry, flags=flags, extend=extend, prog="p2p bench",
                                 description="Measure training and inference images/s, FLOPs and memory of a model.")
    return {"spec": spec, **{key: plain(namespace[key]) for key in ("image_size", "steps", "warmup", "inference", "json")}}


def bench(*, spec: RunSpec, image_size: int, steps: int, warmup: int, inference: bool, json: bool, registry: Registry) -> None:
    """Measure images/s, FLOPs and memory of a model."""
    from p2p_core import bench as benchmark

    result = benchmark.run(spec=spec, image_size=image_size, steps=steps, warmup=warmup, inference=inference, registry=registry)
    benchmark.report(result, as_json=json)


# -- using trained models -----------------------------------------------------------------------------------


def test(
    *,
    ckpt: Path,
    split: Literal["val", "test"] = "val",
    data: dict[str, Any] | None = None,
    mode: Mode = "paper",
    out: Path | None = None,
    seed: Seed = 0,
    fid_weights: Path | None = None,
    scorer: Path | None = None,
    device: Device = "auto",
    backend: str = "auto",
    precision: Precision = "float32",
    overwrite: bool = False,
    direction: Direction = "AtoB",
    ema: bool = True,
    registry: Registry,
) -> None:
    """Translate a split with a trained model; write images, metrics, baselines and an HTML page.

    Args:
        ckpt: Checkpoint file, run folder (its newest checkpoint that loads), model.safetensors (or its folder),
            pretrained:NAME, or hf:OWNER/NAME[@REVISION] (a p2p model on the Hugging Face Hub).
        split: Which split of the checkpoint's dataset.
        data: Dataset options replacing the stored ones, e.g. '{root: DIR}'.
        mode: Test-time behaviour. paper: dropout on and batch statistics, as in the paper (the paper's setting
            for models trained at batch 1; outputs vary with --seed); eval: dropout off and running statistics,
            deterministic. For models trained at batch > 1, eval scored better than paper for every model in
            docs/results, with the same ranking; report the mode with the numbers.
        out: Results folder (default: RUN/test_SPLIT_MODE_CKPT; beside a model file; for a Hub model
            test_SPLIT_MODE_NAME-COMMIT in the current folder).
        seed: Seeds the dropout that paper mode samples.
        fid_weights: Local FID Inception weights; FID is skipped without them.
        scorer: A scorer from `p2p scorer fit`: adds the paper's FCN-score (per-pixel and per-class accuracy, class
            IoU) of the outputs, the baselines and the real photos, and the realism distances scorer_fd and
            scorer_kid (the Frechet distance and KID from the real photos in the scorer's features; lower is better).
        device: Where the generator runs.
        backend: A backend by name (p2p list backends): torch, onnxruntime (eval mode only), a plugin's, or auto:
            onnxruntime on the CPU in eval mode at float32 when it is installed, else torch; auto never changes
            --precision. Paper mode runs on torch, where --seed makes its dropout repeatable.
        precision: float32 (the default), or bfloat16 / float16 where the backend runs it (p2p list backends; a CPU
            without native bfloat16 emulates it, with a warning). Metrics are then of the lower-precision outputs (bfloat16: 56.6 dB PSNR from float32's
            on a trained model, L1/PSNR/SSIM unchanged to 4 digits; benchmarks/README.md).
        overwrite: Replace the results already in the results folder (otherwise the run refuses).
        direction: AtoB, or BtoA for a model whose method trained both ways (a plugin's unpaired method): its dataset's B images
            are then the inputs and its A images the targets.
        ema: Use the moving average of the generator's weights where the checkpoint holds one (trained with
            --trainer.ema); --no_ema uses the trained weights.
    """
    from p2p_core.evaluation import report_text, run_test

    result = run_test(ckpt=ckpt, split=split, data=data or {}, mode=mode, out=out, device=device,
                      fid_weights=fid_weights, seed=seed, scorer=scorer, backend=backend, precision=precision, overwrite=overwrite,
                      direction=direction, ema=ema, registry=registry)
    print(report_text(result))
    print(f"{len(result.names)} image(s), {mode} mode: {result.out_dir / 'index.html'}")


def evaluate(
    *, pred: Path, target: Path, out: Path | None = None, fid_weights: Path | None = None,
    scorer: Path | None = None, labels: Path | None = None,
) -> None:
    """Measure translated images against targets with the same file names: L1, PSNR, SSIM, Lab colour (and FID).

    Args:
        pred: Folder of translated images.
        target: Folder of ground-truth images.
        out: Folder for metrics.json and histograms.png.
        fid_weights: Local FID Inception weights; FID is skipped without them.
        scorer: A scorer from `p2p scorer fit`: adds the paper's FCN-score of the translations and their realism
            distances from the targets in the scorer's features, scorer_fd and scorer_kid (with --labels).
        labels: Folder of class maps named as the translations (8-bit grayscale, one class index per pixel), as
            p2p test writes them into labels/ for a labelled dataset.
    """
    from p2p_core.evaluation import evaluate_folders, summary_text

    content = evaluate_folders(pred=pred, target=target, out=out, fid_weights=fid_weights, scorer=scorer, labels=labels)
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
    mode: list[Mode] | None = None,
    grid_rows: Count = 4,
    seeds: Count = 1,
    jobs: Count = 1,
    scorer: Path | None = None,
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
        mode: Test-time behaviour(s), each tested and tabled (in a folder per mode when several): paper (the
            default): dropout on and batch statistics, as in the paper; eval: dropout off and running statistics.
            docs/results compares both; `--mode paper eval` tests in both.
        grid_rows: Test images shown in grid.png.
        seeds: Train each recipe this many times (seeds 0..N-1) and report mean +- std per metric.
        jobs: Train this many runs at once, each in its own process with a share of the CPU threads (small
            models leave a GPU or a many-core CPU mostly idle).
        scorer: A scorer from `p2p scorer fit`, for the FCN-score and the realism distances (scorer_fd,
            scorer_kid) of every run and baseline.
        fid_weights: Local FID Inception weights; FID is skipped without them.
    """
    from p2p_core.files import check_name
    from p2p_core.sweep import run_sweep

    if grid_rows < 1:
        raise ConfigError(f"--grid_rows must be at least 1, got {grid_rows}")
    folder = Path(out_dir) / (check_name(name, option="--name") if name else time.strftime("sweep-%Y%m%d-%H%M%S"))
    modes = mode or ["paper"]
    done = run_sweep(recipes=recipes, base=base or [], out_dir=folder, split=split, modes=modes, fid_weights=fid_weights,
                     grid_rows=grid_rows, seeds=seeds, jobs=jobs, scorer=scorer, registry=registry)
    for results in [done] if len(modes) == 1 else [done / each for each in modes]:
        print((results / "results.md").read_text() + f"\ntable: {results / 'results.csv'}\ngrid: {results / 'grid.png'}\n")


# -- models and data from elsewhere ---------------------------------------------------------------------------


def import_model(
    path: Path,
    *,
    out: Path,
    disc: Path | None = None,
    url: str | None = None,
    max_memory_gb: float = MAX_MEMORY_GB,
    registry: Registry,
) -> None:
    """Turn a pix2pix reference state dict (the reference PyTorch implementation's .pth) into a p2p run folder.

    Args:
        path: The generator's state dict (e.g. latest_net_G.pth); its architecture is read from the tensors.
        out: The run folder to write (it must not exist); predict, test, export, demo and fit --init_from take it.
        disc: The discriminator's state dict trained with it (latest_net_D.pth), for fine-tuning with it.
        url: Where the file came from, recorded with its SHA-256 in the checkpoint.
        max_memory_gb: Refuse a network whose weights and one image at its size need more memory than this (a
            file of kilobytes can describe one of terabytes); predict and export take the same option.
    """
    from p2p_core.interop import import_reference

    folder = import_reference(generator=path, out=out, discriminator=disc, source_url=url, registry=registry,
                              max_memory_gb=max_memory_gb)
    print(f"imported {path} into {folder}; try: p2p predict --ckpt {folder} --input IMAGES --output OUT")


def data_download(
    name: str,
    *,
    to: Path = Path("datasets"),
    url: str | None = None,
    sha256: str | None = None,
    trust_unpinned: bool = False,
    max_gb: float = 16.0,
    max_files: int = 150_000,
    max_ratio: float = 20.0,
    deadline_min: float = 360.0,
    registry: Registry,
) -> None:
    """Download one of the pix2pix datasets (p2p pretrained list names them) to TO/NAME, the folder its recipes read.

    Args:
        name: facades, maps, edges2shoes, edges2handbags, night2day (cityscapes: how to get it), or a plugin's.
        to: Folder the dataset folder goes in; the recipes read datasets/NAME relative to where p2p runs.
        url: Base URL of a mirror holding NAME.tar.gz, or the archive a plugin's entry names (http(s)://, file:// or a
            folder); default $P2P_DATASETS_URL, then the authors' server.
        sha256: The archive's SHA-256, which it must match; needed where the catalogue pins none (the built-in
            datasets: their hashes were not published), and wins over the catalogue's (for a mirror's own file).
        trust_unpinned: Without --sha256, accept the archive as it comes, print its SHA-256 and keep checking the
            cached file against it (trust on first use).
        max_gb: Refuse a download, or an archive unpacking to, more than this many GiB.
        max_files: Refuse an archive of more members.
        max_ratio: Refuse an archive unpacking to more than this many times its own size.
        deadline_min: Give up a download that takes longer than this many minutes in all.
    """
    from p2p_core.downloads import Limits, download_dataset

    limits = Limits.from_options(max_gb=max_gb, max_files=max_files, max_ratio=max_ratio, deadline_min=deadline_min)
    folder = download_dataset(name=name, to=to, url=url, entries=registry.dataset_downloads, sha256=sha256,
                              trust_unpinned=trust_unpinned, limits=limits)
    recipes = registry.dataset_downloads[name].recipes
    print(f"{folder} is ready" + (f"; train with: p2p fit --config {recipes[0]}" if recipes else ""))


def pretrained_list(*, registry: Registry) -> None:
    """List the released generators that --ckpt pretrained:NAME can use, with what they translate."""
    from p2p_core.downloads import MODE_NOTE

    rows = [(e.name, e.translation, f"{e.dataset} {e.direction}", e.recommended_mode, registry.origin("pretrained", e.name))
            for e in sorted(registry.pretrained.values(), key=lambda e: e.name)]
    print(table(("NAME", "TRANSLATES", "TRAINED ON", "MODE", "FROM"), rows) + f"\n\n{MODE_NOTE}\n"
          "use one with: p2p predict --ckpt pretrained:NAME --input IMAGES --output OUT")


def pretrained_download(
    name: str,
    *,
    sha256: str | None = None,
    trust_unpinned: bool = False,
    max_gb: float = 16.0,
    deadline_min: float = 360.0,
    registry: Registry,
) -> None:
    """Download a released generator into the cache and import it (what --ckpt pretrained:NAME does on first use).

    Args:
        name: The generator, as `p2p pretrained list` shows them.
        sha256: The file's SHA-256, which it must match; needed where the catalogue pins none (the built-in
            generators: their hashes were not published), and wins over the catalogue's (for a mirror's own file,
            whose network then need not be the catalogue's). Later uses of --ckpt pretrained:NAME check against it.
        trust_unpinned: Without --sha256, accept the file as it comes, print its SHA-256 and keep checking the
            cached file against it (trust on first use).
        max_gb: Refuse a file of more than this many GiB.
        deadline_min: Give up a download that takes longer than this many minutes in all.
    """
    from p2p_core.downloads import Limits
    from p2p_core.interop import PRETRAINED, locate

    limits = Limits.from_options(max_gb=max_gb, deadline_min=deadline_min)
    folder = locate(f"{PRETRAINED}{name}", registry=registry, sha256=sha256, trust_unpinned=trust_unpinned, limits=limits)
    print(f"{folder}\nuse it as --ckpt {PRETRAINED}{name} (or --ckpt {folder})")


def scorer_fit(
    *,
    out: Path,
    data: str = "synthetic",
    data_options: dict[str, Any] | None = None,
    steps: Steps = 300,
    batch_size: BatchSize = 8,
    network: str = "unet",
    network_options: dict[str, Any] | None = None,
    seed: Seed = 0,
    device: Device = "auto",
    registry: Registry,
) -> None:
    """Train an FCN-score scorer (a small segmenter) on a task's real train photos, and score the real val photos.

    Args:
        out: The file the scorer is written to, e.g. runs/scorer.pt; give it to p2p test --scorer.
        data: The dataset, by registered name; its samples must carry labels (synthetic does).
        data_options: The dataset's options, e.g. '{length: 200, load_size: 72, crop_size: 64}' (add
            'variant: texture' for the synthetic task whose classes only texture tells apart); use the
            generator's so the scorer sees photos of the same size and scale.
        steps: Training steps (batches).
        batch_size: Photos per step.
        network: The segmenter: a registered generator (p2p list generator; a plugin's too) with one output
            channel per class. Default: a small U-Net.
        network_options: Its options, e.g. '{ngf: 32}'.
        seed: Seeds the weights, the batch order and the jitter.
        device: Where it trains.
    """
    from p2p_core.scoring import fit_scorer

    result = fit_scorer(data=data, data_options=data_options, out=out, steps=steps, batch_size=batch_size, network=network,
                        network_options=network_options, seed=seed, device=device, registry=registry)
    scores = "  ".join(f"{name} {value:.4g}" for name, value in result.real_val.items())
    print(f"{result.path} ({result.steps} steps, {result.train_seconds:.0f} s); on the real val photos (the upper bound): {scores}")


# -- the registry -------------------------------------------------------------------------------------------


def list_components(topic: Literal[LIST_TOPICS] | None = None, *, registry: Registry) -> None:
    """List registered components, plugins or recipes.

    Args:
        topic: A kind (generator, discriminator, loss, dataset, method, backend; or generators, backends, ...), plugins,
            recipes, pretrained (released models) or downloads (datasets p2p data download fetches); all components when
            left out. Backends are shown with the devices and precisions each runs, its modes, and whether it runs here.
    """
    from p2p_core.registry import canonical_kind

    if topic in ("backend", "backends"):
        text = _backends_table(registry)
    elif topic == "plugins":
        rows = [
            (p.name, p.distribution, p.version, p.module, "FAILED: " + p.error if p.error else ", ".join(p.components))
            for p in registry.plugins
        ]
        text = table(("PLUGIN", "DISTRIBUTION", "VERSION", "MODULE", "REGISTERED"), rows)
    elif topic == "recipes":
        text = table(("RECIPE", "FILE", "FROM"),
                     [(name, str(path), registry.origin("recipes", name)) for name, path in sorted(registry.recipes.items())])
    elif topic == "pretrained":
        text = table(("PRETRAINED", "TRANSLATES", "FROM"), [(name, entry.translation, registry.origin("pretrained", name))
                                                            for name, entry in sorted(registry.pretrained.items())])
    elif topic == "downloads":
        text = table(("DATASET", "DESCRIPTION", "FROM"), [(name, entry.description, registry.origin("dataset_downloads", name))
                                                         for name, entry in sorted(registry.dataset_downloads.items())])
    else:
        kind = None if topic is None else canonical_kind(PLURAL_KINDS.get(topic, topic))
        rows = [(c.kind, c.name, c.summary, f"{c.distribution} {c.version}") for c in registry.components(kind)]
        text = table(("KIND", "NAME", "SUMMARY", "FROM"), rows)
    problems = registry.problems
    print(text + ("\n\nproblems:\n" + "\n".join(f"  {line}" for line in problems) if problems else ""))


def _backends_table(registry: Registry) -> str:
    """Each inference backend: what it runs on, in which precisions and modes, and whether it can run on this machine."""
    import torch

    from p2p_core.backends import supported
    from p2p_core.devices import native_on_cpu

    rows = []
    for component in registry.components("backend"):
        backend = registry.create("backend", component.name)
        problems = {device: backend.problem(device=torch.device(device)) for device in backend.supports
                    if device == "cpu" or (device == "cuda" and torch.cuda.is_available())}
        emulated = [precision for precision in backend.supports.get("cpu", ()) if not native_on_cpu(precision)]
        notes = {"cpu": f"ready ({', '.join(emulated)} emulated on this CPU)"} if emulated else {}
        here = "; ".join(f"{device}: {problem or notes.get(device, 'ready')}" for device, problem in problems.items()) or "no device here"
        rows.append((component.name, supported(backend), ", ".join(backend.modes), here, f"{component.distribution} {component.version}"))
    return (table(("BACKEND", "DEVICE: PRECISIONS", "MODES", "HERE", "FROM"), rows)
            + "\n\n--backend auto takes, of those that run the mode and precision asked for, the one that prefers the device most; "
            "it never changes --precision")


def describe(kind: DescribeKind, name: str, *, registry: Registry) -> None:
    """Show a component's summary and options, or a recipe's file, origin, choices and text.

    Args:
        kind: generator, discriminator (disc), loss, dataset (data), method, backend or recipe.
        name: The component's or recipe's name, as `p2p list` shows it.
    """
    import inspect

    from p2p_core.registry import ENGINE_ARGUMENTS, flag_for

    if kind == "recipe":
        print(_recipe_description(name, registry))
        return
    component = registry.get(kind, name)
    if component.kind == "backend":
        print(_backend_description(component, registry))
        return
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


def _backend_description(component: Any, registry: Registry) -> str:
    """A backend's summary, origin, and what it runs: `p2p list backends`' row of it, with auto's priorities."""
    from p2p_core.backends import supported

    backend = registry.create("backend", component.name)
    priorities = ", ".join(f"{device} {priority}" for device, priority in backend.auto_priority.items())
    return "\n".join([
        f"backend {component.name!r}: {component.summary}",
        f"  from {component.distribution} {component.version} (plugin {component.plugin!r}), factory {component.import_path}",
        f"  runs: {supported(backend)}",
        f"  modes: {', '.join(backend.modes)}",
        f"  --backend auto priority: {priorities or '0 everywhere'} (auto takes the highest that runs the mode and precision)",
        f"  use it as: p2p predict --backend {component.name}",
    ])


def _recipe_description(name: str, registry: Registry) -> str:
    """Where recipe ``name`` comes from, what it chooses (each component with the options it sets), and its text."""
    from p2p_core.config import default_loss, read_config
    from p2p_core.errors import UnknownComponentError
    from p2p_core.registry import FLAGS, options_text

    if name not in registry.recipes:
        raise UnknownComponentError("recipe", name, registry.recipes, hint=". `p2p list recipes` shows them.")
    path = registry.recipes[name]
    content = read_config(name, registry)
    rows = []
    for flag, kind in FLAGS.items():
        chosen = dict(content.get(flag) or {})
        rows.append((flag, chosen.pop("name", f"{registry.default(kind)} (default)"), options_text(chosen)))
    method = (content.get("method") or {}).get("name")
    rows.append(("loss", content.get("loss", f"{default_loss(registry, method)} (default)"), options_text(content.get("loss_options") or {})))
    rows.append(("trainer", "", options_text(content.get("trainer") or {})))
    return "\n".join([f"recipe {name!r}", f"  file: {path}", f"  from: {registry.origin('recipes', name)}", "",
                      table(("CHOOSES", "NAME", "OPTIONS"), rows), "", path.read_text().rstrip()])


def table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    return "\n".join("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [header, *rows])

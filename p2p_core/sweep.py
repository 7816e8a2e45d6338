"""``p2p sweep``: fit and test several recipes the same way, then compare them in one table and one image grid.

Each recipe is applied after the ``--base`` configs, so an ablation recipe names only what it varies (the
objective, the generator, the discriminator) and the base names the task and the scale. All command lines
are parsed before the first run starts, so a typo in the last recipe does not cost the earlier runs.

With ``seeds`` N > 1 each recipe is trained N times (``--trainer.seed 0`` to ``N-1``), and the table shows
each metric's mean +- standard deviation over the seeds. Below the runs, the table has the baselines of
``p2p test`` (the constant median image, the input copied through, with a scorer the real photos), and a
column saying whether each run beats the constant image on L1.

With ``jobs`` N > 1, N runs train at once, each in its own process with an equal share of the CPU threads:
small models leave a GPU (or a many-core CPU) mostly idle, so several runs share it. Testing follows, in this
process, once per test-time mode asked for.
"""

from __future__ import annotations

import csv
import multiprocessing
import os
import statistics
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

import attrs
from tqdm.auto import tqdm

from p2p_core.config import parse_spec
from p2p_core.errors import ConfigError, P2PError
from p2p_core.evaluation import CONSTANT, FOLDERS, TestResult, run_test, write_grid_image
from p2p_core.metrics import FEATURE_METRICS, HIGHER_IS_BETTER, SEGMENTATION_METRICS, plot_histograms
from p2p_core.registry import Registry, default_registry, load_registry
from p2p_core.run import Run
from p2p_core.spec import Mode, RunSpec

HIGHER_IS_BETTER_ANY = HIGHER_IS_BETTER | dict.fromkeys(SEGMENTATION_METRICS, True) | dict.fromkeys(FEATURE_METRICS, False)


@attrs.frozen(kw_only=True)
class SweepRun:
    name: str
    train_seconds: float
    result: TestResult
    recipe: str | None = None
    """The recipe's name (default: the run's), shared by its seeds' runs."""
    seed: int | None = None
    """The ``--trainer.seed`` the sweep gave, or None where the recipe's own seed was used."""

    def row(self) -> dict[str, Any]:
        """The comparison table's row: what was trained, for how long, and how well it did."""
        trained = self.result.trained
        return {
            "run": self.name,
            "generator": trained.run.generator.name,
            "loss": trained.run.loss,
            "discriminator": trained.run.disc.name if trained.adversarial else "-",
            "steps": self.result.step,
            "train_min": self.train_seconds / 60,
            **self.result.metrics,
            "beats_constant": beats_constant(self.result),
        }


def beats_constant(result: TestResult) -> str:
    """yes or NO: is the run's L1 below the constant median image's ("-" where that baseline does not apply)."""
    if CONSTANT not in result.baselines:
        return "-"
    return "yes" if result.metrics["l1"] < result.baselines[CONSTANT]["l1"] else "NO"


def run_sweep(
    *,
    recipes: Sequence[str],
    base: Sequence[str],
    out_dir: Path,
    split: str = "val",
    modes: Sequence[Mode] = ("paper",),
    fid_weights: Path | None = None,
    grid_rows: int = 4,
    seeds: int = 1,
    jobs: int = 1,
    scorer: Path | None = None,
    registry: Registry | None = None,
) -> Path:
    """Fit each recipe into ``out_dir/runs/NAME``, test it in each of ``modes``; write results.{md,csv}, grid.png,
    histograms.png (into ``out_dir``, or ``out_dir/MODE`` for each mode when there are several).

    With ``seeds`` > 1, each recipe runs once per seed as ``NAME-seedK``, and runs.csv lists every run.
    ``jobs`` runs train at once in separate processes. ``scorer`` adds the FCN-score and the realism distances
    in the scorer's feature space (``p2p_core.scoring``) to every run's and baseline's metrics.
    """
    if seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {seeds}")
    if jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {jobs}")
    if not modes or len(set(modes)) != len(modes):
        raise ConfigError(f"--mode needs one or more different test-time modes (paper, eval), got {list(modes)}")
    names = [Path(recipe).stem for recipe in recipes]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ConfigError(f"recipes {', '.join(repeated)} share a file name; runs are named by it, so rename one")
    if out_dir.exists():
        raise ConfigError(f"sweep folder {out_dir} already exists; pick another --name or --out_dir")
    registry = registry or default_registry()
    configs = [arg for config in base for arg in ("--config", config)]
    planned = [
        (name, None, recipe) if seeds == 1 else (f"{name}-seed{seed}", seed, recipe)
        for recipe, name in zip(recipes, names)
        for seed in range(seeds)
    ]
    # Every spec is parsed before the first run starts: a typo in the last recipe costs no training.
    specs = [
        _spec([*configs, "--config", recipe, *(() if seed is None else ("--trainer.seed", str(seed)))], registry)
        for _, seed, recipe in planned
    ]
    test = TestingPlan(split=split, modes=tuple(modes), fid_weights=fid_weights, scorer=scorer)
    done = fit_and_test([(name, spec) for (name, _, _), spec in zip(planned, specs)], out_dir / "runs", test=test, jobs=jobs, registry=registry)
    for mode in modes:
        runs = [
            SweepRun(name=run_name, train_seconds=seconds, result=results[mode], recipe=Path(recipe).stem, seed=seed)
            for (run_name, seed, recipe), (seconds, results) in zip(planned, done)
        ]
        folder = out_dir if len(modes) == 1 else out_dir / mode
        write_report(runs, folder, caption=f"{split} split, {mode} test-time mode", grid_rows=grid_rows)
    return out_dir


@attrs.frozen(kw_only=True)
class TestingPlan:
    """How every run of a sweep is tested: the split, and once per test-time mode."""

    split: str
    modes: tuple[Mode, ...]
    fid_weights: Path | None = None
    scorer: Path | None = None


Tested = tuple[float, dict[str, TestResult]]
"""A run's training seconds and its test result per mode."""


def fit_and_test(named_specs: Sequence[tuple[str, RunSpec]], runs_dir: Path, *, test: TestingPlan, jobs: int, registry: Registry) -> list[Tested]:
    """Train each spec as ``runs_dir/NAME`` and test it, ``jobs`` runs at a time; results in the specs' order.

    Worker processes load the plugins of ``registry`` again (by distribution), since a registry is not sent
    between processes. The first failed run stops the runs not yet started and is raised with its name.
    """
    if jobs == 1 or len(named_specs) == 1:
        return [_fit_and_test(spec, runs_dir, name, test, registry) for name, spec in named_specs]
    plugins = sorted({plugin.distribution for plugin in registry.plugins if not plugin.error})
    threads = max(1, (os.cpu_count() or 1) // jobs)
    context = multiprocessing.get_context("spawn")  # CUDA cannot be used in a forked child
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_start_worker, initargs=(threads, plugins)) as pool:
        futures: dict[Future, str] = {pool.submit(_fit_and_test_in_worker, spec, runs_dir, name, test): name for name, spec in named_specs}
        with tqdm(total=len(futures), desc=f"sweep, {jobs} runs at a time", unit="run", dynamic_ncols=True, disable=None) as bar:
            pending, finished = set(futures), 0
            while pending:
                done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for future in done:
                    error = future.exception()
                    if error is not None:
                        for other in pending:
                            other.cancel()
                        # A user's mistake stays one `p2p: error:` line; anything else keeps its worker traceback.
                        failed = P2PError if isinstance(error, P2PError) else RuntimeError
                        raise failed(f"sweep run {futures[future]}: {error}") from error
                    bar.update()
                    finished += 1
                    bar.write(f"{futures[future]}: trained in {future.result()[0] / 60:.1f} min and tested ({finished}/{len(futures)})")
        return [future.result() for future in futures]


def _fit_and_test(spec: RunSpec, runs_dir: Path, name: str, test: TestingPlan, registry: Registry) -> Tested:
    started = time.perf_counter()
    run_dir = Run(spec, out_dir=runs_dir, name=name, registry=registry)().run_dir
    seconds = time.perf_counter() - started
    results = {}
    for mode in test.modes:
        result = run_test(ckpt=run_dir, split=test.split, mode=mode, fid_weights=test.fid_weights, scorer=test.scorer, registry=registry)
        result.evaluation.fid = None  # its totals are in the metrics; its Inception state is not worth sending back
        results[mode] = result
    return seconds, results


_worker_registry: Registry | None = None


def _start_worker(threads: int, plugins: list[str]) -> None:
    import torch

    global _worker_registry
    torch.set_num_threads(threads)
    _worker_registry = load_registry(plugins)


def _fit_and_test_in_worker(spec: RunSpec, runs_dir: Path, name: str, test: TestingPlan) -> Tested:
    assert _worker_registry is not None, "started without _start_worker"
    return _fit_and_test(spec, runs_dir, name, test, _worker_registry)


def _spec(argv: list[str], registry: Registry) -> RunSpec:
    """A recipe's spec; a recipe's own out_dir and name are ignored, since the sweep places its runs."""

    def extend(parser: Any) -> None:
        parser.add_argument("--out_dir", type=str | None, default=None)
        parser.add_argument("--name", type=str | None, default=None)

    return parse_spec(argv, registry, extend=extend)[0]


def write_report(runs: Sequence[SweepRun], out_dir: Path, *, caption: str, grid_rows: int = 4) -> None:
    """The comparison of tested runs: results.{md,csv}, grid.png and histograms.png (the paper's Figure 7).

    Runs of one recipe with several seeds are summarised as mean +- std (every run is in runs.csv); the grid
    and the histograms show each recipe's first run. The first run's baselines (the runs share the dataset)
    are rows of results.md and are in baselines.csv; results.csv holds the runs only.
    """
    by_recipe: dict[str, list[SweepRun]] = {}
    for run in runs:
        by_recipe.setdefault(run.recipe or run.name, []).append(run)
    baselines = [{"run": f"baseline: {name}", **totals} for name, totals in runs[0].result.baselines.items()]
    if baselines:
        write_csv(baselines, out_dir / "baselines.csv")
    if all(len(group) == 1 for group in by_recipe.values()):
        write_tables([run.row() for run in runs], out_dir, caption=caption, baselines=baselines)
    else:
        write_csv([{"recipe": run.recipe, "seed": run.seed, **run.row()} for run in runs], out_dir / "runs.csv")
        write_seed_tables(by_recipe, baselines, out_dir, caption=caption)
    first = [attrs.evolve(group[0], name=recipe) for recipe, group in by_recipe.items()]
    write_grid(first, out_dir / "grid.png", rows=grid_rows)
    curves = {"ground truth": runs[0].result.evaluation.targets} | {run.name: run.result.evaluation.outputs for run in first}
    plot_histograms(curves, out_dir / "histograms.png", title="Lab marginals of the outputs against the ground truth")


def write_csv(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """Rows with possibly different keys (baselines have no generator) as one CSV; missing cells are empty."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = list(dict.fromkeys(key for row in rows for key in row))
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)


def write_seed_tables(
    by_recipe: dict[str, list[SweepRun]], baselines: Sequence[dict[str, Any]], out_dir: Path, *, caption: str
) -> None:
    """results.csv (mean and std columns) and results.md (mean +- std, marked) for recipes run with several seeds.

    The rule for the marks: per metric, the best mean is bold; a recipe whose mean is further from the best
    than the two recipes' standard deviations added is marked with a dagger (the difference exceeds the
    spread); an unmarked one is within the spread of the best. A rough guide at a few seeds, not a test.
    """
    first_rows = {recipe: group[0].row() for recipe, group in by_recipe.items()}
    metrics = [key for key in next(iter(first_rows.values())) if key in HIGHER_IS_BETTER_ANY]
    spread: dict[str, dict[str, tuple[float, float]]] = {}
    for recipe, group in by_recipe.items():
        values = {metric: [run.result.metrics[metric] for run in group] for metric in metrics}
        spread[recipe] = {m: (statistics.fmean(v), statistics.stdev(v) if len(v) > 1 else 0.0) for m, v in values.items()}

    rows = []
    for recipe, group in by_recipe.items():
        described = {key: first_rows[recipe][key] for key in ("generator", "loss", "discriminator", "steps")}
        row = {"run": recipe, **described, "seeds": len(group),
               "train_min": statistics.fmean(run.train_seconds for run in group) / 60}
        for metric, (mean, std) in spread[recipe].items():
            row[metric], row[f"{metric}_std"] = mean, std
        row["beats_constant"] = "/".join(beats_constant(run.result) for run in group)
        rows.append(row)
    write_csv(rows, out_dir / "results.csv")

    best = {
        metric: (max if HIGHER_IS_BETTER_ANY[metric] else min)(spread, key=lambda recipe: spread[recipe][metric][0])
        for metric in metrics
    }

    def mark(recipe: str, metric: str) -> str:
        mean, std = spread[recipe][metric]
        best_mean, best_std = spread[best[metric]][metric]
        text = f"{mean:.4g} ± {std:.2g}"
        if recipe == best[metric]:
            return f"**{text}**"
        return text + " †" if abs(mean - best_mean) > std + best_std else text

    header = ["run", "generator", "loss", "discriminator", "steps", "seeds", "train_min", *metrics, "beats_constant"]
    lines = [
        f"Results on the {caption}: mean ± standard deviation over the seeds. Per metric, **bold** is the best "
        "mean and † marks a recipe further from it than the two standard deviations added (a difference beyond "
        "the spread); unmarked means within the spread of the best.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for row in rows:
        cells = [mark(row["run"], key) if key in metrics else _cell(row[key]) for key in header]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["| " + " | ".join(_cell(row.get(key, "-")) for key in header) + " |" for row in baselines]
    (out_dir / "results.md").write_text("\n".join(lines) + "\n")


def _cell(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def write_tables(
    rows: Sequence[dict[str, Any]], out_dir: Path, *, caption: str, baselines: Sequence[dict[str, Any]] = ()
) -> None:
    """results.csv (full precision) and results.md (rounded), one row per run; the baselines' rows follow in .md."""
    write_csv(rows, out_dir / "results.csv")
    header = list(rows[0])
    lines = [f"Results on the {caption}.", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(row.get(key, "-")) for key in header) + " |" for row in [*rows, *baselines]]
    (out_dir / "results.md").write_text("\n".join(lines) + "\n")


def write_grid(runs: Sequence[SweepRun], path: Path, *, rows: int, cell: int = 128) -> None:
    """Side by side: input | each run's output | target, for the first ``rows`` test images, labelled."""
    names = runs[0].result.names[:rows]
    for run in runs[1:]:
        if run.result.names[: len(names)] != names:
            raise ConfigError(
                f"runs {runs[0].name} and {run.name} were tested on different images; "
                "a side-by-side grid needs recipes that share the dataset (put it in --base)"
            )
    columns = [("input", runs[0].result.out_dir / FOLDERS[0])]
    columns += [(run.name, run.result.out_dir / FOLDERS[1]) for run in runs]
    columns += [("target", runs[0].result.out_dir / FOLDERS[2])]
    write_grid_image(columns, names, path, cell=cell)

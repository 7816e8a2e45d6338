"""``p2p sweep``: fit and test several recipes the same way, then compare them in one table and one image grid.

Each recipe is applied after the ``--base`` configs, so an ablation recipe names only what it varies (the
objective, the generator, the discriminator) and the base names the task and the scale. All command lines
are parsed before the first run starts, so a typo in the last recipe does not cost the earlier runs.
"""

from __future__ import annotations

import csv
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
from PIL import Image, ImageDraw, ImageFont, ImageOps

from p2p_core.config import parse_spec
from p2p_core.errors import ConfigError
from p2p_core.evaluation import FOLDERS, TestResult, run_test
from p2p_core.metrics import plot_histograms
from p2p_core.registry import Registry, default_registry
from p2p_core.run import Run
from p2p_core.spec import Mode, RunSpec


@attrs.frozen(kw_only=True)
class SweepRun:
    name: str
    train_seconds: float
    result: TestResult

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
        }


def run_sweep(
    *,
    recipes: Sequence[str],
    base: Sequence[str],
    out_dir: Path,
    split: str = "val",
    mode: Mode = "paper",
    fid_weights: Path | None = None,
    grid_rows: int = 4,
    registry: Registry | None = None,
) -> Path:
    """Fit and test each recipe into ``out_dir/runs/NAME``; write results.{md,csv}, grid.png, histograms.png."""
    names = [Path(recipe).stem for recipe in recipes]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ConfigError(f"recipes {', '.join(repeated)} share a file name; runs are named by it, so rename one")
    if out_dir.exists():
        raise ConfigError(f"sweep folder {out_dir} already exists; pick another --name or --out_dir")
    registry = registry or default_registry()
    configs = [arg for config in base for arg in ("--config", config)]
    specs = [_spec([*configs, "--config", recipe], registry) for recipe in recipes]
    runs = []
    for name, spec in zip(names, specs):
        started = time.perf_counter()
        run_dir = Run(spec, out_dir=out_dir / "runs", name=name, registry=registry)().run_dir
        seconds = time.perf_counter() - started
        result = run_test(ckpt=run_dir, split=split, mode=mode, fid_weights=fid_weights, registry=registry)
        runs.append(SweepRun(name=name, train_seconds=seconds, result=result))
    write_report(runs, out_dir, caption=f"{split} split, {mode} test-time mode", grid_rows=grid_rows)
    return out_dir


def _spec(argv: list[str], registry: Registry) -> RunSpec:
    """A recipe's spec; a recipe's own out_dir and name are ignored, since the sweep places its runs."""

    def extend(parser: Any) -> None:
        parser.add_argument("--out_dir", type=str | None, default=None)
        parser.add_argument("--name", type=str | None, default=None)

    return parse_spec(argv, registry, extend=extend)[0]


def write_report(runs: Sequence[SweepRun], out_dir: Path, *, caption: str, grid_rows: int = 4) -> None:
    """The comparison of tested runs: results.{md,csv}, grid.png and histograms.png (the paper's Figure 7)."""
    write_tables([run.row() for run in runs], out_dir, caption=caption)
    write_grid(runs, out_dir / "grid.png", rows=grid_rows)
    curves = {"ground truth": runs[0].result.evaluation.targets} | {run.name: run.result.evaluation.outputs for run in runs}
    plot_histograms(curves, out_dir / "histograms.png", title="Lab marginals of the outputs against the ground truth")


def write_tables(rows: Sequence[dict[str, Any]], out_dir: Path, *, caption: str) -> None:
    """results.csv (full precision) and results.md (rounded), one row per run."""
    out_dir.mkdir(parents=True, exist_ok=True)
    header = list(rows[0])
    with open(out_dir / "results.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)

    def cell(value: Any) -> str:
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    lines = [f"Results on the {caption}.", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(row[key]) for key in header) + " |" for row in rows]
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
    font = ImageFont.load_default(size=12)
    header = 34
    grid = Image.new("RGB", (len(columns) * (cell + 2), header + len(names) * (cell + 2)), "white")
    draw = ImageDraw.Draw(grid)
    for column, (label, folder) in enumerate(columns):
        left = column * (cell + 2)
        text = "\n".join(textwrap.wrap(label, width=cell // 7)[:2])
        draw.multiline_text((left + cell // 2, header // 2), text, fill="black", font=font, anchor="mm", align="center")
        for row, name in enumerate(names):
            with Image.open(folder / f"{name}.png") as image:
                # Small test images are enlarged with visible pixels rather than smoothed over.
                tile = ImageOps.contain(image.convert("RGB"), (cell, cell), Image.Resampling.NEAREST)
            grid.paste(tile, (left + (cell - tile.width) // 2, header + row * (cell + 2) + (cell - tile.height) // 2))
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path, optimize=True)

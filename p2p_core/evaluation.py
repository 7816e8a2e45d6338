"""``p2p test`` and ``p2p evaluate``: translate a split with a trained generator, measure it, write a results page.

The test-time mode (``p2p_core.test_time``) is recorded on the page and in metrics.json.

Beside the model's numbers, ``p2p test`` measures baselines a reader needs to interpret them: the constant
image that minimises L1 over the split's targets (their per-pixel median), the input copied through (where
its channels match the target's) and, with a scorer (``p2p_core.scoring``), the real photos, the FCN-score's
upper bound. A scorer also gives the realism distances (scorer_fd, scorer_kid) of the outputs and of each
baseline from the real photos, in its own feature space. A model that does not beat the constant image on
L1 is flagged: on sparse targets a blank image can outscore every trained model on L1, PSNR and SSIM.
"""

from __future__ import annotations

import html
import json
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import torch
from PIL import Image, ImageDraw, ImageFont, ImageOps
from torch import Tensor

from p2p_core import checkpoint, hub
from p2p_core.backends import Backend, choose, open_backend
from p2p_core.checkpoint import guarded
from p2p_core.devices import resolve_device
from p2p_core.errors import ConfigError, DataError, P2PError
from p2p_core.files import pair_by_name, refuse_overlap
from p2p_core.images import list_images, read_image, write_image
from p2p_core.metrics import HISTOGRAM_METRICS, IMAGE_METRICS, Evaluation, SegmentationScores, plot_histograms
from p2p_core.inference import TrainedGenerator, load_generator
from p2p_core.registry import Registry, default_registry
from p2p_core.scoring import (
    LoadedScorer,
    ScorerFeatures,
    check_compatible,
    feature_distances,
    load_scorer,
    read_labels,
    write_labels,
)
from p2p_core.spec import MODES, Mode, TrainedSpec

FOLDERS = ("inputs", "outputs", "targets")
LABELS = "labels"
"""Where a labelled dataset's class maps go beside the images, for ``p2p evaluate --labels`` (scoring.write_labels)."""
CONSTANT = "constant (per-pixel median of the targets)"
INPUT = "input copied through"
REAL = "real photos (the scorer's upper bound)"


@attrs.frozen(kw_only=True)
class TestResult:
    out_dir: Path
    step: int
    trained: TrainedSpec
    """What the checkpoint says was trained: generator, loss, discriminator, dataset."""
    names: list[str]
    """Image names in dataset order; each is saved as ``{inputs,outputs,targets}/NAME.png``."""
    metrics: Mapping[str, float]
    """The totals, as in metrics.json (computed once: FID is not cheap); with a scorer, the FCN-score too."""
    evaluation: Evaluation
    baselines: Mapping[str, Mapping[str, float]] = attrs.field(factory=dict)
    """Each baseline's totals, by row name (CONSTANT, INPUT, REAL), as in metrics.json."""
    warnings: list[str] = attrs.field(factory=list)
    """E.g. that the model does not beat the constant baseline."""


def run_test(
    *,
    ckpt: Path,
    split: str = "val",
    data: Mapping[str, Any] | None = None,
    mode: Mode = "paper",
    out: Path | None = None,
    device: str = "auto",
    fid_weights: Path | None = None,
    seed: int = 0,
    scorer: Path | None = None,
    backend: Backend = "auto",
    precision: str = "float32",
    overwrite: bool = False,
    direction: str = "AtoB",
    ema: bool = True,
    registry: Registry | None = None,
) -> TestResult:
    """Translate every pair of ``split`` of the checkpoint's dataset (``data`` replaces stored options).

    With ``scorer`` (a file of ``p2p scorer fit``), the outputs, the baselines and the real photos are also
    measured by the FCN-score against the dataset's labels, and the outputs and the baselines by their
    realism distances from the real photos in the scorer's feature space.
    """
    registry = registry or default_registry()
    torch_device = resolve_device(device)
    trained = load_generator(ckpt, mode=mode, device=torch_device, registry=registry, direction=direction, ema=ema)
    # A backend that cannot run the mode or precision is refused before the dataset is rebuilt, not after.
    choose(backend, mode=mode, device=torch_device, precision=precision, registry=registry)
    stored = trained.trained.run.data
    if "name" in (data or {}):
        raise ConfigError(f"--data sets options of the checkpoint's dataset {stored.name!r}, not another dataset; drop its 'name'")
    options = {**stored.options, **(data or {})}
    try:
        dataset = registry.create("dataset", stored.name, split=split, **options)
    except P2PError as error:
        raise ConfigError(f"{trained.origin}'s dataset {stored.name!r} cannot be rebuilt: {error}; pass its options, e.g. --data '{{root: DIR}}'") from None

    loaded = load_scorer(scorer, device=torch_device, registry=registry) if scorer else None
    if loaded is not None:
        labelled = len(dataset) > 0 and dataset[0].labels is not None
        check_compatible(loaded, classes=getattr(dataset, "classes", None) if labelled else None,
                         channels=dataset.out_channels, what=f"dataset {stored.name!r}")
    segmentation = SegmentationScores(num_classes=len(loaded.classes)) if loaded is not None else None
    features = ScorerFeatures(loaded) if loaded is not None else None

    out_dir = Path(out) if out else default_folder(trained, split=split, mode=mode)
    dataset_root = {"the dataset": Path(dataset.root)} if getattr(dataset, "root", None) else {}
    refuse_overlap(out_dir, guarded(trained.path) | dataset_root, option="--out")
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise DataError(f"{out_dir} already holds results; pass --overwrite to replace them, or choose another --out")
    runner = open_backend(trained, backend=backend, device=torch_device, precision=precision, registry=registry)
    evaluation = Evaluation(fid_weights=fid_weights, device=torch_device)
    names: list[str] = []
    used: set[str] = set()
    rows: list[dict[str, float]] = []
    # The baselines need the whole split (the constant image is the targets' median); kept on the CPU.
    inputs, targets, labels = [], [], []
    generated = []  # the outputs' scorer features (the outputs themselves are not kept)
    torch.manual_seed(seed)  # paper mode samples dropout: the same seed gives the same page
    with torch.no_grad():
        # One image at a time, as the paper tests: in paper mode the batch's statistics are then the image's own.
        for index in range(len(dataset)):
            sample = dataset[index]
            x, target = sample.a[None].to(torch_device), sample.b[None].to(torch_device)
            if direction == "BtoA":
                x, target = target, x
            output = runner(x)
            rows += evaluation.add(output, target)
            inputs.append(x.cpu())
            targets.append(target.cpu())
            if loaded is not None:
                labels.append(sample.labels[None])
                segmentation.update(loaded.classify(output), labels[-1])
                generated.append(features(output).cpu())
            stem = Path(sample.path).stem
            name = stem if stem not in used else f"{stem}_{index}"
            names.append(name)
            used.add(name)
            for folder, image in zip(FOLDERS, (x, output, target)):
                write_image(image[0], out_dir / folder / f"{name}.png")
            if sample.labels is not None:
                write_labels(sample.labels, out_dir / LABELS / f"{name}.png")

    facts = {
        "checkpoint": trained.origin,
        "step": trained.step,
        "split": split,
        "mode": mode,
        "mode_description": MODES[mode],
        "direction": direction,
        "averaged_weights": trained.averaged,
        "seed": seed,
        "dataset": {"name": stored.name, "options": options},
        "generator": {"name": trained.name, "options": dict(trained.trained.run.generator.options)},
    }
    scores = {}
    if loaded is not None:
        facts["scorer"] = str(loaded.path)
        scores = segmentation.compute() | feature_distances(features_of(targets, features), torch.cat(generated))
    content = write_results(
        out_dir,
        facts=facts,
        evaluation=evaluation,
        rows=rows,
        names=names,
        page=True,
        extra_metrics=scores,
        baselines=measure_baselines(inputs=inputs, targets=targets, labels=labels if loaded else None, scorer=loaded,
                                    features=features),
    )
    return TestResult(
        out_dir=out_dir,
        step=trained.step,
        trained=trained.trained,
        names=names,
        metrics=content["metrics"],
        evaluation=evaluation,
        baselines=content["baselines"],
        warnings=content["warnings"],
    )


def constant_baseline(targets: Sequence[Tensor]) -> Tensor:
    """The one image (1 x C x H x W) with the least total L1 distance to all ``targets``: their per-pixel median."""
    return torch.cat(list(targets)).median(dim=0, keepdim=True).values


def features_of(images: Sequence[Tensor], features: ScorerFeatures) -> Tensor:
    """The scorer features of 1 x C x H x W ``images`` (of any sizes), N x D on the CPU."""
    return torch.cat([features(image).cpu() for image in images])


def measure_baselines(
    *,
    inputs: Sequence[Tensor],
    targets: Sequence[Tensor],
    labels: Sequence[Tensor] | None = None,
    scorer: LoadedScorer | None = None,
    features: ScorerFeatures | None = None,
) -> dict[str, dict[str, float]]:
    """The baselines' totals for 1 x C x H x W ``inputs`` and ``targets`` (and, with a scorer, N x H x W ``labels``).

    The constant image needs targets of one size, and the input copied through needs inputs with the targets'
    channels; a baseline that does not apply is left out. With a scorer, each baseline but the real photos
    (whose distance from themselves says nothing) also gets its realism distances from the targets.
    """
    candidates: dict[str, list[Tensor]] = {}
    if targets and all(target.shape == targets[0].shape for target in targets):
        candidates[CONSTANT] = [constant_baseline(targets)] * len(targets)
    if all(x.shape == target.shape for x, target in zip(inputs, targets)):
        candidates[INPUT] = list(inputs)
    if scorer is not None:
        candidates[REAL] = list(targets)
    if scorer is not None and features is None:
        features = ScorerFeatures(scorer)
    real = features_of(targets, features) if scorer is not None else None
    baselines = {}
    for name, images in candidates.items():
        totals = {}
        if name != REAL:  # real photos measured against themselves would only say 0 and 100 dB
            evaluation = Evaluation()
            for image, target in zip(images, targets):
                evaluation.add(image, target)
            totals = evaluation.summary()
        if scorer is not None and labels is not None:
            segmentation = SegmentationScores(num_classes=len(scorer.classes))
            for image, label in zip(images, labels):
                segmentation.update(scorer.classify(image), label)
            totals |= segmentation.compute()
        if real is not None and name != REAL:
            # The constant image is one picture repeated: its features are measured once.
            measured = features_of(images[:1] if name == CONSTANT else images, features)
            totals |= feature_distances(real, measured.expand(len(images), -1))
        baselines[name] = totals
    return baselines


def baseline_warnings(metrics: Mapping[str, float], baselines: Mapping[str, Mapping[str, float]]) -> list[str]:
    """Why the model's numbers mean less than they seem: it does not beat the constant image on L1."""
    if CONSTANT not in baselines or metrics["l1"] < baselines[CONSTANT]["l1"]:
        return []
    return [
        f"NOT BETTER THAN A CONSTANT IMAGE: l1 {metrics['l1']:.4g} >= {baselines[CONSTANT]['l1']:.4g}, the "
        "per-pixel median of the targets; its other scores may mislead too"
    ]


def report_text(result: TestResult) -> str:
    """What ``p2p test`` prints: the model's totals, each baseline's, any warning and the notes."""
    lines = [f"model: {summary_text(result.metrics)}"]
    lines += [f"baseline, {name}: {summary_text(totals)}" for name, totals in result.baselines.items()]
    return "\n".join([*lines, *result.warnings, *result.evaluation.notes])


def default_folder(trained: TrainedGenerator, *, split: str, mode: Mode) -> Path:
    """Where ``p2p test`` writes without ``--out``: RUN/test_SPLIT_MODE_CKPT for a run's checkpoint, beside any other
    model file, and for a Hub model (whose file lies in the Hub's cache) test_SPLIT_MODE_NAME-COMMIT here."""
    path = trained.path
    if trained.source is not None:
        reference = hub.parse(trained.source)
        return Path(f"test_{split}_{mode}_{reference.repo_id.rpartition('/')[2]}-{(reference.revision or '')[:12]}")
    folder = path.parent.parent if path.parent.name == checkpoint.FOLDER else path.parent
    backwards = "_BtoA" if trained.direction == "BtoA" else ""
    return folder / f"test_{split}_{mode}{backwards}_{path.stem}"


def write_results(
    out_dir: Path,
    *,
    facts: Mapping[str, Any],
    evaluation: Evaluation,
    rows: Sequence[Mapping[str, float]],
    names: Sequence[str],
    page: bool = False,
    extra_metrics: Mapping[str, float] | None = None,
    baselines: Mapping[str, Mapping[str, float]] | None = None,
) -> dict[str, Any]:
    """metrics.json, histograms.png and, with ``page``, index.html (the images must be saved); returns the JSON.

    ``extra_metrics`` join the totals (e.g. the FCN-score); ``baselines`` are other rows of totals, by name.
    """
    summary = evaluation.summary() | dict(extra_metrics or {})
    baselines = dict(baselines or {})
    content = {
        **facts,
        "count": len(rows),
        "metrics": summary,
        "baselines": baselines,
        "warnings": baseline_warnings(summary, baselines),
        "notes": evaluation.notes,
        "images": [{"name": name, **row} for name, row in zip(names, rows)],
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(content, indent=2, default=str) + "\n")
    plot_histograms(
        {"ground truth": evaluation.targets, "output": evaluation.outputs},
        out_dir / "histograms.png",
        title="Lab marginals: " + ", ".join(f"{k} {summary[k]:.3f}" for k in HISTOGRAM_METRICS) + " (intersection)",
    )
    if page:
        (out_dir / "index.html").write_text(results_page(content))
    return content


def write_grid_image(columns: Sequence[tuple[str, Path]], names: Sequence[str], path: Path, *, cell: int = 128) -> None:
    """Columns of ``FOLDER/NAME.png`` side by side under their labels, one row per name: a results grid."""
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


def summary_text(summary: Mapping[str, float]) -> str:
    """One line of totals, e.g. for the terminal: ``l1 0.0812  psnr 19.41  ssim 0.612 ...``."""
    return "  ".join(f"{name} {value:.4g}" for name, value in summary.items())


def results_page(content: Mapping[str, Any]) -> str:
    """A static page with the run's facts, the totals and one row per image: input | output | target, metrics."""
    escape = html.escape
    facts = [
        ("checkpoint", content["checkpoint"]),
        ("step", content["step"]),
        ("split", content["split"]),
        ("test-time mode", content["mode_description"]),
        ("dropout seed", content["seed"]),
        ("FCN-score scorer", content.get("scorer", "none (p2p test --scorer PATH adds the FCN-score)")),
        ("dataset", f"{content['dataset']['name']} {json.dumps(content['dataset']['options'], default=str)}"),
        ("images", content["count"]),
    ]
    table = {"model": content["metrics"], **{f"baseline: {k}": v for k, v in content["baselines"].items()}}
    columns = list(dict.fromkeys(key for totals in table.values() for key in totals))
    totals = "<th></th>" + "".join(f"<th>{escape(k)}</th>" for k in columns)
    values = "".join(
        f"<tr><th>{escape(name)}</th>" + "".join(f"<td>{row[k]:.4f}</td>" if k in row else "<td>-</td>" for k in columns) + "</tr>"
        for name, row in table.items()
    )
    warnings = "".join(f'<p class="warning">{escape(warning)}</p>' for warning in content["warnings"])
    rows = []
    for image in content["images"]:
        name = escape(image["name"])
        cells = "".join(f'<td><img src="{folder}/{name}.png" alt="{folder} {name}"></td>' for folder in FOLDERS)
        scores = "".join(f"<td>{image[k]:.4f}</td>" for k in IMAGE_METRICS)
        rows.append(f"<tr><td>{name}</td>{cells}{scores}</tr>")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>p2p test: {escape(str(content['checkpoint']))}</title>
<style>body{{font-family:sans-serif;margin:1.5em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:center}} img{{width:256px;image-rendering:pixelated}}
.facts td,.facts th{{text-align:left}} .warning{{color:#b00;font-weight:bold}}</style></head>
<body><h1>Test results</h1>
<table class="facts">{''.join(f'<tr><th>{escape(k)}</th><td>{escape(str(v))}</td></tr>' for k, v in facts)}</table>
<h2>Totals</h2>
{warnings}
<table><tr>{totals}</tr>{values}</table>
<p>{'<br>'.join(escape(note) for note in content['notes'])}</p>
<p>l1: mean absolute error of RGB in [0, 1]; psnr in dB (capped at 100); hist_L/a/b: intersection of the outputs'
and targets' Lab histograms over the whole set (the paper's colour measure; 1 = same distribution).
pixel_acc, class_acc, class_iou (with a scorer): the paper's FCN-score, how a segmenter trained on real photos
labels these images: per-pixel accuracy, mean per-class accuracy, mean class IoU. scorer_fd, scorer_kid (with a
scorer): how far these images lie from the real photos in the scorer's feature space, as FID and KID measure
it (0 = indistinguishable; lower is better). Baselines: the constant image closest to all targets in L1 (their
per-pixel median), the input copied through, the real photos.
Files: <a href="metrics.json">metrics.json</a>.</p>
<img src="histograms.png" alt="Lab histograms" style="width:auto">
<h2>Images</h2>
<table><tr><th>name</th><th>input</th><th>output</th><th>target</th>{''.join(f'<th>{k}</th>' for k in IMAGE_METRICS)}</tr>
{chr(10).join(rows)}
</table></body></html>
"""


def evaluate_folders(
    *, pred: Path, target: Path, out: Path | None = None, fid_weights: Path | None = None,
    scorer: Path | None = None, labels: Path | None = None,
) -> dict[str, Any]:
    """Measure ``pred/NAME.*`` against ``target/NAME.*`` (paired by file name); write results to ``out``.

    With ``scorer`` and ``labels`` (class maps ``labels/NAME.png``, as ``p2p test`` writes them), the FCN-score
    and the realism distances of the translations from the targets in the scorer's feature space too.
    """
    if (scorer is None) != (labels is None):
        raise ConfigError("the FCN-score needs both --scorer and --labels (a folder of class maps named as the images, "
                          "as p2p test writes into labels/)")
    folders = {"--pred": Path(pred), "--target": Path(target)} | ({"--labels": Path(labels)} if labels else {})
    layouts = {"--pred": "translated images, named as their targets", "--target": "target images, named as the translations",
               "--labels": "class maps, named as the translations"}
    pairs, _ = pair_by_name({role: list_images(folder, layout=layouts[role]) for role, folder in folders.items()}, roots=folders)
    loaded = load_scorer(scorer) if scorer else None
    segmentation = SegmentationScores(num_classes=len(loaded.classes)) if loaded else None
    features = ScorerFeatures(loaded) if loaded else None
    generated, real = [], []
    evaluation = Evaluation(fid_weights=fid_weights)
    names = [pair["--pred"].stem for pair in pairs]
    rows: list[dict[str, float]] = []
    for name, pair in zip(names, pairs):
        output, expected = read_image(pair["--pred"]), read_image(pair["--target"])
        if output.shape != expected.shape:
            raise DataError(
                f"{pair['--pred']} is {output.shape[-2]}x{output.shape[-1]} but {pair['--target']} is "
                f"{expected.shape[-2]}x{expected.shape[-1]}; write the translations at the targets' size"
            )
        rows += evaluation.add(output[None], expected[None])
        if loaded is not None:
            segmentation.update(loaded.classify(output[None]), read_labels(pair["--labels"], classes=len(loaded.classes))[None])
            generated.append(features(output[None]).cpu())
            real.append(features(expected[None]).cpu())
    facts = {"pred": str(pred), "target": str(target)} | ({"scorer": str(scorer), "labels": str(labels)} if loaded else {})
    scores = segmentation.compute() | feature_distances(torch.cat(real), torch.cat(generated)) if loaded else {}
    if out is None:
        return {**facts, "count": len(rows), "metrics": evaluation.summary() | scores, "notes": evaluation.notes}
    return write_results(Path(out), facts=facts, evaluation=evaluation, rows=rows, names=names, extra_metrics=scores)

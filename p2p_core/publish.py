"""``p2p push``: a trained model as a Hugging Face Hub model repository, and its upload.

The folder holds what a Hub user expects: ``model.safetensors`` (weights and the spec that rebuilds them,
:mod:`p2p_core.weights`), ``config.yaml`` (the run spec, which ``p2p fit --config`` takes back), ``README.md`` (the
model card: YAML metadata the Hub indexes, with the latest ``p2p test``'s metrics as its model-index, and a text
saying what the model translates, how it was trained, with which components from which distributions, and how to
load it with p2p, torch or onnxruntime), the test's images as a grid, and ``model.onnx`` if asked. It is built in
full before anything is uploaded, so ``--dry-run`` shows exactly what would be. The upload goes through
``huggingface_hub``'s ``HfApi``, which takes the token from ``HF_TOKEN`` or the Hub login; p2p never reads,
prints or writes it.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from p2p_core import hub
from p2p_core.errors import ConfigError, DataError
from p2p_core.evaluation import FOLDERS, write_grid_image
from p2p_core.export import CHANNELS, INPUT_NAME, OUTPUT_NAME, describe, require_onnx_exporter, write_checked
from p2p_core.inference import TrainedGenerator, load_generator
from p2p_core.protocols import Direction
from p2p_core.registry import Registry
from p2p_core.spec import MODES, Mode
from p2p_core.weights import MODEL_FILE
from p2p_core.weights import save as save_weights

CARD, CONFIG, GRID, ONNX = "README.md", "config.yaml", "test_grid.png", "model.onnx"
GRID_ROWS = 4
TAGS = ("p2p", "pix2pix", "image-to-image", "gan")


def push(
    run: Path,
    *,
    repo: str,
    out: Path | None = None,
    dry_run: bool = False,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    onnx: bool = False,
    mode: Mode | None = None,
    license: str = "other",
    datasets: list[str] | None = None,
    direction: Direction = "AtoB",
    registry: Registry,
) -> None:
    """Publish a trained model on the Hugging Face Hub: model.safetensors, config.yaml, a model card with the metrics
    of the run's latest `p2p test`, and an ONNX export if asked. The token comes from HF_TOKEN or `hf auth login`.

    Args:
        run: A run folder of `p2p fit` (its newest checkpoint that loads), or anything --ckpt takes.
        repo: The Hub model repository, OWNER/NAME; it is created if missing.
        out: Write the repository folder here and upload nothing (default: a temporary folder, uploaded).
        dry_run: Only write the folder (to --out, default ./NAME) and show what would be uploaded.
        private: Create the repository private (an existing one keeps its visibility).
        revision: The branch to commit to (created from the default branch if missing); default: main.
        commit_message: The commit's message (default: what was pushed, from which run).
        onnx: Also export model.onnx (any size, eval mode) for onnxruntime users; needs pip install 'p2p[export]'.
        mode: The test-time mode the card recommends and model.safetensors records: paper or eval (default: the
            mode of the run's latest p2p test, else eval).
        license: The weights' licence, as a Hub licence id (mit, apache-2.0, cc-by-4.0, ...); other by default.
            State it: the training data's licence may bind it.
        datasets: Hub dataset ids it was trained on, for the card's metadata (default: the dataset folder's name).
        direction: The generator to publish: AtoB, or BtoA for a model whose method trained both ways.
    """
    reference = hub.parse(f"{hub.PREFIX}{repo}")
    test = latest_test(Path(run), direction=direction)
    chosen: Mode = mode or (test["mode"] if test else "eval")
    trained = load_generator(run, mode=chosen, registry=registry, direction=direction)
    folder = Path(out) if out is not None else (Path(reference.repo_id.rpartition("/")[2]) if dry_run else None)
    if folder is None:
        with tempfile.TemporaryDirectory(prefix="p2p-push-") as scratch:
            written = build_folder(trained, Path(scratch) / "repo", repo=reference.repo_id, test=test, onnx=onnx,
                                   license=license, datasets=datasets)
            commit = upload(written, repo=reference.repo_id, private=private, revision=revision,
                            commit_message=commit_message or f"p2p push of {trained.label} (step {trained.step})")
        print(f"pushed {trained.origin} to {reference.repo_id} (commit {commit})\n"
              f"load it with: p2p predict --ckpt hf:{reference.repo_id}@{commit} --input IMAGES --output OUT --mode {chosen}")
        return
    written = build_folder(trained, folder, repo=reference.repo_id, test=test, onnx=onnx, license=license, datasets=datasets)
    files = sorted(str(path.relative_to(written)) for path in written.rglob("*") if path.is_file())
    print(f"wrote {written}: {', '.join(files)}\nnothing was uploaded; upload it with: p2p push {run} --repo {reference.repo_id}")


def latest_test(run: Path, *, direction: str = "AtoB") -> dict[str, Any] | None:
    """The metrics.json (with its folder as ``folder``) of the run folder's newest ``p2p test`` of ``direction``, or None."""
    if not run.is_dir():
        return None
    for found in sorted(run.glob("test_*/metrics.json"), key=lambda path: path.stat().st_mtime, reverse=True):
        try:
            content = json.loads(found.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise DataError(f"{found} cannot be read ({error}); run p2p test again or remove it") from None
        if content.get("direction", "AtoB") == direction:
            return content | {"folder": str(found.parent)}
    return None


def build_folder(
    trained: TrainedGenerator, folder: Path, *, repo: str, test: Mapping[str, Any] | None, onnx: bool = False,
    license: str = "other", datasets: list[str] | None = None,
) -> Path:
    """Write the Hub repository folder of ``trained`` as ``folder`` (new or empty), all or nothing; returns it."""
    if folder.exists() and any(folder.iterdir()):
        raise DataError(f"{folder} already holds files; choose another --out, or remove it")
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        _fill(staging, trained, repo=repo, test=test, onnx=onnx, license=license, datasets=datasets)
        if folder.exists():
            folder.rmdir()  # empty, as checked
        staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def _fill(
    folder: Path, trained: TrainedGenerator, *, repo: str, test: Mapping[str, Any] | None, onnx: bool, license: str,
    datasets: list[str] | None,
) -> None:
    mode: Mode = "paper" if trained.module.training else "eval"
    save_weights(folder / MODEL_FILE, weights=trained.module.state_dict(), trained=trained.trained, step=trained.step,
                 mode=mode, source=trained.label, direction=trained.direction)
    (folder / CONFIG).write_text(yaml.safe_dump(trained.trained.run.to_dict(), sort_keys=False))
    if onnx:
        _write_onnx(trained, folder)
    grid = _write_grid(test, folder / GRID) if test else None
    (folder / CARD).write_text(model_card(trained, repo=repo, test=test, mode=mode, onnx=onnx, grid=grid,
                                          license=license, datasets=datasets))


def _write_onnx(trained: TrainedGenerator, folder: Path) -> None:
    require_onnx_exporter()
    evaluating = load_generator(trained.path, mode="eval") if trained.module.training else trained
    # The exporter narrates each of its steps on stdout, which belongs to the command's own output.
    with contextlib.redirect_stdout(io.StringIO()):
        result = write_checked(evaluating, format="onnx", out=folder / ONNX)
    description = describe(evaluating, result, format="onnx", mode="eval") | {"checkpoint": trained.label}
    (folder / f"{ONNX}.json").write_text(json.dumps(description, indent=2) + "\n")


def _write_grid(test: Mapping[str, Any], path: Path) -> str | None:
    """input | output | target of the test's first images, or None where its images are gone."""
    results = Path(test["folder"])
    names = [image["name"] for image in test.get("images", [])][:GRID_ROWS]
    columns = [(label, results / folder) for label, folder in zip(("input", "output", "target"), FOLDERS)]
    if not names or not all((folder / f"{name}.png").is_file() for _, folder in columns for name in names):
        return None
    write_grid_image(columns, names, path)
    return path.name


def model_card(
    trained: TrainedGenerator, *, repo: str, test: Mapping[str, Any] | None, mode: Mode, onnx: bool, grid: str | None,
    license: str, datasets: list[str] | None,
) -> str:
    """README.md: the Hub's YAML metadata, then what the model is, how it was made and measured, and how to use it."""
    from huggingface_hub import EvalResult, ModelCardData

    spec = trained.trained
    run = spec.run
    dataset = Path(str(run.data.options.get("root", run.data.name))).name
    third_party = {flag: provider for flag, provider in spec.providers.items() if not provider.startswith("p2p ")}
    metadata = ModelCardData(
        library_name="p2p",
        pipeline_tag="image-to-image",
        license=license,
        tags=[*TAGS, run.generator.name.rpartition(":")[2]],
        datasets=datasets or [dataset],
        model_name=repo,
        eval_results=[
            EvalResult(task_type="image-to-image", dataset_type=dataset, dataset_name=dataset, dataset_split=test["split"],
                       metric_type=name, metric_value=value, metric_name=f"{name} ({test['mode']} mode)",
                       metric_config=test["mode"])
            for name, value in test["metrics"].items()
        ] if test else None,
        p2p={"generator": run.generator.to_dict(), "shapes": {"in_channels": spec.shapes.in_channels,
             "out_channels": spec.shapes.out_channels, "image_size": spec.shapes.image_size},
             "providers": dict(spec.providers), "plugins": dict(spec.plugins), "step": trained.step, "mode": mode},
    )
    sections = [
        f"# {repo.rpartition('/')[2]}",
        f"A pix2pix generator trained with [p2p](https://pypi.org/project/p2p/): it translates {_channels(spec.shapes.in_channels)} "
        f"images into {_channels(spec.shapes.out_channels)} images, as learnt from the {dataset} data "
        f"({_options(run.data.options)}), at {spec.shapes.image_size} x {spec.shapes.image_size} pixels.",
        *([f"![input | output | target on the {test['split']} split]({grid})"] if grid else []),
        "## Use it",
        *_usage(trained, repo=repo, mode=mode, onnx=onnx, third_party=third_party),
        "## How it was trained",
        _table(("", "component", "options", "from"), [
            ("generator", run.generator.name, _options(run.generator.options), spec.providers.get("generator", "")),
            ("discriminator", run.disc.name if spec.adversarial else "none", _options(run.disc.options) if spec.adversarial else "",
             spec.providers.get("disc", "") if spec.adversarial else ""),
            ("data", run.data.name, _options(run.data.options), spec.providers.get("data", "")),
            ("loss", run.loss, _options({k: dict(v) for k, v in run.loss_options.items()}), ""),
        ]),
        f"{trained.step} steps, batch size {run.trainer.batch_size}, Adam (lr {run.trainer.lr}, betas {run.trainer.beta1}, "
        f"{run.trainer.beta2}), seed {run.trainer.seed}, {run.trainer.precision}. config.yaml holds the whole spec; "
        f"`p2p fit --config config.yaml` trains it again.",
        "## Evaluation",
        _evaluation(test, step=trained.step),
    ]
    return f"---\n{metadata.to_yaml()}\n---\n\n" + "\n\n".join(sections) + "\n"


def _usage(trained: TrainedGenerator, *, repo: str, mode: Mode, onnx: bool, third_party: Mapping[str, str]) -> list[str]:
    spec = trained.trained
    install = " ".join(["p2p", *sorted({f"'{p.rpartition(' ')[0]}=={p.rpartition(' ')[2]}'" for p in third_party.values()})])
    options = ", ".join(f"{k}={v!r}" for k, v in generator_arguments(trained).items())
    onnx_file = f'hf_hub_download("{repo}", "{ONNX}")' if onnx else '"model.onnx"'
    onnx_make = "" if onnx else f"# first: p2p export --ckpt hf:{repo} --format onnx --out model.onnx\n"
    return [
        f"With p2p (`pip install {install}`) in {mode} mode, {MODES[mode].partition(': ')[2]}:",
        f"```bash\np2p predict --ckpt hf:{repo} --input IMAGES --output OUT --mode {mode}\n"
        f"p2p demo --ckpt hf:{repo} --mode {mode}   # draw in the browser\n```",
        f"Pin a revision with `hf:{repo}@COMMIT`. `model.safetensors` holds the weights and, in its metadata, the spec "
        f"that rebuilds the generator; it is never unpickled. With torch and the network's code from p2p:",
        f"```python\nimport p2p_core\nfrom huggingface_hub import hf_hub_download\nfrom safetensors.torch import load_file\n\n"
        f"generator = p2p_core.create(\"generator\", \"{spec.run.generator.name}\", {options})\n"
        f"generator.load_state_dict(load_file(hf_hub_download(\"{repo}\", \"{MODEL_FILE}\")))\n"
        f"generator.{'train()  # paper mode: dropout and batch statistics at test time' if mode == 'paper' else 'eval()'}\n"
        f"# x: N x {spec.shapes.in_channels} x H x W float32 in [-1, 1] (pixel / 127.5 - 1), H and W multiples of "
        f"generator.size_multiple\n```",
        "With onnxruntime alone (any batch and size; the padding is inside the graph; eval mode):",
        f"```python\nimport onnxruntime\nfrom huggingface_hub import hf_hub_download\n\n{onnx_make}"
        f"session = onnxruntime.InferenceSession({onnx_file})\n"
        f"(y,) = session.run([\"{OUTPUT_NAME}\"], {{\"{INPUT_NAME}\": x}})  # x as above, any H and W\n```",
    ]


def generator_arguments(trained: TrainedGenerator) -> dict[str, Any]:
    """The generator factory's keyword arguments: the shapes the engine gives it and the spec's options."""
    shapes = trained.trained.shapes
    return {"in_channels": shapes.in_channels, "out_channels": shapes.out_channels, "image_size": shapes.image_size,
            **trained.trained.run.generator.options}


def _evaluation(test: Mapping[str, Any] | None, *, step: int) -> str:
    if not test:
        return "Not tested yet: `p2p test --ckpt RUN` before `p2p push` puts its metrics here and in the metadata."
    header = (f"`p2p test` on the {test['split']} split ({test['count']} images) in {test['mode']} mode, "
              f"the checkpoint of step {test['step']}" + ("" if test["step"] == step else f" (this model is step {step})") + ":")
    rows = [("model", *(f"{value:.4g}" for value in test["metrics"].values()))]
    rows += [(name, *(f"{values.get(metric, float('nan')):.4g}" for metric in test["metrics"]))
             for name, values in (test.get("baselines") or {}).items()]
    return header + "\n\n" + _table(("", *test["metrics"]), rows)


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows])


def _options(options: Mapping[str, Any]) -> str:
    return ", ".join(f"{key} {value}" for key, value in options.items()) or "defaults"


def _channels(count: int) -> str:
    return f"{count}-channel ({CHANNELS.get(count, 'other')})"


def upload(folder: Path, *, repo: str, private: bool, revision: str | None, commit_message: str) -> str:
    """Create ``repo`` if missing and commit ``folder`` to it (to branch ``revision``); returns the commit's id."""
    from huggingface_hub import HfApi, get_token
    from huggingface_hub.errors import HfHubHTTPError, HTTPError

    if get_token() is None:
        raise ConfigError(
            "no Hugging Face token: set HF_TOKEN or run `hf auth login` (with write access); or pass --dry-run to "
            "only write the folder"
        )
    api = HfApi()
    try:
        api.create_repo(repo, private=private, exist_ok=True)
        if revision is not None:
            api.create_branch(repo, branch=revision, exist_ok=True)
        return api.upload_folder(repo_id=repo, folder_path=folder, revision=revision, commit_message=commit_message).oid
    except HfHubHTTPError as error:
        raise DataError(f"the Hub refused the push to {repo}: {hub.first_line(error)}") from None
    except (HTTPError, OSError) as error:
        raise DataError(f"the push to {repo} failed ({hub.first_line(error)}); run the command again") from None

"""The FCN-score on the synthetic task: labels, the scorer, and the baselines `p2p test` reports beside a model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from p2p_core.cli import main
from p2p_core.errors import ConfigError, DataError, UnknownComponentError
from p2p_core.evaluation import CONSTANT, INPUT, REAL, constant_baseline, evaluate_folders, measure_baselines, report_text, run_test
from p2p_core.metrics import SegmentationScores, image_metrics
from p2p_core.protocols import Sample
from p2p_core.registry import default_registry
from p2p_core.run import collate_samples
from p2p_core.scoring import (
    ScorerFeatures,
    check_compatible,
    feature_distances,
    fit_scorer,
    load_scorer,
    read_labels,
    score,
    write_labels,
)

SMOKE = Path(__file__).resolve().parents[1] / "recipes" / "smoke.yaml"
# The smoke recipe's data (64x64), a few more scenes so the scorer has something to learn from.
DATA = {"length": 48, "load_size": 72, "crop_size": 64}


def synthetic(split: str, **options):
    return default_registry().create("dataset", "synthetic", split=split, **(DATA | options))


@pytest.fixture(scope="module")
def scorer(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("scorer") / "scorer.pt"
    return fit_scorer(data_options=DATA, out=out, steps=60, batch_size=8, ngf=8, depth=3, progress=False)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    main(["fit", "--config", str(SMOKE), "--out_dir", str(out), "--name", "smoke"])
    return out / "smoke"


def test_synthetic_labels_follow_the_jitter_and_name_the_classes():
    train, val = synthetic("train"), synthetic("val")
    assert train.classes[0] == "background" and len(train.classes) == 6
    for sample in (train[0], val[0]):
        assert sample.labels.shape == sample.b.shape[-2:] and sample.labels.dtype == torch.long
        assert 0 <= int(sample.labels.min()) and int(sample.labels.max()) < len(train.classes)
    # The label rendering (a) is one flat colour per class, so pixels of one class share a colour after the
    # jitter too, except where the resize blends neighbours; a misaligned class map would break this broadly.
    sample = train[3]
    for cls in sample.labels.unique():
        colours = sample.a[:, sample.labels == cls]
        assert (colours - colours.median(dim=1, keepdim=True).values).abs().amax(0).lt(0.05).float().mean() > 0.9
    # Mirroring: the same scene, flipped or not, keeps its labels on its pixels.
    swapped = synthetic("val", direction="BtoA")[0]
    assert torch.equal(swapped.labels, val[0].labels) and torch.equal(swapped.a, val[0].b)


def test_the_texture_variant_keeps_the_scenes_and_gives_every_class_one_colour():
    import torch.nn.functional as F

    from p2p_datasets.synthetic import TEXTURE_CLASSES

    colour, texture = synthetic("val"), synthetic("val", variant="texture")
    assert texture.classes == TEXTURE_CLASSES and colour.classes != texture.classes
    # The same scenes: label renderings and class maps; only the photos differ.
    assert torch.equal(texture[5].a, colour[5].a) and torch.equal(texture[5].labels, colour[5].labels)

    def class_colours(dataset) -> torch.Tensor:
        """Each class's mean photo colour over every scene, away from the seams (the masks shrunk by 2 pixels)."""
        sums, counts = torch.zeros(6, 3), torch.zeros(6)
        for sample in dataset:
            masks = F.one_hot(sample.labels, 6).permute(2, 0, 1).float()
            inside = -F.max_pool2d(-masks[None], 5, 1, 2)[0] > 0
            sums += torch.einsum("khw,chw->kc", inside.float(), sample.b)
            counts += inside.flatten(1).sum(1)
        return sums / counts[:, None]

    def spread(means: torch.Tensor) -> float:
        return float((means - means.mean(0)).abs().max())

    # What is left in the texture variant is the random lighting over shapes at random places.
    assert spread(class_colours(texture)) < 0.06 < 0.3 < spread(class_colours(colour))
    with pytest.raises(ConfigError, match="got 'textures'; did you mean 'texture'"):
        synthetic("val", variant="textures")


def test_only_the_texture_variants_fcn_score_is_blind_to_a_blurred_photo(scorer, tmp_path: Path):
    from kornia.filters import gaussian_blur2d

    def real_and_blurred(path: Path, **options) -> tuple[dict[str, float], dict[str, float]]:
        val = synthetic("val", **options)
        photos, labels = torch.stack([s.b for s in val]), torch.stack([s.labels for s in val])
        blurred = gaussian_blur2d(photos, (13, 13), (2.0, 2.0))
        return score(scorer=path, photos=photos, labels=labels), score(scorer=path, photos=blurred, labels=labels)

    # On the colour task a blur keeps what tells the classes apart; on the texture variant it leaves a scorer
    # that learnt something from the real photos calling every pixel one class (per-class accuracy 1/6).
    real, blurred = real_and_blurred(scorer.path)
    assert blurred["class_acc"] > 0.5
    textured = fit_scorer(data_options=DATA | {"variant": "texture"}, out=tmp_path / "texture.pt", steps=80,
                          batch_size=8, ngf=8, depth=3, progress=False)
    real, blurred = real_and_blurred(textured.path, variant="texture")
    assert real["class_acc"] > 0.22 and blurred["class_acc"] == pytest.approx(1 / 6, abs=0.01)


def test_batches_collate_with_and_without_labels():
    labelled = next(iter(DataLoader(synthetic("val"), batch_size=3, collate_fn=collate_samples)))
    assert labelled.labels.shape == (3, 64, 64)
    plain = [Sample(torch.zeros(3, 4, 4), torch.ones(3, 4, 4), f"{i}") for i in range(3)]
    batch = next(iter(DataLoader(plain, batch_size=3, collate_fn=collate_samples)))
    assert batch.labels is None and batch.a.shape == (3, 3, 4, 4) and list(batch.path) == ["0", "1", "2"]


def test_segmentation_scores_follow_the_confusion_matrix():
    labels = torch.tensor([[0, 0, 0, 1, 1, 2]])
    predicted = torch.tensor([[0, 0, 1, 1, 1, 1]])
    scores = SegmentationScores(num_classes=4)  # class 3: neither labelled nor predicted, left out
    scores.update(predicted, labels)
    result = scores.compute()
    assert result["pixel_acc"] == pytest.approx(4 / 6)
    assert result["class_acc"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert result["class_iou"] == pytest.approx((2 / 3 + 2 / 4 + 0) / 3)


def test_the_scorer_learns_the_real_synthetic_photos(scorer):
    val = synthetic("val")
    labels = torch.stack([val[i].labels for i in range(len(val))])
    majority = float(labels.flatten().bincount().max()) / labels.numel()  # always guessing the commonest class
    assert scorer.real_val["pixel_acc"] > majority + 0.15
    assert scorer.real_val["class_acc"] > 2 / len(val.classes)
    loaded = load_scorer(scorer.path)
    assert loaded.classes == val.classes and loaded.facts["real_val"] == scorer.real_val
    # Scored again from the file, as tensors rather than an iterable of images: the same numbers.
    photos = torch.stack([val[i].b for i in range(len(val))])
    assert score(scorer=scorer.path, photos=photos, labels=labels) == scorer.real_val


def test_a_perfect_generator_scores_the_real_photos_accuracy(scorer, run_dir: Path, tmp_path: Path):
    result = run_test(ckpt=run_dir, data={"length": DATA["length"]}, scorer=scorer.path, out=tmp_path / "page")
    # The real val photos, fed through run_test as a generator that returns the targets would feed them.
    assert result.baselines[REAL] == scorer.real_val
    assert set(result.metrics) >= {"pixel_acc", "class_acc", "class_iou", "l1"}
    # A 4-step model draws nothing the scorer recognises as well as the real photos.
    assert result.metrics["pixel_acc"] < scorer.real_val["pixel_acc"]
    # Beside the FCN-score, the realism distances of the outputs and of the baselines but the real photos.
    assert set(result.metrics) >= {"scorer_fd", "scorer_kid"} and result.metrics["scorer_fd"] > 0
    assert all({"scorer_fd", "scorer_kid"} <= set(result.baselines[name]) for name in (CONSTANT, INPUT))
    content = json.loads((tmp_path / "page" / "metrics.json").read_text())
    assert content["scorer"] == str(scorer.path) and content["baselines"][REAL] == scorer.real_val
    assert set(content["baselines"]) == {CONSTANT, INPUT, REAL}
    html = (tmp_path / "page" / "index.html").read_text()
    assert "baseline: real photos" in html and "pixel_acc" in html


def test_the_scorer_feature_distances_are_0_for_the_same_photos_and_grow_with_blur(scorer):
    from kornia.filters import gaussian_blur2d

    features = ScorerFeatures(load_scorer(scorer.path))
    val = synthetic("val")
    photos = torch.stack([val[i].b for i in range(len(val))])
    real = features(photos)
    assert real.shape == (len(val), features.num_features)
    assert feature_distances(real, real.clone())["scorer_fd"] == pytest.approx(0, abs=1e-9)
    # The more blurred a copy of the real photos, the further from them, by both distances.
    blurred = [feature_distances(real, features(gaussian_blur2d(photos, (13, 13), (sigma, sigma)))) for sigma in (1.0, 2.0, 3.0)]
    for metric in ("scorer_fd", "scorer_kid"):
        assert [distances[metric] for distances in blurred] == sorted(distances[metric] for distances in blurred)
    assert 0 < blurred[0]["scorer_fd"] < blurred[-1]["scorer_fd"]
    assert feature_distances(real[:1], real[:1]) == {}  # one image has no spread to compare


def test_the_constant_baseline_is_the_per_pixel_median_and_minimises_l1():
    generator = torch.Generator().manual_seed(0)
    targets = [torch.rand(1, 3, 16, 16, generator=generator) * 2 - 1 for _ in range(5)]
    constant = constant_baseline(targets)
    assert torch.equal(constant[0], torch.stack([t[0] for t in targets]).median(dim=0).values)

    def total_l1(image: torch.Tensor) -> float:
        return sum(float(image_metrics(image, target)["l1"]) for target in targets)

    for shift in (-0.02, 0.02):
        assert total_l1(constant) < total_l1((constant + shift).clamp(-1, 1))
    baselines = measure_baselines(inputs=targets, targets=targets)
    assert baselines[INPUT]["l1"] == 0  # the input copied through, here the targets themselves
    assert baselines[CONSTANT]["l1"] == pytest.approx(total_l1(constant) / len(targets))


def test_a_model_that_does_not_beat_the_constant_image_is_flagged(run_dir: Path, tmp_path: Path):
    # 4 steps of training on 8 scenes: the model is no better than the median image.
    result = run_test(ckpt=run_dir, out=tmp_path / "page")
    constant = result.baselines[CONSTANT]["l1"]
    assert (result.metrics["l1"] >= constant) == bool(result.warnings)
    assert result.warnings and "CONSTANT" in result.warnings[0]
    printed = report_text(result)
    assert result.warnings[0] in printed and f"baseline, {CONSTANT}" in printed
    assert result.warnings[0].split(":")[0] in (tmp_path / "page" / "index.html").read_text()


def test_a_scorer_for_other_data_or_a_dataset_without_labels_is_refused(scorer, run_dir: Path, tmp_path: Path, ab_root: Path):
    state = torch.load(scorer.path, weights_only=True)
    torch.save(state | {"classes": ["sky", *state["classes"][1:]]}, tmp_path / "sky.pt")
    with pytest.raises(ConfigError, match="knows the classes"):
        run_test(ckpt=run_dir, scorer=tmp_path / "sky.pt", out=tmp_path / "page")
    state["network"]["in_channels"] = 1
    state["weights"]["encoder.0.1.weight"] = state["weights"]["encoder.0.1.weight"][:, :1]
    torch.save(state, tmp_path / "grey.pt")
    with pytest.raises(ConfigError, match="reads 1-channel photos but dataset 'synthetic' gives 3"):
        run_test(ckpt=run_dir, scorer=tmp_path / "grey.pt", out=tmp_path / "page")
    with pytest.raises(DataError, match="not a scorer"):
        run_test(ckpt=run_dir, scorer=next((run_dir / "checkpoints").glob("*.pt")), out=tmp_path / "page")
    with pytest.raises(ConfigError, match="dataset 'aligned' gives no class labels"):
        check_compatible(load_scorer(scorer.path), classes=None, channels=3, what="dataset 'aligned'")
    with pytest.raises(DataError, match="gives no class labels"):
        fit_scorer(data="aligned", data_options={"root": str(ab_root)}, out=tmp_path / "s.pt", steps=1)


def test_another_registered_generator_serves_as_the_scorer_network(scorer, tmp_path: Path):
    # encoder_decoder stands for a plugin's generator: the scorer file names it, and loading rebuilds it.
    other = fit_scorer(data_options=DATA, out=tmp_path / "ed.pt", steps=2, batch_size=2, network="encoder_decoder",
                       network_options={"ngf": 8}, progress=False)
    loaded = load_scorer(other.path)
    assert torch.load(other.path, weights_only=True)["network"]["name"] == "encoder_decoder"
    assert type(loaded.module) is not type(load_scorer(scorer.path).module)
    assert loaded.classify(synthetic("val")[0].b[None]).shape == (1, 64, 64)
    # Its features for the realism distances come from its own last layer with weights, found by running it.
    features = ScorerFeatures(loaded)
    assert features(synthetic("val")[0].b[None]).shape == (1, features.num_features) and features.num_features > 1
    with pytest.raises(UnknownComponentError, match="encoder_decoderr"):
        fit_scorer(data_options=DATA, out=tmp_path / "x.pt", steps=1, network="encoder_decoderr")
    assert not (tmp_path / "x.pt").exists()


def test_evaluate_scores_a_test_pages_images_with_the_class_maps_it_wrote(scorer, run_dir: Path, tmp_path: Path, capsys):
    result = run_test(ckpt=run_dir, data={"length": DATA["length"]}, scorer=scorer.path, out=tmp_path / "page")
    page = tmp_path / "page"
    assert sorted(path.stem for path in (page / "labels").iterdir()) == sorted(result.names)
    first = read_labels(page / "labels" / f"{result.names[0]}.png", classes=len(scorer.classes))
    assert torch.equal(first, synthetic("val")[0].labels)

    # The targets are the real photos: scored from the files, they give the scorer's real-photo accuracy.
    real = evaluate_folders(pred=page / "targets", target=page / "targets", scorer=scorer.path, labels=page / "labels")
    assert real["metrics"]["pixel_acc"] == pytest.approx(scorer.real_val["pixel_acc"], abs=1e-3)
    # The outputs, read back from 8-bit files, score as run_test scored them in memory, to rounding.
    outputs = evaluate_folders(pred=page / "outputs", target=page / "targets", scorer=scorer.path, labels=page / "labels")
    assert outputs["metrics"]["pixel_acc"] == pytest.approx(result.metrics["pixel_acc"], abs=0.01)
    assert outputs["metrics"]["scorer_fd"] == pytest.approx(result.metrics["scorer_fd"], rel=0.05)
    # From the command line: the real photos against themselves are 0 apart in the scorer's features.
    main(["evaluate", "--pred", str(page / "targets"), "--target", str(page / "targets"), "--scorer", str(scorer.path),
          "--labels", str(page / "labels")])
    printed = capsys.readouterr().out
    assert float(printed.split("scorer_fd ")[1].split()[0]) == pytest.approx(0, abs=1e-6) and "scorer_kid" in printed

    with pytest.raises(ConfigError, match="needs both --scorer and --labels"):
        evaluate_folders(pred=page / "outputs", target=page / "targets", scorer=scorer.path)
    (page / "labels" / f"{result.names[0]}.png").unlink()
    with pytest.raises(DataError, match=result.names[0]):
        evaluate_folders(pred=page / "outputs", target=page / "targets", scorer=scorer.path, labels=page / "labels")
    write_labels(torch.full((64, 64), len(scorer.classes)), page / "labels" / f"{result.names[0]}.png")
    with pytest.raises(DataError, match="holds class 6, but the scorer knows 6 classes"):
        evaluate_folders(pred=page / "outputs", target=page / "targets", scorer=scorer.path, labels=page / "labels")

"""The metrics against cases whose answers are known by hand."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
import torch
from matplotlib.colors import to_rgba
from matplotlib.font_manager import FontProperties
from PIL import Image
from torchmetrics.image.fid import FrechetInceptionDistance

from p2p_core.errors import ConfigError, DataError
from p2p_core.metrics import (
    FID,
    PSNR_CAP,
    Evaluation,
    LabHistogram,
    SegmentationScores,
    better,
    histogram_intersection,
    image_metrics,
    plot_histograms,
)

RED, BLUE = (1.0, -1.0, -1.0), (-1.0, -1.0, 1.0)  # in [-1, 1]


def flat(colour: tuple[float, float, float], size: int = 16) -> torch.Tensor:
    return torch.tensor(colour).view(1, 3, 1, 1).expand(1, 3, size, size).clone()


def histogram_of(*images: torch.Tensor) -> LabHistogram:
    histogram = LabHistogram()
    for image in images:
        histogram.update(image)
    return histogram


def test_identical_images_score_perfectly():
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    scores = image_metrics(images, images.clone())
    assert scores["l1"].tolist() == [0.0, 0.0]
    assert scores["psnr"].tolist() == [PSNR_CAP, PSNR_CAP]
    assert scores["ssim"] == pytest.approx(torch.ones(2))


def test_l1_and_psnr_of_a_known_difference():
    # Black against mid-grey 0.25 brighter everywhere: L1 0.25 and MSE 1/16, so PSNR = 10 log10(16).
    black = torch.full((1, 3, 16, 16), -1.0)
    scores = image_metrics(black + 0.5, black)
    assert scores["l1"].item() == pytest.approx(0.25)
    assert scores["psnr"].item() == pytest.approx(10 * math.log10(16), abs=1e-4)
    assert scores["ssim"].item() < 1


@pytest.mark.parametrize(("output", "target", "tolerance"), [(-0.96, -0.92, 1e-5), (-0.5, 0.5, 1e-3)], ids=["dark", "mid"])
def test_ssim_of_flat_images_is_its_luminance_term_on_the_0_1_scale(output, target, tolerance):
    # Flat images have no variance, so SSIM is (2uv + C1) / (u^2 + v^2 + C1) with u, v the values mapped from
    # [-1, 1] to [0, 1] and C1 = (0.01 * 1)^2 for that range; measured on [-1, 1] or with a range of 2 it differs.
    # The dark pair is where C1 shows; float32's variance of a flat image is not quite 0, hence the tolerances.
    u, v, c1 = (output + 1) / 2, (target + 1) / 2, 0.01**2
    expected = (2 * u * v + c1) / (u * u + v * v + c1)
    found = image_metrics(torch.full((1, 3, 16, 16), output), torch.full((1, 3, 16, 16), target))["ssim"].item()
    assert found == pytest.approx(expected, abs=tolerance)


def test_values_beyond_the_range_are_measured_as_its_ends():
    # A generator without a final Tanh can overshoot [-1, 1]; the saved PNG clips it, and so do the metrics.
    for inside, beyond in ((1.0, 1.5), (-1.0, -1.5)):
        assert image_metrics(torch.full((1, 3, 16, 16), beyond), torch.full((1, 3, 16, 16), inside))["l1"].item() == 0.0


def test_grayscale_is_measured_as_rgb():
    gray = torch.rand(1, 1, 16, 16) * 2 - 1
    assert image_metrics(gray, gray - 0.2)["l1"].item() == pytest.approx(
        image_metrics(gray.expand(1, 3, 16, 16), gray.expand(1, 3, 16, 16) - 0.2)["l1"].item()
    )


def test_mismatched_or_tiny_images_are_refused_with_the_fix():
    with pytest.raises(DataError, match="same N x C x H x W"):
        image_metrics(torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, 16, 20))
    with pytest.raises(DataError, match="images of 8x10 are too small for SSIM; it needs at least 11x11"):
        image_metrics(torch.zeros(1, 3, 8, 10), torch.zeros(1, 3, 8, 10))
    # 11 pixels a side is enough.
    assert image_metrics(torch.zeros(1, 3, 11, 16), torch.zeros(1, 3, 11, 16))["l1"].item() == 0.0


def test_histogram_intersection_is_one_for_the_same_colours():
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    assert histogram_intersection(histogram_of(images), histogram_of(images.flip(0))) == pytest.approx(
        {"hist_L": 1.0, "hist_a": 1.0, "hist_b": 1.0}
    )


def test_histogram_intersection_of_half_shifted_colours():
    # Red's Lab is (53.2, 80.1, 67.2) and blue's (32.3, 79.2, -107.9): with one-unit bins every channel
    # differs. Half the output red, half blue, against all red: each marginal overlaps by exactly half.
    target = flat(RED)
    output = torch.cat([flat(RED)[..., :8], flat(BLUE)[..., 8:]], dim=-1)
    scores = histogram_intersection(histogram_of(output), histogram_of(target))
    assert scores == pytest.approx({"hist_L": 0.5, "hist_a": 0.5, "hist_b": 0.5})


def test_histogram_intersection_is_zero_for_disjoint_colours():
    scores = histogram_intersection(histogram_of(flat(BLUE)), histogram_of(flat(RED)))
    assert scores["hist_L"] == 0.0 and scores["hist_b"] == 0.0


def test_the_l_histogram_has_one_bin_per_unit_from_black_to_white():
    # Lab L of white is exactly 100, the top edge: it shares the last bin, [99, 100], with a grey of L 99.1
    # and not with one of L 98.7. Black (L 0) has the first bin to itself beside a grey of L 1.4.
    white, light, lighter, black, dark = (flat((value,) * 3) for value in (1.0, 0.98, 0.97, -1.0, -0.96))
    assert histogram_intersection(histogram_of(white), histogram_of(light))["hist_L"] == 1.0
    assert histogram_intersection(histogram_of(white), histogram_of(lighter))["hist_L"] == 0.0
    assert histogram_intersection(histogram_of(black), histogram_of(dark))["hist_L"] == 0.0


def test_the_histograms_count_every_pixel_and_measure_exactly():
    histogram = histogram_of(flat(RED), flat(BLUE, size=8), torch.rand(1, 1, 1, 1) * 2 - 1)
    for counts in histogram.counts.values():
        assert counts.sum() == 16 * 16 + 8 * 8 + 1 and counts.min() >= 0
    # A third of the pixels blue, as metrics.json prints it: counted exactly, not to float32's seven digits.
    third = torch.cat([flat(BLUE)[..., :4], flat(RED)[..., 4:12]], dim=-1)
    assert histogram_intersection(histogram_of(third), histogram_of(flat(BLUE)))["hist_b"] == pytest.approx(1 / 3, rel=1e-12)
    # One pixel is a distribution; no pixel is not.
    assert histogram_of(torch.zeros(1, 3, 1, 1)).probabilities("L").sum() == pytest.approx(1.0)
    with pytest.raises(DataError, match="no images were measured, so there is no colour distribution"):
        LabHistogram().probabilities("a")


def test_the_histograms_bins_are_centred_on_each_unit():
    histogram = LabHistogram()
    assert histogram.bin_centres("L").tolist() == [value + 0.5 for value in range(100)]
    assert histogram.bin_centres("b").tolist() == [value + 0.5 for value in range(-128, 128)]


def test_evaluation_totals_and_rows():
    evaluation = Evaluation()
    target = flat(RED)
    assert evaluation.add(target, target)[0]["l1"] == 0.0
    evaluation.add(flat(BLUE), target)
    summary = evaluation.summary()
    assert summary["l1"] == pytest.approx((0.0 + 2 / 3) / 2)  # red vs blue differ by 1 in two of three channels
    assert summary["hist_L"] == pytest.approx(0.5)
    assert "fid" not in summary and "FID not computed" in evaluation.notes[0]
    with pytest.raises(DataError, match="no images"):
        Evaluation().summary()


def test_fid_needs_a_weights_file_that_exists(tmp_path: Path):
    with pytest.raises(DataError, match="does not exist"):
        Evaluation(fid_weights=tmp_path / "missing.pth")


def test_better_knows_each_metric_direction():
    assert better("l1", 0.1, 0.2) and not better("l1", 0.3, 0.2)
    assert better("ssim", 0.9, 0.8) and not better("psnr", 20.0, 21.0)
    assert better("l1", 5.0, None)
    # A tie is no improvement, in either direction.
    assert not better("l1", 0.2, 0.2) and not better("psnr", 20.0, 20.0)
    with pytest.raises(ConfigError, match="unknown metric 'lpips'"):
        better("lpips", 0.1, 0.2)


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> list:
    """The figures plot_histograms draws, kept to look at after it has saved and closed them."""
    drawn, subplots = [], plt.subplots

    def keep(*args, **kwargs):
        figure, axes = subplots(*args, **kwargs)
        drawn.append(figure)
        return figure, axes

    monkeypatch.setattr(plt, "subplots", keep)
    return drawn


def test_histogram_plot_draws_the_papers_figure(tmp_path: Path, figures: list):
    path = tmp_path / "page" / "plots" / "histograms.png"  # folders made as needed
    truth, output = histogram_of(flat(RED)), histogram_of(flat(BLUE))
    plot_histograms({"ground truth": truth, "output": output}, path, title="facades")
    # One panel per Lab channel, side by side, 4 inches each and 2 for the legend, 3.2 high, at 80 dpi.
    assert Image.open(path).format == "PNG" and Image.open(path).size == (14 * 80, 256)
    (figure,) = figures
    assert not plt.fignum_exists(figure.number) and figure.get_suptitle() == "facades"
    axes = figure.axes
    figure.draw_without_rendering()  # its layout, after plt.close took its canvas
    boxes = [axis.get_window_extent() for axis in axes]
    assert [box.y0 for box in boxes] == [boxes[0].y0] * 3 and boxes[0].x1 < boxes[1].x0 < boxes[1].x1 < boxes[2].x0
    # Laid out to fit: no panel's ticks or labels are cut off at the figure's edges.
    for axis in axes:
        box = axis.get_tightbbox()
        assert figure.bbox.x0 <= box.x0 < box.x1 <= figure.bbox.x1 and figure.bbox.y0 <= box.y0 < box.y1 <= figure.bbox.y1
    for axis, channel in zip(axes, "Lab"):
        assert (axis.get_xlabel(), axis.get_ylabel()) == (channel, f"log10 P({channel})")
        truth_line, output_line = axis.get_lines()
        assert [line.get_label() for line in (truth_line, output_line)] == ["ground truth", "output"]
        # The ground truth bold and black, as in Figures 6 and 7; every set on the bins' centres.
        assert to_rgba(truth_line.get_color()) == to_rgba("black") and truth_line.get_linewidth() == 2.0
        assert to_rgba(output_line.get_color()) != to_rgba("black") and output_line.get_linewidth() == 1.2
        for line, histogram in ((truth_line, truth), (output_line, output)):
            assert line.get_xdata().tolist() == histogram.bin_centres(channel).tolist()
            probabilities = histogram.probabilities(channel)
            log_p = torch.from_numpy(line.get_ydata())
            # An empty bin is a gap in the curve, not a point at minus infinity.
            assert log_p.isnan().tolist() == (probabilities == 0).tolist()
            assert log_p[probabilities > 0].tolist() == probabilities[probabilities > 0].log10().tolist()
    # One legend, to the right of the panels, in a small font.
    (legend,) = figure.legends
    assert [text.get_text() for text in legend.get_texts()] == ["ground truth", "output"]
    assert legend.get_window_extent().x0 >= boxes[2].x1
    assert {text.get_fontsize() for text in legend.get_texts()} == {FontProperties(size="small").get_size_in_points()}
    # Again into the same folder, without a title this time.
    plot_histograms({"output": output}, path.with_name("again.png"))
    assert figures[1].get_suptitle() == "" and path.with_name("again.png").is_file()


class MeanColourFID(FrechetInceptionDistance):
    """torchmetrics' FID with each image's mean colour as its features, in place of Inception's 2048 (the real
    network takes about a minute a measure on a CPU); it records what p2p asked torchmetrics for."""

    asked: dict = {}
    raises: Exception | None = None

    def __init__(self, **asked) -> None:
        type(self).asked = asked
        if self.raises is not None:
            raise self.raises
        super().__init__(feature=MeanColour(), normalize=asked["normalize"])


class MeanColour(torch.nn.Module):
    num_features = 3

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images.mean(dim=(2, 3))


@pytest.fixture
def weights(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setattr("torchmetrics.image.fid.FrechetInceptionDistance", MeanColourFID)
    monkeypatch.setattr(MeanColourFID, "raises", None)
    path = tmp_path / "pt_inception.pth"
    path.write_bytes(b"weights")
    return path


def test_fid_is_the_frechet_distance_between_the_outputs_and_the_targets(weights: Path):
    evaluation = Evaluation(fid_weights=weights)
    # The standard measure: Inception's 2048 pool features of the weights given, from floats in [0, 1].
    assert MeanColourFID.asked == {"feature": 2048, "normalize": True, "feature_extractor_weights_path": str(weights)}
    targets = torch.rand(3, 3, 16, 16) * 1.5 - 1
    # Outputs 0.5 brighter in [-1, 1], 0.25 in [0, 1]: the features' means differ by 0.25 in each of three
    # channels and their covariances not at all, so the distance is 3 * 0.25^2.
    evaluation.add(targets[:2] + 0.5, targets[:2])
    evaluation.add(targets[2:] + 0.5, targets[2:])
    assert evaluation.summary()["fid"] == pytest.approx(3 * 0.25**2, abs=1e-4)
    assert evaluation.notes == []


def test_fid_needs_two_images(weights: Path):
    evaluation = Evaluation(fid_weights=weights)
    image = torch.rand(1, 3, 16, 16) * 2 - 1
    evaluation.add(image, image)
    with pytest.raises(DataError, match="FID needs at least 2 images, got 1"):
        evaluation.summary()
    evaluation.add(image.flip(-1), image)
    assert evaluation.summary()["fid"] >= 0


def test_fid_runs_on_the_device_asked_for(weights: Path):
    assert Evaluation(fid_weights=weights).fid.metric.device == torch.device("cpu")
    assert Evaluation(fid_weights=weights, device=torch.device("meta")).fid.metric.device == torch.device("meta")


def test_fid_without_torch_fidelity_or_with_other_weights_says_what_to_do(weights: Path, monkeypatch: pytest.MonkeyPatch):
    # What torchmetrics raises without torch-fidelity, and when the weights do not fit Inception.
    monkeypatch.setattr(MeanColourFID, "raises", ModuleNotFoundError("No module named 'torch_fidelity'"))
    with pytest.raises(ConfigError, match=r"FID needs torch-fidelity: pip install 'p2p\[fid\]'"):
        FID(weights=weights, device=torch.device("cpu"))
    monkeypatch.setattr(MeanColourFID, "raises", RuntimeError("Error(s) in loading state_dict"))
    with pytest.raises(DataError, match=f"--fid_weights {weights} is not usable FID Inception weights"):
        FID(weights=weights, device=torch.device("cpu"))
    monkeypatch.setitem(sys.modules, "torchmetrics.image.fid", None)  # torchmetrics without its FID
    with pytest.raises(ConfigError, match=r"FID needs torch-fidelity: pip install 'p2p\[fid\]'"):
        FID(weights=weights, device=torch.device("cpu"))


@pytest.mark.filterwarnings("ignore:The ``compute`` method of metric MulticlassConfusionMatrix was called before")
def test_segmentation_scores_refuse_mismatched_maps_and_an_empty_set():
    scores = SegmentationScores(num_classes=3)
    with pytest.raises(DataError, match="no labelled pixels were classified"):
        scores.compute()
    with pytest.raises(DataError, match=r"predicted classes \(1, 2, 3\) and labels \(1, 3, 2\) must have the same shape"):
        scores.update(torch.zeros(1, 2, 3, dtype=torch.long), torch.zeros(1, 3, 2, dtype=torch.long))
    scores.update(torch.tensor([[2]]), torch.tensor([[2]]))  # one pixel is a set
    assert scores.compute() == {"pixel_acc": 1.0, "class_acc": 1.0, "class_iou": 1.0}

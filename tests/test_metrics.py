"""The metrics against cases whose answers are known by hand."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from p2p_core.errors import ConfigError, DataError
from p2p_core.metrics import (
    PSNR_CAP,
    Evaluation,
    LabHistogram,
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


def test_grayscale_is_measured_as_rgb():
    gray = torch.rand(1, 1, 16, 16) * 2 - 1
    assert image_metrics(gray, gray - 0.2)["l1"].item() == pytest.approx(
        image_metrics(gray.expand(1, 3, 16, 16), gray.expand(1, 3, 16, 16) - 0.2)["l1"].item()
    )


def test_mismatched_or_tiny_images_are_refused_with_the_fix():
    with pytest.raises(DataError, match="same N x C x H x W"):
        image_metrics(torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, 16, 20))
    with pytest.raises(DataError, match="at least 11x11"):
        image_metrics(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))


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
    with pytest.raises(ConfigError, match="unknown metric 'lpips'"):
        better("lpips", 0.1, 0.2)


def test_histogram_plot_is_a_png(tmp_path: Path):
    path = tmp_path / "plots" / "histograms.png"
    plot_histograms({"ground truth": histogram_of(flat(RED)), "output": histogram_of(flat(BLUE))}, path, title="t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

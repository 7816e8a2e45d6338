"""How close translated images are to their targets: L1, PSNR, SSIM, the paper's Lab colour measure, and FID.

Every function takes images as the rest of the project holds them (N x C x H x W in [-1, 1]) and measures
them as RGB in [0, 1], so the numbers match what other tools report for the saved PNGs. Grayscale images
are measured as three equal channels.

The colour measure is the paper's (section 4.2, Figure 7): the marginal distributions of L, a and b over a
whole set of outputs, compared with those of the targets by histogram intersection (1 = same distribution).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from p2p_core.errors import ConfigError, DataError
from p2p_core.images import displayable

PSNR_CAP = 100.0
"""dB. Identical images have infinite PSNR, which neither a mean nor JSON can hold; 100 dB is far above any
8-bit difference (one grey level in one pixel of a 256x256 image is about 96 dB)."""

IMAGE_METRICS = ("l1", "psnr", "ssim")
HISTOGRAM_METRICS = ("hist_L", "hist_a", "hist_b")
HIGHER_IS_BETTER = {"l1": False, "psnr": True, "ssim": True, "hist_L": True, "hist_a": True, "hist_b": True, "fid": False}
SEGMENTATION_METRICS = ("pixel_acc", "class_acc", "class_iou")
"""The paper's FCN-score measures (Tables 1 and 2): how a segmenter trained on real photos classifies the outputs.
Higher is better; measured at test time only, so they stay out of HIGHER_IS_BETTER, which validation picks from."""
FEATURE_METRICS = ("scorer_fd", "scorer_kid")
"""The realism distances in the same scorer's feature space (``p2p_core.scoring.feature_distances``): the Fréchet
distance and KID between the outputs and the real photos. Lower is better; test time only, as the FCN-score."""

# Lab ranges for sRGB in [0, 1]: L in [0, 100]; a and b stay inside [-128, 128). One bin per unit.
LAB_RANGES = {"L": (0.0, 100.0), "a": (-128.0, 128.0), "b": (-128.0, 128.0)}
BINS_PER_UNIT = 1


def to_unit_rgb(images: Tensor) -> Tensor:
    """N x C x H x W in [-1, 1] -> N x 3 x H x W in [0, 1], clamped (outputs of a Tanh stay inside anyway)."""
    return displayable(images).float().add(1.0).div(2.0).clamp(0.0, 1.0)


def _check_pair(output: Tensor, target: Tensor) -> None:
    if output.dim() != 4 or output.shape != target.shape:
        raise DataError(
            f"output {tuple(output.shape)} and target {tuple(target.shape)} must be batches of the same N x C x H x W; "
            "resize the outputs to the targets' size first"
        )


def image_metrics(output: Tensor, target: Tensor) -> dict[str, Tensor]:
    """Per-image L1 (mean absolute error in [0, 1] units), PSNR (dB, capped at PSNR_CAP) and SSIM."""
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

    _check_pair(output, target)
    output, target = to_unit_rgb(output), to_unit_rgb(target)
    # SSIM's 11x11 Gaussian window needs that much image.
    if min(output.shape[-2:]) < 11:
        raise DataError(f"images of {output.shape[-2]}x{output.shape[-1]} are too small for SSIM; it needs at least 11x11")
    psnr = peak_signal_noise_ratio(output, target, data_range=1.0, reduction="none", dim=(1, 2, 3))
    return {
        "l1": (output - target).abs().mean(dim=(1, 2, 3)),
        "psnr": psnr.nan_to_num(posinf=PSNR_CAP).clamp(max=PSNR_CAP),
        "ssim": structural_similarity_index_measure(output, target, data_range=1.0, reduction="none"),
    }


class LabHistogram:
    """Pixel counts of L, a and b accumulated over a set of images."""

    def __init__(self) -> None:
        self.counts = {
            channel: torch.zeros(round((high - low) * BINS_PER_UNIT), dtype=torch.float64)
            for channel, (low, high) in LAB_RANGES.items()
        }

    def update(self, images: Tensor) -> None:
        from kornia.color import rgb_to_lab

        lab = rgb_to_lab(to_unit_rgb(images).cpu())
        for index, (channel, (low, high)) in enumerate(LAB_RANGES.items()):
            counts = self.counts[channel]
            bins = ((lab[:, index].flatten().double() - low) * BINS_PER_UNIT).floor().long().clamp(0, len(counts) - 1)
            counts += torch.bincount(bins, minlength=len(counts)).double()

    def probabilities(self, channel: str) -> Tensor:
        counts = self.counts[channel]
        total = counts.sum()
        if total == 0:
            raise DataError("no images were measured, so there is no colour distribution to compare")
        return counts / total

    def bin_centres(self, channel: str) -> Tensor:
        low, _ = LAB_RANGES[channel]
        return low + (torch.arange(len(self.counts[channel]), dtype=torch.float64) + 0.5) / BINS_PER_UNIT


def histogram_intersection(first: LabHistogram, second: LabHistogram) -> dict[str, float]:
    """sum(min(p, q)) per Lab channel: 1 for the same colour distribution, 0 for disjoint ones."""
    return {
        f"hist_{channel}": float(torch.minimum(first.probabilities(channel), second.probabilities(channel)).sum())
        for channel in LAB_RANGES
    }


def plot_histograms(curves: Mapping[str, LabHistogram], path: Path, *, title: str = "") -> None:
    """Log-probability histograms of L, a and b, one line per named set, as the paper's Figures 6 and 7."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers and CI
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(LAB_RANGES), figsize=(4 * len(LAB_RANGES) + 2, 3.2), constrained_layout=True)
    for axis, channel in zip(axes, LAB_RANGES):
        for name, histogram in curves.items():
            probabilities = histogram.probabilities(channel)
            # Empty bins have no logarithm; leaving gaps is honest where a floor would draw a false curve.
            log_p = torch.where(probabilities > 0, probabilities.log10(), torch.nan)
            style = {"color": "black", "linewidth": 2.0} if name == "ground truth" else {"linewidth": 1.2}
            axis.plot(histogram.bin_centres(channel).numpy(), log_p.numpy(), label=name, **style)
        axis.set_xlabel(channel)
        axis.set_ylabel(f"log10 P({channel})")
    # Beside the panels, not on one: the curves' tails are what the figure is for.
    figure.legend(*axes[0].get_legend_handles_labels(), loc="outside right upper", fontsize="small")
    if title:
        figure.suptitle(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80)
    plt.close(figure)


class FID:
    """Fréchet Inception distance between outputs and targets, from Inception weights on disk only.

    ``weights`` is the standard FID Inception file (pt_inception-2015-12-05-6726825d.pth) as torch-fidelity
    uses it; nothing is downloaded. Needs the ``fid`` extra (torch-fidelity).
    """

    def __init__(self, *, weights: Path, device: torch.device) -> None:
        if not Path(weights).is_file():
            raise DataError(f"--fid_weights {weights} does not exist; point it at a local FID Inception weights file")
        try:
            from torchmetrics.image.fid import FrechetInceptionDistance
        except ImportError as error:
            raise ConfigError(f"FID needs torch-fidelity: pip install 'p2p[fid]' ({error})") from None
        try:
            self.metric = FrechetInceptionDistance(
                feature=2048, normalize=True, feature_extractor_weights_path=str(weights)
            ).to(device)
        except ModuleNotFoundError as error:
            raise ConfigError(f"FID needs torch-fidelity: pip install 'p2p[fid]' ({error})") from None
        except (RuntimeError, KeyError, OSError) as error:
            raise DataError(f"--fid_weights {weights} is not usable FID Inception weights: {error}") from None
        self.count = 0

    def update(self, output: Tensor, target: Tensor) -> None:
        self.metric.update(to_unit_rgb(target), real=True)
        self.metric.update(to_unit_rgb(output), real=False)
        self.count += output.shape[0]

    def compute(self) -> float:
        if self.count < 2:
            raise DataError(f"FID needs at least 2 images, got {self.count}")
        return float(self.metric.compute())


class SegmentationScores:
    """Per-pixel accuracy, per-class accuracy and class IoU of predicted class maps, over a whole set.

    As the FCN-score computes them (from the Cityscapes evaluation): one confusion matrix over every pixel of
    the set; per-pixel accuracy is its diagonal over its total; per-class accuracy is the mean over classes of
    the share of a class's pixels predicted as it; class IoU the mean over classes of intersection over union.
    A class no label holds has no accuracy and is left out of that mean, as is one neither labelled nor
    predicted from the IoU's.
    """

    def __init__(self, *, num_classes: int) -> None:
        from torchmetrics.classification import MulticlassConfusionMatrix

        self.confusion = MulticlassConfusionMatrix(num_classes=num_classes)

    def update(self, predicted: Tensor, labels: Tensor) -> None:
        """``predicted`` and ``labels``: class indices of the same shape (N x H x W)."""
        if predicted.shape != labels.shape:
            raise DataError(f"predicted classes {tuple(predicted.shape)} and labels {tuple(labels.shape)} must have the same shape")
        self.confusion.update(predicted.detach().cpu(), labels.detach().cpu())

    def compute(self) -> dict[str, float]:
        matrix = self.confusion.compute().double()  # rows: labels, columns: predictions
        if matrix.sum() == 0:
            raise DataError("no labelled pixels were classified; is the dataset or folder empty?")
        hits, labelled, predicted = matrix.diag(), matrix.sum(1), matrix.sum(0)
        return {
            "pixel_acc": float(hits.sum() / matrix.sum()),
            "class_acc": float((hits / labelled).nanmean()),
            "class_iou": float((hits / (labelled + predicted - hits)).nanmean()),
        }


FID_NOT_COMPUTED = (
    "FID not computed: pass --fid_weights PATH to a local FID Inception weights file "
    "(pt_inception-2015-12-05-6726825d.pth) and install the fid extra; nothing is downloaded"
)


class Evaluation:
    """Accumulates per-image metrics, colour histograms and (optionally) FID over a set of image pairs."""

    def __init__(self, *, fid_weights: Path | None = None, device: torch.device | None = None) -> None:
        self.rows: list[dict[str, float]] = []
        self.outputs, self.targets = LabHistogram(), LabHistogram()
        self.fid = FID(weights=fid_weights, device=device or torch.device("cpu")) if fid_weights else None

    def add(self, output: Tensor, target: Tensor) -> list[dict[str, float]]:
        """Measure a batch; returns its rows of per-image metrics."""
        output, target = output.detach(), target.detach()
        scores = image_metrics(output, target)
        rows = [{name: float(values[i]) for name, values in scores.items()} for i in range(output.shape[0])]
        self.rows += rows
        self.outputs.update(output)
        self.targets.update(target)
        if self.fid is not None:
            self.fid.update(output, target)
        return rows

    def summary(self) -> dict[str, float]:
        """Means of the per-image metrics, the Lab histogram intersections and, when asked for, FID."""
        if not self.rows:
            raise DataError("no images were measured; is the dataset or folder empty?")
        totals = {name: math.fsum(row[name] for row in self.rows) / len(self.rows) for name in IMAGE_METRICS}
        totals |= histogram_intersection(self.outputs, self.targets)
        if self.fid is not None:
            totals["fid"] = self.fid.compute()
        return totals

    @property
    def notes(self) -> list[str]:
        return [] if self.fid is not None else [FID_NOT_COMPUTED]


def better(metric: str, new: float, old: float | None) -> bool:
    """Whether ``new`` improves on ``old`` (None: nothing yet) for ``metric``'s direction."""
    if metric not in HIGHER_IS_BETTER:
        raise ConfigError(f"unknown metric {metric!r}; choose one of {', '.join(HIGHER_IS_BETTER)}")
    if old is None:
        return True
    return new > old if HIGHER_IS_BETTER[metric] else new < old

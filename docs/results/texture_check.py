"""Does a task's FCN-score see texture? A scorer's accuracy on the real val photos and on Gaussian-blurred copies.

    python docs/results/texture_check.py SCORER [SCORER ...] [--sigmas 1 2 3]

Each SCORER is a file of ``p2p scorer fit``; its val photos are rebuilt from the dataset and options the file
records. Rows: the real photos (the upper bound), each blurred copy (kornia's Gaussian blur, sigma in pixels,
a kernel of 2 * ceil(3 sigma) + 1: what an output that averages the texture away looks like), and chance
(every pixel called the commonest class). Columns: the FCN-score as ``p2p test`` reports it, and the realism
distances from the real val photos in the scorer's features (for the val photos themselves: 0, and KID's
unbiased estimate a little below); the real *train* photos (other scenes, the same distribution) give the
distances' floor for a set of this size. A task whose classes only texture tells apart
keeps a high score on the real photos and falls towards chance on the blurred ones.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
from kornia.filters import gaussian_blur2d

from p2p_core.metrics import SegmentationScores
from p2p_core.registry import default_registry
from p2p_core.scoring import ScorerFeatures, feature_distances, load_scorer, score

COLUMNS = ("pixel_acc", "class_acc", "class_iou", "scorer_fd", "scorer_kid")


def photos_and_labels(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    samples = [dataset[i] for i in range(len(dataset))]
    return torch.stack([s.b for s in samples]), torch.stack([s.labels for s in samples])


def check(path: Path, sigmas: list[float]) -> list[tuple[str, dict[str, float]]]:
    scorer = load_scorer(path)
    data = scorer.facts["data"]
    registry = default_registry()
    photos, labels = photos_and_labels(registry.create("dataset", data["name"], split="val", **data["options"]))
    torch.manual_seed(0)  # the train split's random crops and flips: the same rows on every run
    train, _ = photos_and_labels(registry.create("dataset", data["name"], split="train", **data["options"]))
    features = ScorerFeatures(scorer)
    real = features(photos)
    rows = [("real val photos", score(scorer=scorer, photos=photos, labels=labels) | feature_distances(real, real)),
            ("real train photos (other scenes)", feature_distances(real, features(train)))]
    for sigma in sigmas:
        side = 2 * math.ceil(3 * sigma) + 1
        blurred = gaussian_blur2d(photos, (side, side), (sigma, sigma))
        scores = score(scorer=scorer, photos=blurred, labels=labels) | feature_distances(real, features(blurred))
        rows.append((f"blurred, sigma {sigma:g} px", scores))
    chance = SegmentationScores(num_classes=len(scorer.classes))
    chance.update(torch.full_like(labels, int(labels.flatten().bincount().argmax())), labels)
    rows.append(("chance (the commonest class everywhere)", chance.compute()))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scorers", type=Path, nargs="+")
    parser.add_argument("--sigmas", type=float, nargs="+", default=[1.0, 2.0, 3.0])
    args = parser.parse_args()
    for path in args.scorers:
        data = load_scorer(path).facts["data"]
        print(f"\n{path}: {data['name']} {data['options']}\n")
        print("| photos | " + " | ".join(COLUMNS) + " |\n|" + "---|" * (len(COLUMNS) + 1))
        for name, scores in check(path, args.sigmas):
            print(f"| {name} | " + " | ".join(f"{scores[c]:.4g}" if c in scores else "" for c in COLUMNS) + " |")


if __name__ == "__main__":
    main()

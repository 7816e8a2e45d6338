"""The paper's FCN-score: a segmenter trained on real photos classifies generated ones.

Isola et al. (section 4.2, Tables 1 and 2) judge a labels -> photo model by whether its outputs are "real
enough to be recognised as what they should be": an FCN trained for semantic segmentation on real photos
labels the generated photos, and per-pixel accuracy, per-class accuracy and class IoU against the input
labels measure them. The same segmenter's scores on the real photos are the upper bound (the paper's "ground
truth" row).

Here the segmenter is by default a small U-Net built through the registry (``unet``, no dropout), with one
output channel per class; any registered generator can take its place (``network``), so a plugin provides
another scorer network by registering a generator. It learns the dataset's targets (``Sample.b``), since those are what generated images
imitate: in the synthetic task with its default direction AtoB, ``a`` is the label rendering the generator
reads and ``b`` the photo. It needs a dataset whose samples carry ``labels`` and that names its ``classes``;
the built-in ``synthetic`` does, so the protocol runs exactly, at any scale, with no download.

The same segmenter also gives a realism distance that needs no downloaded weights (:class:`ScorerFeatures`,
:func:`feature_distances`): the Fréchet distance (``scorer_fd``) and the kernel distance (``scorer_kid``)
between the generated and the real photos, as FID and KID measure them, but in the scorer's own feature
space: the input of its last layer, averaged over the image. The scorer's features respond to the task's
textures (it learnt to tell the classes apart by them), so a blurred output lands far from the real photos
even where its colours are right.

A scorer is saved as a weights-only file of its own: a plain dict of its ``format``, ``kind`` ("scorer"),
``classes``, the ``network`` spec the registry rebuilds it from, its ``weights``, what it was trained on,
and its scores on the real val photos.
"""

from __future__ import annotations

import pickle
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import attrs
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from p2p_core.files import write_atomically
from p2p_core.devices import resolve_device
from p2p_core.errors import ConfigError, DataError
from p2p_core.inference import pad_to_multiple
from p2p_core.metrics import SegmentationScores
from p2p_core.registry import Registry, default_registry

FORMAT = 1
KIND = "scorer"
LOGIT_SCALE = 10.0
"""The network ends in a Tanh (generators promise outputs in [-1, 1]); scaled by 10, its outputs can express
a confident softmax (e^10 against e^-10), which cross-entropy needs to settle. Argmax does not see the scale."""


@attrs.frozen(kw_only=True)
class LoadedScorer:
    """A scorer rebuilt from its file, in eval mode (no dropout, BatchNorm's running statistics)."""

    module: nn.Module
    classes: tuple[str, ...]
    path: Path
    facts: Mapping[str, Any]
    """What the file records besides the weights: the data it learnt, steps, seed, its real val scores."""

    @property
    def in_channels(self) -> int:
        return self.module.in_channels

    def classify(self, photos: Tensor) -> Tensor:
        """N x C x H x W images in [-1, 1] -> N x H x W class indices (any H and W: padded, then cropped back)."""
        device = next(self.module.parameters()).device
        padded, (rows, columns) = pad_to_multiple(photos.to(device), self.module.size_multiple)
        with torch.no_grad():
            return self.module(padded)[..., rows, columns].argmax(1)


class ScorerFeatures(nn.Module):
    """A scorer's features of a batch of photos: N x C x H x W in [-1, 1] -> N x D (``num_features``).

    They are the input of the network's last layer with weights (for the U-Net, the outermost transposed
    convolution: the decoder's last features beside the first encoder block's), averaged over the image.
    Which layer that is, is found by running the network once, so any registered generator can serve.
    """

    def __init__(self, scorer: LoadedScorer) -> None:
        super().__init__()
        self.network = scorer.module
        self.multiple = getattr(scorer.module, "size_multiple", 1)
        device = next(scorer.module.parameters()).device
        ran: list[nn.Module] = []
        weighted = [module for module in scorer.module.modules()
                    if next(module.parameters(recurse=False), None) is not None]
        hooks = [module.register_forward_pre_hook(lambda module, _: ran.append(module)) for module in weighted]
        try:
            probe = torch.zeros(1, scorer.in_channels, self.multiple, self.multiple, device=device)
            with torch.no_grad():
                self.network(probe)
        finally:
            for hook in hooks:
                hook.remove()
        self.last = ran[-1]
        self.num_features = int(self(probe).shape[1])

    def forward(self, photos: Tensor) -> Tensor:
        captured: list[Tensor] = []
        hook = self.last.register_forward_pre_hook(lambda _, inputs: captured.append(inputs[0]))
        try:
            device = next(self.network.parameters()).device
            padded, _ = pad_to_multiple(photos.to(device), self.multiple)
            with torch.no_grad():
                self.network(padded)
        finally:
            hook.remove()
        features = captured[0]
        return features.flatten(2).mean(2) if features.dim() > 2 else features


KID_SUBSET_SIZE = 1000
KID_SUBSETS = 100


class _Given(nn.Identity):
    """What torchmetrics' FID and KID take as their feature network when they are handed features already."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features


def feature_distances(real: Tensor, generated: Tensor) -> dict[str, float]:
    """``scorer_fd`` and ``scorer_kid`` between two sets of features (N x D, from :class:`ScorerFeatures`).

    scorer_fd is the Fréchet distance between Gaussians fitted to the two sets (FID's formula); scorer_kid the
    unbiased squared maximum mean discrepancy with a cubic polynomial kernel (KID's), over the whole sets when
    they hold the same number of images, at most KID_SUBSET_SIZE (then exact: for identical sets 0 only up to
    an O(1/N) term, and possibly below 0), else averaged over KID_SUBSETS random subsets of the smaller set's
    size (at most KID_SUBSET_SIZE), drawn from a fixed seed.
    Both are 0 at best. A set of one image has no spread to fit, so then there are none (an empty dict).
    """
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    count = min(len(real), len(generated))
    if count < 2:
        return {}
    # The features are computed once per image and handed over as they are, so the metrics' network is a pass-through.
    given = _Given(real.shape[1])
    fd = FrechetInceptionDistance(feature=given)
    subset = min(count, KID_SUBSET_SIZE)
    whole = subset == max(len(real), len(generated))
    with warnings.catch_warnings():
        # It warns that it keeps every feature; here they are a few numbers an image.
        warnings.filterwarnings("ignore", category=UserWarning, module="torchmetrics")
        kid = KernelInceptionDistance(feature=given, subsets=1 if whole else KID_SUBSETS, subset_size=subset)
    for metric in (fd, kid):
        metric.update(real.double(), real=True)
        metric.update(generated.double(), real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        kid_mean, _ = kid.compute()
    return {"scorer_fd": float(fd.compute()), "scorer_kid": float(kid_mean)}


@attrs.frozen(kw_only=True)
class ScorerResult:
    path: Path
    classes: tuple[str, ...]
    steps: int
    train_seconds: float
    real_val: Mapping[str, float]
    """The scorer's own scores on the real val photos: the upper bound a generator's outputs can reach."""


def labelled_dataset(*, data: str, split: str, options: Mapping[str, Any], registry: Registry) -> Any:
    """The ``split`` of dataset ``data``, checked to name its classes and to label its samples."""
    dataset = registry.create("dataset", data, split=split, **options)
    if not getattr(dataset, "classes", None) or len(dataset) == 0 or dataset[0].labels is None:
        raise DataError(
            f"dataset {data!r} ({split} split) gives no class labels (Sample.labels and a `classes` attribute); "
            "a scorer learns photos -> labels, so use a dataset that has them, e.g. --data synthetic"
        )
    return dataset


def fit_scorer(
    *,
    data: str = "synthetic",
    data_options: dict[str, Any] | None = None,
    out: Path,
    steps: int = 300,
    batch_size: int = 8,
    lr: float = 1e-3,
    network: str = "unet",
    network_options: Mapping[str, Any] | None = None,
    ngf: int = 16,
    depth: int = 4,
    seed: int = 0,
    device: Literal["auto", "cpu", "cuda"] = "auto",
    progress: bool = True,
    registry: Registry | None = None,
) -> ScorerResult:
    """Train an FCN-score scorer on a task's real train photos -> labels, then score the real val photos.

    Args:
        data: The dataset, by registered name; its samples must carry labels (``synthetic`` does).
        data_options: The dataset's options, e.g. ``{length: 200, load_size: 72, crop_size: 64}``; use the
            generator's so the scorer sees photos of the same size and scale.
        out: The file the scorer is written to, e.g. ``runs/scorer.pt``.
        steps: Training steps (batches).
        batch_size: Photos per step.
        lr: Adam's learning rate.
        network: The segmenter: a registered generator (a plugin's too) with one output channel per class.
        network_options: Its options; for the default ``unet``, added to ``ngf``, ``depth`` and no dropout.
        ngf: Filters of the U-Net's first layer (``unet`` only).
        depth: The U-Net's stride-2 blocks; the photos' sides must be multiples of 2**depth (``unet`` only).
        seed: Seeds the weights, the batch order and the jitter.
        device: auto (CUDA when there is one), cpu or cuda.
        progress: Show a progress bar.
        registry: The components to build the dataset and the network from (default: installed plugins).
    """
    if steps < 1 or batch_size < 1:
        raise ConfigError(f"steps ({steps}) and batch_size ({batch_size}) must be at least 1")
    registry = registry or default_registry()
    torch_device = resolve_device(device)
    options = dict(data_options or {})
    train = labelled_dataset(data=data, split="train", options=options, registry=registry)
    classes = tuple(train.classes)
    defaults = {"ngf": ngf, "depth": depth, "dropout": 0.0} if network == "unet" else {}
    network = {
        "name": registry.get("generator", network).name,
        "options": defaults | dict(network_options or {}),
        "in_channels": train.out_channels,
        "out_channels": len(classes),
        "image_size": train.image_size,
    }
    torch.manual_seed(seed)
    module = _network(network, registry).to(torch_device).train()
    optimiser = torch.optim.Adam(module.parameters(), lr=lr)
    loader = DataLoader(train, batch_size=batch_size, shuffle=True, drop_last=len(train) >= batch_size,
                        generator=torch.Generator().manual_seed(seed))

    def batches() -> Iterable[Any]:
        while True:
            yield from loader

    started = time.perf_counter()
    # None: a bar on a terminal only; in a log file a bar is one endless line of carriage returns.
    bar = tqdm(total=steps, unit="step", desc="scorer", dynamic_ncols=True, disable=None if progress else True)
    for _, batch in zip(range(steps), batches()):
        photos, labels = batch.b.to(torch_device), batch.labels.to(torch_device)
        loss = F.cross_entropy(LOGIT_SCALE * module(photos), labels)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        bar.update()
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    bar.close()
    seconds = time.perf_counter() - started

    path = Path(out)
    module.eval()
    scorer = LoadedScorer(module=module, classes=classes, path=path, facts={})
    val = labelled_dataset(data=data, split="val", options=options, registry=registry)
    real_val = score(scorer=scorer, photos=(s.b for s in val), labels=(s.labels for s in val))
    state = {
        "format": FORMAT,
        "kind": KIND,
        "classes": list(classes),
        "network": network,
        "weights": module.state_dict(),
        "data": {"name": data, "options": options},
        "steps": steps,
        "seed": seed,
        "real_val": real_val,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda handle: torch.save(state, handle))
    return ScorerResult(path=path, classes=classes, steps=steps, train_seconds=seconds, real_val=real_val)


def load_scorer(path: Path, *, device: torch.device | str = "cpu", registry: Registry | None = None) -> LoadedScorer:
    """The scorer saved at ``path`` (by :func:`fit_scorer`), on ``device``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"scorer {path} does not exist; make one with `p2p scorer fit --out {path}`")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as error:
        raise DataError(f"refusing to load {path}: it holds objects other than tensors and plain data ({error})") from None
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise DataError(f"scorer {path} is truncated or corrupt: {str(error).splitlines()[0]}") from None
    if not isinstance(state, dict) or state.get("kind") != KIND:
        raise DataError(f"{path} is not a scorer (a p2p generator checkpoint?); make one with `p2p scorer fit`")
    if state.get("format") != FORMAT:
        raise DataError(f"scorer {path} has format {state.get('format')}, this p2p reads {FORMAT}; fit it again")
    module = _network(state["network"], registry).to(device)
    module.load_state_dict(state["weights"])
    module.eval()
    facts = {key: value for key, value in state.items() if key not in ("weights", "format", "kind")}
    return LoadedScorer(module=module, classes=tuple(state["classes"]), path=path, facts=facts)


def _batches(images: Tensor | Iterable[Tensor], *, per_item: int) -> Iterable[Tensor]:
    """A tensor N x ... in chunks, or an iterable of single items (gaining a batch dimension) or of batches."""
    if isinstance(images, Tensor):
        yield from images.split(16)
        return
    for item in images:
        yield item[None] if item.dim() == per_item else item


def score(
    *,
    scorer: Path | LoadedScorer,
    photos: Tensor | Iterable[Tensor],
    labels: Tensor | Iterable[Tensor],
) -> dict[str, float]:
    """The FCN-score of ``photos`` against ``labels``: pixel_acc, class_acc and class_iou over the whole set.

    ``photos`` is N x C x H x W in [-1, 1] (or an iterable of such batches or of single C x H x W images), and
    ``labels`` the matching N x H x W class indices (or an iterable in step with ``photos``).
    """
    loaded = scorer if isinstance(scorer, LoadedScorer) else load_scorer(scorer)
    scores = SegmentationScores(num_classes=len(loaded.classes))
    pairs = zip(_batches(photos, per_item=3), _batches(labels, per_item=2), strict=True)
    for photo_batch, label_batch in pairs:
        scores.update(loaded.classify(photo_batch), label_batch)
    return scores.compute()


def write_labels(labels: Tensor, path: Path) -> None:
    """An H x W class map as an 8-bit grayscale PNG whose values are the class indices (what ``p2p test``
    writes as ``labels/NAME.png``, and ``p2p evaluate --labels`` reads)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    picture = Image.fromarray(labels.to(torch.uint8).cpu().numpy(), mode="L")
    write_atomically(path, lambda handle: picture.save(handle, format="PNG"), durable=False)


def read_labels(path: Path, *, classes: int) -> Tensor:
    """The H x W class map of :func:`write_labels`; a DataError naming the file for values beyond ``classes``."""
    from PIL import Image

    with Image.open(path) as picture:
        if picture.mode != "L":
            raise DataError(f"{path} is a {picture.mode} image; a label map is 8-bit grayscale, one class index per pixel")
        labels = torch.from_numpy(np.array(picture, dtype=np.int64))
    if int(labels.max()) >= classes:
        raise DataError(f"{path} holds class {int(labels.max())}, but the scorer knows {classes} classes (0 to {classes - 1})")
    return labels


def check_compatible(scorer: LoadedScorer, *, classes: Sequence[str] | None, channels: int, what: str) -> None:
    """Refuse a scorer that was trained on other classes or another number of image channels than ``what``'s."""
    if classes is None:
        raise ConfigError(f"{what} gives no class labels (Sample.labels), so the FCN-score cannot be measured on it; leave out --scorer")
    if tuple(classes) != scorer.classes:
        raise ConfigError(
            f"scorer {scorer.path} knows the classes {list(scorer.classes)} but {what} has "
            f"{list(classes)}; fit a scorer on the same task (`p2p scorer fit`)"
        )
    if channels != scorer.in_channels:
        raise ConfigError(
            f"scorer {scorer.path} reads {scorer.in_channels}-channel photos but {what} gives {channels}; "
            "fit a scorer on the same task and direction"
        )


def _network(network: Mapping[str, Any], registry: Registry | None) -> nn.Module:
    """The segmenter a scorer's ``network`` entry describes: a registered generator with one channel per class."""
    registry = registry or default_registry()
    return registry.create("generator", network["name"], in_channels=network["in_channels"],
                           out_channels=network["out_channels"], image_size=network["image_size"], **network["options"])

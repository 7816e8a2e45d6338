"""The pix2pix authors' releases: their paired datasets and their pretrained generators.

A catalogue, contributed through the same hooks a lab would use to publish its own: ``p2p data download NAME``
and ``p2p pretrained download NAME`` (or ``--ckpt pretrained:NAME``) find these entries through the registry.
"""

from __future__ import annotations

import p2p_core
from p2p_core.downloads import DatasetEntry, PretrainedEntry

DATASETS_URL = "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets"
PRETRAINED_URL = "http://efrosgans.eecs.berkeley.edu/pix2pix/models-pytorch"


DATASETS: dict[str, DatasetEntry] = {
    entry.name: entry
    for entry in [
        DatasetEntry(
            name="facades", url=f"{DATASETS_URL}/facades.tar.gz", recipes=("facades",),
            description="CMP Facades: photo (A) and label map (B), 400 training pairs",
        ),
        DatasetEntry(
            name="maps", url=f"{DATASETS_URL}/maps.tar.gz",
            recipes=("maps_aerial2map", "maps_map2aerial"),
            description="Google Maps: aerial photo (A) and map (B), 1096 training pairs",
        ),
        DatasetEntry(
            name="edges2shoes", url=f"{DATASETS_URL}/edges2shoes.tar.gz", recipes=("edges2shoes",),
            description="UT Zappos50K: edge map (A) and photo (B), 50k training pairs",
        ),
        DatasetEntry(
            name="edges2handbags", url=f"{DATASETS_URL}/edges2handbags.tar.gz", recipes=("edges2handbags",),
            description="iGAN handbags: edge map (A) and photo (B), 137k training pairs",
        ),
        DatasetEntry(
            name="night2day", url=f"{DATASETS_URL}/night2day.tar.gz", recipes=("night2day",),
            description="Transient Attributes webcams: night (A) and day (B), 17k training pairs",
        ),
        DatasetEntry(
            name="cityscapes", url=None, recipes=("cityscapes",),
            description="Cityscapes: photo (A) and semantic label map (B), 2975 training pairs",
            licence_note=(
                "the Cityscapes licence does not allow p2p to fetch it for you. Register at "
                "https://www.cityscapes-dataset.com, download gtFine_trainvaltest.zip and leftImg8bit_trainvaltest.zip "
                "and unzip them. For each split, gather the photos (leftImg8bit/SPLIT/CITY/X_leftImg8bit.png) in one "
                "folder and the colour label maps (gtFine/SPLIT/CITY/X_gtFine_color.png) in another, both renamed "
                "X.png, then run `p2p data combine --a PHOTOS --b LABELS --out datasets/cityscapes --split SPLIT "
                "--format jpg`, the layout the cityscapes recipe reads"
            ),
        ),
    ]
}

_UNET_256 = 54_413_955  # unet_256, ngf 64, batch norm, dropout, 3 -> 3 channels, as all five were released

PRETRAINED: dict[str, PretrainedEntry] = {
    entry.name: entry
    for entry in [
        PretrainedEntry(
            name="facades_label2photo", url=f"{PRETRAINED_URL}/facades_label2photo.pth", translation="labels -> photo",
            dataset="facades", direction="BtoA", parameters=_UNET_256,
            description="CMP Facades label maps to building facades",
        ),
        PretrainedEntry(
            name="sat2map", url=f"{PRETRAINED_URL}/sat2map.pth", translation="aerial photo -> map",
            dataset="maps", direction="AtoB", parameters=_UNET_256,
            description="Google Maps satellite photos to street maps",
        ),
        PretrainedEntry(
            name="map2sat", url=f"{PRETRAINED_URL}/map2sat.pth", translation="map -> aerial photo",
            dataset="maps", direction="BtoA", parameters=_UNET_256,
            description="Google Maps street maps to satellite photos",
        ),
        PretrainedEntry(
            name="edges2shoes", url=f"{PRETRAINED_URL}/edges2shoes.pth", translation="edges -> photo",
            dataset="edges2shoes", direction="AtoB", parameters=_UNET_256,
            description="shoe edge maps to shoe photos",
        ),
        PretrainedEntry(
            name="day2night", url=f"{PRETRAINED_URL}/day2night.pth", translation="day -> night",
            dataset="night2day", direction="BtoA", parameters=_UNET_256,
            description="webcam day scenes to night",
        ),
    ]
}


@p2p_core.hookimpl
def p2p_dataset_downloads() -> dict[str, DatasetEntry]:
    return DATASETS


@p2p_core.hookimpl
def p2p_pretrained() -> dict[str, PretrainedEntry]:
    return PRETRAINED

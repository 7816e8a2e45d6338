"""The CycleGAN authors' releases: their unpaired datasets and their 18 pretrained generators.

The reference (junyanz/pytorch-CycleGAN-and-pix2pix) fetches them with ``datasets/download_cyclegan_dataset.sh`` and
``scripts/download_cyclegan_model.sh``; here ``p2p data download NAME`` and ``--ckpt pretrained:NAME`` do, through
p2p's downloader and the ResnetGenerator layout of :mod:`p2p_cyclegan.layout`. Names are the reference's, except
where p2p's pix2pix catalogue already has one (its facades, maps and cityscapes datasets, its sat2map, map2sat and
facades_label2photo generators): those are prefixed ``cyclegan_``.
"""

from __future__ import annotations

from typing import Literal

from p2p_core.downloads import DatasetEntry, PretrainedEntry

DATASETS_URL = "https://efrosgans.eecs.berkeley.edu/cyclegan/datasets"
PRETRAINED_URL = "http://efrosgans.eecs.berkeley.edu/cyclegan/pretrained_models"
RENAMED = "cyclegan_"
"""Prefix of the names p2p's own catalogue already uses."""
UNPAIRED_FOLDERS = ("trainA", "trainB", "testA", "testB")

RESNET_9BLOCKS = 11_378_179
"""Parameters of resnet_9blocks, ngf 64, instance norm, no dropout, 3 -> 3 channels, as all 18 were released."""


def _dataset(name: str, description: str, *, archive: str | None = None) -> DatasetEntry:
    return DatasetEntry(name=name, url=f"{DATASETS_URL}/{archive or name}.zip", description=description, holds=UNPAIRED_FOLDERS)


DATASETS: dict[str, DatasetEntry] = {
    entry.name: entry
    for entry in [
        _dataset("apple2orange", "ImageNet apples (A) and oranges (B)"),
        _dataset("summer2winter_yosemite", "Flickr photos of Yosemite in summer (A) and winter (B)"),
        _dataset("horse2zebra", "ImageNet horses (A) and zebras (B)"),
        _dataset("monet2photo", "Monet paintings (A) and landscape photos (B)"),
        _dataset("cezanne2photo", "Cezanne paintings (A) and landscape photos (B)"),
        _dataset("ukiyoe2photo", "Ukiyo-e prints (A) and landscape photos (B)"),
        _dataset("vangogh2photo", "Van Gogh paintings (A) and landscape photos (B)"),
        _dataset("iphone2dslr_flower", "Flickr flower photos by iPhone (A) and DSLR with shallow focus (B)"),
        _dataset(f"{RENAMED}maps", "Google Maps aerial photos (A) and maps (B), unpaired", archive="maps"),
        _dataset(f"{RENAMED}facades", "CMP Facades photos (A) and label maps (B), unpaired", archive="facades"),
        DatasetEntry(
            name=f"{RENAMED}cityscapes", url=None, holds=UNPAIRED_FOLDERS,
            description="Cityscapes street photos (A) and semantic label maps (B), unpaired",
            licence_note=(
                "the Cityscapes licence does not allow p2p to fetch it for you. Register at "
                "https://www.cityscapes-dataset.com, download gtFine_trainvaltest.zip and leftImg8bit_trainvaltest.zip "
                "and unzip them. Resize each photo (leftImg8bit/SPLIT/CITY/X_leftImg8bit.png) and its colour label map "
                "(gtFine/SPLIT/CITY/X_gtFine_color.png) to 256x256 and put them in datasets/cyclegan_cityscapes: the "
                "train photos in trainA and label maps in trainB, the val ones in testA and testB, the layout the "
                "unaligned dataset reads (the reference's datasets/prepare_cityscapes_dataset.py makes the same)"
            ),
        ),
    ]
}


def _pretrained(
    name: str, translation: str, description: str, *, dataset: str, direction: Literal["AtoB", "BtoA"], file: str | None = None
) -> PretrainedEntry:
    return PretrainedEntry(
        name=name, url=f"{PRETRAINED_URL}/{file or name}.pth", description=description, translation=translation,
        dataset=dataset, direction=direction, dataset_reader="unaligned", parameters=RESNET_9BLOCKS,
    )


PRETRAINED: dict[str, PretrainedEntry] = {
    entry.name: entry
    for entry in [
        _pretrained("apple2orange", "apple -> orange", "ImageNet apples to oranges", dataset="apple2orange", direction="AtoB"),
        _pretrained("orange2apple", "orange -> apple", "ImageNet oranges to apples", dataset="apple2orange", direction="BtoA"),
        _pretrained("summer2winter_yosemite", "summer -> winter", "Yosemite in summer to winter",
                    dataset="summer2winter_yosemite", direction="AtoB"),
        _pretrained("winter2summer_yosemite", "winter -> summer", "Yosemite in winter to summer",
                    dataset="summer2winter_yosemite", direction="BtoA"),
        _pretrained("horse2zebra", "horse -> zebra", "ImageNet horses to zebras", dataset="horse2zebra", direction="AtoB"),
        _pretrained("zebra2horse", "zebra -> horse", "ImageNet zebras to horses", dataset="horse2zebra", direction="BtoA"),
        _pretrained("monet2photo", "Monet painting -> photo", "Monet's paintings to photos", dataset="monet2photo",
                    direction="AtoB"),
        _pretrained("style_monet", "photo -> Monet painting", "landscape photos in Monet's style", dataset="monet2photo",
                    direction="BtoA"),
        _pretrained("style_cezanne", "photo -> Cezanne painting", "landscape photos in Cezanne's style",
                    dataset="cezanne2photo", direction="BtoA"),
        _pretrained("style_ukiyoe", "photo -> Ukiyo-e print", "landscape photos in the style of Ukiyo-e",
                    dataset="ukiyoe2photo", direction="BtoA"),
        _pretrained("style_vangogh", "photo -> Van Gogh painting", "landscape photos in Van Gogh's style",
                    dataset="vangogh2photo", direction="BtoA"),
        _pretrained("iphone2dslr_flower", "iPhone photo -> DSLR photo", "flower photos given a DSLR's shallow focus",
                    dataset="iphone2dslr_flower", direction="AtoB"),
        _pretrained(f"{RENAMED}sat2map", "aerial photo -> map", "Google Maps aerial photos to maps, trained unpaired",
                    dataset=f"{RENAMED}maps", direction="AtoB", file="sat2map"),
        _pretrained(f"{RENAMED}map2sat", "map -> aerial photo", "Google Maps maps to aerial photos, trained unpaired",
                    dataset=f"{RENAMED}maps", direction="BtoA", file="map2sat"),
        _pretrained("cityscapes_photo2label", "photo -> labels", "Cityscapes street photos to label maps, trained unpaired",
                    dataset=f"{RENAMED}cityscapes", direction="AtoB"),
        _pretrained("cityscapes_label2photo", "labels -> photo", "Cityscapes label maps to street photos, trained unpaired",
                    dataset=f"{RENAMED}cityscapes", direction="BtoA"),
        _pretrained("facades_photo2label", "photo -> labels", "CMP Facades photos to label maps, trained unpaired",
                    dataset=f"{RENAMED}facades", direction="AtoB"),
        _pretrained(f"{RENAMED}facades_label2photo", "labels -> photo", "CMP Facades label maps to photos, trained unpaired",
                    dataset=f"{RENAMED}facades", direction="BtoA", file="facades_label2photo"),
    ]
}

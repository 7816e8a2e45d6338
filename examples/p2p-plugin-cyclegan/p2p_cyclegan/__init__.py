"""CycleGAN for p2p (Zhu et al., ICCV 2017): the training method, unpaired data, and the reference implementation's
models and datasets.

p2p finds this module through the ``p2p`` entry point in pyproject.toml, as it finds its own built-ins; nothing in
p2p names it. It builds on p2p-plugin-example, whose ``resnet9`` is the reference's ResnetGenerator.
"""

from __future__ import annotations

from pathlib import Path

import p2p_core
from p2p_cyclegan.catalogue import DATASETS, PRETRAINED
from p2p_cyclegan.datasets import UnalignedDataset, synthetic_unpaired
from p2p_cyclegan.layout import resnet_generator
from p2p_cyclegan.method import CycleGAN

RECIPES = Path(__file__).parent / "recipes"

CONFORMANCE_DATA = Path(__file__).parent / "conformance"
"""A few images of different sizes in the unaligned layout, shipped so that the kit runs from any installation."""

# What the conformance kit needs to test these components quickly (`pytest --p2p-plugin p2p-plugin-cyclegan`, and
# tests/test_cyclegan_conformance.py): small crops, and few generated scenes.
P2P_CONFORMANCE = {
    "options": {
        "dataset:unaligned": {"root": str(CONFORMANCE_DATA), "load_size": 36, "crop_size": 32},
        "dataset:synthetic_unpaired": {"length": 3, "load_size": 36, "crop_size": 32},
    }
}


@p2p_core.hookimpl
def p2p_datasets():
    return {"unaligned": UnalignedDataset, "synthetic_unpaired": synthetic_unpaired}


@p2p_core.hookimpl
def p2p_import_layouts():
    return {"ResnetGenerator": resnet_generator}


@p2p_core.hookimpl
def p2p_dataset_downloads():
    return DATASETS


@p2p_core.hookimpl
def p2p_pretrained():
    return PRETRAINED


@p2p_core.hookimpl
def p2p_methods():
    return {"cyclegan": CycleGAN}


@p2p_core.hookimpl
def p2p_recipes():
    return {"cyclegan_synthetic": RECIPES / "cyclegan_synthetic.yaml"}

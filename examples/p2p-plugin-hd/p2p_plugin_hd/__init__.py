"""pix2pixHD's discriminator side and feature losses as a p2p plugin: a multi-scale PatchGAN, the feature-matching
loss, the VGG loss, a recipe.

Wang et al. (2018) judge the output with K PatchGANs, each on the image downsampled once more, and add to the
GAN loss an L1 between the discriminator's features of the real pair and of the fake one, and another between a
fixed VGG19's. After ``pip install -e .``: ``p2p fit --disc multiscale --loss cgan+fm+l1``.
"""

from __future__ import annotations

from pathlib import Path

import p2p_core
from p2p_plugin_hd.discriminators import multiscale
from p2p_plugin_hd.losses import FeatureMatchingLoss, VGGLoss

RECIPES = Path(__file__).parent / "recipes"

# What the conformance kit needs to test these components quickly (`pytest --p2p-plugin p2p-plugin-hd`, and
# tests/test_hd_conformance.py): narrow PatchGANs are the same contract at a fraction of the cost, and the VGG loss
# its first slice, from a file of that layer in torchvision's layout, seeded random weights: the kit checks the
# contract (a fixed network, gradients to G(x)), not what ImageNet taught the network.
P2P_CONFORMANCE = {
    "options": {
        "discriminator:multiscale": {"ndf": 4},
        "loss:vgg": {"weights": Path(__file__).parent / "kit" / "vgg19_slice1_seed0.pt", "slices": 1},
    }
}


@p2p_core.hookimpl
def p2p_discriminators():
    return {"multiscale": multiscale}


@p2p_core.hookimpl
def p2p_losses():
    return {"fm": FeatureMatchingLoss, "vgg": VGGLoss}


@p2p_core.hookimpl
def p2p_recipes():
    return {"hd_outlines": RECIPES / "hd_outlines.yaml"}

"""An example p2p plugin: the ResNet-9-blocks generator, LSGAN and hinge objective terms, and a recipe.

p2p finds this module through the ``p2p`` entry point in pyproject.toml, as it finds its own built-ins; nothing
in p2p names it. After ``pip install -e .``: ``p2p fit --generator resnet9 --loss lsgan+l1``.
"""

from __future__ import annotations

from pathlib import Path

import p2p_core
from p2p_example.losses import HingeLoss, LeastSquaresLoss
from p2p_example.resnet import resnet9

RECIPES = Path(__file__).parent / "recipes"

# What the conformance kit needs to test these components quickly (`pytest --p2p-plugin p2p-plugin-example`,
# and tests/test_example_conformance.py): a narrow, shallow ResNet is the same contract at a fraction of the cost.
P2P_CONFORMANCE = {"options": {"generator:resnet9": {"ngf": 4, "n_blocks": 2}}}


@p2p_core.hookimpl
def p2p_generators():
    return {"resnet9": resnet9}


@p2p_core.hookimpl
def p2p_losses():
    return {"lsgan": LeastSquaresLoss, "hinge": HingeLoss}


@p2p_core.hookimpl
def p2p_recipes():
    return {"resnet9_smoke": RECIPES / "resnet9_smoke.yaml"}

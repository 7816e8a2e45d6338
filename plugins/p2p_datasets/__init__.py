"""Built-in paired datasets: the standard AB layout, two matching folders, and a generated task."""

from __future__ import annotations

import p2p_core
from p2p_datasets.files import AlignedDataset, FoldersDataset
from p2p_datasets.synthetic import synthetic


@p2p_core.hookimpl
def p2p_datasets():
    return {"aligned": AlignedDataset, "folders": FoldersDataset, "synthetic": synthetic}

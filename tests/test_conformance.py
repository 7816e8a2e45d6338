"""Every built-in component against the public conformance kit, the same one plugin authors run."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

from conftest import write_ab_folder, write_ab_folders
from p2p_core.registry import OWN_DISTRIBUTION
from p2p_core.testing import parametrize_with_checks

# Folders must exist when pytest collects the cases, before any fixture runs.
_DATA = Path(tempfile.mkdtemp(prefix="p2p-conformance-"))
atexit.register(shutil.rmtree, _DATA, ignore_errors=True)
for split in ("train", "val"):
    write_ab_folder(_DATA / "aligned", split=split, size=(24, 40))
    write_ab_folder(_DATA / "aligned_same", split=split, size=(24, 40), identical=True)
    write_ab_folders(_DATA / "folders", split=split, size=(24, 40))
    write_ab_folders(_DATA / "folders_same", split=split, size=(24, 40), identical=True)

SMALL_DATA = {"load_size": 40, "crop_size": 32}
OPTIONS = {
    "generator:unet": {"ngf": 8},
    "generator:encoder_decoder": {"ngf": 8},
    **{f"discriminator:{name}": {"ndf": 8} for name in ("patch", "pixel", "patch16", "patch70", "image286")},
    "dataset:aligned": {"root": _DATA / "aligned", **SMALL_DATA},
    "dataset:folders": {"root": _DATA / "folders", **SMALL_DATA},
    "dataset:synthetic": {"length": 4, **SMALL_DATA},
}
IDENTICAL_PAIRS = {
    "dataset:aligned": {"root": _DATA / "aligned_same", **SMALL_DATA},
    "dataset:folders": {"root": _DATA / "folders_same", **SMALL_DATA},
}


@parametrize_with_checks(distribution=OWN_DISTRIBUTION, options=OPTIONS, identical_pairs=IDENTICAL_PAIRS)
def test_builtin_component_keeps_its_contract(case):
    case.run()

"""Shared fixtures: tiny image folders in the standard layouts, the real data beside the checkout, and plugin
distributions installed into a temporary folder."""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest
import torch
from hypothesis import settings
from PIL import Image

from p2p_core.cli import main

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
SMOKE = str(RECIPES / "smoke.yaml")
TINY_DATA = ["--data.load_size", "36", "--data.crop_size", "32"]


def run(args, capsys):
    """Run the CLI in-process; return (exit code, stdout, stderr)."""
    try:
        main(args)
        code = 0
    except SystemExit as stop:
        code = stop.code or 0
    out, err = capsys.readouterr()
    return code, out, err


def fit_smoke(tmp_path, capsys, *extra):
    code, out, err = run(["fit", "--config", SMOKE, "--out_dir", str(tmp_path / "runs"), "--name", "smoke", *extra], capsys)
    assert code == 0, err
    return tmp_path / "runs" / "smoke"


SHARED_OUTLINES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "outlines"

# The tests run tiny tensors, for which intra-op threads add only synchronisation; on a busy 2-core machine
# their waiting made the suite six times slower (140 s against 23 s, most of it in the many small ops of
# the edge tools and the end-to-end fits).
torch.set_num_threads(1)

# CI replays the same examples on every run (derandomized, no example database), so a failure there is one
# that reproduces, never one a lucky draw found; a developer's runs keep exploring new examples.
# HYPOTHESIS_PROFILE=ci replays CI's examples locally.
# Both from Hypothesis' own defaults, whatever profile it chose itself on seeing CI set.
settings.register_profile("ci", settings.get_profile("default"), derandomize=True, database=None)
settings.register_profile("explore", settings.get_profile("default"))
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "explore"))


def write_ab_folder(root: Path, *, split: str = "train", count: int = 3, size: tuple[int, int] = (40, 40), identical: bool = False) -> Path:
    """root/split/i.png holding A|B side by side; with ``identical`` B is a copy of A."""
    folder = root / split
    folder.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(len(str(root)) + count)
    height, width = size
    for index in range(count):
        a = torch.randint(0, 256, (height, width, 3), generator=generator, dtype=torch.uint8)
        b = a if identical else torch.randint(0, 256, (height, width, 3), generator=generator, dtype=torch.uint8)
        Image.fromarray(torch.cat([a, b], dim=1).numpy()).save(folder / f"{index}.png")
    return root


def write_ab_folders(root: Path, *, split: str = "train", count: int = 3, size: tuple[int, int] = (40, 40), identical: bool = False) -> Path:
    """root/split/A/i.png and root/split/B/i.png."""
    aligned = write_ab_folder(root / "_aligned", split=split, count=count, size=size, identical=identical)
    for path in sorted((aligned / split).glob("*.png")):
        image = Image.open(path)
        width = image.width // 2
        for half, box in (("A", (0, 0, width, image.height)), ("B", (width, 0, 2 * width, image.height))):
            (root / split / half).mkdir(parents=True, exist_ok=True)
            image.crop(box).save(root / split / half / path.name)
    return root


@pytest.fixture
def ab_root(tmp_path: Path) -> Path:
    write_ab_folder(tmp_path / "ab", split="train")
    return write_ab_folder(tmp_path / "ab", split="val")


@pytest.fixture
def outlines() -> Path:
    if not (SHARED_OUTLINES / "train").is_dir():
        pytest.skip(f"real data not found at {SHARED_OUTLINES}")
    return SHARED_OUTLINES


# A generator that keeps every contract of the kit: a 1x1 convolution and Tanh.
TINY_GENERATOR = """
import p2p_core
from torch import nn


class Tiny(nn.Module):
    \"\"\"A 1x1 convolution and Tanh.\"\"\"

    size_multiple = 1

    def __init__(self, *, in_channels: int, out_channels: int, image_size: int) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.net = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1), nn.Tanh())

    def forward(self, x):
        return self.net(x)
"""

InstallDistribution = Callable[..., Path]


@pytest.fixture
def install_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[InstallDistribution]:
    """``install(name, modules={module: source}, entry_points={name: module})``: a real installed distribution
    as pip leaves one (NAME-VERSION.dist-info with METADATA and entry_points.txt, beside its modules) in a folder
    on sys.path, and on PYTHONPATH for subprocesses, so importlib.metadata and the registry find it. Its modules
    are forgotten afterwards."""
    site = tmp_path / "site-packages"
    site.mkdir()
    monkeypatch.syspath_prepend(site)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])))
    written: list[str] = []

    def install(name: str, *, modules: Mapping[str, str], entry_points: Mapping[str, str], version: str = "1.0") -> Path:
        info = site / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        (info / "entry_points.txt").write_text("[p2p]\n" + "".join(f"{ep} = {target}\n" for ep, target in entry_points.items()))
        for module, source in modules.items():
            (site / f"{module}.py").write_text(textwrap.dedent(source))
        written.extend(modules)
        return site

    yield install
    for module in written:
        sys.modules.pop(module, None)


@pytest.fixture
def fresh_default_registry() -> Iterator[None]:
    """The process-wide registry rebuilt for this test (e.g. under other environment variables) and after it."""
    from p2p_core.registry import default_registry

    default_registry.cache_clear()
    yield
    default_registry.cache_clear()


def make_spec(
    *,
    generator: tuple[str, dict] = ("unet", {"ngf": 4}),
    disc: tuple[str, dict] = ("patch70", {"ndf": 4}),
    data: tuple[str, dict] = ("synthetic", {"length": 4, "load_size": 36, "crop_size": 32}),
    loss: str = "cgan+l1",
    loss_options: dict | None = None,
    **trainer,
):
    """A RunSpec for tests: tiny components, no loader workers, no progress output; ``trainer`` overrides."""
    from p2p_core.spec import ComponentSpec, RunSpec, TrainConfig

    return RunSpec(
        generator=ComponentSpec(*generator),
        disc=ComponentSpec(*disc),
        data=ComponentSpec(*data),
        loss=loss,
        loss_options=loss_options or {},
        trainer=TrainConfig(**{"num_workers": 0, "progress": False, **trainer}),
    )


def fit_tiny(root: Path, *, in_channels: int = 3, options: Sequence[str] = ()) -> Path:
    """A U-Net for 16-pixel images (size_multiple 16, ngf 4) trained for one step from ``in_channels`` to RGB, with
    ``options`` of p2p fit besides; returns its run folder. Made by ``p2p fit``, so the checkpoint has whatever format
    fit writes."""
    write_ab_folder(root / "ab")
    main([
        "fit", "--data", "aligned", "--data.root", str(root / "ab"), "--data.a_channels", str(in_channels),
        "--data.load_size", "18", "--data.crop_size", "16", "--generator.ngf", "4", "--disc", "pixel", "--disc.ndf", "4",
        "--trainer.max_steps", "1", "--trainer.num_workers", "0", "--trainer.progress", "false",
        "--out_dir", str(root / "runs"), "--name", "run", *options,
    ])  # fmt: skip
    return root / "runs" / "run"


def read_until(process: subprocess.Popen, pattern: re.Pattern, *, timeout: float) -> str:
    """What the process wrote to stderr until it matched ``pattern``, the process ended, or ``timeout`` s passed."""
    read, deadline = "", time.monotonic() + timeout
    while not pattern.search(read) and process.poll() is None and time.monotonic() < deadline:
        if select.select([process.stderr], [], [], 0.05)[0]:
            read += os.read(process.stderr.fileno(), 4096).decode(errors="replace")
    return read

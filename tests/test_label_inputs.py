"""Label-map inputs of many classes: a dataset declares its input_encoding (``labels:N``, a class-index PNG as N
one-hot channels), the checkpoint records it, and predict, demo and export read files that way."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Dataset

import p2p_core
from conftest import make_spec
from p2p_core import checkpoint
from p2p_core import export as exporting
from p2p_core.commands import fit, fit_arguments
from p2p_core.errors import ConfigError, DataError
from p2p_core.evaluation import run_test
from p2p_core.images import list_images, read_input
from p2p_core.predict import predict
from p2p_core.protocols import Sample
from p2p_core.registry import Registry
from p2p_core.spec import Shapes, read_checkpoint
from p2p_core.testing import ContractViolation, cases
from p2p_core.testing.checks import check_dataset_samples
from p2p_core.training import Training

CLASSES = 6
COLOURS = torch.tensor([[-1, -1, -1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1], [1, 1, -1], [1, 1, 1]], dtype=torch.float32)


class ClassMaps(Dataset):
    """root/SPLIT/*.png: class-index PNGs of 6 classes, translated to one flat colour per class."""

    input_encoding = f"labels:{CLASSES}"
    in_channels, out_channels, image_size = CLASSES, 3, 32

    def __init__(self, *, root: Path, split: str = "train") -> None:
        self.root = Path(root)
        self.files = list_images(self.root / split)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Sample:
        a = read_input(self.files[index], encoding=self.input_encoding)
        return Sample(a, COLOURS[a.argmax(0)].permute(2, 0, 1), str(self.files[index]))


class Misdeclared(ClassMaps):
    """Declares one class fewer than its inputs have channels."""

    input_encoding = "labels:5"


class Components:
    @p2p_core.hookimpl
    def p2p_datasets(self):
        return {"class_maps": ClassMaps, "misdeclared": Misdeclared}


def registry() -> Registry:
    found = Registry()
    found.load_entry_points(allow=["p2p"])
    found.register(Components(), name="labels", distribution="p2p-fake-labels", version="1.0")
    return found


def class_map(path: Path, *, size: tuple[int, int] = (32, 32), classes: int = CLASSES, mode: str = "L", seed: int = 0) -> Path:
    indices = np.random.default_rng(seed).integers(0, classes, size=(size[1], size[0]), dtype=np.uint8)
    image = Image.fromarray(indices, mode="L")
    if mode == "P":
        image = image.convert("P")  # palette indices equal to the grey values of a fresh conversion
        image.putpalette([channel for index in range(256) for channel in (index, 255 - index, 0)])
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("labels")
    for index in range(2):
        class_map(root / "data" / "train" / f"{index}.png", seed=index)
    arguments = fit_arguments(["--data", "class_maps", "--data.root", str(root / "data"), "--generator.ngf", "8",
                               "--disc", "patch16", "--disc.ndf", "8", "--trainer.max_steps", "1", "--trainer.num_workers", "0",
                               "--trainer.progress", "false", "--out_dir", str(root), "--name", "run"], registry())
    fit(**arguments, registry=registry(), argv=[])
    return root / "run"


def test_the_checkpoint_records_the_encoding_and_an_old_one_reads_images(run: Path):
    loaded = checkpoint.read(run)
    assert loaded.spec.input_encoding == "labels:6" and loaded.spec.shapes.in_channels == CLASSES
    old = {key: value for key, value in loaded.state.items() if key != "input_encoding"}
    assert read_checkpoint(old, source="old.pt").input_encoding == "image"


@pytest.mark.parametrize("mode", ["L", "P"])
def test_predict_reads_a_class_index_png_as_one_hot_channels(run: Path, tmp_path: Path, mode: str):
    class_map(tmp_path / "in" / "scene.png", size=(37, 30), mode=mode)
    predict(ckpt=run, input=tmp_path / "in", output=tmp_path / "out", backend="torch", mode="eval", progress=False,
            registry=registry())
    with Image.open(tmp_path / "out" / "scene.png") as written:
        assert written.size == (37, 30) and written.mode == "RGB"


def test_one_hot_channels_are_the_classes_of_the_file(tmp_path: Path):
    path = class_map(tmp_path / "scene.png", size=(5, 4), mode="P")
    with Image.open(path) as image:
        indices = torch.from_numpy(np.array(image, dtype=np.int64))
    decoded = read_input(path, encoding="labels:6")
    assert decoded.shape == (6, 4, 5) and torch.equal(decoded.argmax(0), indices) and torch.equal(decoded.sum(0), torch.ones(4, 5))


@pytest.mark.parametrize(("write", "message"), [
    (lambda path: class_map(path, classes=8, seed=3), r"bad.png: it holds class index [67], but labels:6 has 6 classes \(indices 0 to 5\)"),
    (lambda path: Image.new("RGB", (32, 32), (9, 9, 9)).save(path), r"bad.png: it is a RGB image, but labels:6 reads class-index images"),
])
def test_predict_refuses_a_file_that_is_not_a_map_of_its_classes(run: Path, tmp_path: Path, write, message: str):
    (tmp_path / "in").mkdir()
    write(tmp_path / "in" / "bad.png")
    with pytest.raises(DataError, match=message):
        predict(ckpt=run, input=tmp_path / "in", output=tmp_path / "out", backend="torch", progress=False, registry=registry())


def test_the_export_describes_its_one_hot_input(run: Path, tmp_path: Path):
    result = exporting.export(ckpt=run, format="exported-program", out=tmp_path / "model.pt2", registry=registry())
    described = json.loads(result.description.read_text())["input"]
    assert described["encoding"] == "labels:6" and described["channels"] == CLASSES and described["value_range"] == [0.0, 1.0]


def test_the_demo_reads_an_upload_as_its_model_does(tmp_path: Path):
    server = pytest.importorskip("p2p_core.demo.server", reason="pip install 'p2p[demo]'")
    limits = server.Limits(max_bytes=10**6, max_pixels=10**6)
    upload = class_map(tmp_path / "upload.png", size=(9, 7)).read_bytes()
    read = server.read_upload(upload, channels=CLASSES, encoding="labels:6", shorter_side=None, multiple=1, limits=limits)
    assert torch.equal(read, read_input(tmp_path / "upload.png", encoding="labels:6"))
    with pytest.raises(server.UnsupportedMediaType, match="class index"):
        server.read_upload(class_map(tmp_path / "more.png", classes=9).read_bytes(), channels=CLASSES, encoding="labels:6",
                           shorter_side=None, multiple=1, limits=limits)


def test_an_encoding_that_does_not_match_the_inputs_is_refused():
    spec = make_spec(generator=("unet", {"ngf": 4}), data=("class_maps", {"root": "unused"}))
    with pytest.raises(ConfigError, match=r"dataset 'class_maps' declares input_encoding 'labels:5' \(5 one-hot channels\), "
                                          r"but its inputs have 6 channels"):
        Training.build(spec, Shapes(in_channels=6, out_channels=3, image_size=32), total_steps=1, registry=registry(),
                       input_encoding="labels:5")
    with pytest.raises(ConfigError, match=r"unknown input encoding 'lables:6'"):
        Training.build(spec, Shapes(in_channels=6, out_channels=3, image_size=32), total_steps=1, registry=registry(),
                       input_encoding="lables:6")


def test_the_kit_checks_the_declared_encoding(tmp_path: Path):
    for split in ("train", "val"):
        class_map(tmp_path / split / "0.png")
    found = registry()
    options = {name: {"root": tmp_path} for name in ("dataset:class_maps", "dataset:misdeclared")}
    (good,) = [c for c in cases(["dataset:class_maps"], registry=found, options=options) if c.check is check_dataset_samples]
    good.run()
    (bad,) = [c for c in cases(["dataset:misdeclared"], registry=found, options=options) if c.check is check_dataset_samples]
    with pytest.raises(ContractViolation, match=r"a labels:N input has N channels\n  found: labels:5 with in_channels 6"):
        bad.run()


def test_p2p_test_translates_the_label_maps_of_its_dataset(run: Path, tmp_path: Path):
    result = run_test(ckpt=run, split="train", out=tmp_path / "page", backend="torch", registry=registry())
    with Image.open(tmp_path / "page" / "outputs" / "0.png") as written:
        assert written.size == (32, 32) and written.mode == "RGB"
    assert result.names == ["0", "1"]

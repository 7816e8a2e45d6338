"""The CycleGAN releases through p2p's commands, against a mirror on 127.0.0.1 that the tests start: `--ckpt
pretrained:horse2zebra` downloads a ResnetGenerator file, imports it through this package's layout and predicts, and
`p2p data download horse2zebra` unpacks the reference's zip where `unaligned` reads it."""

from __future__ import annotations

import functools
import hashlib
import io
import json
import threading
import zipfile
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import p2p_core
from p2p_core import checkpoint
from p2p_core.cli import main
from p2p_core.images import read_image, to_uint8
from p2p_cyclegan.catalogue import DATASETS, PRETRAINED
from test_cyclegan_import import reference


@pytest.fixture
def mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder served over HTTP on 127.0.0.1, as the mirror of both catalogues; the cache is the test's own."""
    served = tmp_path / "mirror"
    served.mkdir()
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None  # type: ignore[method-assign]
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{httpd.server_port}"
    monkeypatch.setenv("P2P_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("P2P_PRETRAINED_URL", base)
    monkeypatch.setenv("P2P_DATASETS_URL", base)
    yield served
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_pretrained_horse2zebra_downloads_imports_through_the_layout_and_predicts(mirror, tmp_path, monkeypatch, capsys):
    original = reference(ngf=4, n_blocks=9, norm="instance")
    torch.save(original.state_dict(), mirror / "horse2zebra.pth")
    (tmp_path / "horses").mkdir()
    photo = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    Image.fromarray(photo).save(tmp_path / "horses" / "h.png")
    monkeypatch.chdir(tmp_path)

    # The reference published no hashes, and this one is a small model: the user vouches for the file with its
    # SHA-256 once; --ckpt then uses it.
    main(["pretrained", "download", "horse2zebra", "--sha256", sha256_of(mirror / "horse2zebra.pth")])
    # The import knows the size the reference trained at, and says when an image is far from it.
    with pytest.warns(UserWarning, match="--resize 256"):
        main(["predict", "--ckpt", "pretrained:horse2zebra", "--input", "horses", "--output", "zebras"])

    with torch.no_grad():
        expected = to_uint8(original(read_image(tmp_path / "horses" / "h.png")[None])[0]).permute(1, 2, 0).numpy()
    predicted = np.asarray(Image.open(tmp_path / "zebras" / "h.png"))
    assert np.abs(predicted.astype(int) - expected).max() <= 1  # the same translation, up to rounding
    run = checkpoint.read(tmp_path / "cache" / "pretrained" / "horse2zebra").spec.run
    assert run.generator.name == "p2p-plugin-example:resnet9"
    assert (run.data.name, run.data.options["root"], run.data.options["direction"]) == ("unaligned", "datasets/horse2zebra", "AtoB")
    capsys.readouterr()


def test_data_download_unpacks_the_reference_zip_where_unaligned_and_the_released_model_read_it(mirror, tmp_path, monkeypatch):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        for folder in ("trainA", "trainB", "testA", "testB"):
            for index in range(2):
                image = io.BytesIO()
                Image.new("RGB", (40 + 8 * index, 36), (index * 90, 40, 200)).save(image, format="JPEG")
                bundle.writestr(f"horse2zebra/{folder}/n0{index}.jpg", image.getvalue())
    (mirror / "horse2zebra.zip").write_bytes(buffer.getvalue())
    monkeypatch.chdir(tmp_path)

    main(["data", "download", "horse2zebra", "--trust_unpinned", "true"])

    for split in ("train", "test"):
        dataset = p2p_core.create("dataset", "unaligned", root=Path("datasets/horse2zebra"), split=split,
                                  load_size=36, crop_size=32)
        assert len(dataset) == 2 and dataset[1].a.shape == dataset[1].b.shape == (3, 32, 32)

    # The released generator's import reads its dataset where the download put it: its test split gets a page.
    torch.save(reference(ngf=4, n_blocks=9).state_dict(), mirror / "horse2zebra.pth")
    main(["pretrained", "download", "horse2zebra", "--sha256", sha256_of(mirror / "horse2zebra.pth")])
    main(["test", "--ckpt", "pretrained:horse2zebra", "--split", "test", "--out", "pages", "--data", "{crop_size: 32}"])
    assert json.loads(Path("pages/metrics.json").read_text())["count"] == 2


def test_every_generator_names_a_dataset_of_the_catalogue_and_no_entry_clashes():
    assert len(PRETRAINED) == 18
    assert all(entry.dataset in DATASETS and entry.dataset_reader == "unaligned" for entry in PRETRAINED.values())
    # A name p2p's pix2pix catalogue has would be refused, and the entry lost: those carry a prefix instead.
    registry = p2p_core.default_registry()
    assert not [problem for problem in registry.problems if "p2p-plugin-cyclegan" in problem]
    assert {registry.origin(kind, name).split()[0] for kind, entries in [("pretrained", PRETRAINED), ("dataset_downloads", DATASETS)]
            for name in entries} == {"p2p-plugin-cyclegan"}

"""p2p data download / p2p pretrained download against an HTTP server on 127.0.0.1 that the tests start.

No test contacts a real URL: the mirror variables point at the local server for every test.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
import urllib.parse
import zipfile
from collections import Counter
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath

import attrs
import pytest
import yaml
from PIL import Image

from p2p_core import registry
from p2p_core.cli import main
from p2p_core.downloads import (
    COMPLETE,
    DatasetEntry,
    download_dataset,
    download_pretrained,
)
from p2p_core.errors import DataError, UnknownComponentError
from p2p_core.registry import default_registry

DATASETS, PRETRAINED = default_registry().dataset_downloads, default_registry().pretrained

REPO = Path(__file__).resolve().parents[1]


@attrs.define
class Server:
    """What the test server serves (path -> body), the paths whose body it cuts short, and the requests it got."""

    base: str = ""
    bodies: dict[str, bytes] = attrs.Factory(dict)
    cut_short: set[str] = attrs.Factory(set)
    requests: Counter[str] = attrs.Factory(Counter)


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    served = Server()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            served.requests[self.path] += 1
            body = served.bodies.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.path in served.cut_short:
                self.wfile.write(body[: len(body) // 2])
                self.close_connection = True
            else:
                self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    served.base = f"http://127.0.0.1:{httpd.server_port}"
    monkeypatch.setenv("P2P_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("P2P_DATASETS_URL", f"{served.base}/env")
    monkeypatch.setenv("P2P_PRETRAINED_URL", f"{served.base}/env")
    yield served
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def jpeg(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 8), (seed * 40 % 256, 80, 160)).save(buffer, format="JPEG")
    return buffer.getvalue()


def tar_gz(members: Mapping[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def dataset_archive(name: str) -> bytes:
    return tar_gz({f"{name}/{split}/{i}.jpg": jpeg(i) for split in ("train", "val", "test") for i in (1, 2)})


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


# -- datasets ---------------------------------------------------------------------------------------------------


def test_download_unpacks_the_layout_the_recipe_reads(server, tmp_path, monkeypatch):
    server.bodies["/env/facades.tar.gz"] = dataset_archive("facades")
    monkeypatch.chdir(tmp_path)

    root = download_dataset(name="facades")

    assert root == Path("datasets/facades")
    assert files_under(root) == {f"{s}/{i}.jpg" for s in ("train", "val", "test") for i in (1, 2)} | {COMPLETE}
    assert not [p for p in Path("datasets").iterdir() if p.name != "facades"], "a scratch folder was left behind"
    recipe = yaml.safe_load((REPO / "recipes" / "facades.yaml").read_text())
    options = {key: value for key, value in recipe["data"].items() if key != "name"}
    assert recipe["data"]["name"] == "aligned"
    dataset = registry.create("dataset", "aligned", split="train", **options)
    assert len(dataset) == 2
    assert dataset[0].a.shape[-2:] == (options["crop_size"],) * 2


def test_a_finished_dataset_and_a_cached_archive_are_not_fetched_again(server, tmp_path):
    server.bodies["/env/maps.tar.gz"] = dataset_archive("maps")
    download_dataset(name="maps", to=tmp_path / "a")
    download_dataset(name="maps", to=tmp_path / "a")
    assert server.requests["/env/maps.tar.gz"] == 1

    # Another destination unpacks the cached archive again, without a request.
    download_dataset(name="maps", to=tmp_path / "b")
    assert server.requests["/env/maps.tar.gz"] == 1
    assert files_under(tmp_path / "a") == files_under(tmp_path / "b")


def test_an_interrupted_download_leaves_no_file_and_a_retry_succeeds(server, tmp_path):
    server.bodies["/env/facades.tar.gz"] = dataset_archive("facades")
    server.cut_short.add("/env/facades.tar.gz")

    with pytest.raises(DataError) as caught:
        download_dataset(name="facades", to=tmp_path / "datasets")
    assert f"{server.base}/env/facades.tar.gz" in str(caught.value)
    assert not (tmp_path / "datasets" / "facades").exists()
    assert files_under(tmp_path / "cache") == set()

    server.cut_short.clear()
    root = download_dataset(name="facades", to=tmp_path / "datasets")
    assert (root / "train" / "1.jpg").is_file()
    assert server.requests["/env/facades.tar.gz"] == 2


def test_a_truncated_archive_is_named_removed_and_fetched_afresh(server, tmp_path):
    whole = dataset_archive("facades")
    server.bodies["/env/facades.tar.gz"] = whole[: len(whole) // 2]  # served in full, but itself cut short

    with pytest.raises(DataError, match="facades.tar.gz") as caught:
        download_dataset(name="facades", to=tmp_path / "datasets")
    assert str(tmp_path / "cache") in str(caught.value)
    assert not (tmp_path / "datasets" / "facades").exists()
    assert not (tmp_path / "cache" / "datasets" / "facades.tar.gz").exists()

    server.bodies["/env/facades.tar.gz"] = whole
    assert (download_dataset(name="facades", to=tmp_path / "datasets") / "val" / "2.jpg").is_file()
    assert server.requests["/env/facades.tar.gz"] == 2


@pytest.mark.parametrize("bad_member", ["../escaped.txt", "facades/../../escaped.txt", "/tmp/escaped-absolute.txt"])
def test_an_archive_reaching_outside_the_target_is_refused(server, tmp_path, bad_member):
    members = {"facades/train/1.jpg": jpeg(1), bad_member: b"outside"}
    server.bodies["/env/facades.tar.gz"] = tar_gz(members)
    workspace = tmp_path / "work"
    (workspace / "datasets").mkdir(parents=True)
    before = files_under(tmp_path)

    with pytest.raises(DataError, match="facades.tar.gz") as caught:
        download_dataset(name="facades", to=workspace / "datasets")

    assert bad_member in str(caught.value)
    assert files_under(tmp_path) == before
    assert list((workspace / "datasets").iterdir()) == []
    assert not Path("/tmp/escaped-absolute.txt").exists()


def test_an_archive_without_the_dataset_folder_is_refused(server, tmp_path):
    server.bodies["/env/facades.tar.gz"] = dataset_archive("maps")
    with pytest.raises(DataError, match="facades/train"):
        download_dataset(name="facades", to=tmp_path / "datasets")
    assert list((tmp_path / "datasets").iterdir()) == []


def test_a_missing_file_names_the_url_and_the_way_out(server, tmp_path):
    with pytest.raises(DataError) as caught:
        download_dataset(name="night2day", to=tmp_path / "datasets")
    message = str(caught.value)
    assert f"{server.base}/env/night2day.tar.gz" in message
    assert "404" in message and "--url" in message and "P2P_DATASETS_URL" in message
    assert not (tmp_path / "datasets" / "night2day").exists()
    assert files_under(tmp_path / "cache") == set()


def test_the_url_argument_wins_over_the_environment(server, tmp_path):
    server.bodies["/mirror/edges2shoes.tar.gz"] = dataset_archive("edges2shoes")
    root = download_dataset(name="edges2shoes", to=tmp_path / "datasets", url=f"{server.base}/mirror/")
    assert (root / "test" / "1.jpg").is_file()
    assert server.requests == Counter({"/mirror/edges2shoes.tar.gz": 1})


def test_a_local_folder_or_file_url_is_a_mirror(server, tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "facades.tar.gz").write_bytes(dataset_archive("facades"))
    (mirror / "maps.tar.gz").write_bytes(dataset_archive("maps"))

    monkeypatch.setenv("P2P_DATASETS_URL", str(mirror))
    assert (download_dataset(name="facades", to=tmp_path / "datasets") / "train" / "1.jpg").is_file()
    assert (download_dataset(name="maps", to=tmp_path / "datasets", url=mirror.as_uri()) / "val" / "1.jpg").is_file()
    assert not server.requests


def test_a_folder_that_is_not_a_finished_download_is_left_alone(server, tmp_path):
    server.bodies["/env/facades.tar.gz"] = dataset_archive("facades")
    mine = tmp_path / "datasets" / "facades" / "train" / "mine.jpg"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"my own")
    with pytest.raises(DataError, match="facades"):
        download_dataset(name="facades", to=tmp_path / "datasets")
    assert files_under(tmp_path / "datasets") == {"facades/train/mine.jpg"}
    assert not server.requests


def test_cityscapes_says_how_to_get_and_prepare_it(server, tmp_path):
    with pytest.raises(DataError) as caught:
        download_dataset(name="cityscapes", to=tmp_path / "datasets")
    message = str(caught.value)
    assert "cityscapes-dataset.com" in message
    assert "gtFine" in message and "leftImg8bit" in message
    assert "p2p data combine" in message and "datasets/cityscapes" in message
    assert not server.requests


def test_an_unknown_dataset_suggests_the_close_name(server, tmp_path):
    with pytest.raises(UnknownComponentError, match="facades"):
        download_dataset(name="facade", to=tmp_path)


def test_a_plugin_catalogue_is_used(server, tmp_path):
    server.bodies["/env/tiny.tar.gz"] = dataset_archive("tiny")
    entries = {"tiny": DatasetEntry(name="tiny", url="http://example.invalid/tiny.tar.gz", description="tiny")}
    assert (download_dataset(name="tiny", to=tmp_path, entries=entries) / "train" / "1.jpg").is_file()
    assert server.requests == Counter({"/env/tiny.tar.gz": 1})


def zip_bytes(members: Mapping[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        for name, data in members.items():
            bundle.writestr(name, data)
    return buffer.getvalue()


UNPAIRED = {"shoes_unpaired": DatasetEntry(name="shoes_unpaired", url="http://example.invalid/shoes.zip", description="shoes",
                                           holds=("trainA", "trainB"))}


def test_a_zip_unpacks_its_folder_to_the_entrys_name_and_must_hold_what_the_entry_says(server, tmp_path):
    """The reference's unpaired datasets are zips of NAME/{trainA,trainB,testA,testB}; a plugin may rename one whose
    name p2p's catalogue already uses, and the archive's folder still unpacks to where its entry says."""
    members = {f"shoes/{split}/{i}.jpg": jpeg(i) for split in ("trainA", "trainB", "testA") for i in (1, 2)}
    server.bodies["/env/shoes.zip"] = zip_bytes(members)
    root = download_dataset(name="shoes_unpaired", to=tmp_path / "datasets", entries=UNPAIRED)
    assert root == tmp_path / "datasets" / "shoes_unpaired"
    assert files_under(root) == {name.removeprefix("shoes/") for name in members} | {COMPLETE}

    server.bodies["/env/shoes.zip"] = zip_bytes({"shoes/trainA/1.jpg": jpeg(1)})
    (tmp_path / "cache" / "datasets" / "shoes.zip").unlink()
    with pytest.raises(DataError, match="shoes/trainB/"):
        download_dataset(name="shoes_unpaired", to=tmp_path / "elsewhere", entries=UNPAIRED)
    assert list((tmp_path / "elsewhere").iterdir()) == []


@pytest.mark.parametrize("bad_member", ["../escaped.txt", "shoes/../../escaped.txt", "/tmp/escaped-absolute.txt", "C:/escaped.txt"])
def test_a_zip_reaching_outside_the_target_is_refused(server, tmp_path, bad_member):
    server.bodies["/env/shoes.zip"] = zip_bytes({"shoes/trainA/1.jpg": jpeg(1), "shoes/trainB/1.jpg": jpeg(2), bad_member: b"out"})
    (tmp_path / "work" / "datasets").mkdir(parents=True)
    before = files_under(tmp_path)
    with pytest.raises(DataError, match="shoes.zip") as caught:
        download_dataset(name="shoes_unpaired", to=tmp_path / "work" / "datasets", entries=UNPAIRED)
    assert bad_member in str(caught.value)
    assert files_under(tmp_path) == before  # nothing unpacked, and the archive left the cache
    assert not Path("/tmp/escaped-absolute.txt").exists()


def test_a_truncated_zip_is_named_and_removed(server, tmp_path):
    whole = zip_bytes({"shoes/trainA/1.jpg": jpeg(1), "shoes/trainB/1.jpg": jpeg(2)})
    server.bodies["/env/shoes.zip"] = whole[: len(whole) // 2]
    with pytest.raises(DataError, match="shoes.zip is truncated or damaged"):
        download_dataset(name="shoes_unpaired", to=tmp_path / "datasets", entries=UNPAIRED)
    assert not (tmp_path / "cache" / "datasets" / "shoes.zip").exists()


@pytest.mark.parametrize("entry", [e for e in DATASETS.values() if e.recipes], ids=lambda e: e.name)
def test_every_recipe_of_a_dataset_reads_where_it_is_unpacked(entry):
    for recipe in entry.recipes:
        config = yaml.safe_load(registry.default_registry().recipes[recipe].read_text())
        assert config["data"]["root"] == f"datasets/{entry.name}"


# -- pretrained generators --------------------------------------------------------------------------------------


def test_pretrained_download_records_the_sha256_and_hits_the_cache(server, tmp_path):
    weights = bytes(range(256)) * 1000
    server.bodies["/env/sat2map.pth"] = weights

    first = download_pretrained(name="sat2map")
    assert first.path == tmp_path / "cache" / "pretrained" / "sat2map.pth"
    assert first.path.read_bytes() == weights
    assert first.sha256 == hashlib.sha256(weights).hexdigest()
    assert first.url == f"{server.base}/env/sat2map.pth"

    again = download_pretrained(name="sat2map")
    assert again == first
    assert server.requests["/env/sat2map.pth"] == 1


def test_an_interrupted_pretrained_download_leaves_nothing_in_the_cache(server, tmp_path):
    server.bodies["/env/edges2shoes.pth"] = b"w" * 100_000
    server.cut_short.add("/env/edges2shoes.pth")
    with pytest.raises(DataError, match="edges2shoes.pth"):
        download_pretrained(name="edges2shoes")
    assert files_under(tmp_path / "cache") == set()

    server.cut_short.clear()
    assert download_pretrained(name="edges2shoes").path.read_bytes() == b"w" * 100_000


def test_pretrained_url_argument_and_errors(server, tmp_path):
    server.bodies["/mirror/day2night.pth"] = b"weights"
    assert download_pretrained(name="day2night", url=f"{server.base}/mirror").path.read_bytes() == b"weights"

    with pytest.raises(DataError) as caught:
        download_pretrained(name="map2sat")
    assert f"{server.base}/env/map2sat.pth" in str(caught.value) and "P2P_PRETRAINED_URL" in str(caught.value)
    assert not (tmp_path / "cache" / "pretrained" / "map2sat.pth").exists()


def test_the_pretrained_catalogue_is_consistent_and_listed(capsys):
    main(["pretrained", "list"])
    text = capsys.readouterr().out
    for entry in PRETRAINED.values():
        assert entry.dataset in DATASETS
        # A plugin prefixes a name p2p's catalogue already has (cyclegan_sat2map), keeping its server's file name.
        file = PurePosixPath(urllib.parse.urlsplit(entry.url).path)
        assert file.suffix == ".pth" and entry.name.endswith(file.stem)
        assert entry.name in text and entry.translation in text
    assert "--mode paper" in text

"""p2p data download / p2p pretrained download against an HTTP server on 127.0.0.1 that the tests start.

No test contacts a real URL: the mirror variables point at the local server for every test.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
import time
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
    Limits,
    PretrainedEntry,
    download_dataset,
    download_pretrained,
)
from p2p_core.errors import DataError, UnknownComponentError
from p2p_core.registry import default_registry

DATASETS, PRETRAINED = default_registry().dataset_downloads, default_registry().pretrained

REPO = Path(__file__).resolve().parents[1]


@attrs.define
class Server:
    """What the test server serves (path -> body), the paths whose body it cuts short, and the requests it got.

    Hostile servers too: ``headers`` replaces a path's Content-Length (None: none sent, the body ends when the
    connection closes), ``redirects`` answers a path with a 302 to another URL, and ``drip`` sends a path's body a
    byte at a time with that many seconds between bytes."""

    base: str = ""
    bodies: dict[str, bytes] = attrs.Factory(dict)
    cut_short: set[str] = attrs.Factory(set)
    requests: Counter[str] = attrs.Factory(Counter)
    lengths: dict[str, str | None] = attrs.Factory(dict)
    redirects: dict[str, str] = attrs.Factory(dict)
    drip: dict[str, float] = attrs.Factory(dict)


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    served = Server()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            served.requests[self.path] += 1
            if self.path in served.redirects:
                self.send_response(302)
                self.send_header("Location", served.redirects[self.path])
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = served.bodies.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            length = served.lengths.get(self.path, str(len(body)))
            if length is not None:
                self.send_header("Content-Length", length)
            self.end_headers()
            self.close_connection = length is None or self.path in served.cut_short
            if self.path in served.cut_short:
                self.wfile.write(body[: len(body) // 2])
            elif self.path in served.drip:
                for byte in body:  # until the client hangs up: the write then fails
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(served.drip[self.path])
            else:
                self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

        def handle(self) -> None:
            try:
                super().handle()
            except (BrokenPipeError, ConnectionResetError):  # the client gave up on a hostile answer, as it should
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
    """The files below ``folder``, but for the downloads' locks (which stay, as lock files do)."""
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.parent.name != "locks"}


def cached(tmp_path: Path) -> set[str]:
    """The files in the cache, but for the downloads' locks (which stay, as lock files do)."""
    return {name for name in files_under(tmp_path / "cache") if not name.startswith("locks/")}


# -- datasets ---------------------------------------------------------------------------------------------------


def test_download_unpacks_the_layout_the_recipe_reads(server, tmp_path, monkeypatch):
    server.bodies["/env/facades.tar.gz"] = dataset_archive("facades")
    monkeypatch.chdir(tmp_path)

    root = download_dataset(name="facades", trust_unpinned=True)

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
    download_dataset(name="maps", trust_unpinned=True, to=tmp_path / "a")
    download_dataset(name="maps", trust_unpinned=True, to=tmp_path / "a")
    assert server.requests["/env/maps.tar.gz"] == 1

    # Another destination unpacks the cached archive again, without a request.
    download_dataset(name="maps", trust_unpinned=True, to=tmp_path / "b")
    assert server.requests["/env/maps.tar.gz"] == 1
    assert files_under(tmp_path / "a") == files_under(tmp_path / "b")


def test_an_interrupted_download_leaves_no_file_and_a_retry_succeeds(server, tmp_path):
    server.bodies["/env/facades.tar.gz"] = dataset_archive("facades")
    server.cut_short.add("/env/facades.tar.gz")

    with pytest.raises(DataError) as caught:
        download_dataset(name="facades", trust_unpinned=True, to=tmp_path / "datasets")
    assert f"{server.base}/env/facades.tar.gz" in str(caught.value)
    assert not (tmp_path / "datasets" / "facades").exists()
    assert cached(tmp_path) == set()

    server.cut_short.clear()
    root = download_dataset(name="facades", trust_unpinned=True, to=tmp_path / "datasets")
    assert (root / "train" / "1.jpg").is_file()
    assert server.requests["/env/facades.tar.gz"] == 2


def test_a_truncated_archive_is_named_removed_and_fetched_afresh(server, tmp_path):
    whole = dataset_archive("facades")
    server.bodies["/env/facades.tar.gz"] = whole[: len(whole) // 2]  # served in full, but itself cut short

    with pytest.raises(DataError, match="facades.tar.gz") as caught:
        download_dataset(name="facades", trust_unpinned=True, to=tmp_path / "datasets")
    assert str(tmp_path / "cache") in str(caught.value)
    assert not (tmp_path / "datasets" / "facades").exists()
    assert not list((tmp_path / "cache" / "datasets").rglob("facades.tar.gz"))

    server.bodies["/env/facades.tar.gz"] = whole
    assert (download_dataset(name="facades", trust_unpinned=True, to=tmp_path / "datasets") / "val" / "2.jpg").is_file()
    assert server.requests["/env/facades.tar.gz"] == 2


@pytest.mark.parametrize("bad_member", ["../escaped.txt", "facades/../../escaped.txt", "/tmp/escaped-absolute.txt"])
def test_an_archive_reaching_outside_the_target_is_refused(server, tmp_path, bad_member):
    members = {"facades/train/1.jpg": jpeg(1), bad_member: b"outside"}
    server.bodies["/env/facades.tar.gz"] = tar_gz(members)
    workspace = tmp_path / "work"
    (workspace / "datasets").mkdir(parents=True)
    before = files_under(tmp_path)

    with pytest.raises(DataError, match="facades.tar.gz") as caught:
        download_dataset(name="facades", trust_unpinned=True, to=workspace / "datasets")

    assert bad_member in str(caught.value)
    assert files_under(tmp_path) - {f"cache/{name}" for name in files_under(tmp_path / "cache")} == before
    assert cached(tmp_path) == set()
    assert list((workspace / "datasets").iterdir()) == []
    assert not Path("/tmp/escaped-absolute.txt").exists()


def test_an_archive_without_the_dataset_folder_is_refused(server, tmp_path):
    server.bodies["/env/facades.tar.gz"] = dataset_archive("maps")
    with pytest.raises(DataError, match="facades/train"):
        download_dataset(name="facades", trust_unpinned=True, to=tmp_path / "datasets")
    assert list((tmp_path / "datasets").iterdir()) == []


def test_a_missing_file_names_the_url_and_the_way_out(server, tmp_path):
    with pytest.raises(DataError) as caught:
        download_dataset(name="night2day", trust_unpinned=True, to=tmp_path / "datasets")
    message = str(caught.value)
    assert f"{server.base}/env/night2day.tar.gz" in message
    assert "404" in message and "--url" in message and "P2P_DATASETS_URL" in message
    assert not (tmp_path / "datasets" / "night2day").exists()
    assert cached(tmp_path) == set()


def test_the_url_argument_wins_over_the_environment(server, tmp_path):
    server.bodies["/mirror/edges2shoes.tar.gz"] = dataset_archive("edges2shoes")
    root = download_dataset(name="edges2shoes", trust_unpinned=True, to=tmp_path / "datasets", url=f"{server.base}/mirror/")
    assert (root / "test" / "1.jpg").is_file()
    assert server.requests == Counter({"/mirror/edges2shoes.tar.gz": 1})


def test_a_local_folder_or_file_url_is_a_mirror(server, tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "facades.tar.gz").write_bytes(dataset_archive("facades"))
    (mirror / "maps.tar.gz").write_bytes(dataset_archive("maps"))

    monkeypatch.setenv("P2P_DATASETS_URL", str(mirror))
    assert (download_dataset(name="facades", trust_unpinned=True, to=tmp_path / "datasets") / "train" / "1.jpg").is_file()
    assert (download_dataset(name="maps", trust_unpinned=True, to=tmp_path / "datasets", url=mirror.as_uri()) / "val" / "1.jpg").is_file()
    assert not server.requests


def test_a_folder_that_is_not_a_finished_download_is_left_alone(server, tmp_path):
    server.bodies["/env/facades.tar.gz"] = dataset_archive("facades")
    mine = tmp_path / "datasets" / "facades" / "train" / "mine.jpg"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"my own")
    with pytest.raises(DataError, match="facades"):
        download_dataset(name="facades", trust_unpinned=True, to=tmp_path / "datasets")
    assert files_under(tmp_path / "datasets") == {"facades/train/mine.jpg"}
    assert not server.requests


def test_cityscapes_says_how_to_get_and_prepare_it(server, tmp_path):
    with pytest.raises(DataError) as caught:
        download_dataset(name="cityscapes", trust_unpinned=True, to=tmp_path / "datasets")
    message = str(caught.value)
    assert "cityscapes-dataset.com" in message
    assert "gtFine" in message and "leftImg8bit" in message
    assert "p2p data combine" in message and "datasets/cityscapes" in message
    assert not server.requests


def test_an_unknown_dataset_suggests_the_close_name(server, tmp_path):
    with pytest.raises(UnknownComponentError, match="facades"):
        download_dataset(name="facade", trust_unpinned=True, to=tmp_path)


def test_a_plugin_catalogue_is_used(server, tmp_path):
    server.bodies["/env/tiny.tar.gz"] = dataset_archive("tiny")
    entries = {"tiny": DatasetEntry(name="tiny", url="http://example.invalid/tiny.tar.gz", description="tiny")}
    assert (download_dataset(name="tiny", trust_unpinned=True, to=tmp_path, entries=entries) / "train" / "1.jpg").is_file()
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
    root = download_dataset(name="shoes_unpaired", to=tmp_path / "datasets", entries=UNPAIRED, trust_unpinned=True)
    assert root == tmp_path / "datasets" / "shoes_unpaired"
    assert files_under(root) == {name.removeprefix("shoes/") for name in members} | {COMPLETE}

    server.bodies["/env/shoes.zip"] = zip_bytes({"shoes/trainA/1.jpg": jpeg(1)})
    for cached in (tmp_path / "cache" / "datasets").rglob("shoes.zip*"):  # the archive and the hash it was trusted with
        cached.unlink()
    with pytest.raises(DataError, match="shoes/trainB/"):
        download_dataset(name="shoes_unpaired", to=tmp_path / "elsewhere", entries=UNPAIRED, trust_unpinned=True)
    assert list((tmp_path / "elsewhere").iterdir()) == []


@pytest.mark.parametrize("bad_member", ["../escaped.txt", "shoes/../../escaped.txt", "/tmp/escaped-absolute.txt", "C:/escaped.txt"])
def test_a_zip_reaching_outside_the_target_is_refused(server, tmp_path, bad_member):
    server.bodies["/env/shoes.zip"] = zip_bytes({"shoes/trainA/1.jpg": jpeg(1), "shoes/trainB/1.jpg": jpeg(2), bad_member: b"out"})
    (tmp_path / "work" / "datasets").mkdir(parents=True)
    before = files_under(tmp_path)
    with pytest.raises(DataError, match="shoes.zip") as caught:
        download_dataset(name="shoes_unpaired", to=tmp_path / "work" / "datasets", entries=UNPAIRED, trust_unpinned=True)
    assert bad_member in str(caught.value)
    assert files_under(tmp_path) == before  # nothing unpacked, and the archive left the cache
    assert not Path("/tmp/escaped-absolute.txt").exists()


def test_a_truncated_zip_is_named_and_removed(server, tmp_path):
    whole = zip_bytes({"shoes/trainA/1.jpg": jpeg(1), "shoes/trainB/1.jpg": jpeg(2)})
    server.bodies["/env/shoes.zip"] = whole[: len(whole) // 2]
    with pytest.raises(DataError, match="shoes.zip is truncated or damaged"):
        download_dataset(name="shoes_unpaired", to=tmp_path / "datasets", entries=UNPAIRED, trust_unpinned=True)
    assert not list((tmp_path / "cache" / "datasets").rglob("shoes.zip"))


@pytest.mark.parametrize("entry", [e for e in DATASETS.values() if e.recipes], ids=lambda e: e.name)
def test_every_recipe_of_a_dataset_reads_where_it_is_unpacked(entry):
    for recipe in entry.recipes:
        config = yaml.safe_load(registry.default_registry().recipes[recipe].read_text())
        assert config["data"]["root"] == f"datasets/{entry.name}"


# -- pretrained generators --------------------------------------------------------------------------------------


def test_pretrained_download_records_the_sha256_and_hits_the_cache(server, tmp_path):
    weights = bytes(range(256)) * 1000
    server.bodies["/env/sat2map.pth"] = weights

    first = download_pretrained(name="sat2map", trust_unpinned=True)
    assert first.path.parent.parent == tmp_path / "cache" / "pretrained" and first.path.name == "sat2map.pth"
    assert first.path.read_bytes() == weights
    assert first.sha256 == hashlib.sha256(weights).hexdigest()
    assert first.url == f"{server.base}/env/sat2map.pth"

    again = download_pretrained(name="sat2map", trust_unpinned=True)
    assert again == first
    assert server.requests["/env/sat2map.pth"] == 1


def test_an_interrupted_pretrained_download_leaves_nothing_in_the_cache(server, tmp_path):
    server.bodies["/env/edges2shoes.pth"] = b"w" * 100_000
    server.cut_short.add("/env/edges2shoes.pth")
    with pytest.raises(DataError, match="edges2shoes.pth"):
        download_pretrained(name="edges2shoes", trust_unpinned=True)
    assert cached(tmp_path) == set()

    server.cut_short.clear()
    assert download_pretrained(name="edges2shoes", trust_unpinned=True).path.read_bytes() == b"w" * 100_000


def test_pretrained_url_argument_and_errors(server, tmp_path):
    server.bodies["/mirror/day2night.pth"] = b"weights"
    assert download_pretrained(name="day2night", trust_unpinned=True, url=f"{server.base}/mirror").path.read_bytes() == b"weights"

    with pytest.raises(DataError) as caught:
        download_pretrained(name="map2sat", trust_unpinned=True)
    assert f"{server.base}/env/map2sat.pth" in str(caught.value) and "P2P_PRETRAINED_URL" in str(caught.value)
    assert not list((tmp_path / "cache").rglob("map2sat.pth"))


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


# -- verification: pip's --require-hashes -------------------------------------------------------------------------


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_an_entry_without_a_pinned_hash_is_refused_unless_the_user_gives_one(server, tmp_path):
    server.bodies["/env/facades.tar.gz"] = archive = dataset_archive("facades")
    with pytest.raises(DataError, match="--sha256.*--trust_unpinned"):
        download_dataset(name="facades", to=tmp_path / "datasets")
    assert not server.requests and not (tmp_path / "datasets").exists()
    assert (download_dataset(name="facades", to=tmp_path / "datasets", sha256=sha256_of(archive)) / "train" / "1.jpg").is_file()


def test_a_file_that_does_not_match_its_hash_is_refused_and_not_kept(server, tmp_path):
    server.bodies["/env/facades.tar.gz"] = dataset_archive("facades")
    pinned = {"facades": attrs.evolve(DATASETS["facades"], sha256=sha256_of(dataset_archive("maps")))}
    for kwargs in ({"entries": pinned}, {"sha256": "0" * 64}):
        with pytest.raises(DataError, match="SHA-256"):
            download_dataset(name="facades", to=tmp_path / "datasets", **kwargs)
    assert cached(tmp_path) == set() and not (tmp_path / "datasets" / "facades").exists()


def test_a_pinned_entry_downloads_and_its_size_is_checked_before_the_body(server, tmp_path):
    server.bodies["/env/facades.tar.gz"] = archive = dataset_archive("facades")
    entry = attrs.evolve(DATASETS["facades"], sha256=sha256_of(archive), size=len(archive))
    assert (download_dataset(name="facades", to=tmp_path / "a", entries={"facades": entry}) / "val" / "1.jpg").is_file()
    server.bodies["/other/facades.tar.gz"] = archive
    with pytest.raises(DataError, match="catalogue says"):
        download_dataset(name="facades", to=tmp_path / "b", entries={"facades": attrs.evolve(entry, size=len(archive) - 1)},
                         url=f"{server.base}/other")
    assert server.requests["/other/facades.tar.gz"] == 1 and not (tmp_path / "b" / "facades").exists()


def test_trust_on_first_use_prints_and_records_the_hash_and_a_swapped_cached_file_is_caught(server, tmp_path, capsys):
    server.bodies["/env/sat2map.pth"] = weights = b"w" * 1000
    first = download_pretrained(name="sat2map", trust_unpinned=True)
    assert sha256_of(weights) in capsys.readouterr().err and first.verified == "first use"
    assert download_pretrained(name="sat2map") == first  # later uses need no opt-in: the hash is recorded
    first.path.write_bytes(b"x" * 1000)  # swapped in the cache
    with pytest.raises(DataError, match="changed after it was downloaded"):
        download_pretrained(name="sat2map")
    assert not first.path.exists()
    assert download_pretrained(name="sat2map", trust_unpinned=True).path.read_bytes() == weights
    assert server.requests["/env/sat2map.pth"] == 2


def test_the_dataset_cache_is_keyed_by_url(server, tmp_path):
    server.bodies["/one/facades.tar.gz"] = one = dataset_archive("facades")
    server.bodies["/two/facades.tar.gz"] = two = tar_gz({"facades/train/9.jpg": jpeg(9)})
    download_dataset(name="facades", to=tmp_path / "a", url=f"{server.base}/one", sha256=sha256_of(one))
    download_dataset(name="facades", to=tmp_path / "b", url=f"{server.base}/two", sha256=sha256_of(two))
    assert files_under(tmp_path / "b" / "facades") == {"train/9.jpg", COMPLETE}
    assert server.requests == Counter({"/one/facades.tar.gz": 1, "/two/facades.tar.gz": 1})


# -- bounds ------------------------------------------------------------------------------------------------------


def test_an_archive_bomb_is_refused_and_kept_for_a_larger_limit(server, tmp_path):
    server.bodies["/env/facades.tar.gz"] = bomb = tar_gz({"facades/train/1.jpg": bytes(2_000_000)})
    assert len(bomb) < 10_000
    with pytest.raises(DataError, match="--max_ratio"):
        download_dataset(name="facades", to=tmp_path / "datasets", trust_unpinned=True)
    assert list((tmp_path / "datasets").iterdir()) == []
    download_dataset(name="facades", to=tmp_path / "datasets", limits=Limits(max_ratio=1000))
    assert server.requests["/env/facades.tar.gz"] == 1


@pytest.mark.parametrize(
    ("limits", "option"), [(Limits(max_files=5), "--max_files"), (Limits(max_bytes=3000), "--max_gb")]
)
def test_an_archive_over_the_member_or_size_limit_is_refused(server, tmp_path, limits, option):
    server.bodies["/env/facades.tar.gz"] = tar_gz({f"facades/train/{i}.jpg": jpeg(i) for i in range(10)})
    with pytest.raises(DataError, match=option):
        download_dataset(name="facades", to=tmp_path / "datasets", trust_unpinned=True, limits=limits)
    assert list((tmp_path / "datasets").iterdir()) == []


def test_declared_member_sizes_beyond_the_free_space_are_refused_before_unpacking(server, tmp_path):
    info = tarfile.TarInfo("facades/train/1.jpg")
    info.size = 2**60  # a header declaring an exabyte, whatever follows it
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.addfile(info)
    server.bodies["/env/facades.tar.gz"] = buffer.getvalue()
    unbounded = Limits(max_bytes=2**62, max_ratio=2**62)
    with pytest.raises(DataError, match="free"):
        download_dataset(name="facades", to=tmp_path / "datasets", trust_unpinned=True, limits=unbounded)
    assert list((tmp_path / "datasets").iterdir()) == []


@pytest.mark.parametrize(("length", "problem"), [(str(10**15), "--max_gb"), ("abc", "Content-Length"), (None, "--max_gb")])
def test_an_announced_length_over_the_limit_or_not_a_number_and_an_endless_body_are_refused(server, tmp_path, length, problem):
    server.bodies["/env/sat2map.pth"] = b"w" * 200_000
    server.lengths["/env/sat2map.pth"] = length
    with pytest.raises(DataError, match=problem):
        download_pretrained(name="sat2map", trust_unpinned=True, limits=Limits(max_bytes=100_000))
    assert cached(tmp_path) == set()


def test_an_announced_length_beyond_the_free_space_is_refused(server, tmp_path):
    server.bodies["/env/sat2map.pth"] = b"w"
    server.lengths["/env/sat2map.pth"] = str(10**18)
    with pytest.raises(DataError, match="free"):
        download_pretrained(name="sat2map", trust_unpinned=True, limits=Limits(max_bytes=2**62))


def test_a_drip_feed_ends_at_the_deadline(server, tmp_path):
    server.bodies["/env/sat2map.pth"] = b"w" * 10_000
    server.drip["/env/sat2map.pth"] = 0.05
    with pytest.raises(DataError, match="--deadline_min"):
        download_pretrained(name="sat2map", trust_unpinned=True, limits=Limits(deadline_s=0.5))
    assert cached(tmp_path) == set()


def test_a_redirect_to_another_scheme_is_refused(server, tmp_path):
    server.redirects["/env/sat2map.pth"] = "ftp://127.0.0.1/sat2map.pth"
    with pytest.raises(DataError, match="redirects to 'ftp://"):
        download_pretrained(name="sat2map", trust_unpinned=True)
    server.redirects["/env/map2sat.pth"] = f"{server.base}/moved/map2sat.pth"
    server.bodies["/moved/map2sat.pth"] = b"weights"
    assert download_pretrained(name="map2sat", trust_unpinned=True).path.read_bytes() == b"weights"


def test_scratch_left_by_killed_runs_is_swept_by_the_next(server, tmp_path):
    server.bodies["/env/facades.tar.gz"] = archive = dataset_archive("facades")
    with pytest.raises(DataError):
        download_dataset(name="facades", to=tmp_path / "datasets", sha256="0" * 64)
    (slot,) = (tmp_path / "cache" / "datasets").iterdir()
    part = slot / ".facades.tar.gz.k1ll3d_x.part"
    part.write_bytes(b"half")
    unpacking = tmp_path / "datasets" / ".facades.k1ll3d_x"
    (unpacking / "facades" / "train").mkdir(parents=True)
    download_dataset(name="facades", to=tmp_path / "datasets", sha256=sha256_of(archive))
    assert not part.exists() and not unpacking.exists()
    assert sorted(p.name for p in (tmp_path / "datasets").iterdir()) == ["facades"]


# -- one error line, not a traceback -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["facades/train/" + "x" * 300 + ".jpg", "facades/train/" + "d/" * 2000 + "1.jpg"])
def test_member_names_too_long_for_the_file_system_are_an_error(server, tmp_path, name):
    server.bodies["/env/facades.tar.gz"] = tar_gz({"facades/train/1.jpg": jpeg(1), name: jpeg(2)})
    with pytest.raises(DataError, match="facades.tar.gz"):
        download_dataset(name="facades", to=tmp_path / "datasets", trust_unpinned=True)
    assert list((tmp_path / "datasets").iterdir()) == []


def test_two_downloads_of_the_same_dataset_at_once_both_succeed_and_fetch_once(server, tmp_path):
    server.bodies["/env/facades.tar.gz"] = archive = dataset_archive("facades")
    server.drip["/env/facades.tar.gz"] = 0.0005  # slow enough that the second starts while the first is under way
    results, errors = [], []

    def download() -> None:
        try:
            results.append(download_dataset(name="facades", to=tmp_path / "datasets", sha256=sha256_of(archive)))
        except Exception as error:  # noqa: BLE001 - the test reports what a thread raised
            errors.append(error)

    threads = [threading.Thread(target=download) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors and results == [tmp_path / "datasets" / "facades"] * 2
    assert server.requests["/env/facades.tar.gz"] == 1


def test_a_user_mirror_with_a_sha256_may_serve_another_network_but_not_without_one(server, tmp_path, capsys):
    from conftest import run
    from test_interop import _reference_file

    weights = _reference_file(tmp_path / "small.pth", depth=5, image_size=32).read_bytes()  # 32 px, not the 256 px entry
    server.bodies["/env/facades_label2photo.pth"] = weights
    code, _, err = run(["pretrained", "download", "facades_label2photo", "--trust_unpinned"], capsys)
    assert code != 0 and "another model" in err and "Traceback" not in err
    code, _, err = run(["pretrained", "download", "facades_label2photo", "--sha256", sha256_of(weights)], capsys)
    assert code == 0, err
    assert PRETRAINED["facades_label2photo"].sha256 is None  # the built-in entries are not pinned (no published hashes)

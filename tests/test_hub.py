"""--ckpt hf:OWNER/NAME and p2p push, against a Hub on 127.0.0.1 that the tests start.

The server speaks the part of the Hub's HTTP API that huggingface_hub uses to resolve and download a file: a
HEAD and a GET of ``/OWNER/NAME/resolve/REVISION/FILE`` (with X-Repo-Commit, ETag, Content-Length and ranges),
and ``/api/models/OWNER/NAME[/revision/REVISION]`` for a repository's file list; and the commit API an upload
without hf_xet goes through (create the repository and a branch, validate the card, preupload, commit files
inline). huggingface_hub reads HF_ENDPOINT, HF_HUB_OFFLINE and HF_HUB_DISABLE_XET when it is imported, so the
commands that reach it run in a child process.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import attrs
import numpy as np
import pytest
import yaml
from huggingface_hub import ModelCard
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from conftest import TINY_GENERATOR, fit_tiny, run, write_ab_folder
from p2p_core.cli import main
from p2p_core.evaluation import default_folder
from p2p_core.inference import load_generator
from p2p_core.registry import DISABLE_AUTOLOAD_ENV, default_registry

REPO = "me/tiny"
TOKEN = "hf_notARealTokenButSecret0123456789"


@attrs.define
class Repository:
    private: bool = False
    branches: dict[str, str] = attrs.Factory(dict)
    """Branch -> commit."""
    commits: dict[str, dict[str, bytes]] = attrs.Factory(dict)
    """Commit -> path -> content."""


@attrs.define
class Hub:
    """What the loopback Hub serves, the requests it got, and how many more GETs of a path it cuts short."""

    endpoint: str = ""
    repositories: dict[str, Repository] = attrs.Factory(dict)
    requests: list[tuple[str, str, str | None]] = attrs.Factory(list)
    """(method, path, Range header) of every request, in order."""
    authorizations: set[str] = attrs.Factory(set)
    """The Authorization headers the uploads came with."""
    messages: list[str] = attrs.Factory(list)
    """The commit messages received."""
    cut_short: dict[str, int] = attrs.Factory(dict)

    def publish(self, repo_id: str, files: dict[str, bytes], *, branch: str = "main") -> str:
        """Commit ``files`` as the new head of ``branch``; returns the commit (40 hex digits, as the Hub's)."""
        commit = hashlib.sha1(repr(sorted(files.items())).encode() + repo_id.encode() + branch.encode()).hexdigest()
        repository = self.repositories.setdefault(repo_id, Repository())
        repository.commits[commit] = dict(files)
        repository.branches[branch] = commit
        return commit

    def publish_folder(self, repo_id: str, folder: Path, **options: str) -> str:
        return self.publish(repo_id, {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}, **options)

    def gets(self, name: str) -> list[str | None]:
        """The Range headers of the GETs of files called ``name``."""
        return [ranged for method, path, ranged in self.requests if method == "GET" and path.endswith(f"/{name}")]


@pytest.fixture(scope="module")
def hub() -> Iterator[Hub]:
    served = Hub()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_HEAD(self) -> None:
            self.answer(body=False)

        def do_GET(self) -> None:
            self.answer(body=True)

        def do_POST(self) -> None:
            path = unquote(urlsplit(self.path).path)
            served.requests.append(("POST", path, None))
            served.authorizations.add(self.headers.get("Authorization", ""))
            data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            parts = path.strip("/").split("/")
            if path == "/api/repos/create":
                request = json.loads(data)
                repo_id = f"{request['organization']}/{request['name']}"
                if repo_id in served.repositories:
                    self.fail(409, "RepoExists")
                    return
                served.repositories[repo_id] = Repository(private=request.get("visibility") == "private")
                served.publish(repo_id, {".gitattributes": b""})
                self.send(json.dumps({"url": f"{served.endpoint}/{repo_id}"}).encode(), body=True, headers={})
            elif path == "/api/validate-yaml":
                self.send(b'{"errors": [], "warnings": []}', body=True, headers={})
            elif parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] in ("branch", "preupload", "commit"):
                self.change("/".join(parts[2:4]), parts[4], "/".join(parts[5:]), data)
            else:
                self.fail(404, "RepoNotFound")

        def change(self, repo_id: str, action: str, revision: str, data: bytes) -> None:
            repository = served.repositories.get(repo_id)
            if repository is None:
                self.fail(404, "RepoNotFound")
            elif action == "branch":
                if revision in repository.branches:
                    self.fail(409, "BranchExists")
                    return
                repository.branches[revision] = repository.branches["main"]
                self.send(b"{}", body=True, headers={})
            elif action == "preupload":
                files = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in json.loads(data)["files"]]
                self.send(json.dumps({"files": files}).encode(), body=True, headers={})
            else:
                lines = [json.loads(line) for line in data.splitlines() if line.strip()]
                served.messages.append(lines[0]["value"]["summary"])
                files = dict(repository.commits[repository.branches[revision]])
                files |= {line["value"]["path"]: base64.b64decode(line["value"]["content"]) for line in lines if line["key"] == "file"}
                commit = served.publish(repo_id, files, branch=revision)
                self.send(json.dumps({"commitUrl": f"{served.endpoint}/{repo_id}/commit/{commit}", "commitOid": commit}).encode(),
                          body=True, headers={})

        def answer(self, *, body: bool) -> None:
            path = unquote(urlsplit(self.path).path)
            served.requests.append((self.command, path, self.headers.get("Range")))
            parts = path.strip("/").split("/")
            if parts[:2] == ["api", "models"] and (len(parts) == 4 or parts[4:5] == ["revision"]):
                self.model_info("/".join(parts[2:4]), "/".join(parts[5:]) or "main", body=body)
            elif len(parts) >= 5 and parts[2] == "resolve":
                self.resolve("/".join(parts[:2]), parts[3], "/".join(parts[4:]), body=body)
            else:
                self.fail(404, "RepoNotFound")

        def commit_of(self, repo_id: str, revision: str) -> tuple[Repository, str] | None:
            repository = served.repositories.get(repo_id)
            if repository is None:
                self.fail(404, "RepoNotFound")
                return None
            commit = repository.branches.get(revision, revision)
            if commit not in repository.commits:
                self.fail(404, "RevisionNotFound")
                return None
            return repository, commit

        def model_info(self, repo_id: str, revision: str, *, body: bool) -> None:
            found = self.commit_of(repo_id, revision)
            if found is not None:
                repository, commit = found
                siblings = [{"rfilename": name} for name in sorted(repository.commits[commit])]
                self.send(json.dumps({"id": repo_id, "sha": commit, "siblings": siblings}).encode(), body=body,
                          headers={"Content-Type": "application/json"})

        def resolve(self, repo_id: str, revision: str, name: str, *, body: bool) -> None:
            found = self.commit_of(repo_id, revision)
            if found is None:
                return
            repository, commit = found
            content = repository.commits[commit].get(name)
            if content is None:
                self.fail(404, "EntryNotFound", commit=commit)
                return
            headers = {"X-Repo-Commit": commit, "ETag": f'"{hashlib.sha256(content).hexdigest()}"', "Accept-Ranges": "bytes"}
            ranged = self.headers.get("Range")
            start = int(ranged.removeprefix("bytes=").split("-")[0]) if body and ranged else 0
            if start:
                headers["Content-Range"] = f"bytes {start}-{len(content) - 1}/{len(content)}"
            cut = body and served.cut_short.get(name, 0) > 0
            if cut:
                served.cut_short[name] -= 1
            self.send(content[start:], body=body, headers=headers, status=206 if start else 200, cut=cut)

        def fail(self, status: int, code: str, *, commit: str | None = None) -> None:
            self.send(b"{}", body=self.command != "HEAD", status=status, headers={"X-Error-Code": code, **({"X-Repo-Commit": commit} if commit else {})})

        def send(self, content: bytes, *, body: bool, headers: dict[str, str], status: int = 200, cut: bool = False) -> None:
            self.send_response(status)
            for key, value in {**headers, "Content-Length": str(len(content))}.items():
                self.send_header(key, value)
            self.end_headers()
            if body:
                self.wfile.write(content[: len(content) // 2] if cut else content)
            if cut:
                self.close_connection = True

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    served.endpoint = f"http://127.0.0.1:{server.server_port}"
    yield served
    server.shutdown()
    server.server_close()
    thread.join()


def cli(hub: Hub, home: Path, *commands: list[str], **environment: str) -> list[dict]:
    """Run p2p commands one after another in a child process that talks to the loopback Hub, with its cache in
    ``home``; each one's exit code, stdout and stderr."""
    script = (
        "import contextlib, io, json, sys\nfrom p2p_core.cli import main\nresults = []\n"
        "for args in json.loads(sys.argv[1]):\n"
        "    out, err = io.StringIO(), io.StringIO()\n"
        "    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):\n"
        "        try:\n            main(args)\n            code = 0\n"
        "        except SystemExit as stop:\n            code = stop.code or 0\n"
        "    results.append({'code': code, 'out': out.getvalue(), 'err': err.getvalue()})\n"
        "print(json.dumps(results))\n"
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("HF_")}
    env |= {"HF_ENDPOINT": hub.endpoint, "HF_HOME": str(home), "HF_HUB_DISABLE_TELEMETRY": "1", **environment}
    done = subprocess.run([sys.executable, "-c", script, json.dumps(list(commands))], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def published(hub: Hub, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny run, tested, pushed with --dry_run into a folder, and that folder served as me/tiny."""
    root = tmp_path_factory.mktemp("hub")
    folder = fit_tiny(root)
    write_ab_folder(root / "ab", split="val", count=2)
    main(["test", "--ckpt", str(folder), "--mode", "eval", "--backend", "torch"])
    inputs = root / "inputs"
    inputs.mkdir()
    generator = np.random.default_rng(0)
    for index, size in enumerate([(16, 16), (20, 30)]):
        Image.fromarray(generator.integers(0, 256, (*size, 3), dtype=np.uint8)).save(inputs / f"{index}.png")
    main(["predict", "--ckpt", str(folder), "--input", str(inputs), "--output", str(root / "expected"), "--mode", "eval",
          "--backend", "torch"])  # fmt: skip
    os.environ["HF_TOKEN"] = TOKEN  # as a logged-in user has it; it must not reach the folder
    try:
        main(["push", str(folder), "--repo", REPO, "--out", str(root / "repo"), "--dry_run"])
    finally:
        del os.environ["HF_TOKEN"]
    commit = hub.publish_folder(REPO, root / "repo")
    return {"root": root, "run": folder, "repo": root / "repo", "commit": commit, "inputs": inputs}


def pixels(folder: Path) -> dict[str, np.ndarray]:
    return {path.name: np.asarray(Image.open(path)) for path in sorted(folder.iterdir())}


# -- p2p push --dry_run ------------------------------------------------------------------------------------------


def test_the_pushed_folder_holds_the_model_its_spec_a_card_and_the_test_grid(published):
    repo = published["repo"]
    assert {p.name for p in repo.iterdir()} == {"model.safetensors", "config.yaml", "README.md", "test_grid.png"}
    config = yaml.safe_load((repo / "config.yaml").read_text())
    assert config["generator"]["name"] == "unet" and "out_dir" not in config  # no local paths
    with Image.open(repo / "test_grid.png") as grid:
        assert grid.width > 3 * 128


def test_the_card_metadata_carries_the_latest_test(published):
    card = ModelCard.load(published["repo"] / "README.md")
    metrics = json.loads(next(published["run"].glob("test_*/metrics.json")).read_text())
    data = card.data
    assert (data.library_name, data.pipeline_tag, data.license) == ("p2p", "image-to-image", "other")
    assert {"p2p", "pix2pix", "image-to-image"} <= set(data.tags)
    assert data.datasets == ["ab"]  # the dataset folder fit_tiny trains on
    results = {result.metric_type: result for result in data.eval_results}
    assert {name: result.metric_value for name, result in results.items()} == metrics["metrics"]
    assert {(r.dataset_split, r.metric_config, r.task_type) for r in results.values()} == {("val", "eval", "image-to-image")}
    assert data.to_dict()["p2p"]["providers"]["generator"].startswith("p2p ")
    with safe_open(published["repo"] / "model.safetensors", framework="pt") as handle:
        assert json.loads(handle.metadata()["p2p"])["source"] == "run/step_00000001.pt"  # no folder of this machine
    for heading in ("## Use it", "## How it was trained", "## Evaluation", "p2p predict --ckpt hf:me/tiny", "onnxruntime",
                    "load_file(hf_hub_download", "![input | output | target on the val split](test_grid.png)"):
        assert heading in card.text


def test_no_token_reaches_the_folder(published):
    for path in published["repo"].rglob("*"):
        assert TOKEN.encode() not in path.read_bytes()


def test_push_onnx_adds_a_file_that_onnxruntime_runs_as_the_model(published, tmp_path):
    for module in ("onnx", "onnxscript", "onnxruntime"):
        pytest.importorskip(module, reason="pip install 'p2p[export]' for ONNX export")
    main(["push", str(published["run"]), "--repo", REPO, "--out", str(tmp_path / "repo"), "--onnx"])
    described = json.loads((tmp_path / "repo" / "model.onnx.json").read_text())
    assert described["mode"] == "eval" and described["checkpoint"] == "run/step_00000001.pt"
    assert described["checked"]["max_abs_difference"] < 1e-3  # checked against the model at odd sizes
    assert 'onnxruntime.InferenceSession(hf_hub_download("me/tiny", "model.onnx"))' in (tmp_path / "repo" / "README.md").read_text()


def test_push_refuses_an_existing_folder_and_a_malformed_name(published, capsys):
    code, _, err = run(["push", str(published["run"]), "--repo", REPO, "--out", str(published["repo"])], capsys)
    assert code == 2 and "already holds files" in err
    code, _, err = run(["push", str(published["run"]), "--repo", "not a repo", "--dry_run"], capsys)
    assert code == 2 and "write hf:OWNER/NAME" in err


def test_a_third_party_component_is_recorded_with_its_distribution_and_named_when_missing(
    install_distribution, tmp_path, monkeypatch, capsys
):
    plugin = TINY_GENERATOR + "\n@p2p_core.hookimpl\ndef p2p_generators():\n    return {'tiny': Tiny}\n"
    install_distribution("p2p-fake-tiny", modules={"fake_tiny": plugin}, entry_points={"tiny": "fake_tiny"}, version="1.3")
    code, _, err = run(["-p", "p2p-fake-tiny", "fit", "--generator", "tiny", "--data.length", "2", "--data.load_size", "16",
                        "--data.crop_size", "16", "--disc", "pixel", "--disc.ndf", "4", "--trainer.max_steps", "1",
                        "--trainer.num_workers", "0", "--trainer.progress", "false", "--out_dir", str(tmp_path), "--name", "tiny",
                        ], capsys)  # fmt: skip
    assert code == 0, err
    code, _, err = run(["-p", "p2p-fake-tiny", "push", str(tmp_path / "tiny"), "--repo", REPO, "--out", str(tmp_path / "repo")], capsys)
    assert code == 0, err
    card = ModelCard.load(tmp_path / "repo" / "README.md")
    assert card.data.to_dict()["p2p"]["providers"]["generator"] == "p2p-fake-tiny 1.3"
    assert "| generator | tiny |" in card.text and "p2p-fake-tiny 1.3 |" in card.text
    assert "pip install p2p 'p2p-fake-tiny==1.3'" in card.text
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")  # a machine without the plugin
    default_registry.cache_clear()
    try:
        code, _, err = run(["test", "--ckpt", str(tmp_path / "repo")], capsys)
    finally:
        default_registry.cache_clear()
    assert code == 2 and "pip install 'p2p-fake-tiny==1.3'" in err


# -- --ckpt hf:OWNER/NAME -------------------------------------------------------------------------------------------


def test_a_pushed_model_loads_by_name_and_translates_as_the_run(published, hub: Hub, tmp_path: Path):
    hub.requests.clear()
    home = tmp_path / "hf"
    root = published["root"]
    (predicted, tested) = cli(hub, home, [
        "predict", "--ckpt", f"hf:{REPO}", "--input", str(published["inputs"]), "--output", str(tmp_path / "out"),
        "--mode", "eval", "--backend", "torch",
    ], ["test", "--ckpt", f"hf:{REPO}@main", "--mode", "eval", "--backend", "torch", "--out", str(tmp_path / "test")])
    assert predicted["code"] == 0 and tested["code"] == 0, predicted["err"] + tested["err"]
    assert all(np.array_equal(a, b) for a, b in zip(pixels(tmp_path / "out").values(), pixels(root / "expected").values(), strict=True))
    assert len(hub.gets("model.safetensors")) == 1  # the second command found it in the cache
    metrics = json.loads((tmp_path / "test" / "metrics.json").read_text())
    assert metrics["checkpoint"] == f"hf:{REPO}@{published['commit']}"  # the branch, pinned to its commit
    expected = json.loads(next(published["run"].glob("test_*/metrics.json")).read_text())
    assert metrics["metrics"] == expected["metrics"]


def test_p2p_test_writes_beside_a_model_file_and_here_for_a_hub_model(published):
    trained = load_generator(published["repo"], mode="eval")
    assert default_folder(trained, split="val", mode="eval") == published["repo"] / "test_val_eval_model"
    from_hub = attrs.evolve(trained, source=f"hf:{REPO}@{published['commit']}")  # not inside the Hub's cache
    assert default_folder(from_hub, split="val", mode="eval") == Path(f"test_val_eval_tiny-{published['commit'][:12]}")


def test_the_cache_serves_a_commit_without_a_request_and_offline(published, hub: Hub, tmp_path: Path):
    home = tmp_path / "hf"
    commit = published["commit"]
    export = ["export", "--format", "safetensors", "--out"]
    hub.requests.clear()
    (first, again) = cli(hub, home, [*export, str(tmp_path / "a.safetensors"), "--ckpt", f"hf:{REPO}"],
                         [*export, str(tmp_path / "b.safetensors"), "--ckpt", f"hf:{REPO}@{commit}"])
    assert first["code"] == again["code"] == 0, first["err"] + again["err"]
    assert [method for method, _, _ in hub.requests] == ["HEAD", "GET"]  # the second, by commit, asked nothing
    hub.requests.clear()
    (offline, missing) = cli(hub, home, [*export, str(tmp_path / "c.safetensors"), "--ckpt", f"hf:{REPO}"],
                             ["test", "--ckpt", "hf:me/elsewhere", "--out", str(tmp_path / "x")], HF_HUB_OFFLINE="1")
    assert offline["code"] == 0, offline["err"]
    assert missing["code"] == 2 and "HF_HUB_OFFLINE is set" in missing["err"] and "Traceback" not in missing["err"]
    assert hub.requests == []
    # What was written from the Hub model names the commit it came from.
    assert json.loads((tmp_path / "a.safetensors.json").read_text())["checkpoint"] == f"hf:{REPO}@{commit}"
    assert load_file(tmp_path / "a.safetensors").keys() == load_file(published["repo"] / "model.safetensors").keys()


def test_a_revision_reaches_another_branch(published, hub: Hub, tmp_path: Path):
    """A branch whose model differs: hf:NAME@BRANCH loads it, hf:NAME still the default branch's."""
    tensors = load_file(published["repo"] / "model.safetensors")
    tensors = {name: tensor + 1 if tensor.is_floating_point() else tensor for name, tensor in tensors.items()}
    with safe_open(published["repo"] / "model.safetensors", framework="pt") as handle:
        metadata = handle.metadata()
    save_file(tensors, tmp_path / "model.safetensors", metadata=metadata)
    hub.publish(REPO, {"model.safetensors": (tmp_path / "model.safetensors").read_bytes()}, branch="shifted")
    export = ["export", "--format", "safetensors", "--out"]
    (shifted, main_branch) = cli(hub, tmp_path / "hf", [*export, str(tmp_path / "s.safetensors"), "--ckpt", f"hf:{REPO}@shifted"],
                                 [*export, str(tmp_path / "m.safetensors"), "--ckpt", f"hf:{REPO}"])
    assert shifted["code"] == main_branch["code"] == 0, shifted["err"] + main_branch["err"]
    key = "encoder.0.1.weight"
    assert load_file(tmp_path / "s.safetensors")[key].equal(tensors[key])
    assert not load_file(tmp_path / "m.safetensors")[key].equal(tensors[key])


def test_hub_errors_are_one_clear_line(published, hub: Hub, tmp_path: Path):
    hub.publish("someone/text-model", {"README.md": b"# a text model\n", "pytorch_model.bin": b"\x80\x02"})
    tensors = load_file(published["repo"] / "model.safetensors")
    save_file(tensors, tmp_path / "plain.safetensors", metadata={"format": "pt"})
    hub.publish("someone/plain", {"model.safetensors": (tmp_path / "plain.safetensors").read_bytes()})
    cases = {
        "hf:nobody/nothing": "no such model repository",
        f"hf:{REPO}@v9": "has no revision 'v9'",
        "hf:someone/text-model": "is not a p2p model: it holds no model.safetensors, but it holds README.md, pytorch_model.bin",
        "hf:someone/plain": "no p2p spec",
        "hf:no-owner": "write hf:OWNER/NAME",
    }
    commands = [["test", "--ckpt", ckpt, "--out", str(tmp_path / "t")] for ckpt in cases]
    # The child has no HF_TOKEN and a Hub home without a login.
    commands.append(["push", str(published["run"]), "--repo", REPO])
    cases["push without a token"] = "no Hugging Face token: set HF_TOKEN or run `hf auth login`"
    results = cli(hub, tmp_path / "hf", *commands)
    for (ckpt, message), result in zip(cases.items(), results, strict=True):
        assert result["code"] == 2 and message in result["err"], (ckpt, result["err"])
        assert result["err"].count("\n") == 1 and "Traceback" not in result["err"], result["err"]


def test_an_interrupted_download_fails_clearly_and_the_next_run_loads(published, hub: Hub, tmp_path: Path):
    hub.requests.clear()
    hub.cut_short["model.safetensors"] = 6  # the first try and huggingface_hub's five retries
    command = ["export", "--ckpt", f"hf:{REPO}", "--format", "safetensors", "--out", str(tmp_path / "m.safetensors")]
    (failed, again) = cli(hub, tmp_path / "hf", command, command)
    assert failed["code"] == 2 and "run the command again" in failed["err"] and "Traceback" not in failed["err"]
    assert again["code"] == 0, again["err"]
    # The second run fetched the whole file again: the cut one was not kept as if it were complete.
    assert len(hub.gets("model.safetensors")) == 7
    assert load_file(tmp_path / "m.safetensors").keys() == load_file(published["repo"] / "model.safetensors").keys()


def test_push_uploads_through_the_commit_api_and_the_model_loads_from_its_branch(published, hub: Hub, tmp_path: Path):
    hub.authorizations.clear()
    pushed, loaded = cli(hub, tmp_path / "hf", [
        "push", str(published["run"]), "--repo", "me/pushed", "--private", "--revision", "dev", "--commit_message", "first",
    ], [
        "predict", "--ckpt", "hf:me/pushed@dev", "--input", str(published["inputs"]), "--output", str(tmp_path / "out"),
        "--mode", "eval", "--backend", "torch",
    ], HF_TOKEN=TOKEN, HF_HUB_DISABLE_XET="1")  # fmt: skip
    assert pushed["code"] == 0 and loaded["code"] == 0, pushed["err"] + loaded["err"]
    repository = hub.repositories["me/pushed"]
    assert repository.private and hub.messages[-1] == "first"
    assert set(repository.commits[repository.branches["dev"]]) >= {"model.safetensors", "config.yaml", "README.md", "test_grid.png"}
    assert repository.branches["main"] != repository.branches["dev"]  # the branch got the commit, main did not
    assert f"hf:me/pushed@{repository.branches['dev']}" in pushed["out"]
    assert hub.authorizations == {f"Bearer {TOKEN}"}  # the token was used, and shown nowhere
    assert TOKEN not in pushed["out"] + pushed["err"] + loaded["out"] + loaded["err"]
    assert all(np.array_equal(a, b) for a, b in
               zip(pixels(tmp_path / "out").values(), pixels(published["root"] / "expected").values(), strict=True))

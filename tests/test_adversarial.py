"""What a hostile or careless user can hand p2p: YAML bombs, planted links, a second writer, outputs over inputs,
odd names and files. Each fails with one `p2p: error:` line and leaves everything else as it was."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import pytest
import yaml

from p2p_core import checkpoint, files
from p2p_core.config import MAX_DEPTH, dump_yaml, load_yaml, read_config
from p2p_core.errors import ConfigError
from p2p_core.registry import default_registry
from conftest import SMOKE, fit_smoke, make_spec, run, write_ab_folder


def one_error_line(code: int, err: str) -> str:
    """The `p2p: error:` line of a failed command, checking that it is the only thing it said."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("p2p: error:"), err
    return lines[0]


# -- YAML: no aliases, bounded depth, no key twice ---------------------------------------------------------------


def billion_laughs(levels: int = 10) -> str:
    """Each level a list of ten aliases of the one before: 10**levels strings from about 500 bytes."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{level}: &a{level} [{', '.join([f'*a{level - 1}'] * 10)}]" for level in range(1, levels)]
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_at_its_first_anchor_without_expanding_anything(tmp_path):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(billion_laughs())
    registry = default_registry()
    tracemalloc.start()
    try:
        with pytest.raises(ConfigError, match=r"bomb.yaml, line 1: YAML anchors and aliases"):
            read_config(str(bomb), registry)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Refused while composing the first node: the 10**10 strings are never made, so the peak is the text's.
    assert peak < 2**20


@pytest.mark.parametrize("how", ["--config", "--resume"])
@pytest.mark.parametrize("content, message", [
    (billion_laughs(), "line 1: YAML anchors and aliases"),
    ("generator: unet\ntrainer: " + "[" * 5000 + "]" * 5000 + "\n", f"line 2: nested deeper than {MAX_DEPTH} levels"),
    ("generator: unet\ntrainer: {lr: 0.1}\ntrainer: {lr: 0.2}\n", "line 3: 'trainer' is given twice"),
    ("generator: unet\ntrainer: {lr: 0.1, lr: 0.2}\n", "line 2: 'lr' is given twice"),
])
def test_bombs_deep_nesting_and_repeated_keys_are_one_error_line(tmp_path, capsys, how, content, message):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "config.yaml").write_text(content)
    given = ["--config", str(folder / "config.yaml")] if how == "--config" else ["--resume", str(folder)]
    line = one_error_line(*run(["fit", *given, "--out_dir", str(tmp_path / "runs")], capsys)[::2])
    assert message in line
    assert not (tmp_path / "runs").exists()


def test_an_unknown_top_level_key_is_named_before_its_content_is_read(tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text("generator: unet\ntrainr: {lr: 0.1}\n")
    line = one_error_line(*run(["fit", "--config", str(config)], capsys)[::2])
    assert "'trainr' is not accepted; did you mean 'trainer'?" in line


def test_option_values_jsonargparse_reads_as_yaml_are_bounded_too(tmp_path, capsys):
    code, _, err = run(["scorer", "fit", "--out", str(tmp_path / "s.pt"), "--data_options", "{a: &x [1, 2], b: *x}"], capsys)
    assert "YAML anchors and aliases" in one_error_line(code, err)


def test_yaml_p2p_writes_has_no_aliases_even_for_a_value_met_twice():
    shared = [1, 2]
    text = dump_yaml({"a": shared, "b": shared})
    assert "&" not in text and load_yaml(text) == {"a": [1, 2], "b": [1, 2]}


# -- temporaries: unique, never through a link, and only one's own are removed ---------------------------------


def plant_links(folder: Path, name: str, victim: Path) -> list[Path]:
    """Links to ``victim`` under every fixed temporary name an atomic write of ``folder/name`` ever used."""
    links = [folder / f".{name}.tmp", folder / f".tmp-{name}"]
    for link in links:
        link.symlink_to(victim)
    return links


def test_an_atomic_write_never_goes_through_a_planted_link(tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    links = plant_links(tmp_path, "out.bin", victim)
    files.write_atomically(tmp_path / "out.bin", b"new")
    with files.replacing(tmp_path / "exported.bin") as temporary:
        temporary.write_bytes(b"exported")
    assert victim.read_bytes() == b"precious" and all(link.is_symlink() for link in links)
    assert (tmp_path / "out.bin").read_bytes() == b"new" and (tmp_path / "exported.bin").read_bytes() == b"exported"
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(["victim", "out.bin", "exported.bin", *(link.name for link in links)])


def test_predict_never_writes_through_a_link_planted_in_its_output(tmp_path, capsys):
    run_dir = fit_smoke(tmp_path, capsys, "--trainer.max_steps", "1")
    inputs, output = tmp_path / "in", tmp_path / "out"
    write_ab_folder(tmp_path / "ab", count=1, size=(32, 32))
    inputs.mkdir()
    (tmp_path / "ab" / "train" / "0.png").rename(inputs / "0.png")
    output.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    plant_links(output, "0.png", victim)
    code, _, err = run(["predict", "--ckpt", str(run_dir), "--input", str(inputs), "--output", str(output), "--backend", "torch"], capsys)
    assert code == 0, err
    assert victim.read_text() == "precious" and (output / "0.png").stat().st_size > 0


def test_a_checkpoint_save_leaves_another_writers_temporary_alone(tmp_path, capsys):
    run_dir = fit_smoke(tmp_path, capsys, "--trainer.max_steps", "1")
    folder = run_dir / checkpoint.FOLDER
    theirs = folder / ".step_00000009.pt.0123456789abcdef.tmp"
    theirs.write_bytes(b"half a checkpoint")
    checkpoint.save(checkpoint.load(run_dir), run_dir, 5)
    assert theirs.read_bytes() == b"half a checkpoint"


def test_resuming_removes_the_temporaries_a_killed_run_left_and_nothing_else(tmp_path, capsys):
    run_dir = fit_smoke(tmp_path, capsys, "--trainer.max_steps", "1")
    folder = run_dir / checkpoint.FOLDER
    stale, other = folder / ".step_00000002.pt.0123456789abcdef.tmp", folder / ".notes.tmp"
    stale.write_bytes(b"half a checkpoint")
    other.write_bytes(b"someone's")
    code, _, err = run(["fit", "--resume", str(run_dir), "--trainer.max_steps", "2"], capsys)
    assert code == 0, err
    assert not stale.exists() and other.read_bytes() == b"someone's"


# -- one writer per run folder and per cache entry --------------------------------------------------------------


def holding_lock(path: Path) -> subprocess.Popen:
    """Another process holding ``path``'s lock until its stdin closes (it then writes PATH.done and exits);
    returns once it holds it."""
    code = ("import sys; from pathlib import Path; from p2p_core.files import locked\n"
            f"with locked(Path({str(path)!r}), what='test'):\n"
            f"    print('held', flush=True); sys.stdin.read(); Path({str(path)!r} + '.done').touch()")
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "held\n"
    return holder


def test_a_second_resume_of_a_run_is_refused_naming_the_process_training_it(tmp_path, capsys):
    run_dir = fit_smoke(tmp_path, capsys, "--trainer.max_steps", "1")
    before = sorted(path.name for path in (run_dir / checkpoint.FOLDER).iterdir())
    from p2p_core.run import LOCK

    holder = holding_lock(run_dir / LOCK)
    try:
        line = one_error_line(*run(["fit", "--resume", str(run_dir), "--trainer.max_steps", "2"], capsys)[::2])
    finally:
        holder.communicate("")
    assert f"run folder {run_dir} is in use by process {holder.pid}" in line
    assert sorted(path.name for path in (run_dir / checkpoint.FOLDER).iterdir()) == before


def test_a_resume_runs_once_the_other_process_is_gone(tmp_path, capsys):
    run_dir = fit_smoke(tmp_path, capsys, "--trainer.max_steps", "1")
    from p2p_core.run import LOCK

    holding_lock(run_dir / LOCK).communicate("")  # held, then released by its exit
    code, _, err = run(["fit", "--resume", str(run_dir), "--trainer.max_steps", "2"], capsys)
    assert code == 0, err


def test_two_fits_into_one_name_one_is_refused_without_a_traceback(tmp_path):
    from p2p_core.run import Run

    second = Run(make_spec(max_steps=1), out_dir=tmp_path, name="same")
    (tmp_path / "same").mkdir()  # the first fit made the folder after the second looked
    with pytest.raises(ConfigError, match="run folder .*same already exists; pick another --name"):
        second()
    assert list((tmp_path / "same").iterdir()) == []


def test_a_second_builder_of_a_cached_export_waits_and_reuses_the_first_ones(tmp_path, monkeypatch):
    import p2p_core.export
    from p2p_core.backends import cached_onnx
    from p2p_core.inference import load_generator
    from p2p_core.run import Run

    run_dir = Run(make_spec(max_steps=1), out_dir=tmp_path, name="run")().run_dir
    trained = load_generator(run_dir, mode="eval")
    monkeypatch.setenv("P2P_CACHE", str(tmp_path / "cache"))
    built = []

    def slow_export(trained, *, format, out):
        built.append(out)
        time.sleep(0.5)  # long enough for the other thread to arrive while this one builds
        out.write_bytes(b"onnx")

    monkeypatch.setattr(p2p_core.export, "write_checked", slow_export)
    results = []
    threads = [threading.Thread(target=lambda: results.append(cached_onnx(trained))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(built) == 1 and results == [built[0]] * 2


def test_a_held_lock_names_its_holder_or_is_waited_for(tmp_path):
    holder = holding_lock(tmp_path / "lock")
    with pytest.raises(files.LockedError, match=f"thing is in use by process {holder.pid}"):
        with files.locked(tmp_path / "lock", what="thing"):
            pass
    released = threading.Timer(0.2, holder.communicate, [""])
    released.start()
    with files.locked(tmp_path / "lock", what="thing", wait=True):
        assert (tmp_path / "lock.done").exists()
    released.join()


# -- outputs never over a command's own inputs -------------------------------------------------------------------


@pytest.fixture(scope="module")
def aligned_run(tmp_path_factory) -> Path:
    from p2p_core.run import Run

    root = tmp_path_factory.mktemp("aligned")
    write_ab_folder(root / "ds", split="train", count=2, size=(32, 32))
    write_ab_folder(root / "ds", split="val", count=2, size=(32, 32))
    data = ("aligned", {"root": str(root / "ds"), "load_size": 32, "crop_size": 32})
    return Run(make_spec(data=data, max_steps=1), out_dir=root, name="run")().run_dir


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.mark.parametrize("out", ["checkpoints/step_00000001.pt", "config.yaml", "checkpoints/more.onnx"])
def test_export_never_replaces_the_run_it_reads(aligned_run, capsys, out):
    before = snapshot(aligned_run)
    line = one_error_line(*run(["export", "--ckpt", str(aligned_run), "--format", "onnx", "--out", str(aligned_run / out),
                                "--overwrite"], capsys)[::2])
    assert "choose an --out apart from it" in line and "--overwrite" not in line.split("apart")[0]
    assert snapshot(aligned_run) == before


@pytest.mark.parametrize("out", ["ds/val", "ds", "ds/val/deeper", "run", "run/checkpoints", "."])
def test_test_never_writes_into_the_dataset_or_over_the_run(aligned_run, capsys, out):
    root = aligned_run.parent
    before = snapshot(root)
    code, _, err = run(["test", "--ckpt", str(aligned_run), "--mode", "eval", "--backend", "torch", "--out", str(root / out),
                        "--overwrite"], capsys)
    line = one_error_line(code, err)
    assert "choose an --out apart from it" in line and "pass --overwrite" not in line
    assert snapshot(root) == before


def test_test_results_still_go_into_the_run_folder_by_default(aligned_run, capsys):
    code, out, err = run(["test", "--ckpt", str(aligned_run), "--mode", "eval", "--backend", "torch"], capsys)
    assert code == 0, err
    assert (aligned_run / "test_val_eval_step_00000001" / "index.html").is_file()


# -- names, odd files, permissions -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../x", "/tmp/abs", "a\nb", "x" * 300, "..", "a/b"])
def test_a_run_name_is_one_plain_name_inside_out_dir(tmp_path, capsys, name):
    code, _, err = run(["fit", "--config", SMOKE, "--out_dir", str(tmp_path / "runs"), "--name", name], capsys)
    assert "--name" in one_error_line(code, err)
    assert list(tmp_path.iterdir()) == [] and not Path("/tmp/abs").exists()


def test_files_written_atomically_are_readable_by_others_as_umask_allows(tmp_path):
    previous = os.umask(0o022)
    try:
        files.write_atomically(tmp_path / "a", b"x")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o644


def test_yaml_load_is_pyyamls_safe_load_within_the_bounds():
    text = "a: [1, 2.5, 'x', null, true]\nb: {c: {d: []}}\n"
    assert load_yaml(text) == yaml.safe_load(text)


def tar_gz_with(path: Path, members: dict[str, bytes], special: str | None = None) -> Path:
    import io
    import tarfile

    with tarfile.open(path, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if special:
            info = tarfile.TarInfo(special)
            info.type = tarfile.FIFOTYPE
            tar.addfile(info)
    return path


def test_a_fifo_in_a_dataset_archive_is_called_what_it_is(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("P2P_CACHE", str(tmp_path / "cache"))
    (tmp_path / "mirror").mkdir()
    tar_gz_with(tmp_path / "mirror" / "facades.tar.gz", {"facades/train/1.jpg": b"x"}, special="facades/train/pipe")
    code, _, err = run(["data", "download", "facades", "--to", str(tmp_path / "datasets"), "--url", str(tmp_path / "mirror"),
                     "--trust_unpinned", "true"], capsys)
    line = err.strip().splitlines()[-1]  # after the download's progress
    assert code == 2 and line.startswith("p2p: error:") and "Traceback" not in err
    assert "'facades/train/pipe', a device or fifo" in line and "outside" not in line


def test_cached_downloads_are_readable_as_the_umask_allows(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("P2P_CACHE", str(tmp_path / "cache"))
    (tmp_path / "mirror").mkdir()
    tar_gz_with(tmp_path / "mirror" / "facades.tar.gz", {"facades/train/1.jpg": b"x"})
    previous = os.umask(0o022)
    try:
        code, _, err = run(["data", "download", "facades", "--to", str(tmp_path / "datasets"), "--url", str(tmp_path / "mirror"),
                     "--trust_unpinned", "true"], capsys)
    finally:
        os.umask(previous)
    assert code == 0, err
    cached = [path for path in (tmp_path / "cache").rglob("*") if path.is_file()]
    assert cached and {stat.S_IMODE(path.stat().st_mode) for path in cached} == {0o644}


# -- one error line, never a traceback ---------------------------------------------------------------------------


@pytest.mark.parametrize("content", [b"", b"hello\n", "integer keys"])
def test_import_of_a_file_that_is_no_state_dict_is_one_error_line(tmp_path, capsys, content):
    import torch

    source = tmp_path / "model.pth"
    if content == "integer keys":
        torch.save({1: torch.zeros(1), 2: torch.zeros(1)}, source)
    else:
        source.write_bytes(content)
    one_error_line(*run(["import", str(source), "--out", str(tmp_path / "run")], capsys)[::2])
    assert not (tmp_path / "run").exists()


REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "data" / "reference-weights" / "unet256_ngf8_batch.pth"


@pytest.mark.skipif(not REFERENCE.is_file(), reason=f"no reference weights at {REFERENCE}")
@pytest.mark.parametrize("out", ["a-file/run", "/proc/p2p-run"])
def test_import_into_a_place_that_cannot_hold_a_folder_is_one_error_line(tmp_path, capsys, out):
    (tmp_path / "a-file").write_text("")
    one_error_line(*run(["import", str(REFERENCE), "--out", str(tmp_path / out)], capsys)[::2])


def test_a_cache_that_is_a_file_is_one_error_line(aligned_run, tmp_path, monkeypatch, capsys):
    pytest.importorskip("onnxruntime")
    (tmp_path / "cache").write_text("")
    monkeypatch.setenv("P2P_CACHE", str(tmp_path / "cache"))
    (tmp_path / "in").mkdir()
    code, _, err = run(["predict", "--ckpt", str(aligned_run), "--input", str(aligned_run.parent / "ds" / "val"),
                        "--output", str(tmp_path / "out"), "--backend", "onnxruntime", "--mode", "eval"], capsys)
    assert "P2P_CACHE" in one_error_line(code, err)


@pytest.mark.parametrize("out", ["", ".", "folder"])
def test_export_to_a_folder_is_refused_before_exporting(aligned_run, tmp_path, monkeypatch, capsys, out):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "folder").mkdir()
    line = one_error_line(*run(["export", "--ckpt", str(aligned_run), "--format", "onnx", "--out", out], capsys)[::2])
    assert "is a folder" in line and sorted(path.name for path in tmp_path.iterdir()) == ["folder"]


def test_help_into_a_pipe_closed_early_is_quiet():
    reader = subprocess.Popen([sys.executable, "-m", "p2p_core", "--help"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    reader.stdout.close()  # as `| head -0` would
    assert reader.wait() == 141 and reader.stderr.read() == b""

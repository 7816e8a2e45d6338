"""A run survives being killed, bad checkpoints are caught, hostile files and numbers fail clearly."""

from __future__ import annotations

import collections
import hashlib
import io
import os
import re
import signal
import struct
import subprocess
import sys
import threading
import time
import zipfile
import zlib
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import p2p_core
import p2p_core.files
from p2p_core import checkpoint
from p2p_core.errors import DataError, NumericalError
from p2p_core.registry import Registry
from p2p_core.run import EpochSampler, Run, StopRequest
from conftest import SMOKE, fit_smoke, make_spec, read_until, run

# -- killed runs resume exactly --------------------------------------------------------------------------------

MAX_STEPS = 12
# The smoke model at 32 px: what is checked is the restored state, which a bigger model only makes slower to reach.
# Crops of bigger loads, so that every step draws from the random state a resume has to restore.
KILL_RUN = ["--data.length", "6", "--trainer.max_steps", str(MAX_STEPS), "--trainer.checkpoint_every", "1",
            "--data.load_size", "36", "--data.crop_size", "32"]
RESUMED = re.compile(r"resuming .* at step (\d+) of")
# In the first epoch, and at its end (6 pairs, one a step): the run resumes there or one step into the second
# epoch, whichever the kill lands on, and the second resume continues a resumed run.
KILLED_AFTER = (3, 6)


def fit_process(run_dir: Path, *args: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "p2p_core", "fit"]
    if args[:1] == ("--resume",):
        command += args
    else:
        command += ["--config", SMOKE, *KILL_RUN, "--out_dir", str(run_dir.parent), "--name", run_dir.name, *args]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def kill_after_checkpoint(process: subprocess.Popen, run_dir: Path, step: int) -> str:
    """SIGKILL the run once checkpoint ``step`` is written: while it writes the next one if that is seen in
    time, else as soon as the next one is there. Anchored on checkpoints, not on time, so the kills spread
    over the run however slow the machine is."""
    written = checkpoint.path_for(run_dir, step)
    following = checkpoint.path_for(run_dir, step + 1)
    half_written = following.with_name(f".{following.name}.tmp")
    deadline = time.monotonic() + 300
    while not written.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    while process.poll() is None and time.monotonic() < deadline:
        if half_written.exists():
            process.kill()
            return f"while writing checkpoint {step + 1}"
        if following.exists():
            process.kill()
            return f"after checkpoint {step + 1}"
        time.sleep(0.001)
    return "after the run ended"


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    state = checkpoint.load(run_dir)
    return {f"{role}.{k}": v for role, sd in state["models"].items() for k, v in sd.items()} | {
        "step": torch.tensor(state["step"])
    }


def resumed_at(stderr: str) -> int:
    found = RESUMED.search(stderr)
    assert found, stderr
    return int(found.group(1))


def test_a_run_killed_at_any_point_resumes_to_the_weights_of_an_uninterrupted_one(tmp_path):
    workers = "1"  # a loader worker too: its random state must be restored as well
    straight = tmp_path / "straight"
    # The uninterrupted run checkpoints only at its end: writing checkpoints must not change the training either.
    assert fit_process(straight, "--trainer.num_workers", workers, "--trainer.checkpoint_every", str(MAX_STEPS)).wait(timeout=300) == 0
    interrupted = tmp_path / "killed"
    process = fit_process(interrupted, "--trainer.num_workers", workers)
    moments, stderrs = [], []
    for seen in KILLED_AFTER:
        moments.append(kill_after_checkpoint(process, interrupted, seen))
        stderrs.append(process.communicate(timeout=60)[1])
        process = fit_process(interrupted, "--resume", str(interrupted))
    stderrs.append(process.communicate(timeout=300)[1])
    assert process.returncode == 0, stderrs[-1]
    assert "after the run ended" not in moments, moments
    # Each resume started where its kill left the run, not over from step 0 (which would prove nothing).
    starts = [resumed_at(stderr) for stderr in stderrs[1:]]
    assert all(start >= seen for start, seen in zip(starts, KILLED_AFTER, strict=True)), (starts, moments)
    expected, found = weights(straight), weights(interrupted)
    assert expected.keys() == found.keys()
    assert all(torch.equal(expected[k], found[k]) for k in expected), (starts, moments)


def test_a_dataset_of_one_pair_trains_to_its_last_step(tmp_path):
    one_pair = ("synthetic", {"length": 1, "load_size": 36, "crop_size": 32})
    outcome = Run(make_spec(data=one_pair, max_steps=2), out_dir=tmp_path, name="one")()
    assert (outcome.step, outcome.total_steps, outcome.stopped_by) == (2, 2, None)
    assert checkpoint.load(outcome.checkpoint)["step"] == 2


@given(length=st.integers(0, 40), world_size=st.integers(1, 4), data=st.data())
def test_an_epoch_s_sampler_has_the_length_of_what_it_yields(length, world_size, data):
    # On any rank, and resumed part-way through the epoch (skip).
    rank = data.draw(st.integers(0, world_size - 1), label="rank")
    skip = data.draw(st.integers(0, length // world_size), label="skip")
    sampler = EpochSampler(length, seed=0, epoch=0, skip=skip, rank=rank, world_size=world_size)
    assert len(sampler) == len(list(sampler))


def test_an_epoch_s_sampler_yields_the_whole_epoch_unless_told_to_skip():
    sampler = EpochSampler(10, seed=0, epoch=0)
    assert sorted(sampler) == list(range(10))


def test_a_stop_request_takes_the_first_signal_as_a_request_and_the_second_as_an_interrupt():
    # fit's stop handling without a subprocess (the SIGTERM test below runs one, which mutation testing cannot).
    received: list[int] = []
    ours = signal.signal(signal.SIGTERM, lambda number, frame: received.append(number))
    try:
        with StopRequest() as stop:
            signal.raise_signal(signal.SIGTERM)
            assert stop.signal == signal.SIGTERM and received == []
            with pytest.raises(KeyboardInterrupt):
                signal.raise_signal(signal.SIGINT)
        signal.raise_signal(signal.SIGTERM)  # the handler before it is back
        assert received == [signal.SIGTERM]
        # Python takes signals in its main thread only: elsewhere the request installs nothing and says so by
        # never being signalled, rather than failing the run.
        outcome: list[object] = []
        worker = threading.Thread(target=lambda: outcome.append(StopRequest().__enter__().signal))
        worker.start()
        worker.join()
        assert outcome == [None]
    finally:
        signal.signal(signal.SIGTERM, ours)


def test_sigterm_checkpoints_the_current_step_and_exits_cleanly(tmp_path):
    run_dir = tmp_path / "term"
    process = fit_process(run_dir, "--trainer.max_steps", "100000", "--trainer.n_epochs", "100000",
                          "--trainer.checkpoint_every", "100000", "--trainer.log_every", "1", "--trainer.progress", "true")
    # Signalled once the progress bar shows a finished step, so the run is training, not still starting.
    err = read_until(process, re.compile(r"\b[1-9]\d*/100000\b"), timeout=60)
    process.send_signal(signal.SIGTERM)
    err += process.communicate(timeout=60)[1]
    assert process.returncode == 128 + signal.SIGTERM
    assert "stopped by SIGTERM at step" in err and f"p2p fit --resume {run_dir}" in err
    assert "Traceback" not in err
    assert 0 < checkpoint.load(run_dir)["step"] < 100000


# -- damaged and hostile checkpoints -----------------------------------------------------------------------------


def test_a_damaged_newest_checkpoint_is_named_and_the_previous_one_is_used(tmp_path, capsys):
    run_dir = fit_smoke(tmp_path, capsys)
    older, newest = checkpoint.checkpoints(run_dir)
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    newest.write_bytes(bytes(data))
    with pytest.raises(DataError, match=rf"{newest.name} is corrupt \(its checksum does not match"):
        checkpoint.load(newest)
    with pytest.warns(UserWarning, match=rf"{newest.name} is corrupt.*using {older.name} instead"):
        assert checkpoint.load(run_dir)["step"] == 2
    older.write_bytes(older.read_bytes()[:1000])
    with pytest.raises(DataError) as nothing_left:
        checkpoint.load(run_dir)
    assert str(nothing_left.value) == (f"no usable checkpoint: checkpoint {newest} is corrupt (its checksum does not match "
                                       f"{newest.with_suffix('.sha256').name}); checkpoint {older} is corrupt (its checksum "
                                       f"does not match {older.with_suffix('.sha256').name})")


def as_if_written_on_a_gpu(path: Path) -> None:
    """Rewrite checkpoint ``path`` and its checksum as a run on a GPU writes them: each tensor's storage tagged cuda:0
    (the tag torch.load restores it to unless told a device: an error on a machine without one)."""
    with zipfile.ZipFile(path) as source:
        entries = [(info.filename, source.read(info)) for info in source.infolist()]
    # torch.save pickles with protocol 2: a storage's location is the string "cpu", length-prefixed.
    cpu, gpu = b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0"
    before = torch.load(path, weights_only=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as target:
        for name, data in entries:
            target.writestr(name, data.replace(cpu, gpu) if name.endswith("/data.pkl") else data)
    path.with_suffix(".sha256").write_text(hashlib.sha256(path.read_bytes()).hexdigest())
    locations = []
    after = torch.load(path, weights_only=True, map_location=lambda storage, location: locations.append(location) or storage)
    # Every storage retagged, and nothing else changed (no other "cpu" string in the state was touched).
    assert locations and set(locations) == {"cuda:0"} and str(after) == str(before)


def test_a_checkpoint_written_on_a_gpu_is_read_and_resumed_on_a_machine_without_one(tmp_path, capsys):
    run_dir = fit_smoke(tmp_path, capsys)
    for path in checkpoint.checkpoints(run_dir):
        as_if_written_on_a_gpu(path)
    newest = checkpoint.checkpoints(run_dir)[-1]
    assert checkpoint.load(newest)["step"] == checkpoint.load(run_dir)["step"] == checkpoint.read(run_dir).state["step"] == 4
    code, _, err = run(["fit", "--resume", str(run_dir), "--trainer.max_steps", "6"], capsys)
    assert code == 0 and "at step 4 of 6" in err, err
    assert checkpoint.load(run_dir)["step"] == 6


def test_a_truncated_checkpoint_without_checksum_is_caught_too(tmp_path, capsys):
    run_dir = fit_smoke(tmp_path, capsys)
    newest = checkpoint.checkpoints(run_dir)[-1]
    newest.with_suffix(".sha256").unlink()
    newest.write_bytes(newest.read_bytes()[:1000])
    with pytest.raises(DataError, match="truncated or corrupt"):
        checkpoint.load(newest)


class RunsCode:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    hostile = tmp_path / "hostile.pt"
    torch.save({"models": {"generator": RunsCode()}}, hostile)
    with pytest.raises(DataError, match="refusing to load .*hostile.pt"):
        checkpoint.load(hostile)
    assert not (tmp_path / "pwned").exists()


def test_a_failed_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    first = checkpoint.save({"models": {"generator": {"w": torch.ones(2)}}}, tmp_path, 1)

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(p2p_core.files.os, "replace", disk_full)
    with pytest.raises(checkpoint.CheckpointWriteError, match=rf"No space left on device; the previous checkpoint .*{first.name} is intact"):
        checkpoint.save({"models": {"generator": {"w": torch.zeros(2)}}}, tmp_path, 2)
    monkeypatch.undo()
    assert checkpoint.checkpoints(tmp_path) == [first]
    assert torch.equal(checkpoint.load(tmp_path)["models"]["generator"]["w"], torch.ones(2))
    assert not list((tmp_path / checkpoint.FOLDER).glob(".*.tmp"))


def test_too_little_disk_space_is_reported_before_training(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(checkpoint.shutil, "disk_usage", lambda path: type("Usage", (), {"free": 1024})())
    code, _, err = run(["fit", "--config", SMOKE, "--out_dir", str(tmp_path / "runs")], capsys)
    assert code == 2 and "MiB free, but two checkpoints of this model need about" in err
    assert not (tmp_path / "runs").exists()


def test_an_output_folder_that_cannot_be_made_is_reported_before_training(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    code, _, err = run(["fit", "--config", SMOKE, "--out_dir", str(blocker / "runs")], capsys)
    assert code == 2 and "is a file, not a folder" in err


# -- numerical faults ---------------------------------------------------------------------------------------------


class NaNAfter:
    """A loss term that becomes NaN from its ``after``-th call on, to inject a numerical fault."""

    discriminator_input = "none"

    def __init__(self, *, after: int = 3) -> None:
        self.after, self.calls = after, 0

    def generator_loss(self, *, x, fake, target, disc):
        self.calls += 1
        value = (fake - target).abs().mean()
        return value * float("nan") if self.calls >= self.after else value

    def discriminator_loss(self, *, x, fake, target, disc):
        return fake.new_zeros(())


def nan_after(*, after: int = 3) -> NaNAfter:
    """Becomes NaN after a few steps."""
    return NaNAfter(after=after)


class FaultyLosses:
    @p2p_core.hookimpl
    def p2p_losses(self):
        return {"nan_after": nan_after}


def faulty_trainer(tmp_path: Path, **train) -> Run:
    registry = Registry()
    registry.load_entry_points(allow=["p2p"])
    registry.register(FaultyLosses(), name="faulty", distribution="tests")
    spec = make_spec(loss="cgan+nan_after", max_steps=6, checkpoint_every=1, **train)
    return Run(spec, out_dir=tmp_path, name="run", registry=registry)


def test_a_nan_loss_stops_the_run_naming_step_and_term_and_keeps_the_last_checkpoint(tmp_path):
    trainer = faulty_trainer(tmp_path)
    with pytest.raises(NumericalError, match=r"step 3: loss term G/nan_after is nan\. Stopped; the last checkpoint is intact"):
        trainer.fit()
    state = checkpoint.load(tmp_path / "run")
    assert state["step"] == 2
    assert all(torch.isfinite(v).all() for v in state["models"]["generator"].values() if v.is_floating_point())


def test_skip_mode_drops_non_finite_updates_and_finishes(tmp_path):
    trainer = faulty_trainer(tmp_path, on_nonfinite="skip")
    with pytest.warns(UserWarning, match="update skipped"):
        trainer.fit()
    assert trainer.model.skipped_updates == 4  # steps 3 to 6, the generator's update each time
    generator = checkpoint.load(tmp_path / "run")["models"]["generator"]
    assert all(torch.isfinite(v).all() for v in generator.values() if v.is_floating_point())


# -- hostile image files ------------------------------------------------------------------------------------------


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def hostile_file(kind: str, width: int, height: int, seed: int) -> bytes:
    """Bytes of one hostile or unusual file, named by ``kind``."""
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (height, width, 4), generator=generator, dtype=torch.uint8).numpy()
    buffer = io.BytesIO()
    if kind == "zero_bytes":
        return b""
    if kind == "not_an_image":
        return b"<html>this is not an image</html>" * (seed % 5 + 1)
    if kind == "huge_header":  # claims 100000 x 100000 pixels: a decompression bomb
        header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
        return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + png_chunk(b"IEND", b"")
    modes = {"rgba": ("RGBA", pixels), "gray": ("L", pixels[..., 0]), "cmyk": ("CMYK", pixels),
             "gray16": ("I;16", pixels[..., 0].astype("uint16") * 257), "rgb": ("RGB", pixels[..., :3])}
    if kind in modes:
        mode, array = modes[kind]
        Image.fromarray(array, mode=None if mode != "CMYK" else "CMYK").save(buffer, format="TIFF" if mode == "CMYK" else "PNG")
        return buffer.getvalue()
    Image.fromarray(pixels[..., :3]).save(buffer, format="JPEG")
    data = buffer.getvalue()
    if kind == "truncated_jpeg":
        return data[: max(20, len(data) * (seed % 9 + 1) // 10)]
    return data  # "jpeg"


HOSTILE_KINDS = ["zero_bytes", "not_an_image", "huge_header", "rgba", "gray", "cmyk", "gray16", "rgb", "truncated_jpeg", "jpeg"]


@settings(max_examples=60, deadline=None)
@given(kind=st.sampled_from(HOSTILE_KINDS), width=st.integers(1, 70), height=st.integers(1, 40), seed=st.integers(0, 10_000))
def test_hostile_files_load_correctly_or_fail_naming_the_file(tmp_path_factory, kind, width, height, seed):
    root = tmp_path_factory.mktemp("hostile")
    (root / "train").mkdir()
    path = root / "train" / f"sample.{'tif' if kind == 'cmyk' else 'png'}"
    path.write_bytes(hostile_file(kind, width, height, seed))
    dataset = p2p_core.create("dataset", "aligned", root=root, load_size=16, crop_size=16)
    try:
        sample = dataset[0]
    except DataError as error:
        assert str(path) in str(error)
        return
    assert sample.a.shape == sample.b.shape == (3, 16, 16)
    assert sample.a.min() >= -1 and sample.a.max() <= 1
    assert width % 2 == 0, "an odd-width A|B image must be refused"


def test_skip_bad_logs_every_skipped_file_and_keeps_the_good_ones(tmp_path, caplog):
    root = tmp_path / "mixed"
    (root / "train").mkdir(parents=True)
    for index, kind in enumerate(["jpeg", "zero_bytes", "truncated_jpeg", "jpeg", "not_an_image"]):
        (root / "train" / f"{index}.jpg").write_bytes(hostile_file(kind, 32, 16, seed=index))
    dataset = p2p_core.create("dataset", "aligned", root=root, load_size=16, crop_size=16, skip_bad=True)
    paths = [dataset[i].path for i in range(len(dataset))]
    assert {Path(p).name for p in paths} <= {"0.jpg", "2.jpg", "3.jpg"}
    skipped = {record.getMessage() for record in caplog.records if "skipping a bad pair" in record.getMessage()}
    assert any("1.jpg" in message for message in skipped) and any("4.jpg" in message for message in skipped)


# -- round 2: what a careless user or a crafted file can do --------------------------------------------------------


def test_a_run_folder_that_could_not_hold_two_checkpoints_is_refused_before_training(tmp_path, monkeypatch):
    needed = 5 * 2**20
    run_dir = tmp_path / "runs" / "new"
    for free in (needed, needed + 1):  # exactly enough is enough
        monkeypatch.setattr(checkpoint.shutil, "disk_usage", lambda path, free=free: _usage(free))
        checkpoint.check_writable(run_dir, needed)
    monkeypatch.setattr(checkpoint.shutil, "disk_usage", lambda path: _usage(3 * 2**20))
    with pytest.raises(checkpoint.CheckpointWriteError) as refused:
        checkpoint.check_writable(run_dir, needed)
    assert f"{tmp_path} has 3 MiB free" in str(refused.value) and "need about 5 MiB" in str(refused.value)


def _usage(free: int) -> DiskUsage:
    """What shutil.disk_usage says of a disk with ``free`` bytes free."""
    return DiskUsage(total=2 * free, used=free, free=free)


DiskUsage = collections.namedtuple("DiskUsage", "total used free")


def test_a_run_folder_under_a_folder_it_may_not_write_is_refused_naming_it(tmp_path, monkeypatch):
    # As root every folder is writable: the denial is the operating system's answer, put in its place.
    real_access = os.access
    monkeypatch.setattr(checkpoint.os, "access", lambda path, mode: real_access(path, mode) and not mode & os.W_OK)
    with pytest.raises(checkpoint.CheckpointWriteError) as refused:
        checkpoint.check_writable(tmp_path / "new", 1)
    assert f"{tmp_path} is not writable" in str(refused.value)


def test_what_an_output_must_stay_apart_from_is_the_checkpoint_and_in_a_run_its_checkpoints_and_config(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / checkpoint.FOLDER).mkdir(parents=True)
    for step in (2, 10):
        (run_dir / checkpoint.FOLDER / f"step_{step:08d}.pt").touch()
    newest = run_dir / checkpoint.FOLDER / "step_00000010.pt"
    in_the_run = {
        "the checkpoint": newest,
        "the run's checkpoints": run_dir / checkpoint.FOLDER,
        "the run's config": run_dir / "config.yaml",
    }
    assert checkpoint.guarded(run_dir) == checkpoint.guarded(newest) == in_the_run
    alone = tmp_path / "models" / "facades.pt"
    alone.parent.mkdir()
    alone.touch()
    assert checkpoint.guarded(alone) == {"the checkpoint": alone}


def test_a_run_folder_means_its_newest_step_checkpoint_and_a_model_folder_its_weights(tmp_path):
    run_dir = tmp_path / "run"
    for step in (2, 10, 100):
        checkpoint.save({"models": {"G": {"w": torch.full((1,), float(step))}}}, run_dir, step, keep=3)
    best = checkpoint.save_best({"models": {"G": {"w": torch.full((1,), -1.0)}}}, run_dir)
    assert best == run_dir / checkpoint.FOLDER / checkpoint.BEST
    assert torch.load(best, weights_only=True)["models"]["G"]["w"].item() == -1.0 and best.with_suffix(".sha256").is_file()
    # best.pt is never the newest, and a model file beside a run's checkpoints does not hide them.
    (run_dir / p2p_core.weights.MODEL_FILE).touch()
    assert checkpoint.resolve(run_dir) == checkpoint.path_for(run_dir, 100)
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / p2p_core.weights.MODEL_FILE).touch()
    assert checkpoint.resolve(model_dir) == model_dir / p2p_core.weights.MODEL_FILE
    (tmp_path / "empty").mkdir()
    for nothing in (tmp_path / "empty", tmp_path / "missing.pt"):
        with pytest.raises(DataError) as refused:
            checkpoint.resolve(nothing)
        assert str(nothing) in str(refused.value)


def test_a_failed_checkpoint_write_names_the_previous_checkpoint_only_when_there_is_one(tmp_path):
    run_dir = tmp_path / "run"
    state = {"models": {"G": {"w": torch.ones(1)}}}
    # A folder where a checksum must go: writing there fails, as on a full or read-only disk.
    checkpoint.path_for(run_dir, 1).with_suffix(".sha256").mkdir(parents=True)
    with pytest.raises(checkpoint.CheckpointWriteError) as first:
        checkpoint.save(state, run_dir, 1)
    assert str(checkpoint.path_for(run_dir, 1)) in str(first.value) and "previous" not in str(first.value)
    checkpoint.path_for(run_dir, 1).with_suffix(".sha256").rmdir()
    checkpoint.save(state, run_dir, 1)
    checkpoint.path_for(run_dir, 2).with_suffix(".sha256").mkdir()
    with pytest.raises(checkpoint.CheckpointWriteError) as later:
        checkpoint.save(state, run_dir, 2)
    assert f"the previous checkpoint {checkpoint.path_for(run_dir, 1)} is intact" in str(later.value)


def test_pruning_removes_an_old_checkpoint_that_has_no_checksum(tmp_path):
    state = {"models": {"G": {"w": torch.ones(1)}}}
    for step in (1, 2):
        checkpoint.save(state, tmp_path, step)
    checkpoint.path_for(tmp_path, 1).with_suffix(".sha256").unlink()  # as an older p2p wrote them
    checkpoint.save(state, tmp_path, 3)
    assert checkpoint.checkpoints(tmp_path) == [checkpoint.path_for(tmp_path, 2), checkpoint.path_for(tmp_path, 3)]


# A float32 tensor of 3 elements over one element's storage (a crafted file's zero stride): 12 bytes claimed, 4 held.
OVERCLAIMING = torch.zeros(1).as_strided((3,), (0,))


@pytest.mark.parametrize(
    "tensor, fault",
    [
        ("a string", "is a str, not a tensor"),
        (OVERCLAIMING, "claims shape (3,) (3 elements) over 4 bytes"),
        (torch.zeros(2, dtype=torch.complex64), "torch.complex64"),
        (torch.tensor([0.0, float("nan"), float("inf")]), "holds NaN"),
        (torch.tensor([0.0, float("-inf")]), "holds infinity"),
    ],
    ids=["not_a_tensor", "overclaiming", "complex", "nan", "infinity"],
)
def test_weights_no_trained_network_has_are_refused_naming_the_tensor_and_the_fault(tensor, fault):
    good = {"conv.weight": torch.ones(2, 2), "steps": torch.tensor(3), "empty": torch.zeros(0)}
    checkpoint.check_weights(good, source="run/step_1.pt")
    with pytest.raises(DataError) as refused:
        checkpoint.check_weights(good | {"decoder.bias": tensor}, source="run/step_1.pt")
    message = str(refused.value)
    assert message.startswith("run/step_1.pt: ") and "'decoder.bias'" in message and fault in message, message


def test_a_spec_that_does_not_match_its_weights_is_refused_before_anything_is_allocated(tmp_path, capsys):
    run_dir = fit_smoke(tmp_path, capsys)
    state = checkpoint.load(run_dir)
    state["spec"]["generator"]["ngf"] = 600  # ngf 600 would allocate gigabytes before the load failed
    torch.save(state, tmp_path / "edited.pt")
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (8, 8)).save(images / "a.png")
    code, _, err = run(["predict", "--ckpt", str(tmp_path / "edited.pt"), "--input", str(images), "--output", str(tmp_path / "out")], capsys)
    assert code == 2 and "needs encoder.0.1.weight of shape (600, 3, 4, 4)" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("field", "value", "message"), [
    ("step", "abc", "bad.pt: step must be a whole number >= 0, got 'abc'"),
    ("step", -1, "bad.pt: step must be a whole number >= 0, got -1"),
    ("models", {"discriminator": {}}, "bad.pt is not a complete p2p checkpoint: it holds no weights for its AtoB generator ('generator')"),
    ("spec", [1, 2], "the spec must be a mapping"),
    ("shapes", {"in_channels": "3", "out_channels": 3, "image_size": 64}, "shapes.in_channels must be a positive whole number"),
    ("shapes", {"in_channels": 3, "out_channels": 3, "image_size": -5}, "shapes.image_size must be a positive whole number"),
])
def test_a_malformed_checkpoint_spec_is_a_clear_error(tmp_path, capsys, field, value, message):
    state = checkpoint.load(fit_smoke(tmp_path, capsys))
    state[field] = value
    torch.save(state, tmp_path / "bad.pt")
    code, _, err = run(["export", "--ckpt", str(tmp_path / "bad.pt"), "--format", "exported-program", "--out", str(tmp_path / "g.pt2")], capsys)
    assert code == 2 and "Traceback" not in err
    assert message in err


@pytest.mark.parametrize("content", [[1, 2], {"step": 1}, {"models": {}}], ids=["a list", "no models", "empty models"])
def test_a_file_that_is_not_a_p2p_checkpoint_is_refused_naming_it(tmp_path, content):
    torch.save(content, tmp_path / "other.pt")
    with pytest.raises(DataError) as error:
        checkpoint.load(tmp_path / "other.pt")
    assert str(error.value) == f"{tmp_path / 'other.pt'} is not a p2p checkpoint (no models entry)"


def test_a_run_s_checkpoints_are_ordered_by_step_past_the_eight_digits_of_their_names(tmp_path):
    folder = tmp_path / checkpoint.FOLDER
    folder.mkdir()
    for step in (100_000_000, 99_999_999, 3):
        checkpoint.path_for(tmp_path, step).touch()
    assert [path.name for path in checkpoint.checkpoints(tmp_path)] == ["step_00000003.pt", "step_99999999.pt", "step_100000000.pt"]


def test_a_checkpoint_at_step_0_as_p2p_import_writes_one_is_read(tmp_path, capsys):
    state = checkpoint.load(fit_smoke(tmp_path, capsys))
    state["step"] = 0
    checkpoint.save(state, tmp_path / "imported", 0)
    assert checkpoint.read(tmp_path / "imported").state["step"] == 0


def test_a_diverged_run_keeps_no_checkpoint_with_infinite_statistics(tmp_path, capsys):
    code, _, err = run(["fit", "--config", SMOKE, "--out_dir", str(tmp_path), "--name", "wild", "--trainer.lr", "1e10",
                        "--trainer.max_steps", "20", "--trainer.checkpoint_every", "1"], capsys)
    assert code == 2 and "not finite" in err
    for path in checkpoint.checkpoints(tmp_path / "wild"):
        state = torch.load(path, weights_only=True)
        for role, weights in state["models"].items():
            assert all(torch.isfinite(t).all() for t in weights.values() if t.is_floating_point()), (path.name, role)


def test_numpy_is_seeded_so_identical_runs_save_identical_generators_states(tmp_path, capsys):
    first, second = (fit_smoke(tmp_path / name, capsys, "--trainer.max_steps", "2") for name in ("a", "b"))
    keys = [checkpoint.load(run_dir)["rng"]["numpy"]["keys"] for run_dir in (first, second)]
    assert torch.equal(*keys)


def test_a_checkpoint_without_its_checksum_loads_with_a_warning(tmp_path, capsys):
    run_dir = fit_smoke(tmp_path, capsys)
    newest = checkpoint.checkpoints(run_dir)[-1]
    newest.with_suffix(".sha256").unlink()
    with pytest.warns(UserWarning, match=r"has no step_00000004.sha256 beside it, so damage to it cannot be detected"):
        assert checkpoint.read(run_dir).state["step"] == 4

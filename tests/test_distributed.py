"""Training on several processes with torch.distributed (gloo on CPU), launched through torchrun."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import SMOKE, read_until, write_ab_folder
from p2p_core import checkpoint
from p2p_core.networks import build_generator

# Instance norm and no dropout: then a batch split over processes is the same computation as one batch.
EXACT = ["--generator.norm", "instance", "--disc.norm", "instance", "--generator.dropout", "0",
         "--data.length", "6", "--trainer.max_steps", "3"]


def fit(run_dir: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "p2p_core", "fit"]
    if args[:1] != ("--resume",):
        command += ["--config", SMOKE, "--out_dir", str(run_dir.parent), "--name", run_dir.name]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=timeout, check=False)


def generator_outputs(run_dir: Path) -> torch.Tensor:
    """The trained generator's output on a fixed batch.

    Compared instead of raw weights: the bias before an InstanceNorm has no effect, so its gradient is
    rounding noise that Adam scales up to a full step, differently in each run, without changing the model.
    """
    loaded = checkpoint.read(run_dir)
    generator = build_generator(loaded.spec.run, loaded.spec.shapes)
    generator.load_state_dict(loaded.state["models"]["generator"])
    with torch.no_grad():
        return generator.eval()(torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1)


# The R1 penalty's run of D goes through the DDP-wrapped discriminator (DDP takes its double backward) and serves
# as D's run on the real pair for the GAN term too: with it, one two-process run covers DDP's averaging of the plain
# terms' gradients and of the penalty's.
R1 = ["--loss", "cgan+l1+r1"]


@pytest.fixture(scope="module")
def ddp(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    """Two processes of batch 1, a checkpoint every step (torchrun is slow to start: one run serves the tests
    that compare with it, and its checkpoints are the ones the resume test continues from)."""
    run_dir = tmp_path_factory.mktemp("distributed") / "ddp"
    done = fit(run_dir, *EXACT, *R1, "--trainer.nproc", "2", "--trainer.checkpoint_every", "1")
    assert done.returncode == 0, done.stderr
    return run_dir, done


def test_two_processes_of_batch_1_train_like_one_process_of_batch_2(tmp_path, ddp):
    single = fit(tmp_path / "single", *EXACT, *R1, "--trainer.batch_size", "2")
    assert single.returncode == 0, single.stderr
    ddp_dir, ddp = ddp
    difference = (generator_outputs(tmp_path / "single") - generator_outputs(ddp_dir)).abs()
    # Adam turns rounding-level gradient differences into whole steps for weights whose gradient is ~0,
    # so outputs agree to about 1e-4 on average, not to the last bit. For scale: one process with batch 1
    # (the same data, not the same computation) lands 6e-3 away on average, 5e-2 at most.
    assert difference.mean() < 1e-3 and difference.max() < 1e-2
    # Only rank 0 writes: one events file, one set of checkpoints.
    assert len(list(ddp_dir.glob("events.out.tfevents.*"))) == 1
    assert ddp.stdout.count("checkpoint:") == 1


def test_a_distributed_run_resumes_on_every_rank_from_the_same_checkpoint(tmp_path, ddp):
    straight, _ = ddp
    shutil.copytree(straight, tmp_path / "resumed")
    # As if killed after the step-2 checkpoint (the schedule follows the run's length, so it runs the whole way).
    newest = checkpoint.checkpoints(tmp_path / "resumed")[-1]
    newest.unlink()
    newest.with_suffix(".sha256").unlink()
    second = fit(tmp_path / "resumed", "--resume", str(tmp_path / "resumed"), "--trainer.nproc", "2")
    assert second.returncode == 0, second.stderr
    assert "resuming" in second.stderr
    torch.testing.assert_close(generator_outputs(straight), generator_outputs(tmp_path / "resumed"), rtol=0, atol=1e-4)


def test_a_failing_rank_ends_the_job_with_its_error_instead_of_hanging(tmp_path):
    root = write_ab_folder(tmp_path / "data", count=4)
    (root / "train" / "3.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    result = fit(tmp_path / "run", "--data", "aligned", "--data.root", str(root), "--data.load_size", "36",
                 "--data.crop_size", "32", "--trainer.nproc", "2", "--trainer.max_steps", "8", "--trainer.dist_timeout", "60",
                 timeout=180)
    assert result.returncode != 0
    assert "cannot read image" in result.stderr and "3.png" in result.stderr


def worker_pid(marker: str, rank: int) -> int:
    """The process of torchrun's worker ``rank`` among those started with ``P2P_TEST_RUN=marker`` in their environment."""
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            variables = dict(entry.split("=", 1) for entry in environ.read_text(errors="replace").split("\0") if "=" in entry)
        except OSError:  # ended, or not ours to read
            continue
        if variables.get("P2P_TEST_RUN") == marker and variables.get("RANK") == str(rank):
            return int(environ.parent.name)
    raise LookupError(f"no worker of rank {rank} runs with P2P_TEST_RUN={marker}")


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the worker through /proc (Linux)")
def test_a_signal_to_one_rank_stops_every_rank_at_the_same_step_and_rank_0_says_how_to_continue(tmp_path):
    # A scheduler or the OOM killer may signal one worker alone; rank 0, which writes the checkpoint and talks to the
    # user, must stop at the same step and say that the run was stopped, not that it finished.
    run_dir = tmp_path / "signalled"
    command = [sys.executable, "-m", "p2p_core", "fit", "--config", SMOKE, "--out_dir", str(tmp_path), "--name", run_dir.name,
               *EXACT, "--trainer.nproc", "2", "--trainer.max_steps", "100000", "--trainer.n_epochs", "100000",
               "--trainer.checkpoint_every", "100000", "--trainer.log_every", "1", "--trainer.progress", "true"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               env=os.environ | {"P2P_TEST_RUN": str(run_dir)})
    try:
        # Rank 0's progress shows a finished step: both ranks are past their first step, training.
        err = read_until(process, re.compile(r"\b[1-9]\d*/100000\b"), timeout=180)
        os.kill(worker_pid(str(run_dir), rank=1), signal.SIGTERM)
        err += process.communicate(timeout=120)[1]
    finally:
        process.kill()
    stopped = re.search(r"stopped by SIGTERM at step (\d+); continue with: p2p fit --resume (\S+)", err)
    assert stopped and stopped.group(2) == str(run_dir), err
    assert checkpoint.load(run_dir)["step"] == int(stopped.group(1))
    # Rank 1 ended by the signal too, not in p2p's code after it (torchrun reports the exit codes, in its own words);
    # and rank 0 alone wrote TensorBoard's events.
    assert "p2p_core/run.py" not in err, err
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1

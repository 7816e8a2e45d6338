"""p2p against the plain eager PyTorch step (../shared/bench/reference_step.py), side by side on this machine.

Each round runs the reference and the p2p equivalent as separate processes, alternating, so drift in the
machine's speed hits both; the medians and their ratios are printed, with each process's peak RSS.

    python benchmarks/compare_reference.py --rounds 3 --steps 6            # training step, batch 1, 256x256
    python benchmarks/compare_reference.py --what fit --fit_steps 600      # p2p fit on real JPEGs vs bare step
    python benchmarks/compare_reference.py --what predict                  # p2p predict vs a bare G(x) loop
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT.parent / "shared" / "bench" / "reference_step.py"
OUTLINES = ROOT.parent / "shared" / "data" / "outlines"


def run_with_rss(command: list[str]) -> tuple[str, float]:
    """stdout and peak RSS (MiB) of one child process, read with wait4 so no other child's memory counts."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = process.stdout.read()
    err = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"{' '.join(command)} failed:\n{err}")
    return out, usage.ru_maxrss / 1024


def reference(steps: int) -> tuple[float, float]:
    out, rss = run_with_rss([sys.executable, str(REFERENCE), "--steps", str(steps), "--warmup", "2"])
    return float(re.search(r"reference images/s ([\d.]+)", out).group(1)), rss


def p2p_bench(steps: int) -> tuple[float, float]:
    command = [sys.executable, "-m", "p2p_core", "bench", "--steps", str(steps), "--warmup", "2", "--no_inference", "--json",
               "--trainer.device", "cpu"]
    out, rss = run_with_rss(command)
    return json.loads(out)["train_images_per_s"], rss


def p2p_fit(steps: int) -> float:
    """Steady-state images/s of a real run: JPEG decoding, jitter, logging and a checkpoint every 500 steps."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", "p2p_core", "fit", "--data", "aligned", "--data.root", str(OUTLINES),
                   "--trainer.max_steps", str(steps), "--trainer.checkpoint_every", "500", "--trainer.log_every", "50",
                   "--trainer.image_every", "500", "--trainer.progress", "false", "--trainer.device", "cpu",
                   "--out_dir", folder, "--name", "bench"]
        run_with_rss(command)
        rates = [s.value for s in EventAccumulator(str(Path(folder) / "bench")).Reload().Scalars("perf/images_per_sec")]
    return statistics.mean(rates[1:])  # the first interval holds start-up


def predict_vs_bare(images: Path) -> tuple[float, float, float]:
    """images/s of `p2p predict` over a folder (its translation loop, and the whole command with start-up and
    loading), and of a bare G(x) loop on the same images, already decoded."""
    import time

    import torch

    from p2p_core import checkpoint, create
    from p2p_core.images import list_images, read_image
    from p2p_core.training import Training
    from p2p_core.spec import ComponentSpec, RunSpec, Shapes, TrainConfig

    with tempfile.TemporaryDirectory() as folder:
        spec = RunSpec(generator=ComponentSpec("unet"), disc=ComponentSpec("patch70"), data=ComponentSpec("synthetic"),
                       trainer=TrainConfig(device="cpu"))
        model = Training.build(spec, Shapes(in_channels=3, out_channels=3, image_size=256), total_steps=1)
        checkpoint_path = checkpoint.save(model.state_dict(), Path(folder) / "run", 0)
        files = list_images(images)
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "p2p_core", "predict", "--ckpt", str(checkpoint_path), "--input",
                               str(images), "--output", str(Path(folder) / "out"), "--mode", "eval", "--device", "cpu"],
                              check=True, capture_output=True, text=True)
        with_startup = len(files) / (time.perf_counter() - start)
        predict_rate = float(re.search(r"([\d.]+) images/s", done.stdout).group(1))
    generator = create("generator", "unet", in_channels=3, out_channels=3, image_size=256).eval()
    tensors = [read_image(path) for path in files]
    with torch.inference_mode():
        generator(tensors[0][None, :, :256, :256])
        start = time.perf_counter()
        for tensor in tensors:
            height, width = (side // 256 * 256 or 256 for side in tensor.shape[-2:])
            generator(torch.nn.functional.pad(tensor, (0, max(0, width - tensor.shape[-1]), 0, max(0, height - tensor.shape[-2])),
                                              mode="reflect")[None, :, :height, :width])
        bare_rate = len(tensors) / (time.perf_counter() - start)
    return predict_rate, with_startup, bare_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--what", choices=["step", "fit", "predict"], default="step")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--fit_steps", type=int, default=600)
    args = parser.parse_args()

    if args.what == "predict":
        predict_rate, with_startup, bare_rate = predict_vs_bare(OUTLINES / "val")
        print(f"p2p predict {predict_rate:.3f} images/s ({with_startup:.3f} counting start-up and loading), "
              f"bare G(x) {bare_rate:.3f} images/s, ratio {predict_rate / bare_rate:.3f} ({with_startup / bare_rate:.3f})")
        return
    references, rss_reference, ours, rss_ours = [], [], [], []
    for round_ in range(args.rounds):
        rate, rss = reference(args.steps)
        references.append(rate)
        rss_reference.append(rss)
        if args.what == "step":
            rate, rss = p2p_bench(args.steps)
            rss_ours.append(rss)
        else:
            rate = p2p_fit(args.fit_steps)
        ours.append(rate)
        print(f"round {round_ + 1}: reference {references[-1]:.3f} images/s, p2p {args.what} {rate:.3f} images/s", flush=True)
    ref, own = statistics.median(references), statistics.median(ours)
    print(f"median: reference {ref:.3f} images/s, p2p {args.what} {own:.3f} images/s, ratio {own / ref:.3f}")
    if rss_ours:
        print(f"peak RSS: reference {max(rss_reference):.0f} MiB, p2p bench {max(rss_ours):.0f} MiB, "
              f"ratio {max(rss_ours) / max(rss_reference):.3f}")


if __name__ == "__main__":
    main()

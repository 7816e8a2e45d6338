"""Where one training step's time goes: torch.profiler over the model's own step, top operators by CPU time.

    python benchmarks/profile_step.py --size 256 --steps 3
"""

from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from p2p_core.protocols import Sample
from p2p_core.training import Training
from p2p_core.spec import ComponentSpec, RunSpec, Shapes, TrainConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rows", type=int, default=15)
    args = parser.parse_args()
    spec = RunSpec(generator=ComponentSpec("unet"), disc=ComponentSpec("patch70"), data=ComponentSpec("synthetic"),
                   trainer=TrainConfig(device="cpu"))
    trainer = Training.build(spec, Shapes(in_channels=3, out_channels=3, image_size=args.size), total_steps=args.steps + 1)
    batch = Sample(*(torch.rand(1, 3, args.size, args.size) * 2 - 1 for _ in range(2)), path="")
    trainer.train_step(batch)  # warm-up: allocations, first-call dispatch
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=activities) as profiler:
        for _ in range(args.steps):
            trainer.train_step(batch)
    print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows, max_name_column_width=40))


if __name__ == "__main__":
    main()

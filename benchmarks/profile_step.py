"""Where one training step's time goes: torch.profiler over the engine's own step, top operators by CPU time.

    python benchmarks/profile_step.py --size 256 --steps 3
"""

from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from p2p_core.engine import Choice, Trainer, TrainConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rows", type=int, default=15)
    args = parser.parse_args()
    trainer = Trainer(
        generator=Choice("unet", {}), discriminator=Choice("patch70", {}), loss="cgan+l1", loss_options={},
        data=Choice("synthetic", {"length": 1, "load_size": args.size, "crop_size": args.size}),
        train=TrainConfig(device="cpu", num_workers=0, progress=False), run_dir="unused",
    )
    x, y = (torch.rand(1, 3, args.size, args.size) * 2 - 1 for _ in range(2))
    trainer.train_step(x, y)  # warm-up: allocations, first-call dispatch
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=activities) as profiler:
        for _ in range(args.steps):
            trainer.train_step(x, y)
    print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows, max_name_column_width=40))


if __name__ == "__main__":
    main()

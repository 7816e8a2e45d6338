"""Rebuild a finished sweep's comparison (results.md/.csv, grid.png, histograms.png) from its run folders.

    python docs/results/report.py runs/SWEEP OUT

Each run is tested again exactly as ``p2p sweep`` tested it (val split, paper mode, dropout seed 0), which
reproduces its metrics bit for bit; training minutes are taken from the sweep's results.csv. Used here to
redraw the committed figures after the histogram legend moved beside the panels.
"""

from __future__ import annotations

import csv
import shutil
import sys
import tempfile
from pathlib import Path

from p2p_core.evaluation import run_test
from p2p_core.sweep import SweepRun, write_report

sweep, out = Path(sys.argv[1]), Path(sys.argv[2])
with open(sweep / "results.csv") as handle:
    table = list(csv.DictReader(handle))
scratch = Path(tempfile.mkdtemp())
runs = [
    SweepRun(
        name=row["run"],
        train_seconds=float(row["train_min"]) * 60,
        result=run_test(ckpt=sweep / "runs" / row["run"], out=scratch / row["run"]),
    )
    for row in table
]
write_report(runs, out, caption="val split, paper test-time mode")
for row, run in zip(table, runs):
    again = run.row()
    changed = [key for key in ("l1", "psnr", "ssim", "hist_L", "hist_a", "hist_b") if float(row[key]) != again[key]]
    print(f"{run.name}: {'reproduced' if not changed else 'CHANGED ' + ', '.join(changed)}")
shutil.rmtree(scratch)

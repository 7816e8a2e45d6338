"""How long `p2p` takes to start, beside the cost of importing torch itself, side by side in one run.

    python benchmarks/startup.py --repeats 5

Each command runs in a fresh interpreter; the table gives the median wall time of ``--repeats`` runs and its
ratio to ``python -c "import torch"``. ``p2p --help`` imports no torch at all; ``p2p list`` loads every plugin
(which imports torch) but not torchvision, whose import pulls in its whole model zoo.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "python -c 'import torch'": [sys.executable, "-c", "import torch"],
    "p2p --help": [sys.executable, "-m", "p2p_core", "--help"],
    "p2p list": [sys.executable, "-m", "p2p_core", "list"],
    "p2p fit --help": [sys.executable, "-m", "p2p_core", "fit", "--help"],
}


def median_seconds(command: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    seconds = {name: median_seconds(command, args.repeats) for name, command in COMMANDS.items()}
    torch_import = seconds["python -c 'import torch'"]
    print("| command | median s | / import torch |\n| --- | --- | --- |")
    for name, value in seconds.items():
        print(f"| `{name}` | {value:.2f} | {value / torch_import:.2f} |")


if __name__ == "__main__":
    main()

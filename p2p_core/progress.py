"""How a run reports itself: a live bar on a terminal, plain lines in a log file, or nothing.

A terminal gets a tqdm bar with the loss terms beside step, rate and ETA. Anything else (a file, a pipe, a
cluster's log) gets one plain line every ``log_every`` steps, since a bar there is one endless line of
carriage returns.
"""

from __future__ import annotations

import datetime
import sys
import time
from collections.abc import Mapping
from typing import IO, Literal

from tqdm.auto import tqdm

Style = Literal["bar", "lines", "off"]


def choose_style(enabled: bool, stream: IO[str] | None = None) -> Style:
    stream = stream or sys.stderr
    if not enabled:
        return "off"
    return "bar" if getattr(stream, "isatty", lambda: False)() else "lines"


class Progress:
    """Reports steps of a run of ``total`` steps starting at ``initial``; ``close`` when done."""

    def __init__(self, *, total: int, initial: int, style: Style, stream: IO[str] | None = None) -> None:
        self.total, self.style, self.stream = total, style, stream or sys.stderr
        self._started, self._initial = time.perf_counter(), initial
        self._bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, file=self.stream) if style == "bar" else None

    def step(self) -> None:
        if self._bar is not None:
            self._bar.update()

    def report(self, step: int, losses: Mapping[str, float], images_per_s: float) -> None:
        """The latest interval's mean losses and speed: beside the bar, or as one line."""
        if self._bar is not None:
            self._bar.set_postfix({k: f"{v:.3g}" for k, v in losses.items()} | {"img/s": f"{images_per_s:.2f}"})
        elif self.style == "lines":
            done = step - self._initial
            elapsed = time.perf_counter() - self._started
            eta = datetime.timedelta(seconds=round(elapsed / done * (self.total - step))) if done else "?"
            terms = "  ".join(f"{name} {value:.4g}" for name, value in losses.items())
            print(f"step {step}/{self.total} ({100 * step / self.total:.0f}%)  {images_per_s:.2f} img/s  {terms}  ETA {eta}",
                  file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

"""Validation during training: the test metrics on a fixed subset of the validation split, and the best score."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from p2p_core.errors import ConfigError
from p2p_core.inference import image_of
from p2p_core.metrics import HIGHER_IS_BETTER, Evaluation, better
from p2p_core.test_time import Mode, set_mode


class Validator:
    """Scores a generator on the same validation pairs every time, leaving training exactly as it was.

    The pairs are spread evenly over the split and read once. Scoring runs under its own random seed (paper
    mode samples dropout) and restores the generator's mode and BatchNorm statistics afterwards, so a run with
    validation trains exactly like one without.
    """

    def __init__(self, *, dataset: Dataset, samples: int, metric: str, mode: Mode, device: torch.device) -> None:
        if samples < 1:
            raise ConfigError(f"--trainer.validate_samples must be at least 1, got {samples}")
        if metric not in HIGHER_IS_BETTER or metric == "fid":
            choices = ", ".join(m for m in HIGHER_IS_BETTER if m != "fid")
            raise ConfigError(f"--trainer.best_metric {metric!r} is not measured during training; choose one of {choices}")
        count = min(samples, len(dataset))
        indices = torch.linspace(0, len(dataset) - 1, count).round().long().unique().tolist()
        # A list, not a batch: without resizing (preprocess none) the images may differ in size.
        self.pairs = [(pair.a[None].to(device), pair.b[None].to(device)) for pair in map(dataset.__getitem__, indices)]
        self.metric, self.mode, self.device = metric, mode, device
        self.best: float | None = None
        self.best_step: int | None = None

    def __call__(self, generator: nn.Module) -> dict[str, float]:
        """The metrics' means over the subset, one image at a time as at test time."""
        was_training = generator.training
        buffers = {name: buffer.clone() for name, buffer in generator.named_buffers()}
        evaluation = Evaluation()
        devices = [self.device] if self.device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=devices), torch.no_grad():
                torch.manual_seed(0)
                set_mode(generator, self.mode)
                for x, target in self.pairs:
                    evaluation.add(image_of(generator(x)), target)
        finally:
            # Paper mode runs BatchNorm in training mode, which would fold validation images into its statistics.
            for name, buffer in generator.named_buffers():
                buffer.copy_(buffers[name])
            generator.train(was_training)
        return evaluation.summary()

    def improved(self, scores: Mapping[str, float], step: int) -> bool:
        """Whether ``scores`` beat the best so far on the chosen metric; if so they become the best."""
        value = scores[self.metric]
        if not better(self.metric, value, self.best):
            return False
        self.best, self.best_step = value, step
        return True

    def state_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "value": self.best, "step": self.best_step}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        # A run resumed with another --trainer.best_metric starts its best from scratch.
        if state.get("metric") == self.metric:
            self.best, self.best_step = state["value"], state["step"]

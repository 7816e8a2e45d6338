"""An exponential moving average of the generators' weights: ``--trainer.ema 0.999`` (0, the default, keeps none).

After every step each generator that translates (pix2pix's one, both of a method trained both ways) is blended
into its average: ``average = decay * average + (1 - decay) * weights``, BatchNorm's running statistics alike,
starting from the weights training starts from. The averages live in ``training.averaged``, so the core keeps
them in checkpoints, resumes them, validates with them, and ``predict``, ``test``, ``export`` and ``demo`` use
them. A built-in, written with the training hooks a plugin of yours has (CONTRIBUTING: "Training callbacks").
"""

from __future__ import annotations

import copy
from torch.optim.swa_utils import get_ema_multi_avg_fn

import p2p_core
from p2p_core.training import Training


@p2p_core.hookimpl
def p2p_train_start(training: Training) -> None:
    if training.config.ema:
        for role in dict.fromkeys(training.trained.directions.values()):
            training.averaged[role] = copy.deepcopy(training.networks[role]).requires_grad_(False)


@p2p_core.hookimpl
def p2p_train_step_end(training: Training) -> None:
    if not training.config.ema:
        return
    blend = get_ema_multi_avg_fn(training.config.ema)
    for role, average in training.averaged.items():
        kept, current = average.state_dict(), training.networks[role].state_dict()
        floating = [name for name, tensor in kept.items() if tensor.is_floating_point()]
        blend([kept[name] for name in floating], [current[name] for name in floating], None)
        for name in kept.keys() - set(floating):  # integer buffers (BatchNorm's num_batches_tracked) count: copied
            kept[name].copy_(current[name])

"""The reference's ResnetGenerator files, for ``p2p import`` and ``--ckpt pretrained:NAME``.

The CycleGAN models of junyanz/pytorch-CycleGAN-and-pix2pix are state dicts of its ``ResnetGenerator``
(``models/networks.py``). They load into p2p-plugin-example's ``resnet9``, whose module has the reference's layout:
one Sequential ``model`` holding 0 ReflectionPad2d(3), 1 Conv2d 7x7 (in -> ngf), 2 norm, 3 ReLU; 4 Conv2d stride 2,
5 norm, 6 ReLU; 7 Conv2d stride 2, 8 norm, 9 ReLU; the residual blocks at 10 .. 9 + n_blocks; then two
ConvTranspose2d, each with norm and ReLU, ReflectionPad2d(3), Conv2d 7x7 (ngf -> out) and Tanh. A block's Sequential,
``conv_block`` there and ``body`` in resnet9, holds ReflectionPad2d, Conv2d, norm, ReLU, (Dropout(0.5) with
``use_dropout``), ReflectionPad2d, Conv2d, norm.

Everything else is read off the tensors: ngf and the input channels from the first convolution, the output channels
from the last, the number of blocks from their indices, dropout from where a block's second convolution sits, the
norm from the tensors of ``model.2``. Batch norm holds an affine scale and running statistics, and only the last
convolution has a bias; the reference's instance norm holds nothing (files from before PyTorch 0.4 hold running
statistics it never uses, which are dropped as the reference's own test code drops them) and every convolution has
a bias, which the norm cancels but which is kept to reproduce the outputs exactly.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from torch import Tensor

from p2p_core.errors import DataError
from p2p_core.reference import UNUSED_INSTANCE_STATISTICS, Converted

GENERATOR = "p2p-plugin-example:resnet9"
"""The component the files load into, by its qualified name, which no other plugin's resnet9 can take."""
FIRST_BLOCK = 10
"""Index in ``model`` of the first residual block: the stem (0-3) and two downsamplings (4-9) come before it."""
BLOCK_TENSOR = re.compile(r"model\.(\d+)\.conv_block\.(\d+)\.(\w+)")
SECOND_CONVOLUTION = {5: 0.0, 6: 0.5}
"""Where a block's second convolution sits, and the dropout that puts it there (the reference's use_dropout)."""
TRAINING_SIZE = 256
"""The reference's --crop_size, what its released models trained on; the network itself takes any multiple of 4."""


def resnet_generator(state: Mapping[str, Tensor]) -> Converted | None:
    """The reference's ResnetGenerator (resnet_9blocks, resnet_6blocks, any number of blocks) as p2p-plugin-example's
    resnet9: batch or instance norm, with or without dropout. None for a state dict without residual blocks."""
    blocks = sorted({int(match[1]) for key in state if (match := BLOCK_TENSOR.fullmatch(key))})
    if not blocks:
        return None
    if blocks != list(range(FIRST_BLOCK, FIRST_BLOCK + len(blocks))):
        raise DataError(
            f"residual blocks at model.{', model.'.join(map(str, blocks))}; a ResnetGenerator numbers them from "
            f"model.{FIRST_BLOCK} without gaps"
        )
    first = _convolution(state, "model.1.weight", "the first convolution")
    # After the blocks: transposed convolution, norm, ReLU, the same again, padding, the last convolution.
    last = _convolution(state, f"model.{FIRST_BLOCK + len(blocks) + 7}.weight", f"the last convolution (after {len(blocks)} blocks)")
    norm = "batch" if "model.2.weight" in state else "instance"
    if norm == "instance" and "model.1.bias" not in state:
        raise DataError(
            "neither norm tensors nor 'model.1.bias': the reference's norm 'none', whose convolutions have no biases; "
            "resnet9 without a norm has biases, so it cannot be imported exactly"
        )
    options: dict[str, Any] = {
        "ngf": first.shape[0],
        "norm": norm,
        "n_blocks": len(blocks),
        "dropout": _dropout(state),
        "conv_bias": "all" if norm == "instance" else "unnormalised",
    }
    if norm == "instance":
        state = {key: tensor for key, tensor in state.items() if key.rpartition(".")[2] not in UNUSED_INSTANCE_STATISTICS}
    return Converted(
        role="generator",
        name=GENERATOR,
        options=options,
        in_channels=first.shape[1],
        out_channels=last.shape[0],
        image_size=TRAINING_SIZE,
        state_dict={key.replace(".conv_block.", ".body."): tensor for key, tensor in state.items()},
    )


def _dropout(state: Mapping[str, Tensor]) -> float:
    """The dropout rate the blocks' layout shows: where their second convolution sits."""
    convolutions = {int(match[2]) for key, tensor in state.items()
                    if (match := BLOCK_TENSOR.fullmatch(key)) and match[3] == "weight" and tensor.dim() == 4}
    second = convolutions - {1}
    if len(second) != 1 or next(iter(second)) not in SECOND_CONVOLUTION:
        found = ", ".join(f"conv_block.{index}" for index in sorted(convolutions))
        raise DataError(
            f"residual blocks with convolutions at {found}; a ResnetGenerator's are at conv_block.1 and conv_block.5 "
            "(conv_block.6 with dropout)"
        )
    return SECOND_CONVOLUTION[next(iter(second))]


def _convolution(state: Mapping[str, Tensor], key: str, what: str) -> Tensor:
    if key not in state:
        raise DataError(f"missing tensor {key!r}, {what} of a ResnetGenerator")
    if state[key].dim() != 4:
        raise DataError(f"tensor {key!r} has shape {tuple(state[key].shape)}; the weight of {what} is 4-d")
    return state[key]

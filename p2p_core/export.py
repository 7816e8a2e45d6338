"""``p2p export``: a trained generator as one self-contained file, and a JSON beside it saying how to feed it.

The file holds the generator alone: it takes N x C x H x W float32 in [-1, 1] with H and W multiples of
``size_multiple``, any batch, and returns the same layout. Padding an image of another size to the next
multiples and cropping the output back (:func:`p2p_core.inference.translate`) is left to the caller, and the
JSON records how. Every export is loaded back and checked against the PyTorch model at a size other than
the one it was traced at, so a generator whose graph does not generalise fails here, not in production.
"""

from __future__ import annotations

import importlib.util
import json
import os
import warnings
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Literal

import attrs
import torch
import torch.fx.experimental._config
from torch import Tensor, nn
from torch.export import Dim

from p2p_core.errors import ConfigError, DataError
from p2p_core.inference import PADDING_MODE, TrainedGenerator, load_generator
from p2p_core.registry import Registry
from p2p_core.spec import Mode

Format = Literal["torchscript", "onnx", "exported-program"]
INPUT_NAME, OUTPUT_NAME = "image", "translated"
CHANNELS = {1: "grayscale (ITU-R 601 luma)", 3: "RGB", 4: "RGBA"}
TOLERANCE = 1e-3
"""Largest difference from the PyTorch model an export may show: an eighth of one 8-bit level, far above what
float32 reorderings in another runtime cause, far below a wrong graph."""


@attrs.frozen(kw_only=True)
class Exported:
    """The files written and how closely the export reproduced the model."""

    path: Path
    description: Path
    checked_shape: tuple[int, ...] | None
    difference: float | None
    """Largest absolute difference from the PyTorch model at ``checked_shape``; None when not checked."""

    def __str__(self) -> str:
        if self.checked_shape is None:
            check = "not checked against the model: onnxruntime is not installed (pip install 'p2p[export]')"
        else:
            shape = " x ".join(map(str, self.checked_shape))
            check = f"matches the model at {shape} (largest difference {self.difference:.2g})"
        return f"wrote {self.path} and {self.description}; {check}"


def export(
    *, ckpt: Path, format: Format, out: Path, mode: Mode = "eval", overwrite: bool = False, registry: Registry | None = None
) -> Exported:
    """Write a checkpoint's generator as a TorchScript, ONNX or torch.export file, and OUT.json describing it.

    Args:
        ckpt: Checkpoint file, or a run folder (its newest checkpoint that loads).
        format: torchscript (a trace; load with torch.jit.load), onnx (any ONNX runtime), or exported-program
            (torch.export; load with torch.export.load). All take any batch, height and width that are
            multiples of size_multiple.
        out: The file to write (conventionally .pt, .onnx or .pt2); its description goes to OUT.json.
        mode: eval: dropout off and batch norm with its running statistics, so outputs are deterministic.
            paper: dropout on and batch statistics, as `p2p predict` does by default (not for onnx, which
            fixes both at export).
        overwrite: Replace existing files at OUT and OUT.json.
    """
    out = Path(out)
    description = out.with_name(f"{out.name}.json")
    if format == "onnx" and mode == "paper":
        raise ConfigError(
            "ONNX export fixes dropout and batch statistics, so --mode paper cannot be kept; use --mode eval, "
            "or --format torchscript or exported-program"
        )
    if format == "onnx":
        _require_onnx_exporter()
    existing = [path for path in (out, description) if path.exists()]
    if existing and not overwrite:
        raise DataError(f"{existing[0]} already exists; pass --overwrite to replace it, or choose another --out")

    trained = load_generator(ckpt, mode=mode, registry=registry)
    module, multiple = trained.module, trained.module.size_multiple
    # Sizes of 0 or 1 would be specialised by torch.export, and equal sizes could be taken for one dimension.
    example = _example(trained, batch=2, height=2 * multiple, width=3 * multiple)
    checked = _example(trained, batch=1, height=3 * multiple, width=multiple)
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(f".tmp-{out.name}")
    try:
        WRITERS[format](module, example, temporary)
        difference = _difference(module, temporary, format, checked)
        if difference is not None and difference > TOLERANCE:
            fix = "try --format exported-program" if format == "torchscript" else "the generator must not compute Python values from shapes"
            raise ConfigError(
                f"the {format} export of generator {trained.name!r} differs from the model by up to "
                f"{difference:.3g} at {' x '.join(map(str, checked.shape))}, so its graph does not generalise from "
                f"the size it was traced at; {fix}"
            )
        os.replace(temporary, out)
    finally:
        temporary.unlink(missing_ok=True)
    result = Exported(
        path=out, description=description, checked_shape=None if difference is None else tuple(checked.shape), difference=difference
    )
    description.write_text(json.dumps(describe(trained, result, format=format, mode=mode), indent=2) + "\n")
    return result


def describe(trained: TrainedGenerator, exported: Exported, *, format: Format, mode: Mode) -> dict[str, Any]:
    """The JSON written beside an export: what goes in and out, and how to prepare images for it."""
    multiple = trained.module.size_multiple

    def tensor(name: str, channels: int) -> dict[str, Any]:
        return {
            "name": name,
            "layout": "N x C x H x W",
            "dtype": "float32",
            "channels": channels,
            "channel_meaning": CHANNELS.get(channels, f"{channels} channels"),
            "value_range": [-1.0, 1.0],
        }

    return {
        "format": format,
        "file": exported.path.name,
        "mode": mode,
        "mode_meaning": {
            "eval": "dropout off, batch norm uses its running statistics; deterministic",
            "paper": "dropout on and batch statistics at test time, as in the paper; outputs vary between calls",
        }[mode],
        "input": tensor(INPUT_NAME, trained.in_channels),
        "output": tensor(OUTPUT_NAME, trained.out_channels),
        "pixels": "x = pixel / 127.5 - 1 for 8-bit pixels; back: pixel = round((y + 1) * 127.5), clipped to [0, 255]",
        "size_multiple": multiple,
        "dynamic": {"batch": True, "height": f"any multiple of {multiple}", "width": f"any multiple of {multiple}"},
        "padding": {
            "mode": PADDING_MODE,
            "how": (
                f"pad H and W up to the next multiples of {multiple}: floor(padding / 2) rows (columns) at the top (left), "
                f"the rest at the bottom (right), mirrored without repeating the edge pixel ({PADDING_MODE}; mirror "
                f"again while the padding is wider than the image); run; cut the input's H x W back out of the output"
            ),
        },
        "training_image_size": trained.image_size,
        "generator": {"name": trained.name, "options": dict(trained.trained.run.generator.options)},
        "checkpoint": str(trained.path),
        "step": trained.step,
        "checked": None if exported.difference is None else {"shape": list(exported.checked_shape), "max_abs_difference": exported.difference},
        "p2p_version": _version(),
    }


def load(path: Path, format: Format) -> Callable[[Tensor], Tensor]:
    """An exported generator as a function of an N x C x H x W tensor, run by the format's own runtime."""
    path = Path(path)
    if format == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation: the docs say so, once
            return torch.jit.load(str(path), map_location="cpu")
    if format == "exported-program":
        with open(path, "rb") as handle:
            return torch.export.load(handle).module()
    try:
        import onnxruntime
    except ImportError:
        raise ConfigError(f"running {path} needs onnxruntime; pip install 'p2p[export]'") from None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def run(x: Tensor) -> Tensor:
        (y,) = session.run([OUTPUT_NAME], {INPUT_NAME: x.detach().cpu().numpy()})
        return torch.from_numpy(y)

    return run


def _example(trained: TrainedGenerator, *, batch: int, height: int, width: int) -> Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.rand(batch, trained.in_channels, height, width, generator=generator) * 2 - 1


def _difference(module: nn.Module, path: Path, format: Format, x: Tensor) -> float | None:
    """Largest |export(x) - module(x)|; None for ONNX without onnxruntime to run it."""
    if format == "onnx" and importlib.util.find_spec("onnxruntime") is None:
        return None
    exported = load(path, format)
    # One seed for both runs, so that in paper mode they draw the same dropout; the caller's RNG is left alone.
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(0)
        expected = module(x)
        torch.manual_seed(0)
        found = exported(x)
    return float((found - expected).abs().max())


def _dynamic_shapes(multiple: int) -> tuple[dict[int, Any], ...]:
    height, width = Dim("height", min=1), Dim("width", min=1)
    return ({0: Dim("batch", min=1), 2: multiple * height, 3: multiple * width},)


def _torchscript(module: nn.Module, example: Tensor, path: Path) -> None:
    with warnings.catch_warnings():
        # The trace warns that shape-dependent Python (the generator's size check) is fixed at the traced
        # size; the check after export is what shows that the convolutions generalise. torch.jit's deprecation
        # is noted in the docs instead of on every export.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", FutureWarning)
        with torch.no_grad():  # the traced run need not keep activations for a backward pass
            traced = torch.jit.trace(module, example, check_trace=False)
    traced.save(str(path))


def _exported_program(module: nn.Module, example: Tensor, path: Path) -> None:
    # Tracing assumes that no size is 1, and a contiguity check then guards that H / size_multiple is not 1:
    # the program would refuse inputs one multiple high or wide (a 1-pixel bottleneck). Size-oblivious
    # tracing keeps such checks general instead; the check after export runs a width of one multiple.
    with torch.fx.experimental._config.patch(backed_size_oblivious=True):
        program = torch.export.export(module, (example,), dynamic_shapes=_dynamic_shapes(module.size_multiple))
    with open(path, "wb") as handle:  # a handle, as torch.export.save warns about names not ending in .pt2
        torch.export.save(program, handle)


def _onnx(module: nn.Module, example: Tensor, path: Path) -> None:
    torch.onnx.export(
        module,
        (example,),
        str(path),
        dynamo=True,
        dynamic_shapes=_dynamic_shapes(module.size_multiple),
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        external_data=False,  # one self-contained file; fine below ONNX's 2 GB limit, and the U-Net is ~220 MB
        verbose=False,
    )


WRITERS: dict[str, Callable[[nn.Module, Tensor, Path], None]] = {
    "torchscript": _torchscript,
    "exported-program": _exported_program,
    "onnx": _onnx,
}


def _require_onnx_exporter() -> None:
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as error:
        raise ConfigError(f"--format onnx needs the onnx and onnxscript packages ({error}); pip install 'p2p[export]'") from None


def _version() -> str:
    try:
        return version("p2p")
    except PackageNotFoundError:
        return "unknown"

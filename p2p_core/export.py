"""``p2p export``: a trained generator as one self-contained file, and a JSON beside it describing it.

ONNX and exported-program files take N x C x H x W float32 in [-1, 1] of any batch and any H, W >= 1 and
return the translation at the same H x W: the reflect-padding to the generator's ``size_multiple`` and the
crop back (:class:`p2p_core.inference.AnySize`) are inside the graph, exactly as
:func:`p2p_core.inference.translate` does them, so a program without p2p feeds it images as they are.
TorchScript (deprecated by PyTorch: ``torch.jit`` warns on load) holds the bare generator, which needs H and W
to be multiples of ``size_multiple``; its JSON says how to pad. safetensors holds the weights and the spec that
rebuilds the generator (:mod:`p2p_core.weights`), the format models are shared in; every ``--ckpt`` reads it. Every export is loaded back and checked
against the model at odd sizes (37 x 100, 1 x 1, 300 x 257, and a multiple), so a graph that does not
generalise fails here, not in production.
"""

from __future__ import annotations

import importlib.util
import json
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

from p2p_core import weights
from p2p_core.checkpoint import guarded
from p2p_core.errors import ConfigError, DataError
from p2p_core.files import refuse_overlap, replacing
from p2p_core.inference import PADDING_MODE, AnySize, TrainedGenerator, image_of, load_generator, translate
from p2p_core.registry import Registry
from p2p_core.protocols import Direction
from p2p_core.spec import IMAGE_ENCODING, MAX_MEMORY_GB, Mode, input_classes

Format = Literal["torchscript", "onnx", "exported-program", "safetensors"]
INPUT_NAME, OUTPUT_NAME = "image", "translated"
CALLER_PADS = ("torchscript", "safetensors")
"""Formats that hold the bare generator, so the caller pads H and W to multiples of its ``size_multiple``."""
CHANNELS = {1: "grayscale (ITU-R 601 luma)", 3: "RGB", 4: "RGBA"}
CHECKED_SIZES = ((37, 100), (1, 1), (300, 257))
"""Sizes every any-size export is run at before it is kept, besides one multiple: not multiples, not square,
and a single pixel (replicated, not reflected)."""
TOLERANCE = 1e-3
"""Largest difference from the PyTorch model an export may show: an eighth of one 8-bit level, far above what
float32 reorderings in another runtime cause, far below a wrong graph."""


@attrs.frozen(kw_only=True)
class Exported:
    """The files written and how closely the export reproduced the model."""

    path: Path
    description: Path
    checked_shapes: tuple[tuple[int, ...], ...]
    """The input shapes the export was run at and compared with the model; empty when not checked."""
    difference: float | None
    """Largest absolute difference from the PyTorch model over ``checked_shapes``; None when not checked."""

    def __str__(self) -> str:
        if not self.checked_shapes:
            check = "not checked against the model: onnxruntime is not installed (pip install 'p2p[export]')"
        else:
            shapes = ", ".join(" x ".join(map(str, shape)) for shape in self.checked_shapes)
            check = f"matches the model at {shapes} (largest difference {self.difference:.2g})"
        return f"wrote {self.path} and {self.description}; {check}"


def export(
    *,
    ckpt: Path,
    format: Format,
    out: Path,
    mode: Mode = "eval",
    overwrite: bool = False,
    direction: Direction = "AtoB",
    max_memory_gb: float = MAX_MEMORY_GB,
    ema: bool = True,
    registry: Registry | None = None,
) -> Exported:
    """Write a checkpoint's generator as a TorchScript, ONNX, torch.export or safetensors file, and OUT.json describing it.

    Args:
        ckpt: Checkpoint file, run folder (its newest checkpoint that loads), model.safetensors (or its folder),
            pretrained:NAME, or hf:OWNER/NAME[@REVISION] (a p2p model on the Hugging Face Hub).
        format: onnx (any ONNX runtime) or exported-program (torch.export; load with torch.export.load): both
            take any batch, height and width and pad inside the graph. torchscript is deprecated (torch.jit is
            deprecated by PyTorch): a trace taking only multiples of size_multiple, the caller pads. safetensors:
            the weights with the spec that rebuilds the generator in its metadata, never unpickled; every --ckpt
            reads it, and `p2p push` shares it on the Hugging Face Hub.
        out: The file to write (conventionally .pt, .onnx or .pt2); its description goes to OUT.json.
        mode: eval: dropout off and batch norm with its running statistics, so outputs are deterministic.
            paper: dropout on and batch statistics, as `p2p predict` does by default (not for onnx, which
            fixes both at export).
        overwrite: Replace existing files at OUT and OUT.json.
        direction: AtoB, or BtoA for a model whose method trained both ways (a plugin's unpaired method); pix2pix models translate AtoB.
        max_memory_gb: Refuse a model whose weights and one image at its training size need more memory than this
            (a small file can describe a network of terabytes).
        ema: Use the moving average of the generator's weights where the checkpoint holds one (trained with
            --trainer.ema); --no_ema uses the trained weights.
    """
    out = Path(out)
    if out.is_dir() or not out.name:
        raise ConfigError(f"--out {str(out)!r} is a folder; give the file to write, e.g. --out {out / 'model.onnx'}")
    description = out.with_name(f"{out.name}.json")
    if format == "onnx" and mode == "paper":
        raise ConfigError(
            "ONNX export fixes dropout and batch statistics, so --mode paper cannot be kept; use --mode eval, "
            "or --format exported-program"
        )
    if format == "onnx":
        require_onnx_exporter()
    if format == "torchscript":
        warnings.warn(
            "--format torchscript is deprecated: torch.jit is deprecated by PyTorch, and the trace takes only sizes "
            "that are multiples of size_multiple; use --format exported-program or onnx, which take any size",
            FutureWarning,
            stacklevel=2,
        )
    existing = [path for path in (out, description) if path.exists()]
    if existing and not overwrite:
        raise DataError(f"{existing[0]} already exists; pass --overwrite to replace it, or choose another --out")

    # Located once, by loading: a Hub reference is resolved by one request, and the file it names is then guarded.
    trained = load_generator(ckpt, mode=mode, registry=registry, direction=direction, max_memory_gb=max_memory_gb, ema=ema)
    refuse_overlap(out, guarded(trained.path), option="--out")
    result = write_checked(trained, format=format, out=out)
    description.write_text(json.dumps(describe(trained, result, format=format, mode=mode), indent=2) + "\n")
    return result


def write_checked(trained: TrainedGenerator, *, format: Format, out: Path) -> Exported:
    """Export ``trained`` (on the CPU) to ``out``, replacing it only once the export matches the model."""
    module, multiple = trained.module, trained.module.size_multiple
    # Sizes of 0 or 1 would be specialised by torch.export, and equal sizes could be taken for one dimension.
    example = _example(trained, batch=2, height=2 * multiple, width=3 * multiple)
    if format in CALLER_PADS:
        exported_module, sizes = module, [(3 * multiple, multiple)]
    else:
        exported_module, sizes = AnySize(module, multiple), [*CHECKED_SIZES, (multiple, 2 * multiple)]
        if any(isinstance(layer, torch.nn.modules.instancenorm._InstanceNorm) for layer in module.modules()):
            # A single pixel, replicated, is a constant map, which instance norm divides by its own zero variance:
            # rounding noise amplified some 300-fold, in any runtime. The other sizes check the graph.
            sizes.remove((1, 1))
    checked = [_example(trained, batch=1, height=height, width=width) for height, width in sizes]
    out.parent.mkdir(parents=True, exist_ok=True)
    with replacing(out, durable=False) as temporary:
        writer = _safetensors(trained) if format == "safetensors" else WRITERS[format]
        writer(exported_module, example, temporary)
        try:
            differences = _differences(module, temporary, format, checked)
        except AssertionError as error:  # what an exported program raises for an input its guards refuse
            if format != "exported-program":
                raise
            guard = next(iter(str(error).strip().splitlines()), "")
            raise ConfigError(
                f"the exported-program export of generator {trained.name!r} does not take every size: torch.export "
                f"kept a condition on the sizes it traced ({guard}), e.g. from a convolution to one channel at the "
                "bottleneck, which it lays out by size; use --format onnx, which exports the same graph without it"
            ) from None
        difference = max(differences, default=None)
        if difference is not None and difference > TOLERANCE:
            worst = checked[differences.index(difference)]
            fix = "try --format exported-program" if format in CALLER_PADS else "the generator must not compute Python values from shapes"
            raise ConfigError(
                f"the {format} export of generator {trained.name!r} differs from the model by up to "
                f"{difference:.3g} at {' x '.join(map(str, worst.shape))}, so its graph does not generalise from "
                f"the size it was traced at; {fix}"
            )
    shapes = tuple(tuple(x.shape) for x in checked) if differences else ()
    return Exported(path=out, description=out.with_name(f"{out.name}.json"), checked_shapes=shapes, difference=difference)


def describe(trained: TrainedGenerator, exported: Exported, *, format: Format, mode: Mode) -> dict[str, Any]:
    """The JSON written beside an export: what goes in and out, and how to prepare images for it."""
    multiple = trained.module.size_multiple
    caller_pads = format in CALLER_PADS

    def tensor(name: str, channels: int, encoding: str = IMAGE_ENCODING) -> dict[str, Any]:
        classes = input_classes(encoding)
        return {
            "name": name,
            "layout": "N x C x H x W",
            "dtype": "float32",
            "channels": channels,
            "encoding": encoding,
            "channel_meaning": CHANNELS.get(channels, f"{channels} channels") if classes is None else
            f"one-hot class map of {classes} classes: channel c is 1 where the pixel's class index is c, else 0",
            "value_range": [-1.0, 1.0] if classes is None else [0.0, 1.0],
        }

    back = "back: pixel = round((y + 1) * 127.5), clipped to [0, 255]"
    pixels = (f"x = pixel / 127.5 - 1 for 8-bit pixels; {back}" if input_classes(trained.input_encoding) is None else
              f"x[c] = 1 where the class-index image's pixel is c, else 0 ({trained.input_encoding}); {back}")

    return {
        "format": format,
        "file": exported.path.name,
        "mode": mode,
        "averaged_weights": trained.averaged,
        "mode_meaning": {
            "eval": "dropout off, batch norm uses its running statistics; deterministic",
            "paper": "dropout on and batch statistics at test time, as in the paper; outputs vary between calls",
        }[mode],
        "input": tensor(INPUT_NAME, trained.in_channels, trained.input_encoding),
        "output": tensor(OUTPUT_NAME, trained.out_channels),
        "pixels": pixels,
        "size_multiple": multiple,
        "dynamic": {
            "batch": True,
            "height": f"any multiple of {multiple}" if caller_pads else "any, >= 1",
            "width": f"any multiple of {multiple}" if caller_pads else "any, >= 1",
        },
        "padding": {
            "mode": PADDING_MODE,
            "inside_graph": not caller_pads,
            "how": (
                f"{'the caller must ' if caller_pads else 'done inside the graph: '}pad H and W up to the next multiples "
                f"of {multiple}: floor(padding / 2) rows (columns) at the top (left), the rest at the bottom (right), "
                f"mirrored without repeating the edge pixel ({PADDING_MODE}; mirror again while the padding is wider "
                f"than the image; a 1-pixel side is repeated); run; cut the input's H x W back out of the output"
            ),
        },
        "training_image_size": trained.image_size,
        "generator": {"name": trained.name, "options": dict(trained.trained.run.generator.options)},
        "checkpoint": trained.origin,
        "step": trained.step,
        "checked": None
        if exported.difference is None
        else {"shapes": [list(shape) for shape in exported.checked_shapes], "max_abs_difference": exported.difference},
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
    if format == "safetensors":
        description = weights.description(path)
        (direction,) = description["directions"]  # the file holds one generator
        return load_generator(path, mode=description.get("mode", "eval"), direction=direction).module
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


def _differences(module: nn.Module, path: Path, format: Format, inputs: list[Tensor]) -> list[float]:
    """Largest |export(x) - translate(module, x)| for each x; none for ONNX without onnxruntime to run it."""
    if format == "onnx" and importlib.util.find_spec("onnxruntime") is None:
        return []
    exported = load(path, format)
    differences = []
    for x in inputs:
        # One seed for both runs, so that in paper mode they draw the same dropout; the caller's RNG is left alone.
        with torch.no_grad(), torch.random.fork_rng():
            torch.manual_seed(0)
            expected = translate(module, x)
            torch.manual_seed(0)
            found = exported(x)
        differences.append(float((found - expected).abs().max()))
    return differences


def _dynamic_shapes() -> tuple[dict[int, Any], ...]:
    """Batch, height and width all free: the graph pads any size itself (:class:`AnySize`)."""
    return ({0: Dim("batch", min=1), 2: Dim("height", min=1), 3: Dim("width", min=1)},)


def _size_oblivious() -> Any:
    """Tracing assumes that no size is 1, and guards then pin what depends on it: a contiguity check that
    H / size_multiple is not 1 (the program would refuse inputs one multiple high or wide), and the padding's
    bounds for a 1-pixel side. Size-oblivious tracing keeps such checks general instead; the check after
    export runs 1 x 1 and a width of one multiple."""
    return torch.fx.experimental._config.patch(backed_size_oblivious=True)


class _Image(nn.Module):
    """A generator that returns its image alone, whatever else it returns in training: what a trace can hold."""

    def __init__(self, generator: nn.Module) -> None:
        super().__init__()
        self.generator = generator
        self.train(generator.training)

    def forward(self, x: Tensor) -> Tensor:
        return image_of(self.generator(x))


def _torchscript(module: nn.Module, example: Tensor, path: Path) -> None:
    module = _Image(module)
    with warnings.catch_warnings():
        # The trace warns that shape-dependent Python (the generator's size check) is fixed at the traced
        # size; the check after export is what shows that the convolutions generalise. torch.jit's own
        # deprecation warning would repeat export()'s.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", FutureWarning)
        with torch.no_grad():  # the traced run need not keep activations for a backward pass
            traced = torch.jit.trace(module, example, check_trace=False)
    traced.save(str(path))


def _exported_program(module: nn.Module, example: Tensor, path: Path) -> None:
    with _size_oblivious():
        program = torch.export.export(module, (example,), dynamic_shapes=_dynamic_shapes())
    with open(path, "wb") as handle:  # a handle, as torch.export.save warns about names not ending in .pt2
        torch.export.save(program, handle)


def _onnx(module: nn.Module, example: Tensor, path: Path) -> None:
    with _size_oblivious():
        torch.onnx.export(
            module,
            (example,),
            str(path),
            dynamo=True,
            dynamic_shapes=_dynamic_shapes(),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            external_data=False,  # one self-contained file; fine below ONNX's 2 GB limit, and the U-Net is ~220 MB
            verbose=False,
        )


def _safetensors(trained: TrainedGenerator) -> Callable[[nn.Module, Tensor, Path], None]:
    """A writer of ``trained``'s weights with its spec, the step and the mode it is in: what rebuilds it."""
    mode: Mode = "paper" if trained.module.training else "eval"  # what set_mode made it

    def write(module: nn.Module, example: Tensor, path: Path) -> None:
        weights.save(path, weights=module.state_dict(), trained=trained.trained, step=trained.step, mode=mode,
                     source=trained.label, direction=trained.direction)

    return write


WRITERS: dict[str, Callable[[nn.Module, Tensor, Path], None]] = {
    "torchscript": _torchscript,
    "exported-program": _exported_program,
    "onnx": _onnx,
}


def require_onnx_exporter() -> None:
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

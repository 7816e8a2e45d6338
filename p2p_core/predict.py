"""``p2p predict``: translate a folder of images, each output at its input's size, never touching the inputs.

Images of the same size (after ``--resize``) go through the generator together, up to ``--batch_size``;
decoding and encoding run in threads beside it. Images larger than ``--tile`` (without it, those over
:data:`p2p_core.tiles.AUTO_TILE_PIXELS`) are translated in overlapping tiles, blended (:mod:`p2p_core.tiles`), so
that the generator's memory is bounded by the tile. Everything that could refuse the run (the output folder
inside the input one, two inputs mapping to one output name, outputs that exist, a folder that cannot be
written) is checked before the first file is written, and each file is written to a temporary name and
renamed, so a full or read-only disk leaves whole files or none.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Literal

import attrs
import torch
from torch import Tensor

from p2p_core.backends import Backend, Runner, open_backend
from p2p_core.devices import resolve_device
from p2p_core.errors import ConfigError, DataError
from p2p_core.files import refuse_overlap
from p2p_core.images import (CHANNEL_MODES, image_header, list_images, read_input, resize as resized, to_signed, to_uint8,
                             write_image)
from p2p_core.inference import load_generator, scale_note, scaled_size
from p2p_core.ranges import BatchSize, Pixels, Seed, ranged
from p2p_core.registry import Registry
from p2p_core.protocols import Direction
from p2p_core.spec import MAX_MEMORY_GB, Mode, Precision
from p2p_core.tiles import AUTO_TILE_PIXELS, auto_tile, check_tiles, default_overlap, translate_tiled

Tile = ranged(int, 0, 65536)
Overlap = ranged(int, 0, 65535)


@attrs.frozen(kw_only=True)
class PredictResult:
    """What a predict run wrote and how fast."""

    count: int
    output: Path
    mode: Mode
    backend: str
    """The backend that ran, as :attr:`p2p_core.backends.Runner.description` says it."""
    batch_size: int
    images_per_second: float

    def __str__(self) -> str:
        return (
            f"{self.count} image(s) written to {self.output} ({self.mode} mode, {self.backend}, batch size "
            f"{self.batch_size}, {self.images_per_second:.2f} images/s)"
        )


def predict(
    *,
    ckpt: Path,
    input: Path,
    output: Path,
    device: Literal["auto", "cpu", "cuda"] = "auto",
    mode: Mode = "paper",
    resize: Pixels | None = None,
    backend: Backend = "auto",
    batch_size: BatchSize = 1,
    precision: Precision = "float32",
    tile: Tile | None = None,
    overlap: Overlap | None = None,
    seed: Seed = 0,
    overwrite: bool = False,
    progress: bool = True,
    direction: Direction = "AtoB",
    max_memory_gb: float = MAX_MEMORY_GB,
    ema: bool = True,
    registry: Registry | None = None,
) -> PredictResult:
    """Translate a folder of images with a trained generator; each output is OUTPUT/STEM.png at its input's size.

    Args:
        ckpt: Checkpoint file, run folder (its newest checkpoint that loads), model.safetensors (or its folder),
            pretrained:NAME, or hf:OWNER/NAME[@REVISION] (a p2p model on the Hugging Face Hub).
        input: Folder of input images (never written to); for a model trained on label maps (labels:N), class-index
            PNGs (grey or palette, one class index a pixel).
        output: Folder for the translated images (PNG); must not be the input folder, nor inside it or around it.
        device: auto (cuda when available), cpu or cuda.
        mode: paper: dropout on and batch statistics, as the paper tests (outputs vary with --seed); eval: dropout
            off and batch norm's running statistics, deterministic, and the better of the two for models trained
            at batch > 1 (docs/results measures both).
        resize: Scale each image so its shorter side is this many pixels before translating, and the result back
            to the input's size. Use the training size for images at another scale. The aspect ratio is kept:
            for square images this is the training preprocessing's resize; the datasets squash non-square
            images to a square instead, which would distort them here. Default: the image's own size.
        backend: A backend by name (p2p list backends shows them, with the devices, precisions and modes each runs):
            torch, onnxruntime (an ONNX export of the checkpoint, built once and cached in $P2P_CACHE, default
            ~/.cache/p2p), a plugin's, or auto: onnxruntime on the CPU in eval mode at float32 when it is installed,
            else torch; auto never changes --precision. Paper mode runs on torch only.
        batch_size: Up to this many images of the same size (after --resize) go through the generator together.
            In eval mode outputs do not depend on it. In paper mode batch norm normalises with the batch's own
            statistics, so each output would depend on which images share its batch: keep 1 there (the paper's
            setting) unless that mixing is wanted.
        precision: float32 (the default), or opt in to lower precision where the backend runs it (p2p list
            backends): bfloat16 (torch, on a GPU or a CPU; a CPU without native bfloat16, AVX512-BF16 or AMX,
            emulates it, with a warning) or float16 (torch; onnxruntime on a GPU). Measured on a trained model,
            bfloat16 outputs were 56.6 dB PSNR from float32's, L1/PSNR/SSIM unchanged to 4 digits (benchmarks/README.md).
        tile: Translate images larger than this many pixels on a side in overlapping tiles of tile x tile, blended
            with a raised-cosine window so no seam shows: the generator's memory is then bounded by the tile, not
            the image. A multiple of the generator's size_multiple. Default: images over 2048 x 2048 pixels are
            tiled in tiles of about 1024, with a message; 0 never tiles.
        overlap: Pixels by which neighbouring tiles overlap and are blended; smaller than --tile. Default: an
            eighth of the tile.
        seed: Seeds the dropout of paper mode, so a run can be repeated (within one backend).
        overwrite: Replace output files that already exist (otherwise the run refuses before writing anything).
        progress: Show a progress bar.
        direction: AtoB, or BtoA for a model whose method trained both ways (a plugin's unpaired method); pix2pix models translate AtoB.
        max_memory_gb: Refuse a model whose weights and one image at its training size need more memory than this
            (a small file can describe a network of terabytes).
        ema: Use the moving average of the generator's weights where the checkpoint holds one (trained with
            --trainer.ema); --no_ema uses the trained weights.
    """
    if batch_size < 1:
        raise ConfigError(f"--batch_size must be at least 1, got {batch_size}")
    input, output = Path(input), Path(output)
    files = list_images(input)
    targets = _plan_outputs(files, input=input, output=output, overwrite=overwrite)
    where = resolve_device(device, option="--device")
    trained = load_generator(ckpt, mode=mode, device=where, registry=registry, direction=direction, max_memory_gb=max_memory_gb,
                              ema=ema)
    sizes = [image_header(path)[:2] for path in files]
    _warn_about_scale(files, sizes, image_size=trained.image_size, resize=resize)
    tiling = _Tiling.of(tile=tile, overlap=overlap, size_multiple=trained.module.size_multiple)
    scaled = [scaled_size(*size, resize) for size in sizes]
    tiling.announce(files, scaled)
    runner = open_backend(trained, backend=backend, device=where, precision=precision, registry=registry)
    batches = _batches(sizes, resize=resize, batch_size=batch_size)
    _make_folder(output)
    devices = [where] if where.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        tiled = [tiling.applies(*size) for size in scaled]
        # Tiled images are held whole, so as 8-bit pixels where nothing needs their floats: resizing does, and an
        # output of a channel count no image file holds.
        pixels = resize is None and trained.out_channels in CHANNEL_MODES
        rate = _run(tiling.around(runner, pixels=pixels), files, targets, batches, sizes, channels=trained.in_channels,
                    encoding=trained.input_encoding, resize=resize, read_pixels=[pixels and each for each in tiled],
                    large=any(tiled), progress=progress)
    return PredictResult(count=len(files), output=output, mode=mode, backend=runner.description, batch_size=batch_size,
                         images_per_second=rate)


def _plan_outputs(files: list[Path], *, input: Path, output: Path, overwrite: bool) -> list[Path]:
    """Each input's output file, once the run is known not to overwrite an input, another output, or
    (without ``overwrite``) an existing file."""
    refuse_overlap(output, {"the input folder": input}, option="--output")
    if output.exists() and not output.is_dir():
        raise DataError(f"--output {output} is a file, not a folder; choose a folder")
    targets, sources = [], {}
    for path in files:
        target = output / f"{path.stem}.png"
        if target in sources:
            raise DataError(
                f"{sources[target].name} and {path.name} would both be written to {target}; rename one of them, "
                "or translate them from separate folders"
            )
        sources[target] = path
        targets.append(target)
    existing = [target for target in targets if target.exists() or target.is_symlink()]
    if existing and not overwrite:
        others = f" and {len(existing) - 1} other output(s)" if len(existing) > 1 else ""
        raise DataError(f"{existing[0]}{others} already exist; pass --overwrite to replace them, or choose another --output")
    return targets


def _make_folder(output: Path) -> None:
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(f"cannot make --output {output}: {error.strerror or error}; choose another folder") from None
    if not os.access(output, os.W_OK | os.X_OK):
        raise DataError(f"--output {output} is not writable; choose another folder")


def _warn_about_scale(files: list[Path], sizes: list[tuple[int, int]], *, image_size: int, resize: int | None) -> None:
    notes = [
        note
        for path, (height, width) in zip(files, sizes)
        if (note := scale_note(height, width, image_size=image_size, shorter_side=resize, name=path.name))
    ]
    if notes:
        others = f" ({len(notes) - 1} other image(s) likewise)" if len(notes) > 1 else ""
        warnings.warn(notes[0] + others, stacklevel=3)


@attrs.frozen(kw_only=True)
class _Tiling:
    """Which images go through tiles, and which tiles: ``--tile`` and ``--overlap`` checked against the generator."""

    asked: int | None
    """--tile as given: None tiles images over :data:`AUTO_TILE_PIXELS`, 0 none."""
    tile: int
    overlap: int

    @classmethod
    def of(cls, *, tile: int | None, overlap: int | None, size_multiple: int) -> _Tiling:
        side = tile or auto_tile(size_multiple)
        gap = default_overlap(side) if overlap is None else overlap
        if tile != 0:
            check_tiles(side, gap, size_multiple=size_multiple)
        return cls(asked=tile, tile=side, overlap=gap)

    def applies(self, height: int, width: int) -> bool:
        if self.asked is None:
            return height * width > AUTO_TILE_PIXELS
        return self.asked > 0 and (height > self.asked or width > self.asked)

    def around(self, runner: Runner, *, pixels: bool) -> Callable[[Tensor], Tensor]:
        """``runner``, through tiles for the images this applies to; with ``pixels`` their outputs come as 8-bit
        pixels, a quarter of float32's memory (what tiling is for), else as floats."""

        def translate(batch: Tensor) -> Tensor:
            if self.applies(*batch.shape[-2:]):
                # Read as 8-bit pixels (see _run), each tile becomes floats only on its way into the generator.
                run = runner if batch.is_floating_point() else lambda piece: runner(to_signed(piece))
                finish = to_uint8 if pixels else None
                return translate_tiled(run, batch, tile=self.tile, overlap=self.overlap, finish=finish)
            return runner(batch)

        return translate

    def announce(self, files: list[Path], sizes: list[tuple[int, int]]) -> None:
        """Say which images are tiled unasked (without --tile, those over :data:`AUTO_TILE_PIXELS`)."""
        unasked = [(path, size) for path, size in zip(files, sizes) if self.asked is None and self.applies(*size)]
        if unasked:
            (path, (height, width)), others = unasked[0], len(unasked) - 1
            print(f"p2p: {path.name} ({height} x {width}) and its {height * width:,} pixels are over {AUTO_TILE_PIXELS:,}"
                  f"{f' ({others} other image(s) too)' if others else ''}: translated in {self.tile}-pixel tiles overlapping by "
                  f"{self.overlap}, so that memory is bounded by the tile; --tile and --overlap choose them, --tile 0 "
                  "translates whole", file=sys.stderr)


def _batches(sizes: list[tuple[int, int]], *, resize: int | None, batch_size: int) -> list[list[int]]:
    """Indices of images that go through the generator together: the same size after ``resize``, in the
    order the images come, at most ``batch_size`` each."""
    groups: dict[tuple[int, int], list[int]] = {}
    for index, (height, width) in enumerate(sizes):
        groups.setdefault(scaled_size(height, width, resize), []).append(index)
    return [group[start : start + batch_size] for group in groups.values() for start in range(0, len(group), batch_size)]


def _run(
    translate: Callable[[Tensor], Tensor],
    files: list[Path],
    targets: list[Path],
    batches: list[list[int]],
    sizes: list[tuple[int, int]],
    *,
    channels: int,
    encoding: str,
    resize: int | None,
    read_pixels: list[bool],
    large: bool,
    progress: bool,
) -> float:
    """Translate ``batches``, reading and writing in threads a few images ahead and behind; images per second."""
    from tqdm.auto import tqdm

    # Decoding and encoding (~35 ms an image here) bound predict on a GPU, which translates in ~1 ms: the
    # threads scale with the cores (PIL releases the GIL), and as many batches are read ahead as can be decoded at once.
    workers = max(2, min(8, os.cpu_count() or 2))
    # Batches decoded ahead of the generator, and encoded behind it; one when images are large enough to tile, whose
    # memory is what tiling saves.
    ahead = 1 if large else workers
    with ThreadPoolExecutor(max_workers=workers) as pool, tqdm(total=len(files), unit="image", dynamic_ncols=True, disable=not progress) as bar:
        def read(index: int) -> Future[Tensor]:
            return pool.submit(read_input, files[index], encoding=encoding, channels=channels, pixels=read_pixels[index])

        reads = deque([read(i) for i in batch] for batch in batches[:ahead])
        writes: deque[Future[None]] = deque()
        start = time.perf_counter()
        try:
            for number, batch in enumerate(batches):
                images = [future.result() for future in reads.popleft()]
                if number + ahead < len(batches):
                    reads.append([read(i) for i in batches[number + ahead]])
                size = list(scaled_size(*sizes[batch[0]], resize))
                inputs = [resized(image, size) if resize else image for image in images]
                shapes = [list(image.shape[-2:]) for image in images]
                # One image needs no copy into a batch: a huge one would be held twice. Nor is it held while its
                # output is encoded.
                outputs = translate(inputs[0][None] if len(inputs) == 1 else torch.stack(inputs))
                del images, inputs
                for index, shape, result in zip(batch, shapes, outputs):
                    result = resized(result, shape) if resize else result
                    writes.append(pool.submit(_write_png, result, targets[index]))
                while len(writes) > ahead * len(batch):
                    writes.popleft().result()
                bar.update(len(batch))
            for write in writes:
                write.result()
        except DataError as error:
            # Writes already submitted finish (each whole, or not at all); nothing new starts.
            for future in [*writes, *(f for batch in reads for f in batch)]:
                future.cancel()
            raise DataError(f"{error}; the outputs written before it are complete, and no partial file is left") from None
        return len(files) / (time.perf_counter() - start)


def _write_png(image: Tensor, path: Path) -> None:
    """Write ``image`` to ``path`` atomically: a full or read-only disk leaves the old file or none, and no temporary."""
    try:
        write_image(image, path)
    except OSError as error:
        raise DataError(f"could not write {path}: {error.strerror or error}") from None

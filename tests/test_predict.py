"""predict(): batched translation that keeps each input's size, and never overwrites what it should not."""

from __future__ import annotations

import errno
import os
import re
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import fit_tiny
from p2p_core.cli import main
from p2p_core.errors import ConfigError, DataError, P2PError
from p2p_core.images import read_image, to_signed, to_uint8, write_image
from p2p_core.inference import load_generator, scale_note, translate
from p2p_core.predict import PredictResult, predict
from p2p_core.registry import Registry

# Not multiples of the model's 16 and not square, several of one size so that they share batches, and one
# at a scale far from the 16-pixel training images.
SIZES = [(20, 30), (20, 30), (16, 16), (20, 30), (7, 5), (16, 16), (20, 30), (64, 64)]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fit_tiny(tmp_path_factory.mktemp("predict"))


@pytest.fixture(scope="module")
def grey(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run from 1-channel inputs that kept a moving average of its generator's weights (--trainer.ema), two steps
    so that the average differs from them."""
    options = ["--trainer.ema", "0.5", "--trainer.max_steps", "2"]
    return fit_tiny(tmp_path_factory.mktemp("grey"), in_channels=1, options=options)


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("P2P_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    generator = torch.Generator().manual_seed(0)
    for index, (height, width) in enumerate(SIZES):
        write_image(to_signed(torch.randint(0, 256, (3, height, width), generator=generator, dtype=torch.uint8)), tmp_path / "in" / f"{index}.png")
    return tmp_path / "in"


def pixels(folder: Path) -> dict[str, np.ndarray]:
    return {path.name: np.asarray(Image.open(path)).astype(int) for path in sorted(folder.iterdir())}


def same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[name], b[name]) for name in a)


def bar_count(err: str) -> tuple[int, int]:
    """The last count a progress bar on stderr showed: (done, total)."""
    done, total = re.findall(r"(\d+)/(\d+)", err)[-1]
    return int(done), int(total)


def quiet_predict(**options) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the scale warning for the 64 x 64 input
        predict(mode="eval", progress=False, **options)


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
@pytest.mark.parametrize("resize", [None, 16])
def test_batched_predict_writes_what_batch_1_does(run: Path, inputs: Path, tmp_path: Path, backend: str, resize: int | None):
    if backend == "onnxruntime":
        pytest.importorskip("onnxruntime")
        pytest.importorskip("onnxscript")
    for batch_size in (1, 3):
        quiet_predict(ckpt=run, input=inputs, output=tmp_path / f"b{batch_size}", backend=backend, batch_size=batch_size, resize=resize)
    single, batched = pixels(tmp_path / "b1"), pixels(tmp_path / "b3")
    assert single.keys() == batched.keys() == {f"{index}.png" for index in range(len(SIZES))}
    for name, image in single.items():
        assert image.shape[:2] == SIZES[int(name[0])]
        # Equal after 8-bit encoding, or a rounding apart where float sums differ with the batch.
        assert np.abs(image - batched[name]).max() <= 1, name


def test_each_output_is_translate_at_its_input_size(run: Path, inputs: Path, tmp_path: Path):
    quiet_predict(ckpt=run, input=inputs, output=tmp_path / "out", backend="torch", batch_size=4)
    generator = load_generator(run, mode="eval").module
    for index in range(len(SIZES)):
        with torch.no_grad():
            expected = translate(generator, read_image(inputs / f"{index}.png"))
        assert torch.equal(to_signed(to_uint8(expected)), read_image(tmp_path / "out" / f"{index}.png"))


def test_a_safetensors_export_predicts_what_its_checkpoint_does(run: Path, inputs: Path, tmp_path: Path):
    main(["export", "--ckpt", str(run), "--format", "safetensors", "--out", str(tmp_path / "model.safetensors")])
    for name, ckpt in [("checkpoint", run), ("export", tmp_path / "model.safetensors")]:
        quiet_predict(ckpt=ckpt, input=inputs, output=tmp_path / name, backend="torch")
    assert same(pixels(tmp_path / "checkpoint"), pixels(tmp_path / "export"))


def test_paper_mode_repeats_for_a_seed(run: Path, inputs: Path, tmp_path: Path):
    for name, seed in [("a", 1), ("b", 1), ("c", 2)]:
        predict(ckpt=run, input=inputs, output=tmp_path / name, mode="paper", backend="auto", seed=seed, progress=False)
    a, b, c = pixels(tmp_path / "a"), pixels(tmp_path / "b"), pixels(tmp_path / "c")
    assert all(np.array_equal(a[name], b[name]) for name in a)
    assert not all(np.array_equal(a[name], c[name]) for name in a)  # the dropout draws follow the seed


def test_the_defaults_are_paper_mode_seed_0_batch_size_1_the_average_and_a_progress_bar(
    grey: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    for index in range(3):
        write_image(torch.rand(3, 20, 30, generator=torch.Generator().manual_seed(index)) * 2 - 1, tmp_path / "in" / f"{index}.png")
    result = predict(ckpt=grey, input=tmp_path / "in", output=tmp_path / "default")
    assert bar_count(capsys.readouterr().err) == (3, 3)
    explicit = {"mode": "paper", "backend": "torch", "batch_size": 1, "seed": 0, "ema": True, "progress": False}
    predict(ckpt=grey, input=tmp_path / "in", output=tmp_path / "explicit", **explicit)
    # Each default matters: in paper mode batch norm normalises with the batch's statistics, dropout follows the
    # seed, and the average is not the trained weights.
    for option, other in [("batch_size", 2), ("seed", 1), ("ema", False)]:
        predict(ckpt=grey, input=tmp_path / "in", output=tmp_path / option, **{**explicit, option: other})
    assert (result.mode, result.batch_size) == ("paper", 1) and result.backend.startswith("torch ")
    default = pixels(tmp_path / "default")
    assert same(default, pixels(tmp_path / "explicit"))
    for option in ("batch_size", "seed", "ema"):
        assert not same(default, pixels(tmp_path / option)), option


def test_a_model_of_grey_inputs_reads_colour_files_as_grey(grey: Path, inputs: Path, tmp_path: Path):
    quiet_predict(ckpt=grey, input=inputs, output=tmp_path / "out", backend="torch")
    generator = load_generator(grey, mode="eval").module
    for index in range(len(SIZES)):
        with torch.no_grad():
            expected = translate(generator, read_image(inputs / f"{index}.png", channels=1))
        assert torch.equal(to_signed(to_uint8(expected)), read_image(tmp_path / "out" / f"{index}.png"))


def test_the_result_says_what_was_written_and_how_fast(
    run: Path, inputs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    common = {"ckpt": run, "input": inputs, "device": "cpu", "backend": "torch", "batch_size": 3}
    quiet_predict(output=tmp_path / "quiet", **common)
    assert capsys.readouterr().err == ""  # no progress bar
    # The clock when the first image is read, and when the last one is written: 8 images in 2 seconds.
    ticks = iter([100.0, 102.0])
    monkeypatch.setattr("p2p_core.predict.time", SimpleNamespace(perf_counter=lambda: next(ticks)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = predict(output=tmp_path / "out", mode="eval", **common)
    bar = capsys.readouterr().err
    assert bar_count(bar) == (len(SIZES), len(SIZES)) and "image" in bar  # counted in images
    assert result == PredictResult(count=len(SIZES), output=tmp_path / "out", mode="eval", backend="torch (cpu, float32)",
                                   batch_size=3, images_per_second=4.0)
    assert str(result) == f"8 image(s) written to {tmp_path / 'out'} (eval mode, torch (cpu, float32), batch size 3, 4.00 images/s)"


def test_the_precision_asked_is_the_backends(run: Path, inputs: Path, tmp_path: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # bfloat16 emulated on a CPU without its instructions; the scale warning
        result = predict(ckpt=run, input=inputs, output=tmp_path / "out", device="cpu", mode="eval", backend="torch",
                         precision="bfloat16", progress=False)
    assert result.backend == "torch (cpu, bfloat16)"


def test_images_of_one_size_after_resize_share_a_batch(run: Path, tmp_path: Path):
    """--batch_size groups the images by their size after --resize: 20 x 30 and 40 x 60 both go through at 16 x 24,
    together, where paper mode's batch norm makes each output depend on the other."""
    for name, (height, width) in [("small", (20, 30)), ("large", (40, 60))]:
        write_image(torch.rand(3, height, width, generator=torch.Generator().manual_seed(height)) * 2 - 1, tmp_path / "in" / f"{name}.png")
    for batch_size in (1, 2):
        predict(ckpt=run, input=tmp_path / "in", output=tmp_path / f"b{batch_size}", mode="paper", backend="torch", resize=16,
                batch_size=batch_size, progress=False)
    alone, together = pixels(tmp_path / "b1"), pixels(tmp_path / "b2")
    assert all(not np.array_equal(alone[name], together[name]) for name in alone)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU"))])
def test_the_seed_of_paper_mode_does_not_reach_the_callers_random_state(run: Path, inputs: Path, tmp_path: Path, device: str):
    cuda = device == "cuda"
    before = torch.get_rng_state(), torch.cuda.get_rng_state() if cuda else None

    def state_after(seed: int) -> list[torch.Tensor]:
        torch.set_rng_state(before[0])
        if cuda:
            torch.cuda.set_rng_state(before[1])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            predict(ckpt=run, input=inputs, output=tmp_path / str(seed), device=device, mode="paper", backend="torch", seed=seed,
                    progress=False)
        return [torch.get_rng_state(), *([torch.cuda.get_rng_state()] if cuda else [])]

    assert all(torch.equal(a, b) for a, b in zip(state_after(1), state_after(2), strict=True))


def test_an_image_far_from_the_training_scale_is_warned_about(run: Path, inputs: Path, tmp_path: Path):
    # The 7 x 5 and 64 x 64 inputs: more than twice smaller or larger than the 16-pixel training images.
    with pytest.warns(UserWarning, match=r"4\.png .*7 x 5.*--resize 16.*1 other image"):
        predict(ckpt=run, input=inputs, output=tmp_path / "a", mode="eval", backend="torch", progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        predict(ckpt=run, input=inputs, output=tmp_path / "b", mode="eval", backend="torch", resize=16, progress=False)


def test_one_image_far_from_the_training_scale_is_warned_about_alone_at_the_callers_line(run: Path, tmp_path: Path):
    write_image(torch.zeros(3, 16, 16), tmp_path / "in" / "fits.png")
    write_image(torch.zeros(3, 7, 5), tmp_path / "in" / "small.png")
    with pytest.warns(UserWarning) as record:
        predict(ckpt=run, input=tmp_path / "in", output=tmp_path / "out", mode="eval", backend="torch", progress=False)
    assert [str(warning.message) for warning in record] == [scale_note(7, 5, image_size=16, shorter_side=None, name="small.png")]
    assert record[0].filename == __file__


@pytest.mark.parametrize("where", ["same", "inside", "around", "symlink"])
def test_the_output_folder_must_be_apart_from_the_inputs(run: Path, inputs: Path, tmp_path: Path, where: str):
    before = pixels(inputs)
    output = {"same": inputs, "inside": inputs / "out", "around": inputs.parent, "symlink": tmp_path / "alias"}[where]
    if where == "symlink":
        output.symlink_to(inputs, target_is_directory=True)
    relation = {"same": "is", "inside": "is inside", "around": "holds", "symlink": "is"}[where]
    with pytest.raises(DataError, match=f"^--output {re.escape(str(output))} {relation} the input folder {re.escape(str(inputs))}"):
        quiet_predict(ckpt=run, input=inputs, output=output, backend="torch")
    after = pixels(inputs)
    assert after.keys() == before.keys() and all(np.array_equal(before[name], after[name]) for name in before)


def test_two_inputs_with_one_output_name_are_refused_naming_both(run: Path, inputs: Path, tmp_path: Path):
    Image.open(inputs / "2.png").save(inputs / "2.jpg")
    with pytest.raises(DataError, match=r"2\.(png|jpg) and 2\.(png|jpg) would both be written"):
        quiet_predict(ckpt=run, input=inputs, output=tmp_path / "out", backend="torch")
    assert not (tmp_path / "out").exists()


def test_existing_outputs_are_replaced_only_with_overwrite(run: Path, inputs: Path, tmp_path: Path):
    out = tmp_path / "out"
    out.mkdir()
    for name in ("3.png", "5.png"):
        (out / name).write_bytes(b"mine")
    with pytest.raises(DataError, match=r"3\.png and 1 other output\(s\) already exist; pass --overwrite"):
        quiet_predict(ckpt=run, input=inputs, output=out, backend="torch")
    (out / "5.png").unlink()
    with pytest.raises(DataError, match=r"3\.png already exist; pass --overwrite"):
        quiet_predict(ckpt=run, input=inputs, output=out, backend="torch")
    assert sorted(os.listdir(out)) == ["3.png"] and (out / "3.png").read_bytes() == b"mine"  # refused before writing
    quiet_predict(ckpt=run, input=inputs, output=out, backend="torch", overwrite=True)
    assert read_image(out / "3.png").shape[-2:] == SIZES[3]


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"batch_size": 0}, ConfigError, "--batch_size must be at least 1, got 0"),
        ({"device": "gpu"}, ConfigError, "--device must be auto, cpu or cuda, got 'gpu'"),
        ({"direction": "BtoA"}, DataError, "this model translates AtoB only, not BtoA; use --direction AtoB"),
        ({"max_memory_gb": 1e-9}, DataError, ".* over the limit of 1e-09 GiB; if you trust it and have the memory, pass --max_memory_gb 0"),
    ],
)
def test_a_run_asked_for_what_cannot_be_is_refused_before_writing(run: Path, inputs: Path, tmp_path: Path, options, error, message):
    with pytest.raises(error, match=f"^{message if message.startswith('.*') else re.escape(message)}$"):
        quiet_predict(ckpt=run, input=inputs, output=tmp_path / "out", backend="torch", **options)
    assert not (tmp_path / "out").exists()


BUILT_IN = ["unet", "patchgan", "gan_losses", "datasets", "pix2pix", "ema", "backends"]


@pytest.mark.parametrize(("missing", "message"), [("unet", "unknown generator 'unet'"), ("backends", "unknown backend 'torch'")])
def test_the_generator_and_the_backend_come_from_the_registry_given(run: Path, inputs: Path, tmp_path: Path, missing: str, message: str):
    registry = Registry()
    registry.load_entry_points(allow=[name for name in BUILT_IN if name != missing])
    with pytest.raises(P2PError, match=message):
        quiet_predict(ckpt=run, input=inputs, output=tmp_path / "out", backend="torch", registry=registry)


def test_the_output_folder_is_made_with_its_parents(run: Path, inputs: Path, tmp_path: Path):
    quiet_predict(ckpt=run, input=inputs, output=tmp_path / "a" / "b" / "out", backend="torch")
    assert sorted(os.listdir(tmp_path / "a" / "b" / "out")) == sorted(f"{index}.png" for index in range(len(SIZES)))


@pytest.mark.parametrize("where", ["a file", "under a file", "read-only"])
def test_an_output_that_cannot_be_a_folder_written_to_is_refused_naming_it(run: Path, inputs: Path, tmp_path: Path, where: str):
    (tmp_path / "file").write_bytes(b"mine")
    output = {"a file": tmp_path / "file", "under a file": tmp_path / "file" / "out", "read-only": tmp_path / "out"}[where]
    if where == "read-only":
        output.mkdir(mode=0o500)
        if os.access(output, os.W_OK):
            pytest.skip("this user may write to a read-only folder (root)")
    message = {
        "a file": f"--output {output} is a file, not a folder; choose a folder",
        "under a file": f"cannot make --output {output}: {os.strerror(errno.ENOTDIR)}; choose another folder",
        "read-only": f"--output {output} is not writable; choose another folder",
    }[where]
    with pytest.raises(DataError, match=f"^{re.escape(message)}$"):
        quiet_predict(ckpt=run, input=inputs, output=output, backend="torch")
    assert (tmp_path / "file").read_bytes() == b"mine"


@pytest.mark.parametrize("error", [errno.ENOSPC, errno.EROFS])
def test_a_full_or_read_only_disk_leaves_whole_files_and_no_temporaries(
    run: Path, inputs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: int
):
    save, calls = Image.Image.save, []

    def fail_on_the_fourth(image: Image.Image, fp, *args, **kwargs) -> None:
        calls.append(fp)
        if len(calls) < 4:
            return save(image, fp, *args, **kwargs)
        fp.write(b"\x89PNG half")  # a partly written file, as a disk filling up leaves one
        raise OSError(error, os.strerror(error))

    monkeypatch.setattr(Image.Image, "save", fail_on_the_fourth)
    out = tmp_path / "out"
    with pytest.raises(DataError, match=os.strerror(error)):
        quiet_predict(ckpt=run, input=inputs, output=out, backend="torch")
    monkeypatch.undo()
    left = sorted(os.listdir(out))
    assert left and not any(name.startswith(".") or name.endswith(".tmp") for name in left)
    for name in left:
        assert read_image(out / name).shape[-2:] == SIZES[int(name[0])]  # every file there decodes whole

"""predict(): batched translation that keeps each input's size, and never overwrites what it should not."""

from __future__ import annotations

import errno
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import fit_tiny
from p2p_core.errors import DataError
from p2p_core.images import read_image, to_signed, to_uint8, write_image
from p2p_core.inference import load_generator, translate
from p2p_core.predict import predict

# Not multiples of the model's 16 and not square, several of one size so that they share batches, and one
# at a scale far from the 16-pixel training images.
SIZES = [(20, 30), (20, 30), (16, 16), (20, 30), (7, 5), (16, 16), (20, 30), (64, 64)]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fit_tiny(tmp_path_factory.mktemp("predict"))


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


def test_paper_mode_repeats_for_a_seed(run: Path, inputs: Path, tmp_path: Path):
    for name, seed in [("a", 1), ("b", 1), ("c", 2)]:
        predict(ckpt=run, input=inputs, output=tmp_path / name, mode="paper", backend="auto", seed=seed, progress=False)
    a, b, c = pixels(tmp_path / "a"), pixels(tmp_path / "b"), pixels(tmp_path / "c")
    assert all(np.array_equal(a[name], b[name]) for name in a)
    assert not all(np.array_equal(a[name], c[name]) for name in a)  # the dropout draws follow the seed


def test_an_image_far_from_the_training_scale_is_warned_about(run: Path, inputs: Path, tmp_path: Path):
    # The 7 x 5 and 64 x 64 inputs: more than twice smaller or larger than the 16-pixel training images.
    with pytest.warns(UserWarning, match=r"4\.png .*7 x 5.*--resize 16.*1 other image"):
        predict(ckpt=run, input=inputs, output=tmp_path / "a", mode="eval", backend="torch", progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        predict(ckpt=run, input=inputs, output=tmp_path / "b", mode="eval", backend="torch", resize=16, progress=False)


@pytest.mark.parametrize("where", ["same", "inside", "around", "symlink"])
def test_the_output_folder_must_be_apart_from_the_inputs(run: Path, inputs: Path, tmp_path: Path, where: str):
    before = pixels(inputs)
    output = {"same": inputs, "inside": inputs / "out", "around": inputs.parent, "symlink": tmp_path / "alias"}[where]
    if where == "symlink":
        output.symlink_to(inputs, target_is_directory=True)
    with pytest.raises(DataError, match="input folder"):
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
    (out / "3.png").write_bytes(b"mine")
    with pytest.raises(DataError, match=r"3\.png already exist.*--overwrite"):
        quiet_predict(ckpt=run, input=inputs, output=out, backend="torch")
    assert sorted(os.listdir(out)) == ["3.png"] and (out / "3.png").read_bytes() == b"mine"  # refused before writing
    quiet_predict(ckpt=run, input=inputs, output=out, backend="torch", overwrite=True)
    assert read_image(out / "3.png").shape[-2:] == SIZES[3]


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

"""`p2p test` and `p2p evaluate` end to end on a tiny trained run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from p2p_core import checkpoint
from p2p_core.cli import main
from p2p_core.errors import ConfigError, DataError
from p2p_core.evaluation import evaluate_folders, run_test
from p2p_core.images import read_image
from p2p_core.metrics import PSNR_CAP

SMOKE = Path(__file__).resolve().parents[1] / "recipes" / "smoke.yaml"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    main(["fit", "--config", str(SMOKE), "--out_dir", str(out), "--name", "smoke"])
    return out / "smoke"


def outputs(result_dir: Path) -> list[torch.Tensor]:
    return [read_image(path) for path in sorted((result_dir / "outputs").glob("*.png"))]


def test_test_writes_images_page_and_metrics(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    main(["test", "--ckpt", str(run_dir), "--out", str(tmp_path / "page")])
    page = tmp_path / "page"
    content = json.loads((page / "metrics.json").read_text())
    assert content["mode"] == "paper" and "dropout on" in content["mode_description"]
    assert content["split"] == "val" and content["step"] == 4 and content["count"] == 8  # smoke: 8 val scenes
    assert content["dataset"] == {"name": "synthetic", "options": {"length": 8, "seed": 0, "direction": "AtoB",
                                                                   "load_size": 72, "crop_size": 64, "flip": True,
                                                                   "variant": "colour"}}
    assert set(content["metrics"]) == {"l1", "psnr", "ssim", "hist_L", "hist_a", "hist_b"}
    assert 0 < content["metrics"]["l1"] < 1 and 0 < content["metrics"]["hist_L"] <= 1
    assert "FID not computed" in content["notes"][0]
    assert [image["name"] for image in content["images"]] == [str(i) for i in range(8)]
    for folder in ("inputs", "outputs", "targets"):
        assert sorted(p.name for p in (page / folder).iterdir()) == sorted(f"{i}.png" for i in range(8))
        assert Image.open(page / folder / "0.png").size == (64, 64)
    html = (page / "index.html").read_text()
    assert 'src="outputs/7.png"' in html and "dropout on and batch statistics" in html and "histograms.png" in html
    assert (page / "histograms.png").read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr().out
    assert "l1 " in printed and "FID not computed" in printed and "paper mode" in printed


def test_default_folder_names_split_mode_and_checkpoint(run_dir: Path):
    result = run_test(ckpt=run_dir, mode="eval", data={"length": 2})
    assert result.out_dir == run_dir / "test_val_eval_step_00000004"
    assert json.loads((result.out_dir / "metrics.json").read_text())["mode"] == "eval"
    assert result.names == ["0", "1"]  # --data replaced the stored length
    shutil.rmtree(result.out_dir)


def test_paper_mode_samples_dropout_and_eval_mode_does_not(run_dir: Path, tmp_path: Path):
    def translate(mode: str, seed: int) -> list[torch.Tensor]:
        out = tmp_path / f"{mode}{seed}"
        run_test(ckpt=run_dir, mode=mode, seed=seed, out=out, data={"length": 2}, overwrite=True)
        return outputs(out)

    assert all(torch.equal(a, b) for a, b in zip(translate("paper", 0), translate("paper", 0)))
    assert not all(torch.equal(a, b) for a, b in zip(translate("paper", 0), translate("paper", 1)))
    assert all(torch.equal(a, b) for a, b in zip(translate("eval", 0), translate("eval", 1)))


def test_a_checkpoint_without_dataset_options_asks_for_them(run_dir: Path, tmp_path: Path):
    state = checkpoint.load(run_dir)
    state["spec"]["data"] = {"name": "aligned"}  # a dataset that cannot be rebuilt without its root
    torch.save(state, tmp_path / "old.pt")
    with pytest.raises(ConfigError, match="--data"):
        run_test(ckpt=tmp_path / "old.pt")


def write_pngs(folder: Path, images: dict[str, torch.Tensor]) -> Path:
    folder.mkdir(parents=True)
    for name, image in images.items():
        Image.fromarray(image.numpy()).save(folder / f"{name}.png")
    return folder


def test_evaluate_identical_folders_scores_perfectly(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    images = {name: torch.randint(0, 256, (24, 32, 3), dtype=torch.uint8) for name in ("a", "b")}
    pred, target = write_pngs(tmp_path / "pred", images), write_pngs(tmp_path / "target", images)
    main(["evaluate", "--pred", str(pred), "--target", str(target), "--out", str(tmp_path / "out")])
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())["metrics"]
    assert metrics["l1"] == 0 and metrics["psnr"] == PSNR_CAP and metrics["ssim"] == pytest.approx(1)
    assert metrics["hist_L"] == pytest.approx(1) and metrics["hist_b"] == pytest.approx(1)
    assert (tmp_path / "out" / "histograms.png").is_file()
    assert "2 image pair(s)" in capsys.readouterr().out


def test_evaluate_refuses_unpaired_or_resized_images(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    image = torch.zeros(16, 16, 3, dtype=torch.uint8)
    pred = write_pngs(tmp_path / "pred", {"a": image, "b": image})
    with pytest.raises(DataError, match="no partner.*b"):
        evaluate_folders(pred=pred, target=write_pngs(tmp_path / "t1", {"a": image}))
    with pytest.raises(DataError, match="16x16 but .* is 16x20"):
        evaluate_folders(pred=pred, target=write_pngs(tmp_path / "t2", {"a": image, "b": torch.zeros(16, 20, 3, dtype=torch.uint8)}))
    with pytest.raises(SystemExit) as stop:  # the CLI reports it in one line, without a traceback
        main(["evaluate", "--pred", str(pred), "--target", str(tmp_path / "t1")])
    assert stop.value.code == 2 and "p2p: error:" in capsys.readouterr().err


def test_test_on_the_real_outlines_resizes_every_pair_to_the_trained_size(outlines: Path, tmp_path: Path):
    from conftest import make_spec
    from p2p_core.run import Run

    data = ("aligned", {"root": outlines, "direction": "BtoA", "load_size": 36, "crop_size": 32})
    Run(make_spec(generator=("unet", {"ngf": 8}), data=data, loss="l1", max_steps=1), out_dir=tmp_path, name="run")()
    result = run_test(ckpt=tmp_path / "run", mode="eval")
    content = json.loads((result.out_dir / "metrics.json").read_text())
    assert content["count"] == 155 and content["dataset"]["options"]["root"] == str(outlines)  # stored as text
    # 15 val images are shorter than 256 high; all are tested at the 32x32 the model was trained on.
    assert {Image.open(path).size for path in (result.out_dir / "outputs").iterdir()} == {(32, 32)}
    assert all(0 < content["metrics"][k] < 1 for k in ("l1", "ssim", "hist_L", "hist_a", "hist_b"))


def test_test_never_replaces_results_without_overwrite(run_dir: Path, tmp_path: Path):
    run_test(ckpt=run_dir, mode="eval", data={"length": 1}, out=tmp_path / "page")
    before = (tmp_path / "page" / "metrics.json").read_bytes()
    with pytest.raises(DataError, match="already holds results; pass --overwrite"):
        run_test(ckpt=run_dir, mode="eval", data={"length": 2}, out=tmp_path / "page")
    assert (tmp_path / "page" / "metrics.json").read_bytes() == before
    assert run_test(ckpt=run_dir, mode="eval", data={"length": 2}, out=tmp_path / "page", overwrite=True).names == ["0", "1"]

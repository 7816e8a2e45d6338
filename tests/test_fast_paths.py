"""The GPU fast-path options (bf16 autocast, channels_last, torch.compile) run on CPU and change little."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from conftest import make_spec, run
from p2p_core.protocols import Sample
from p2p_core.registry import default_registry
from p2p_core.spec import Shapes
from p2p_core.training import Training


def one_step(tmp_path, **options) -> tuple[dict[str, float], torch.Tensor]:
    torch.manual_seed(0)
    spec = make_spec(generator=("unet", {"ngf": 8, "dropout": 0.0}), disc=("patch70", {"ndf": 8}), **options)
    model = Training.build(spec, Shapes(in_channels=3, out_channels=3, image_size=32), total_steps=1)
    sample = default_registry().create("dataset", "synthetic", split="train", length=2, load_size=32, crop_size=32)[0]
    losses = model.train_step(Sample(sample.a[None], sample.b[None], ""))
    with torch.no_grad():
        output = model.networks["generator"].eval()(model.to_device(sample.a[None]))
    return losses, output


@pytest.mark.parametrize(
    ("options", "tolerance"),
    [
        ({"channels_last": True}, 1e-4),
        ({"precision": "bf16"}, 5e-2),
        ({"compile": "default"}, 1e-3),
    ],
    ids=["channels_last", "bf16", "compile"],
)
def test_fast_path_option_matches_the_default_path(tmp_path, options, tolerance):
    reference_losses, reference_output = one_step(tmp_path)
    losses, output = one_step(tmp_path, **options)
    assert losses.keys() == reference_losses.keys()
    for name, value in reference_losses.items():
        assert losses[name] == pytest.approx(value, rel=tolerance), name
    assert (output - reference_output).abs().max() < 10 * tolerance


@pytest.mark.parametrize(("precision", "dtype"), [("bf16", torch.bfloat16), ("fp32", torch.float32)])
def test_the_precision_option_decides_the_dtype_of_the_steps_forward_passes(precision, dtype):
    spec = make_spec(generator=("unet", {"ngf": 4, "dropout": 0.0}), precision=precision)
    model = Training.build(spec, Shapes(in_channels=3, out_channels=3, image_size=32), total_steps=1)
    with model.autocast():
        output = model.module("generator")(torch.zeros(1, 3, 32, 32))
    assert output.dtype == dtype


@pytest.mark.parametrize("channels_last", [True, False])
def test_the_channels_last_option_lays_out_the_batches_and_the_networks_so(channels_last):
    # Its results match the default path's (above), so only the layout shows whether the option acts.
    spec = make_spec(generator=("unet", {"ngf": 4, "dropout": 0.0}), channels_last=channels_last)
    model = Training.build(spec, Shapes(in_channels=3, out_channels=3, image_size=32), total_steps=1)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    batch = model.to_device(Sample(torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32), ""))
    assert batch.a.is_contiguous(memory_format=layout) and batch.b.is_contiguous(memory_format=layout)
    assert model.to_device(torch.rand(3, 32, 32)).is_contiguous()  # one image: no batch to lay out
    weights = [p for network in model.networks.values() for p in network.parameters() if p.dim() == 4]
    assert weights and all(p.is_contiguous(memory_format=layout) for p in weights)


def test_bench_reports_throughput_flops_and_memory(capsys):
    sizes = {}
    for size in (32, 64):
        code, out, err = run(["bench", "--generator.ngf", "4", "--disc.ndf", "4", "--image_size", str(size),
                              "--trainer.max_steps", "1", "--steps", "1", "--warmup", "1", "--json"], capsys)
        assert code == 0, err
        sizes[size] = json.loads(out)
    small, large = sizes[32], sizes[64]
    assert small["train_images_per_s"] > 0 and small["inference_images_per_s"] > 0 and small["peak_memory_mib"] > 0
    # Every inference backend installed here, side by side (the export extra brings onnxruntime).
    expected = {"torch", "onnxruntime"} if importlib.util.find_spec("onnxruntime") else {"torch"}
    assert set(small["inference_backends"]) == expected and all(rate > 0 for rate in small["inference_backends"].values())
    assert 0 < small["peak_fraction"] < 1
    # Convolutions cost in proportion to pixels, but the U-Net is one block deeper at 64, so a bit more than 4x.
    assert 4 <= large["train_gflop_per_step"] / small["train_gflop_per_step"] < 4.5

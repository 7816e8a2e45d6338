"""Backends and any-size exports: the files run outside p2p at any size, and every backend gives translate()'s output."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import p2p_core
from conftest import fit_tiny
from p2p_core import backends, commands, devices
from p2p_core.cli import main
from p2p_core.errors import ConfigError, UnknownComponentError
from p2p_core.export import export
from p2p_core.images import write_image
from p2p_core.inference import load_generator, translate
from p2p_core.predict import predict
from p2p_core.registry import Registry, load_registry
from p2p_core.spec import check_trainer

SIZES = [(37, 100), (1, 1), (300, 257)]
TOLERANCE = 1e-4

# Runs an export with its own runtime only: p2p is neither imported nor importable by accident.
RUN_OUTSIDE_P2P = textwrap.dedent("""
    import sys
    import numpy as np

    format, *jobs = sys.argv[1:]
    for path, inputs, outputs in zip(jobs[0::3], jobs[1::3], jobs[2::3]):
        arrays = dict(np.load(inputs))
        if format == "onnx":
            import onnxruntime

            session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
            results = {name: session.run(["translated"], {"image": x})[0] for name, x in arrays.items()}
        else:
            import torch

            with open(path, "rb") as handle:
                program = torch.export.load(handle).module()
            with torch.no_grad():
                results = {name: program(torch.from_numpy(x)).numpy() for name, x in arrays.items()}
        assert not any(name.startswith("p2p") for name in sys.modules), "the export needed p2p"
        np.savez(outputs, **results)
""")


def onnx_available() -> None:
    for module in ("onnx", "onnxscript", "onnxruntime"):
        pytest.importorskip(module, reason="pip install 'p2p[export]' for ONNX export")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """Tiny runs from 1-, 3- and 4-channel inputs."""
    return {channels: fit_tiny(tmp_path_factory.mktemp(f"c{channels}"), in_channels=channels) for channels in (1, 3, 4)}


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("P2P_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.parametrize("format", ["onnx", "exported-program"])
def test_an_export_runs_outside_p2p_at_any_size_as_translate_does(runs: dict[int, Path], tmp_path: Path, format: str):
    if format == "onnx":
        onnx_available()
    # One process runs the three exports: what is under test is that they run without p2p, not a process each.
    jobs, inputs = [], {}
    for channels in runs:
        out = tmp_path / f"c{channels}" / "generator.bin"
        out.parent.mkdir()
        export(ckpt=runs[channels], format=format, out=out)
        description = json.loads(out.with_name("generator.bin.json").read_text())
        assert description["padding"]["inside_graph"] is True and description["input"]["channels"] == channels
        generator = torch.Generator().manual_seed(channels)
        # Batches of 2 and 1: the batch dimension is free too.
        inputs[channels] = {f"{h}x{w}": (torch.rand(2 if h > 1 else 1, channels, h, w, generator=generator) * 2 - 1).numpy() for h, w in SIZES}
        np.savez(out.with_name("inputs.npz"), **inputs[channels])
        jobs += [str(out), str(out.with_name("inputs.npz")), str(out.with_name("outputs.npz"))]
    subprocess.run([sys.executable, "-c", RUN_OUTSIDE_P2P, format, *jobs], check=True, cwd=tmp_path)
    for channels in runs:
        outputs = np.load(tmp_path / f"c{channels}" / "outputs.npz")
        model = load_generator(runs[channels], mode="eval").module
        for name, x in inputs[channels].items():
            with torch.no_grad():
                expected = translate(model, torch.from_numpy(x))
            assert outputs[name].shape == (x.shape[0], 3, *x.shape[2:])
            assert np.abs(outputs[name] - expected.numpy()).max() <= TOLERANCE, (channels, name)


def test_the_backends_agree_in_eval_mode(runs: dict[int, Path], cache: Path):
    onnx_available()
    trained = load_generator(runs[3], mode="eval")
    torch_runner = backends.open_backend(trained, backend="torch")
    onnx_runner = backends.open_backend(trained, backend="onnxruntime")
    assert (torch_runner.backend, onnx_runner.backend) == ("torch", "onnxruntime")
    generator = torch.Generator().manual_seed(0)
    for height, width in [*SIZES, (16, 48)]:
        x = torch.rand(3, 3, height, width, generator=generator) * 2 - 1
        assert (onnx_runner(x) - torch_runner(x)).abs().max() <= TOLERANCE
    image = torch.rand(3, 40, 25, generator=generator) * 2 - 1
    assert (onnx_runner.translate(image, shorter_side=16) - torch_runner.translate(image, shorter_side=16)).abs().max() <= TOLERANCE
    with torch.no_grad():
        assert torch.equal(torch_runner.translate(image), translate(trained.module, image))


def test_the_onnx_export_is_built_once_per_checkpoint_and_mode(runs: dict[int, Path], cache: Path, monkeypatch: pytest.MonkeyPatch):
    onnx_available()
    trained = load_generator(runs[3], mode="eval")
    first = backends.cached_onnx(trained)
    assert first.is_relative_to(cache)

    def no_rebuild(*args, **kwargs):
        raise AssertionError("the cached export was rebuilt")

    monkeypatch.setattr("p2p_core.export.write_checked", no_rebuild)
    assert backends.cached_onnx(load_generator(runs[3], mode="eval")) == first
    # Another checkpoint file gets another export.
    with pytest.raises(AssertionError, match="rebuilt"):
        backends.cached_onnx(load_generator(runs[1], mode="eval"))


def test_auto_takes_onnxruntime_on_the_cpu_in_eval_mode_and_torch_for_paper_mode():
    onnx_available()
    cpu = torch.device("cpu")
    assert backends.choose("auto", mode="eval", device=cpu) == "onnxruntime"
    assert backends.choose("auto", mode="paper", device=cpu) == "torch"
    assert backends.choose("torch", mode="eval", device=cpu) == "torch"
    with pytest.raises(ConfigError, match="--mode eval"):
        backends.choose("onnxruntime", mode="paper", device=cpu)


def test_onnxruntime_refuses_reduced_precision_on_the_cpu(runs: dict[int, Path]):
    onnx_available()
    with pytest.raises(ConfigError, match="float32"):
        backends.open_backend(load_generator(runs[3], mode="eval"), backend="onnxruntime", precision="float16")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
@pytest.mark.parametrize("precision", ["float32", "float16"])
def test_the_gpu_path_matches_the_cpu(runs: dict[int, Path], backend: str, precision: str):
    if backend == "onnxruntime":
        onnx_available()
        import onnxruntime

        if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            pytest.skip("onnxruntime has no CUDA provider here (pip install onnxruntime-gpu)")
    cuda = torch.device("cuda")
    runner = backends.open_backend(load_generator(runs[3], mode="eval", device=cuda), backend=backend, device=cuda, precision=precision)
    assert runner.backend == backend and "cuda" in runner.description.lower()
    reference = backends.open_backend(load_generator(runs[3], mode="eval"), backend="torch")
    x = torch.rand(2, 3, 37, 100, generator=torch.Generator().manual_seed(0)) * 2 - 1
    found = runner(x.to(cuda))
    assert found.device.type == "cuda" and found.dtype == torch.float32
    # TF32 convolutions and float16 keep about three decimal digits: within one 8-bit level for a tiny net.
    assert (found.cpu() - reference(x)).abs().max() <= 1 / 127.5


# -- backends as a plugin kind, and the precision they run in ---------------------------------------------------


class CountingBackend:
    """A third party's backend: translate() in float32 on the CPU, counting the batches it runs (in ``calls``)."""

    supports = {"cpu": ("float32",)}
    modes = ("eval",)
    auto_priority = {"cpu": 100}

    calls = 0

    def problem(self, *, device: torch.device) -> None:
        return None

    def open(self, trained, *, device: torch.device, precision: str) -> backends.Runner:
        def run(batch: torch.Tensor) -> torch.Tensor:
            CountingBackend.calls += 1
            with torch.no_grad():
                return translate(trained.module, batch)

        return backends.Runner(backend="counting", description="counting (cpu)", run=run)


class CountingPlugin:
    @p2p_core.hookimpl
    def p2p_backends(self):
        return {"counting": CountingBackend}


def with_counting_backend() -> Registry:
    registry = load_registry()
    registry.register(CountingPlugin(), name="counting", distribution="p2p-counting", version="1.0")
    CountingBackend.calls = 0
    return registry


def test_a_third_partys_backend_runs_predict_without_a_change_to_p2p(runs: dict[int, Path], tmp_path: Path, capsys):
    registry = with_counting_backend()
    write_image(torch.zeros(3, 16, 16), tmp_path / "in" / "a.png")
    result = predict(ckpt=runs[3], input=tmp_path / "in", output=tmp_path / "by_name", mode="eval", backend="counting",
                     progress=False, registry=registry)
    assert result.backend == "counting (cpu)" and CountingBackend.calls == 1
    # Its auto_priority outranks onnxruntime's on the CPU, in what it runs; paper mode and bfloat16 go elsewhere.
    cpu = torch.device("cpu")
    assert backends.choose("auto", mode="eval", device=cpu, registry=registry) == "counting"
    assert backends.choose("auto", mode="paper", device=cpu, registry=registry) == "torch"
    assert backends.choose("auto", mode="eval", device=cpu, precision="bfloat16", registry=registry) == "torch"
    with pytest.raises(ConfigError, match="--backend counting runs eval mode only: use --mode eval, or --backend torch"):
        backends.choose("counting", mode="paper", device=cpu, registry=registry)
    commands.list_components("backends", registry=registry)
    listed = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:] if line.strip()}
    assert "cpu: float32" in listed["counting"] and "eval" in listed["counting"] and "p2p-counting 1.0" in listed["counting"]


def test_p2p_list_backends_shows_the_devices_precisions_and_modes_of_each(capsys):
    main(["list", "backends"])
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:] if line.strip()}
    assert "cpu: float32, bfloat16, float16; cuda: float32, float16, bfloat16" in rows["torch"] and "eval, paper" in rows["torch"]
    assert "cpu: float32; cuda: float32, float16" in rows["onnxruntime"]


def test_auto_never_changes_the_precision_and_a_backend_refuses_one_it_does_not_run():
    onnx_available()
    cpu = torch.device("cpu")
    assert backends.choose("auto", mode="eval", device=cpu, precision="float32") == "onnxruntime"
    assert backends.choose("auto", mode="eval", device=cpu, precision="bfloat16") == "torch"
    with pytest.raises(ConfigError, match="--backend onnxruntime runs float32 on cpu, not bfloat16: use --precision float32, or --backend torch"):
        backends.choose("onnxruntime", mode="eval", device=cpu, precision="bfloat16")
    with pytest.raises(ConfigError, match="--precision must be float32, bfloat16, float16, got 'int8'"):
        backends.choose("torch", mode="eval", device=cpu, precision="int8")
    with pytest.raises(UnknownComponentError, match="onnxruntim"):
        backends.choose("onnxruntim", mode="eval", device=cpu)


@pytest.mark.parametrize("native", [False, True])
def test_a_cpu_without_native_bfloat16_is_warned_that_it_runs_emulated(runs: dict[int, Path], monkeypatch, native: bool):
    monkeypatch.setattr(devices, "native_on_cpu", lambda precision: native)
    trained = load_generator(runs[3], mode="eval")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runner = backends.open_backend(trained, backend="torch", precision="bf16")
    emulated = [str(w.message) for w in caught if "no native bfloat16" in str(w.message)]
    assert len(emulated) == (0 if native else 1)
    assert runner.description == "torch (cpu, bfloat16)"  # the older spelling is read as bfloat16
    x = torch.rand(1, 3, 20, 30, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        assert (runner(x) - translate(trained.module, x)).abs().max() <= backends.TOLERANCE["bfloat16"]


def test_the_trainer_reads_the_older_precision_spellings():
    assert check_trainer({"precision": "bf16"}).precision == "bfloat16"
    assert check_trainer({"precision": "fp32"}).precision == "float32"
    assert check_trainer({}).precision == "float32"


def test_describe_shows_what_a_backend_runs(capsys):
    main(["describe", "backend", "onnxruntime"])
    out = capsys.readouterr().out
    assert "runs: cpu: float32; cuda: float32, float16" in out and "modes: eval" in out and "cpu 10" in out


def test_test_and_demo_take_the_precision_and_refuse_one_their_backend_does_not_run(runs: dict[int, Path], tmp_path: Path, capsys):
    onnx_available()
    for command in (["test", "--out", str(tmp_path / "results")], ["demo", "--port", "0"]):
        with pytest.raises(SystemExit):
            main([*command, "--ckpt", str(runs[3]), "--mode", "eval", "--backend", "onnxruntime", "--precision", "bfloat16"])
        assert "p2p: error: --backend onnxruntime runs float32 on cpu, not bfloat16" in capsys.readouterr().err


def test_bfloat16_training_on_a_cpu_without_it_is_warned(monkeypatch):
    from p2p_core.spec import ComponentSpec, RunSpec, Shapes, TrainConfig
    from p2p_core.training import Training

    monkeypatch.setattr(devices, "native_on_cpu", lambda precision: False)
    spec = RunSpec(generator=ComponentSpec("unet", {"ngf": 4}), disc=ComponentSpec("pixel", {"ndf": 4}), data=ComponentSpec("synthetic"),
                   trainer=TrainConfig(device="cpu", precision="bf16"))
    with pytest.warns(UserWarning, match="--trainer.precision bfloat16: this CPU .* has no native bfloat16"):
        Training.build(spec, Shapes(in_channels=3, out_channels=3, image_size=16), total_steps=1, device=torch.device("cpu"))

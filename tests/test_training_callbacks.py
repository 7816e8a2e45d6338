"""Training callbacks: plugins' hooks around the step (p2p_core.hookspecs), the built-in EMA of the generator's
weights, and two example callbacks written here as plugins of the tests: DiffAugment and a JSON-lines log of the scalars."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import attrs
import pytest
import torch

import p2p_core
from conftest import fit_smoke, make_spec, run
from p2p_core import checkpoint
from p2p_core.inference import load_generator
from p2p_core.protocols import Sample
from p2p_core.registry import Registry
from p2p_core.run import Run
from p2p_core.spec import ComponentSpec, Shapes
from p2p_core.training import Training

SHAPES = Shapes(in_channels=3, out_channels=3, image_size=32)


def registry(*plugins: object) -> Registry:
    found = Registry()
    found.load_entry_points(allow=["p2p"])
    for number, plugin in enumerate(plugins):
        found.register(plugin, name=f"callbacks{number}", distribution="p2p-test-callbacks")
    return found


def batches(count: int) -> list[Sample]:
    generator = torch.Generator().manual_seed(1)
    return [Sample(*(torch.rand(2, 3, 32, 32, generator=generator) * 2 - 1 for _ in range(2)), path="") for _ in range(count)]


def tiny(**trainer) -> object:
    return make_spec(generator=("unet", {"ngf": 8}), disc=("patch16", {"ndf": 8}), **trainer)


# -- the exponential moving average (plugins/p2p_ema) -------------------------------------------------------------


def test_ema_blends_the_generator_into_its_average_after_every_step():
    training = Training.build(tiny(ema=0.75), SHAPES, total_steps=3, registry=registry())
    expected = copy.deepcopy(training.networks["generator"].state_dict())
    for batch in batches(3):
        training.train_step(batch)
        for name, tensor in training.networks["generator"].state_dict().items():
            expected[name] = 0.75 * expected[name] + 0.25 * tensor if tensor.is_floating_point() else tensor.clone()
    averaged = training.averaged["generator"].state_dict()
    assert set(training.averaged) == {"generator"} and averaged.keys() == expected.keys()
    assert training.translator("AtoB") is training.averaged["generator"]  # what validation, bench and predict run
    for name, tensor in expected.items():
        torch.testing.assert_close(averaged[name], tensor, rtol=1e-6, atol=1e-7, msg=name)


def test_ema_without_the_plugin_that_keeps_it_is_refused():
    import p2p_datasets
    import p2p_gan_losses
    import p2p_patchgan
    import p2p_pix2pix
    import p2p_unet

    found = Registry()  # every built-in but p2p_ema
    for module in (p2p_unet, p2p_patchgan, p2p_gan_losses, p2p_datasets, p2p_pix2pix):
        found.register(module, name=module.__name__, distribution="p2p")
    with pytest.raises(p2p_core.PluginError, match="--trainer.ema: no loaded plugin keeps the average"):
        Training.build(tiny(ema=0.9), SHAPES, total_steps=1, registry=found)


def test_without_ema_nothing_is_averaged_and_the_checkpoint_holds_no_average():
    training = Training.build(tiny(), SHAPES, total_steps=1, registry=registry())
    training.train_step(batches(1)[0])
    assert training.averaged == {} and "averaged" not in training.state_dict()


def test_a_resumed_run_continues_the_average_exactly():
    def steps(training: Training, chosen: list[Sample]) -> None:
        for batch in chosen:
            torch.manual_seed(7)
            training.train_step(batch)

    chosen = batches(3)
    torch.manual_seed(0)
    whole = Training.build(tiny(ema=0.5), SHAPES, total_steps=3, registry=registry())
    steps(whole, chosen)
    torch.manual_seed(0)
    first = Training.build(tiny(ema=0.5), SHAPES, total_steps=3, registry=registry())
    steps(first, chosen[:2])
    resumed = Training.build(tiny(ema=0.5), SHAPES, total_steps=3, registry=registry())
    resumed.load_state_dict(copy.deepcopy(first.state_dict()))
    steps(resumed, chosen[2:])
    for name, tensor in whole.averaged["generator"].state_dict().items():
        assert torch.equal(resumed.averaged["generator"].state_dict()[name], tensor), name


def test_a_run_that_starts_averaging_on_resume_averages_from_the_checkpoints_weights():
    torch.manual_seed(0)
    plain = Training.build(tiny(), SHAPES, total_steps=3, registry=registry())
    plain.train_step(batches(1)[0])
    state = copy.deepcopy(plain.state_dict())
    assert "averaged" not in state
    torch.manual_seed(1)  # other initial weights, which the average must not keep
    averaging = Training.build(tiny(ema=0.5), SHAPES, total_steps=3, registry=registry())
    averaging.load_state_dict(state)
    assert averaging.step == 1
    for name, tensor in state["models"]["generator"].items():
        assert torch.equal(averaging.averaged["generator"].state_dict()[name], tensor), name


def test_predict_uses_the_average_a_run_kept_and_says_so(tmp_path, capsys):
    run_dir = fit_smoke(tmp_path, capsys, "--trainer.ema", "0.9", "--trainer.max_steps", "2")
    state = checkpoint.load(run_dir)
    assert state["spec"]["trainer"]["ema"] == 0.9
    loaded = load_generator(run_dir, mode="eval")
    assert loaded.averaged
    for name, tensor in loaded.module.state_dict().items():
        assert torch.equal(tensor, state["averaged"]["generator"][name]), name
    assert "using the moving average of the generator's weights (--trainer.ema 0.9)" in capsys.readouterr().err
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    torch.manual_seed(0)
    from p2p_core.images import write_image

    write_image(torch.rand(3, 64, 64) * 2 - 1, inputs / "a.png")
    code, _, err = run(["predict", "--ckpt", str(run_dir), "--input", str(inputs), "--output", str(tmp_path / "out"),
                        "--backend", "torch", "--progress", "false"], capsys)
    assert code == 0 and "smoke/step_00000002.pt: using the moving average" in err
    code, _, err = run(["predict", "--ckpt", str(run_dir), "--input", str(inputs), "--output", str(tmp_path / "raw"),
                        "--backend", "torch", "--progress", "false", "--no_ema"], capsys)
    assert code == 0 and "moving average" not in err
    trained = load_generator(run_dir, mode="eval", ema=False)
    assert not trained.averaged
    for name, tensor in trained.module.state_dict().items():
        assert torch.equal(tensor, state["models"]["generator"][name]), name

    code, _, err = run(["export", "--ckpt", str(run_dir), "--format", "safetensors", "--out", str(tmp_path / "g.safetensors")], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "g.safetensors.json").read_text())["averaged_weights"] is True
    exported = load_generator(tmp_path / "g.safetensors", mode="eval")
    for name, tensor in exported.module.state_dict().items():
        assert torch.equal(tensor, state["averaged"]["generator"][name]), name


def test_ema_out_of_range_is_refused_naming_the_option(capsys):
    code, _, err = run(["fit", "--config", "smoke", "--trainer.ema", "1"], capsys)
    assert code == 2 and "--trainer.ema must be in [0, 1), got 1" in err


# -- DiffAugment (Zhao et al. 2020): translation and cutout on what D sees, as an example callback ----------------


def translation(images: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """Each image shifted by up to ``ratio`` of its sides, zeros where it leaves the frame (DiffAugment's)."""
    n, _, height, width = images.shape
    reach_y, reach_x = int(height * ratio + 0.5), int(width * ratio + 0.5)
    rows = torch.arange(height, device=images.device)[None, :, None] + torch.randint(-reach_y, reach_y + 1, (n, 1, 1), device=images.device)
    columns = torch.arange(width, device=images.device)[None, None, :] + torch.randint(-reach_x, reach_x + 1, (n, 1, 1), device=images.device)
    inside = (rows >= 0) & (rows < height) & (columns >= 0) & (columns < width)
    shifted = images[torch.arange(n, device=images.device)[:, None, None], :, rows.clamp(0, height - 1), columns.clamp(0, width - 1)]
    return shifted.permute(0, 3, 1, 2) * inside[:, None]


def cutout(images: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """Each image with a ``ratio``-sided rectangle at a random place set to zero (DiffAugment's)."""
    n, _, height, width = images.shape
    size_y, size_x = int(height * ratio + 0.5), int(width * ratio + 0.5)
    top = torch.randint(0, height + 1 - size_y % 2, (n, 1, 1), device=images.device) - size_y // 2
    left = torch.randint(0, width + 1 - size_x % 2, (n, 1, 1), device=images.device) - size_x // 2
    rows, columns = torch.arange(height, device=images.device)[None, :, None], torch.arange(width, device=images.device)[None, None, :]
    hole = (rows >= top) & (rows < top + size_y) & (columns >= left) & (columns < left + size_x)
    return images * ~hole[:, None]


class DiffAugment:
    """What D sees, real and fake alike, translated and cut out; records each batch it augmented."""

    def __init__(self) -> None:
        self.seen: list[torch.Tensor] = []

    def augment(self, images: torch.Tensor) -> torch.Tensor:
        self.seen.append(images)
        return cutout(translation(images))

    @p2p_core.hookimpl
    def p2p_discriminator_augment(self, training, role):
        return self.augment


def test_diffaugment_moves_and_cuts_each_image_and_passes_gradients():
    torch.manual_seed(0)
    images = torch.ones(8, 2, 32, 32, requires_grad=True)
    augmented = cutout(translation(images))
    assert augmented.shape == images.shape
    zeros = (augmented == 0).float().mean(dim=(1, 2, 3))
    assert bool((zeros >= 0.25 * 0.5).all()) and bool((zeros < 1).all())  # at least a quarter of the hole, never all
    assert bool((augmented[:, 0] == augmented[:, 1]).all())  # one draw per image, all its channels alike
    augmented.sum().backward()
    assert images.grad is not None and 0 < images.grad.sum() < images.numel()


def test_the_discriminator_sees_real_and_fake_through_the_augmentation_in_both_updates():
    plugin = DiffAugment()
    training = Training.build(tiny(), SHAPES, total_steps=2, registry=registry(plugin))
    batch = batches(1)[0]
    training.train_step(batch)
    real, fake_for_d, fake_for_g = plugin.seen
    assert torch.equal(real, torch.cat([batch.a, batch.b], 1))  # the conditional pair, moved as one
    assert not fake_for_d.requires_grad and fake_for_g.requires_grad  # D's step on G(x) detached; G's through it
    assert torch.equal(fake_for_d, fake_for_g.detach())


def test_an_augmented_run_resumes_exactly():
    def steps(training: Training, chosen: list[Sample]) -> list[dict[str, float]]:
        return [training.train_step(batch) for batch in chosen]

    chosen = batches(3)
    torch.manual_seed(0)
    whole = steps(Training.build(tiny(), SHAPES, total_steps=3, registry=registry(DiffAugment())), chosen)
    torch.manual_seed(0)
    first = Training.build(tiny(), SHAPES, total_steps=3, registry=registry(DiffAugment()))
    steps(first, chosen[:1])
    state, rng = copy.deepcopy(first.state_dict()), torch.get_rng_state()
    resumed = Training.build(tiny(), SHAPES, total_steps=3, registry=registry(DiffAugment()))
    resumed.load_state_dict(state)
    torch.set_rng_state(rng)  # what a run's checkpoint restores
    assert steps(resumed, chosen[1:]) == whole[1:]


# -- a JSON-lines log of the scalars, as an example callback -----------------------------------------------------


class JsonLog:
    """Each logged interval's scalars as a line of RUN/scalars.jsonl; logs each batch's mean target too, and keeps
    each step's logged values."""

    def __init__(self) -> None:
        self.steps: list[dict[str, float]] = []

    @p2p_core.hookimpl
    def p2p_train_step_end(self, batch, logged):
        logged["data/target_mean"] = batch.b.mean().item()
        self.steps.append(dict(logged))

    @p2p_core.hookimpl
    def p2p_log(self, run_dir, step, scalars):
        with open(Path(run_dir) / "scalars.jsonl", "a") as file:
            file.write(json.dumps({"step": step, **scalars}) + "\n")


def test_a_logging_plugin_gets_each_interval_means_of_what_was_logged(tmp_path):
    plugin = JsonLog()
    spec = attrs.evolve(tiny(max_steps=4, log_every=4, image_every=4, checkpoint_every=4, n_epochs=1, n_epochs_decay=1),
                        method=ComponentSpec("pix2pix", {"n_critic": 2}))
    Run(spec, out_dir=tmp_path, name="logged", registry=registry(plugin))()
    rows = [json.loads(line) for line in (tmp_path / "logged" / "scalars.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [1, 4]  # the first step, then every log_every
    assert set(rows[1]) == {"step", "loss/D/cgan", "loss/G/cgan", "loss/G/l1", "loss/data/target_mean", "lr", "perf/images_per_sec"}
    assert "loss/G/l1" not in rows[0]  # step 1 is a critic's step: G was not updated
    # Steps 2-4 logged D thrice and G twice (on steps 2 and 4); each is averaged over the steps that logged it.
    d_values = [plugin.steps[i]["D/cgan"] for i in (1, 2, 3)]
    g_values = [plugin.steps[i]["G/l1"] for i in (1, 3)]
    assert rows[1]["loss/D/cgan"] == pytest.approx(sum(d_values) / 3, rel=1e-6)
    assert rows[1]["loss/G/l1"] == pytest.approx(sum(g_values) / 2, rel=1e-6)
    assert rows[1]["loss/data/target_mean"] == pytest.approx(sum(plugin.steps[i]["data/target_mean"] for i in (1, 2, 3)) / 3)


def test_contributing_shows_the_ema_plugin_as_it_is():
    root = Path(__file__).resolve().parents[1]
    guide = (root / "CONTRIBUTING.md").read_text()
    shown = guide.split("The whole of it:\n\n```python\n", 1)[1].split("```", 1)[0]
    assert shown in (root / "plugins" / "p2p_ema" / "__init__.py").read_text()

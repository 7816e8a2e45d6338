"""The run spec as data: the trainer's range checks and schedule, and what a checkpoint's spec says about its
networks and directions. Plain data only: no network is built."""

from __future__ import annotations

import pytest

from p2p_core.errors import ConfigError, DataError
from p2p_core.ranges import LARGEST
from p2p_core.spec import (
    MAX_CLASSES,
    ComponentSpec,
    NetworkShape,
    RunSpec,
    Shapes,
    TrainConfig,
    TrainedSpec,
    check_trainer,
    input_classes,
    read_checkpoint,
)

def _run() -> RunSpec:
    return RunSpec(generator=ComponentSpec("unet"), disc=ComponentSpec("patch70"), data=ComponentSpec("synthetic"))


# -- the trainer's options -----------------------------------------------------------------------------------------


def test_a_trainer_option_below_its_minimum_is_named_with_the_minimum_and_the_value():
    with pytest.raises(ConfigError) as error:
        check_trainer({"batch_size": 0})
    assert str(error.value) == "--trainer.batch_size must be at least 1, got 0"


def test_the_trainer_options_accept_their_bounds_and_an_unset_step_limit():
    config = check_trainer({"batch_size": 1, "n_epochs": 0, "seed": LARGEST, "max_steps": None})
    assert (config.batch_size, config.n_epochs, config.seed, config.max_steps) == (1, 0, LARGEST, None)
    assert check_trainer({"seed": -LARGEST - 1}).seed == -LARGEST - 1


def test_a_trainer_option_beyond_a_64_bit_integer_is_refused_with_its_first_40_digits():
    huge = 10**50
    with pytest.raises(ConfigError) as error:
        check_trainer({"batch_size": huge})
    assert str(error.value) == f"--trainer.batch_size must be at most {LARGEST:,} (a 64-bit integer), got {str(huge)[:40]}..."
    with pytest.raises(ConfigError) as error:
        check_trainer({"seed": -huge})
    assert str(error.value) == f"--trainer.seed must be at least {-LARGEST - 1}, got {str(-huge)[:40]}"


def test_the_trainer_reads_precision_in_one_vocabulary():
    # bf16 is an alias: the step compares with the one name, so an alias kept as given would train in float32.
    assert check_trainer({"precision": "bf16"}).precision == "bfloat16"
    assert check_trainer({}).precision == check_trainer({"precision": "float32"}).precision == "float32"


def test_without_decay_epochs_the_learning_rate_stays_constant_to_the_last_step():
    config = TrainConfig(n_epochs=100, n_epochs_decay=0)
    assert [config.learning_rate_factor(step, 10) for step in range(11)] == [1.0] * 11


def test_without_constant_epochs_the_learning_rate_decays_from_the_first_step():
    config = TrainConfig(n_epochs=0, n_epochs_decay=1)
    assert [config.learning_rate_factor(step, 10) for step in (0, 5, 10)] == pytest.approx([10 / 11, 5 / 11, 0])


# -- a checkpoint's networks and directions ------------------------------------------------------------------------


def test_a_pix2pix_checkpoint_without_recorded_networks_gets_its_generator_and_discriminator():
    shapes = Shapes(in_channels=3, out_channels=2, image_size=32, disc_in_channels=5)
    assert TrainedSpec(run=_run(), shapes=shapes).networks == {
        "generator": NetworkShape(kind="generator", in_channels=3, out_channels=2),
        "discriminator": NetworkShape(kind="discriminator", in_channels=5),
    }
    generator_only = {"generator": NetworkShape(kind="generator", in_channels=3, out_channels=2)}
    assert TrainedSpec(run=_run(), shapes=shapes, adversarial=False).networks == generator_only
    assert TrainedSpec(run=_run(), shapes=Shapes(in_channels=3, out_channels=2, image_size=32)).networks == generator_only


def _state(**changes: object) -> dict[str, object]:
    """A format-2 checkpoint's state of a two-generator method, with ``changes`` over it."""
    trained = TrainedSpec(
        run=_run(),
        shapes=Shapes(in_channels=3, out_channels=3, image_size=32),
        networks={"generator_ab": NetworkShape(kind="generator", in_channels=3, out_channels=3),
                  "generator_ba": NetworkShape(kind="generator", in_channels=3, out_channels=3)},
        directions={"AtoB": "generator_ab", "BtoA": "generator_ba"},
    )
    return {"format": 2, **trained.to_dict(), **changes}


def test_a_checkpoints_directions_are_read_back_as_written():
    trained = read_checkpoint(_state(), source="x.pt")
    assert trained.directions == {"AtoB": "generator_ab", "BtoA": "generator_ba"}
    assert trained.generator_for("BtoA") == "generator_ba"
    assert read_checkpoint(_state(directions={"BtoA": "generator_ba"}), source="x.pt").directions == {"BtoA": "generator_ba"}


@pytest.mark.parametrize(
    ("directions", "message"),
    [
        (["AtoB"], "x.pt: directions must be a mapping, got list ['AtoB']"),
        ({"AtoB": ""}, "x.pt: directions.AtoB must be a name, got ''"),
        ({}, "x.pt: directions must map AtoB and/or BtoA to a generator, got {}"),
        ({"AtoB": "generator_ab", "sideways": "generator_ba"},
         "x.pt: directions must map AtoB and/or BtoA to a generator, got {'AtoB': 'generator_ab', 'sideways': 'generator_ba'}"),
    ],
)
def test_malformed_directions_in_a_checkpoint_are_named_with_the_file_and_the_field(directions, message):
    with pytest.raises(DataError) as error:
        read_checkpoint(_state(directions=directions), source="x.pt")
    assert str(error.value) == message


def test_a_checkpoints_spec_reads_back_as_written_field_by_field():
    run = RunSpec(
        generator=ComponentSpec("unet", {"ngf": 8}), disc=ComponentSpec("patch70", {"ndf": 8}),
        data=ComponentSpec("synthetic", {"size": 32}), method=ComponentSpec("cyclegan", {"cycle": 10.0}),
        loss="lsgan+l1", loss_options={"l1": {"weight": 50.0}}, trainer=TrainConfig(batch_size=4, seed=7),
        roles={"generator_ab": {"ngf": 16}},
    )
    trained = TrainedSpec(
        run=run, shapes=Shapes(in_channels=1, out_channels=3, image_size=32, disc_in_channels=4),
        plugins={"p2p-unet": "1.0"}, providers={"generator": "p2p-unet 1.0"}, adversarial=False,
        networks={"generator_ab": NetworkShape(kind="generator", in_channels=1, out_channels=3)},
        directions={"AtoB": "generator_ab"}, input_encoding="labels:5",
    )
    assert read_checkpoint({"format": 2, **trained.to_dict()}, source="x.pt") == trained
    # A spec without role options writes no roles key: config.yaml stays what p2p wrote before roles existed.
    assert "roles" not in _run().to_dict()


# -- checkpoints of the first format -------------------------------------------------------------------------------

FORMAT_1 = {
    "generator": {"name": "unet", "options": {"ngf": 8}, "in_channels": 1, "out_channels": 3, "image_size": 64},
    "discriminator": {"name": "patch16", "options": {"ndf": 4}, "in_channels": 4},
    "dataset": "folder", "dataset_options": {"root": "edges"},
    "loss": "cgan", "loss_options": {"cgan": {"label_smoothing": 0.1}},
    "plugins": {"p2p-extra": "1.0"},
}


def test_a_first_format_checkpoint_reads_back_every_field_it_holds():
    trained = read_checkpoint({"format": 1, "components": FORMAT_1}, source="old.pt")
    run = trained.run
    assert (run.generator, run.disc, run.data) == (ComponentSpec("unet", {"ngf": 8}), ComponentSpec("patch16", {"ndf": 4}),
                                                   ComponentSpec("folder", {"root": "edges"}))
    assert (run.loss, run.loss_options) == ("cgan", {"cgan": {"label_smoothing": 0.1}})
    assert trained.shapes == Shapes(in_channels=1, out_channels=3, image_size=64, disc_in_channels=4)
    assert trained.plugins == {"p2p-extra": "1.0"} and trained.adversarial


def test_a_first_format_checkpoint_from_before_the_format_number_is_read_as_the_first_format():
    assert read_checkpoint({"components": FORMAT_1}, source="old.pt") == read_checkpoint(
        {"format": 1, "components": FORMAT_1}, source="old.pt")


def test_a_first_format_checkpoint_without_a_discriminator_is_an_l1_run_with_the_default_patchgan():
    components = {key: value for key, value in FORMAT_1.items() if key != "discriminator"}
    trained = read_checkpoint({"format": 1, "components": components}, source="old.pt")
    assert trained.run.disc == ComponentSpec("patch70") and not trained.adversarial
    assert trained.shapes.disc_in_channels is None


def test_a_first_format_checkpoint_without_a_loss_entry_trained_the_papers_objective():
    components = {key: value for key, value in FORMAT_1.items() if key not in ("loss", "loss_options")}
    run = read_checkpoint({"format": 1, "components": components}, source="old.pt").run
    assert (run.loss, run.loss_options) == ("cgan+l1", {})


@pytest.mark.parametrize(("state", "field"), [
    ({"format": 1, "components": {**FORMAT_1, "generator": {**FORMAT_1["generator"], "options": [1]}}},
     "components.generator.options must be a mapping"),
    ({"format": 1, "components": {**FORMAT_1, "discriminator": {**FORMAT_1["discriminator"], "name": ""}}},
     "components.discriminator.name must be a name"),
    ({"format": 1, "components": {**FORMAT_1, "discriminator": {**FORMAT_1["discriminator"], "in_channels": 0}}},
     "components.discriminator.in_channels must be a positive whole number"),
    ({"format": 1, "components": {**FORMAT_1, "loss_options": [1]}}, "components.loss_options must be a mapping"),
    ({"format": 1, "components": {**FORMAT_1, "plugins": [1]}}, "components.plugins must be a mapping"),
    ({"format": 2, "shapes": {"in_channels": 3, "out_channels": 3, "image_size": 64},
      "spec": {**_run().to_dict(), "method": [1]}}, "method must be a mapping"),
    ({"format": 2, "shapes": {"in_channels": 3, "out_channels": 3, "image_size": 64},
      "spec": {**_run().to_dict(), "loss_options": {"cgan": [1]}}}, "loss_options.cgan must be a mapping"),
    ({"format": 2, "shapes": {"in_channels": 3, "out_channels": 3, "image_size": 64}, "spec": _run().to_dict(),
      "networks": {"generator": [1]}}, "networks.generator must be a mapping"),
    ({"format": 2, "shapes": {"in_channels": 3, "out_channels": 3, "image_size": 64},
      "spec": {**_run().to_dict(), "trainer": [1]}}, "trainer must be a mapping"),
    ({"format": 2, "shapes": {"in_channels": 3, "out_channels": 3, "image_size": 64},
      "spec": {**_run().to_dict(), "generator": {"name": ""}}}, "generator.name must be a name"),
    ({"format": 2, "shapes": {"in_channels": 3, "out_channels": 3, "image_size": 64}, "spec": _run().to_dict(),
      "plugins": [1]}, "plugins must be a mapping"),
    ({"format": 2, "shapes": {"in_channels": 3, "out_channels": 3, "image_size": 64}, "spec": _run().to_dict(),
      "providers": [1]}, "providers must be a mapping"),
    ({"format": 2, "shapes": {"in_channels": 3, "out_channels": 3, "image_size": 64},
      "spec": {**_run().to_dict(), "roles": [1]}}, "roles must be a mapping"),
    ({"format": 2, "shapes": [1], "spec": _run().to_dict()}, "shapes must be a mapping"),
    ({"format": 2, "shapes": {"in_channels": 3, "out_channels": 3, "image_size": 64}, "spec": _run().to_dict(),
      "networks": [1]}, "networks must be a mapping"),
    ({"format": 2, "shapes": {"in_channels": 3, "out_channels": 3, "image_size": 64}, "spec": _run().to_dict(),
      "networks": {"generator": {"kind": "generator", "in_channels": 3, "out_channels": "3"}}},
     "networks.generator.out_channels must be a positive whole number"),
    ({"format": 1, "components": [1]}, "components must be a mapping"),
    ({"format": 1, "components": {**FORMAT_1, "generator": [1]}}, "components.generator must be a mapping"),
], ids=["generator options", "discriminator name", "discriminator channels", "loss options", "plugins", "method",
        "a term's options", "a network", "trainer", "a component's name", "the plugins", "the providers",
        "roles", "shapes", "networks", "a network's output channels", "the first format's components", "the first format's generator"])
def test_a_malformed_checkpoint_spec_is_refused_naming_the_file_and_the_field(state, field):
    with pytest.raises(DataError) as error:
        read_checkpoint(state, source="bad.pt")
    assert str(error.value).startswith(f"bad.pt: {field}, got ")


def test_label_encodings_take_2_to_max_classes_classes():
    assert (input_classes("image"), input_classes("labels:2"), input_classes(f"labels:{MAX_CLASSES}")) == (None, 2, MAX_CLASSES)
    for outside in ("labels:1", f"labels:{MAX_CLASSES + 1}"):
        with pytest.raises(ConfigError, match=f"^unknown input encoding '{outside}'"):
            input_classes(outside)


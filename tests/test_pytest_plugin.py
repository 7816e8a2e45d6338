"""``pytest --p2p-plugin DIST`` (and P2P_TEST_PLUGIN): the kit on an installed distribution, with no test code."""

from __future__ import annotations

import pytest

from conftest import TINY_GENERATOR
from p2p_core.testing.pytest_plugin import TEST_PLUGIN_ENV

pytest_plugins = ["pytester"]

NEGATIVE_LOSS = """
import p2p_core


class Negative:
    \"\"\"Unbounded below.\"\"\"

    discriminator_input = "output"

    def generator_loss(self, *, x, fake, target, disc):
        return -disc(fake).abs().mean() - 1

    def discriminator_loss(self, *, x, fake, target, disc):
        return disc(target).abs().mean()


@p2p_core.hookimpl
def p2p_losses():
    return {"negative": Negative}
"""

# A generator that only builds with the option P2P_CONFORMANCE supplies, and the loss that breaks the >= 0
# contract, which P2P_CONFORMANCE declares a known failure; it also wrongly declares one that passes.
KIT_PLUGIN = TINY_GENERATOR + NEGATIVE_LOSS + """

class Gained(Tiny):
    \"\"\"Tiny with a required gain.\"\"\"

    def __init__(self, *, in_channels: int, out_channels: int, image_size: int, gain: float) -> None:
        super().__init__(in_channels=in_channels, out_channels=out_channels, image_size=image_size)
        self.gain = gain


P2P_CONFORMANCE = {
    "options": {"generator:gained": {"gain": 0.5}},
    "expected_failures": {
        "check_loss_finite_non_negative_and_differentiable": "unbounded on purpose",
        "loss:negative-check_loss_declares_discriminator_input": "believed broken",
    },
}


@p2p_core.hookimpl
def p2p_generators():
    return {"gained": Gained}
"""


# Each run is a subprocess: pytester's in-process runs forget the modules they import, and some of torch's cannot
# be imported twice. Subprocesses are slow to start, so each run covers several cases.


def test_the_kit_runs_on_every_component_of_each_distribution_named(pytester, install_distribution):
    install_distribution("p2p-fake-kit", modules={"fake_kit": KIT_PLUGIN}, entry_points={"kit": "fake_kit"})
    install_distribution("p2p-fake-strict", modules={"fake_strict": NEGATIVE_LOSS}, entry_points={"strict": "fake_strict"})
    install_distribution("p2p-fake-boom", modules={"fake_boom": "raise ImportError('needs libfoo')\n"}, entry_points={"boom": "fake_boom"})
    plugins = ["--p2p-plugin", "p2p-fake-kit", "--p2p-plugin", "p2p-fake-strict", "--p2p-plugin", "p2p-fake-boom"]
    result = pytester.runpytest_subprocess(*plugins, "-v")
    # p2p-fake-kit: the load check, seven generator checks, six loss checks (one a known failure, one wrongly
    # declared one). p2p-fake-strict: the load check and six loss checks, one failing. p2p-fake-boom: the load
    # check, failing.
    result.assert_outcomes(passed=12 + 6, xfailed=1, failed=1 + 1 + 1)
    result.stdout.fnmatch_lines([
        "*collected 22 items",
        "p2p-plugin?p2p-fake-kit?::plugin:p2p-fake-kit-check_loads_cleanly PASSED*",
        "p2p-plugin?p2p-fake-kit?::generator:gained-check_generator_output_shape_and_range PASSED*",
        "p2p-plugin?p2p-fake-kit?::loss:negative-check_loss_declares_discriminator_input FAILED*",
        "p2p-plugin?p2p-fake-kit?::loss:negative-check_loss_finite_non_negative_and_differentiable XFAIL*",
        "p2p-plugin?p2p-fake-boom?::plugin:p2p-fake-boom-check_loads_cleanly FAILED*",
    ])
    # A broken contract reads as the contract, what was found and the fix, not as a traceback into the kit.
    result.stdout.fnmatch_lines([
        "*_ loss:negative-check_loss_declares_discriminator_input _*",
        "[[]XPASS(strict)[]] believed broken",
        "*_ loss:negative-check_loss_finite_non_negative_and_differentiable _*",
        "loss 'negative' (p2p-fake-strict) breaks the contract: generator_loss is a finite scalar in its value_range [[]0, inf[]]",
        "  found: tensor(-*",
        "  fix: reduce with mean(); use a loss bounded below by 0, or declare the range*",
        "*seed=*",  # the example that broke it, in whatever words hypothesis introduces it
    ])
    assert "checks.py" not in result.stdout.str()
    result.stdout.fnmatch_lines([
        "p2p-fake-boom does not load cleanly beside p2p's built-ins:",
        "  plugin 'boom' (p2p-fake-boom 1.0) failed: ImportError: needs libfoo (at fake_boom.py:1)",
        "  fix: *",
    ])


def test_the_environment_names_distributions_too_and_pytest_selects_among_the_cases(pytester, install_distribution, monkeypatch):
    install_distribution("p2p-fake-kit", modules={"fake_kit": KIT_PLUGIN}, entry_points={"kit": "fake_kit"})
    monkeypatch.setenv(TEST_PLUGIN_ENV, "p2p_fake_kit,p2p-not-installed")
    result = pytester.runpytest_subprocess("--p2p-plugin", "pluggy", "-k", "gained and state_dict", "--continue-on-collection-errors", "-v")
    result.assert_outcomes(passed=1, deselected=13, errors=2)
    result.stdout.fnmatch_lines(["p2p-plugin?p2p-fake-kit?::generator:gained-check_state_dict_round_trip PASSED*"])
    # A name that is no plugin distribution is a collection error that says what to do.
    result.stdout.fnmatch_lines([
        "*ERROR collecting p2p-plugin?pluggy?*",
        "--p2p-plugin pluggy: the distribution declares no entry point in the 'p2p' group; add one*",
        "*ERROR collecting p2p-plugin?p2p-not-installed?*",
        "--p2p-plugin p2p-not-installed: no installed distribution has that name; install it*",
    ])


EXPLODING = """
import p2p_core
from torch import nn


class Exploding(nn.Module):
    \"\"\"Raises inside forward.\"\"\"

    size_multiple = 1

    def __init__(self, *, in_channels: int, out_channels: int, image_size: int) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.conv = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x):
        return self.helper(x)

    def helper(self, x):
        raise RuntimeError("boom")


@p2p_core.hookimpl
def p2p_generators():
    return {"exploding": Exploding}
"""

PARAMETRIZED = """
from p2p_core.testing import parametrize_with_checks


@parametrize_with_checks(["generator:exploding"])
def test_kit(case):
    case.run()
"""


def test_a_component_that_raises_is_reported_as_the_checks_failure_with_only_its_own_lines(pytester, install_distribution):
    install_distribution("p2p-fake-explode", modules={"fake_explode": EXPLODING}, entry_points={"explode": "fake_explode"})
    pytester.makepyfile(test_parametrized=PARAMETRIZED)
    result = pytester.runpytest_subprocess("--p2p-plugin", "p2p-fake-explode", "-k", "output_shape")
    result.assert_outcomes(failed=2, deselected=13)
    for header in ("*_ test_kit?generator:exploding-check_generator_output_shape_and_range? _*",
                   "*_ generator:exploding-check_generator_output_shape_and_range _*"):
        result.stdout.fnmatch_lines([
            header,
            "generator 'exploding' (p2p-fake-explode) breaks the contract: G maps *",
            "  check: check_generator_output_shape_and_range",
            "  found: it raised RuntimeError: boom",
            "  fix: *",
            "  where it raised, in its own code (innermost last):",
            "    *fake_explode.py:17 in forward",
            "      return self.helper(x)",
            "    *fake_explode.py:20 in helper",
            "      raise RuntimeError(\"boom\")",
        ])
    for machinery in ("checks.py", "p2p_core/testing/", "/_pytest/", "/pluggy/", "/hypothesis/", "/torch/"):
        assert machinery not in result.stdout.str()

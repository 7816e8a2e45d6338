"""What ``pytest --p2p-plugin DIST`` says about a plugin that breaks a documented rule, or a misspelt DIST."""

from __future__ import annotations

from conftest import TINY_GENERATOR

pytest_plugins = ["pytester"]

LOOSE = TINY_GENERATOR + """
class Loose(Tiny):
    \"\"\"Tiny with an option of no declared type.\"\"\"

    def __init__(self, *, in_channels: int, out_channels: int, image_size: int, gain=1.0) -> None:
        super().__init__(in_channels=in_channels, out_channels=out_channels, image_size=image_size)

@p2p_core.hookimpl
def p2p_generators():
    return {"loose": Loose}
"""


# One subprocess for both (see test_pytest_plugin.py: they are slow to start).
def test_the_kit_fails_untyped_options_and_suggests_a_misspelt_distribution(pytester, install_distribution):
    install_distribution("p2p-fake-loose", modules={"fake_loose": LOOSE}, entry_points={"loose": "fake_loose"})
    result = pytester.runpytest_subprocess("--p2p-plugin", "p2p-fake-loose", "--p2p-plugin", "p2p-fake-lose",
                                           "-k", "loads_cleanly", "--continue-on-collection-errors", "-v")
    result.assert_outcomes(failed=1, errors=1)
    result.stdout.fnmatch_lines([
        "p2p-plugin?p2p-fake-loose?::plugin:p2p-fake-loose-check_loads_cleanly FAILED*",
        "*plugin 'loose' (p2p-fake-loose 1.0): generator 'loose': option(s) gain have no type annotation*",
    ])
    result.stdout.fnmatch_lines([
        "--p2p-plugin p2p-fake-lose: no installed distribution has that name; install it *; "
        "did you mean 'p2p-fake-loose'?",
    ])

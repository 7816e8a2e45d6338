"""CONTRIBUTING.md's walk-through, run as written: its files written where it says, its commands run by bash in
a fresh virtual environment, and the output it shows checked against what the commands print.

Between ``<!-- walkthrough:start -->`` and ``<!-- walkthrough:end -->``, a fenced block whose info string has
``file=PATH`` is a file to write (relative to the shell's folder at that point), a ``bash`` block is run, and
a ``text`` block is output that the bash block before it must print: every line, with any spacing, and
``...`` standing for anything.

The virtual environment is a new one, so the walk-through's ``pip install`` changes nothing outside the test,
but it sees this environment's packages (p2p, torch, pytest), so nothing is downloaded.
"""

from __future__ import annotations

import os
import re
import site
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import NamedTuple

CONTRIBUTING = Path(__file__).resolve().parents[1] / "CONTRIBUTING.md"
START, END = "<!-- walkthrough:start -->", "<!-- walkthrough:end -->"
FENCE = re.compile(r"^```(?P<info>[^\n]*)\n(?P<body>.*?)^```$", re.MULTILINE | re.DOTALL)
MARKER = "@@walkthrough-block {}@@"


class Block(NamedTuple):
    kind: str  # "file", "run" or "output"
    body: str
    path: str  # for a file
    prose: str  # the text between the previous block and this one


def walkthrough() -> list[Block]:
    text = CONTRIBUTING.read_text()
    section = text[text.index(START) + len(START) : text.index(END)]
    blocks, previous_end = [], 0
    for fence in FENCE.finditer(section):
        language, *attributes = fence["info"].split()
        path = next((a.removeprefix("file=") for a in attributes if a.startswith("file=")), "")
        kind = "file" if path else {"bash": "run", "text": "output"}.get(language, "")
        assert kind, f"CONTRIBUTING.md walk-through: a ```{fence['info']} block is neither file=, bash nor text"
        blocks.append(Block(kind, fence["body"], path, section[previous_end : fence.start()]))
        previous_end = fence.end()
    return blocks


def test_the_walkthrough_shows_every_file_it_writes_and_the_output_of_commands():
    blocks = walkthrough()
    assert {b.kind for b in blocks} == {"file", "run", "output"}
    for block in blocks:
        if block.kind == "file":
            assert f"`{block.path}`" in block.prose, f"the text before the block for {block.path} should name it"
    for before, block in zip(blocks, blocks[1:]):
        if block.kind == "output":
            assert before.kind == "run", f"output block {block.body[:40]!r} follows no command"


def _script(blocks: list[Block]) -> str:
    lines = ["set -euo pipefail"]
    for number, block in enumerate(blocks):
        if block.kind == "run":
            lines += [f"echo '{MARKER.format(number)}'", block.body]
        elif block.kind == "file":
            lines += [f'mkdir -p "$(dirname {block.path})"', f"cat > {block.path} <<'WALKTHROUGH_FILE_END'", block.body + "WALKTHROUGH_FILE_END"]
    return "\n".join(lines) + "\n"


def _environment(root: Path) -> dict[str, str]:
    """A virtual environment that sees this one's packages, with a ``p2p`` command, and no network for pip."""
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(venv)], check=True)
    (own_site,) = (venv / "lib").glob("python*/site-packages")
    # --system-site-packages reaches the base interpreter's packages; this environment may be a venv above it,
    # or have a user site. addsitedir also runs their .pth files, which is how editable installs are found.
    parent_sites = [*site.getsitepackages(), *([site.getusersitepackages()] if site.ENABLE_USER_SITE else [])]
    (own_site / "_parent_environment.pth").write_text("".join(f"import site; site.addsitedir({path!r})\n" for path in parent_sites))
    # pip would write this script when installing p2p into the environment; here p2p comes from the parent.
    p2p = venv / "bin" / "p2p"
    p2p.write_text('#!/usr/bin/env bash\nexec python -m p2p_core "$@"\n')
    p2p.chmod(0o755)
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("P2P_", "PYTEST_", "PYTHON", "PIP_", "VIRTUAL_ENV"))}
    return inherited | {
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "VIRTUAL_ENV": str(venv),
        "PIP_NO_INDEX": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_CACHE_DIR": str(root / "pip-cache"),
    }


def _unmatched(expected: str, output: str) -> list[str]:
    shown = [" ".join(line.split()) for line in output.splitlines()]
    missing = []
    for line in filter(str.strip, expected.splitlines()):
        pattern = ".*".join(re.escape(part) for part in " ".join(line.split()).split("..."))
        if not any(re.fullmatch(pattern, candidate) for candidate in shown):
            missing.append(line)
    return missing


def test_the_walkthrough_works_as_written(tmp_path):
    blocks = walkthrough()
    work = tmp_path / "work"
    work.mkdir()
    run = subprocess.run(
        ["bash", "-c", _script(blocks)],
        cwd=work,
        env=_environment(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, f"the walk-through failed:\n{textwrap.indent(run.stdout[-4000:], '  ')}"
    outputs = dict(re.findall(r"^@@walkthrough-block (\d+)@@\n(.*?)(?=^@@walkthrough-block|\Z)", run.stdout, re.M | re.S))
    for number, block in enumerate(blocks):
        if block.kind == "output":
            command = blocks[number - 1].body.strip()
            printed = outputs[str(number - 1)]
            assert not _unmatched(block.body, printed), (
                f"`{command}` did not print {_unmatched(block.body, printed)}; it printed:\n{textwrap.indent(printed, '  ')}"
            )

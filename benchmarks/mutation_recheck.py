"""Recheck what benchmarks/mutation-equivalent.tsv says a test kills, against the code as it is now.

A row names a mutant by mutmut's name for it: the function and a counter. A change to the function renumbers its
mutants, and a row written for one mutant then explains another without a word. For each survivor of the reports
given whose row says "killed", this puts the report's change back into a scratch copy of the checkout (with
../shared beside it where the checkout has one), runs the tests the row names, and says whether they fail (the
claim holds), pass (it does not: the row explains another mutant, or was wrong), pass only by skipping here (a
test that needs a GPU, or a read-only folder that root may write anyway: then the row says how it was checked), or
whether the change does not apply (its lines are not in the code: the function changed since the report, and the
module's next run measures it; or mutmut showed a statement of several lines reformatted: put it back by hand).
Exits 1 if a claim fails.

    python benchmarks/mutation_recheck.py benchmarks/mutation/*.sample-seed4.txt
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from mutation_report import ROW, explanations

BENCHMARKS = Path(__file__).resolve().parent
CHECKOUT = BENCHMARKS.parent
TEST = re.compile(r"tests/[\w/]+\.py(?:::\w+(?:\[[^\]\s]*\])?)?")


def changes(report: Path) -> tuple[str, list[tuple[str, str, str]]]:
    """The module a report mutated, and each survivor's (name, removed lines, added lines)."""
    lines = report.read_text().splitlines()
    survivors: list[tuple[str, list[str], list[str]]] = []
    for line in lines[1:]:
        row = ROW.match(line)
        if row:
            survivors.append((row["name"], [], []))
        elif survivors and line.startswith("        "):
            body = line[8:]
            if body.startswith("-") and not body.startswith("---"):
                survivors[-1][1].append(body[1:])
            elif body.startswith("+") and not body.startswith("+++"):
                survivors[-1][2].append(body[1:])
    return lines[0].split(" ")[0], [(name, "\n".join(old), "\n".join(new)) for name, old, new in survivors]


def scratch_copy(top: Path) -> Path:
    """The tracked files as they are now; the built-in plugins import from there ahead of the installed ones."""
    copy = top / "p2p"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=CHECKOUT, capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        if (CHECKOUT / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(CHECKOUT / name, copy / name)
    if (CHECKOUT.parent / "shared").is_dir():
        (top / "shared").symlink_to(CHECKOUT.parent / "shared")
    return copy


def judged(tests: tuple[str, ...], *, cwd: Path, env: dict[str, str]) -> str:
    """Whether the tests fail on the mutant. A row may name one case of a parametrised test by a shortened id;
    then the whole test runs (any case failing kills the mutant, as the row says the test does)."""
    for chosen in (tests, tuple(dict.fromkeys(test.split("[")[0] for test in tests))):
        ran = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *chosen],
                             cwd=cwd, env=env, capture_output=True, text=True)
        if ran.returncode == 1:
            return "holds"
        if ran.returncode == 0:
            return "skips here" if " skipped" in ran.stdout.strip().splitlines()[-1] else "fails"
    return "names no test"  # pytest found none of them (exit 4 or 5): a test renamed since


def main(reports: list[str]) -> int:
    rows = explanations()
    outcome: dict[str, int] = {"holds": 0, "fails": 0, "skips here": 0, "does not apply": 0, "names no test": 0}
    seen: set[tuple[str, str, str, tuple[str, ...]]] = set()
    with tempfile.TemporaryDirectory(prefix="p2p-recheck.") as top:
        copy = scratch_copy(Path(top))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(copy), str(copy / "plugins")])}
        for report in map(Path, reports):
            module, survivors = changes(report)
            for name, old, new in survivors:
                kind, reason = rows.get(name, ("", ""))
                if kind != "killed":
                    continue
                tests = tuple(dict.fromkeys(TEST.findall(reason)))
                if (module, old, new, tests) in seen:
                    continue
                seen.add((module, old, new, tests))
                source = copy / module
                original = source.read_text()
                if not tests:
                    verdict = "names no test"
                elif not old or original.count(old) != 1:
                    verdict = "does not apply"
                else:
                    source.write_text(original.replace(old, new))
                    try:
                        verdict = judged(tests, cwd=copy, env=env)
                    finally:
                        source.write_text(original)
                outcome[verdict] += 1
                if verdict != "holds":
                    print(f"{report.name}: {name}: {verdict} ({' '.join(tests) or reason})", flush=True)
    print(", ".join(f"{count} {verdict}" for verdict, count in outcome.items()))
    return 1 if outcome["fails"] or outcome["names no test"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

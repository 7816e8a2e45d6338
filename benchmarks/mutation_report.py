"""Score one module's mutation report (benchmarks/mutation/MODULE.txt, written by mutation.sh) from its survivors.

A survivor is explained when it only rewords a message (one string literal on a line of a raise, a warning, a
log line or a print, changed as mutmut changes strings: XX around it, lower or upper case), or when
benchmarks/mutation-equivalent.tsv names it (a message, or a change of no behaviour, with the reason). The
score is killed / (mutants - explained). The file may also name a survivor "killed": a test written after the
run kills it, checked by hand (the bug put back, the test failing); the second score counts those, until the
next run measures them; or "gpu": it changes what happens on a CUDA device only, which the machines measured on
have none of: explained, but not killed, so it stays in the score as a survivor. Run it again after explaining a
survivor: no mutmut run needed. A report of a random
sample of the module's mutants (MUTATION_SAMPLE) gives each score with its 95% interval (Wilson's), the range
the whole module's score lies in.

    python benchmarks/mutation_report.py benchmarks/mutation/p2p_core.objective.py.txt
"""

from __future__ import annotations

import ast
import csv
import math
import re
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent
SUMMARY = re.compile(r"^(?P<head>.*?): (?P<mutants>\d+) mutants, (?P<killed>\d+) killed")
ROW = re.compile(r"^    (?P<name>\S+) \((?P<status>survived|no tests)\): ")
MESSAGE_CALL = re.compile(r"(Error|Exception|Warning|warn|warn_explicit|skip|fail|exit|print|debug|info|warning|error)$")


def message_lines(source: str) -> set[str]:
    """The lines (stripped) of every raise and every call that words a message."""
    lines = source.splitlines()
    return {
        lines[number - 1].strip()
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Raise)
        or (isinstance(node, ast.Call) and MESSAGE_CALL.search(getattr(node.func, "attr", getattr(node.func, "id", ""))))
        for number in range(node.lineno, node.end_lineno + 1)
    }


def only_rewords_a_message(diff: list[str], messages: set[str]) -> bool:
    removed = [line.strip()[1:] for line in diff if line.strip().startswith("-") and not line.strip().startswith("---")]
    added = [line.strip()[1:] for line in diff if line.strip().startswith("+") and not line.strip().startswith("+++")]
    if len(removed) != 1 or len(added) != 1 or removed[0].strip() not in messages:
        return False
    old, new = removed[0].strip(), added[0].strip()
    for literal in re.finditer(r'"([^"\\]*)"', old):
        body = literal.group(1)
        if any(old[: literal.start(1)] + changed + old[literal.end(1):] == new
               for changed in ("XX" + body + "XX", body.lower(), body.upper())):
            return True
    return False


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% interval of a proportion measured on a sample; unlike p +- 1.96 se it stays within [0, 1] and is
    honest at 100% (40 of 40 killed still leaves room for a survivor in the untested mutants)."""
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return max(0.0, centre - half), min(1.0, centre + half)


def explanations() -> dict[str, list[str]]:
    """mutation-equivalent.tsv: mutant name -> [kind, reason]."""
    rows = csv.reader((BENCHMARKS / "mutation-equivalent.tsv").open(), delimiter="\t")
    return {row[0]: row[1:3] for row in rows if row and row[0][0] != "#"}


def main(report_path: str) -> None:
    report = Path(report_path)
    lines = report.read_text().splitlines()
    summary = SUMMARY.match(lines[0])
    module = summary["head"].split(" (")[0]
    messages = message_lines((BENCHMARKS.parent / module).read_text())
    explained = explanations()
    survivors: list[tuple[str, str, list[str]]] = []
    for line in lines[1:]:
        row = ROW.match(line)
        if row:
            survivors.append((row["name"], row["status"], []))
        elif survivors:
            survivors[-1][2].append(line)
    counts = {"message": 0, "equivalent": 0, "killed": 0, "gpu": 0, "unexplained": 0}
    out = []
    for name, status, diff in survivors:
        kind, reason = explained.get(name) or (
            ("message", "changes only a message's wording") if only_rewords_a_message(diff, messages)
            else ("unexplained", "to kill with a test"))
        counts[kind] += 1
        out += [f"    {name} ({status}): {kind}: {reason}", *diff]
    mutants, killed = int(summary["mutants"]), int(summary["killed"])
    unreached = sum(status == "no tests" for _, status, _ in survivors)
    judged = max(1, mutants - counts["message"] - counts["equivalent"])

    def score(caught: int) -> str:
        if "random sample of" not in summary["head"]:
            return f"{caught / judged:.1%}"
        low, high = wilson_interval(caught, judged)
        return f"{caught / judged:.1%} (95% interval {low:.1%}-{high:.1%})"

    head = (f"{summary['head']}: {mutants} mutants, {killed} killed, {counts['message']} change only a message's "
            f"wording, {counts['equivalent']} are equivalent, {counts['killed']} killed by tests written since (by hand), "
            f"{counts['gpu']} change only what a GPU runs (survivors here), "
            f"{counts['unexplained']} unexplained survivors (of which not reached by the tests: {unreached}); score "
            f"{score(killed)}, with the tests written since {score(killed + counts['killed'])}")
    report.write_text("\n".join([head, *out]) + "\n")
    print(head)


if __name__ == "__main__":
    main(*sys.argv[1:])

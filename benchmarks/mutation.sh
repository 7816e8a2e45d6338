#!/usr/bin/env bash
# Mutation testing with mutmut 3.x: each module that carries the paper or a promise of the product, mutated
# against its own fast tests, one module at a time in a scratch copy of the checkout, at the lowest CPU
# priority. Prints per module the mutants, how many the tests killed, how many survivors change only the
# wording of a message (a string inside a raise, a warning, a log line: found by the script) or change no
# behaviour (benchmarks/mutation-equivalent.tsv, one reason each), and the score: killed / (mutants -
# those). A survivor counts mutants the tests do not reach too. Each survivor follows with its change
# (`mutmut show`) and its explanation; the report of a module is also written to benchmarks/mutation/MODULE.txt.
# Not part of CI: the full table takes hours on a 2-core machine.
#
#   pip install -e ".[mutation]"
#   benchmarks/mutation.sh                                  # every module below, without the shared data
#   benchmarks/mutation.sh p2p_core/objective.py            # one
#   benchmarks/mutation.sh --shared p2p_core/run.py         # with ../shared beside the scratch copy
#   benchmarks/mutation.sh p2p_core/run.py 'x_fit*'         # only the mutants of functions matching a name
#
# MUTATION_CHILDREN (default 1) is mutmut's --max-children.
set -euo pipefail
cd "$(dirname "$0")/.."
checkout="$PWD"

# module -> the fast test files that exercise it
declare -A TESTS=(
    [p2p_core/training.py]="tests/test_engine.py tests/test_paper_facts.py tests/test_methods.py tests/test_initialisation.py"
    [plugins/p2p_pix2pix/__init__.py]="tests/test_engine.py tests/test_paper_facts.py tests/test_methods.py"
    [p2p_core/objective.py]="tests/test_engine.py tests/test_paper_facts.py tests/test_discriminator_outputs.py"
    [p2p_core/spec.py]="tests/test_engine.py tests/test_paper_facts.py tests/test_option_fuzz.py"
    [p2p_core/run.py]="tests/test_reliability.py tests/test_cli.py"
    [p2p_core/checkpoint.py]="tests/test_reliability.py tests/test_safetensors.py"
    [p2p_core/images.py]="tests/test_images.py tests/test_datasets.py"
    [p2p_core/predict.py]="tests/test_predict.py"
    [p2p_core/testing/checks.py]="tests/test_testing_kit.py tests/test_kit_multiscale.py"
    [p2p_core/metrics.py]="tests/test_metrics.py"
    [plugins/p2p_unet/__init__.py]="tests/test_paper_facts.py tests/test_architecture.py"
    [plugins/p2p_patchgan/__init__.py]="tests/test_paper_facts.py tests/test_discriminator_outputs.py tests/test_initialisation.py"
    [plugins/p2p_gan_losses/__init__.py]="tests/test_engine.py tests/test_paper_facts.py tests/test_discriminator_outputs.py"
    [plugins/p2p_datasets/files.py]="tests/test_datasets.py"
    [plugins/p2p_datasets/synthetic.py]="tests/test_datasets.py tests/test_paper_facts.py"
)
shared=""
if [ "${1:-}" = "--shared" ]; then
    shared="$(cd .. && pwd)/shared"
    [ -d "$shared" ] || { echo "no shared data at $shared" >&2; exit 2; }
    shift
fi
modules=("${1:-}")
names=("${@:2}")
[ -n "${modules[0]}" ] || mapfile -t modules < <(printf '%s\n' "${!TESTS[@]}" | sort)
mkdir -p benchmarks/mutation

for module in "${modules[@]}"; do
    tests="${TESTS[$module]:?no tests listed for $module in benchmarks/mutation.sh}"
    top="$(mktemp -d "${TMPDIR:-/tmp}/p2p-mutation.XXXXXX")"
    trap 'rm -rf "$top"' EXIT
    # The tests find the shared data beside the checkout (../shared), and mutmut runs them from the copy's
    # mutants/ folder: the shared data goes into the copy.
    scratch="$top/p2p"
    mkdir "$scratch"
    [ -z "$shared" ] || ln -s "$shared" "$scratch/shared"
    # The tracked files as they are now; mutmut writes its mutants/ there, never into the checkout.
    git ls-files -z | xargs -0 cp --parents -t "$scratch"
    # mutmut names a mutant by the file's path as a module, so a plugin is mutated where its import name is:
    # plugins/p2p_unet/ as p2p_unet/ (first on sys.path when the tests run, ahead of the installed one).
    target="$module"
    if [[ "$module" == plugins/* ]]; then
        target="${module#plugins/}"
        cp -r "$scratch/plugins/${target%%/*}" "$scratch/"
    fi
    {
        echo "[mutmut]"
        # The whole package is copied (a lone module would shadow it as an empty namespace); only the module mutated.
        echo "source_paths = ${target%%/*}"
        echo "only_mutate = $target"
        # mutmut runs the tests from its mutants/ folder: the rest of the checkout (recipes, docs, ...) goes there too.
        echo "also_copy ="
        git ls-files | cut -d/ -f1 | sort -u | grep -vx "${target%%/*}" | sed 's/^/    /'
        echo "pytest_add_cli_args = -p no:cacheprovider"
        echo "pytest_add_cli_args_test_selection ="
        for test in $tests; do echo "    $test"; done
    } > "$scratch/setup.cfg"
    (cd "$scratch" && nice -n 19 mutmut run --max-children "${MUTATION_CHILDREN:-1}" "${names[@]}" > mutmut.log 2>&1 || true
     mutmut export-cicd-stats > /dev/null && mutmut results > survivors.txt 2>&1 || true)
    report="benchmarks/mutation/$(echo "$module" | tr / .).txt"
    (cd "$scratch" && python - "$module" "$target" "$checkout/benchmarks/mutation-equivalent.tsv" "$tests" "${shared:+with}" \
        "${names[*]}" <<'PY') | tee "$report"
import ast, csv, json, re, subprocess, sys
module, target, explained_path, tests, with_shared, names = sys.argv[1:]
stats = json.load(open("mutants/mutmut-cicd-stats.json"))
explained = {row[0]: row[1:] for row in csv.reader(open(explained_path), delimiter="\t") if row and row[0][0] != "#"}
results = [line.strip().rsplit(": ", 1) for line in open("survivors.txt") if ": " in line]
unkilled = [(name, status) for name, status in results if status in ("survived", "no tests")]
judged = stats["killed"] + stats["timeout"] + len(unkilled)
if not judged:
    sys.exit(f"{module}: mutmut judged no mutant; the end of its log:\n" + open("mutmut.log").read()[-3000:])

# A string that only words a message: an argument of a raise, a warning, a log line or a print.
source = open(target).read()
tree = ast.parse(source)
MESSAGE_CALL = re.compile(r"(Error|Exception|Warning|warn|warn_explicit|skip|fail|exit|print|debug|info|warning|error|echo)$")
messages = set()
def walk(node, inside):
    if isinstance(node, ast.Raise) or (isinstance(node, ast.Call) and MESSAGE_CALL.search(
            getattr(node.func, "attr", getattr(node.func, "id", "")))):
        inside = True
    if inside and isinstance(node, ast.Constant) and isinstance(node.value, str):
        messages.add(ast.get_source_segment(source, node))
    for child in ast.iter_child_nodes(node):
        walk(child, inside)
walk(tree, False)
def only_message(diff):
    removed = [line[1:] for line in diff if line.startswith("-") and not line.startswith("---")]
    added = [line[1:] for line in diff if line.startswith("+") and not line.startswith("+++")]
    if len(removed) != 1 or len(added) != 1:
        return False
    old = next((m for m in messages if m in removed[0]), None)
    if old is None:
        return False
    quote = old[:old.index(old[-1]) + 1]  # prefix and opening quote
    body = old[len(quote):-1]
    return any(removed[0].replace(old, quote + new + old[-1]) == added[0]
               for new in ("XX" + body + "XX", body.lower(), body.upper()))

rows, counts = [], {"message": 0, "equivalent": 0, "unexplained": 0}
for name, status in unkilled:
    diff = subprocess.run(["mutmut", "show", name], capture_output=True, text=True).stdout.splitlines()
    kind, reason = explained.get(name, ("message", "changes only a message's wording") if only_message(diff)
                                 else ("unexplained", "to kill with a test"))
    counts[kind if kind in counts else "unexplained"] += 1
    rows.append(f"    {name} ({status}): {kind}: {reason}")
    rows += ["        " + line for line in diff]
killed = stats["killed"] + stats["timeout"]  # a mutant that makes the tests hang is caught too
print(f"{module} ({'with' if with_shared else 'without'} ../shared; tests: {tests}"
      f"{'; mutants of ' + names if names else ''}): {judged} mutants, {killed} killed, "
      f"{counts['message']} change only a message's wording, {counts['equivalent']} are equivalent, "
      f"{counts['unexplained']} unexplained survivors (of which not reached by the tests: "
      f"{sum(status == 'no tests' for _, status in unkilled)}); "
      f"score {killed / max(1, judged - counts['message'] - counts['equivalent']):.1%}")
print("\n".join(rows))
PY
    rm -rf "$top"
done

#!/usr/bin/env bash
# Mutation testing with mutmut 3.x: each module that carries the paper or a promise of the product, mutated
# against its own fast tests, one module at a time in a scratch copy of the checkout, at the lowest CPU
# priority. Prints per module the mutants, how many the tests killed, how many of the survivors
# benchmarks/mutation-equivalent.tsv explains (a changed message's wording, or no change of behaviour at all)
# and the score: killed / (mutants - explained). Each survivor follows with its change (`mutmut show`) and
# its explanation, if any; the whole report of a module is also written to benchmarks/mutation/MODULE.txt.
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
    # The tests find the shared data beside the checkout (../shared); mutmut runs them from the copy.
    scratch="$top/p2p"
    mkdir "$scratch"
    [ -z "$shared" ] || ln -s "$shared" "$top/shared"
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
        echo "source_paths = $target"
        echo "pytest_add_cli_args = -p no:cacheprovider"
        echo "pytest_add_cli_args_test_selection ="
        for test in $tests; do echo "    $test"; done
    } > "$scratch/setup.cfg"
    (cd "$scratch" && nice -n 19 mutmut run --max-children "${MUTATION_CHILDREN:-1}" "${names[@]}" > mutmut.log 2>&1 || true
     mutmut export-cicd-stats > /dev/null && mutmut results > survivors.txt 2>&1 || true)
    report="benchmarks/mutation/$(echo "$module" | tr / .).txt"
    python - "$scratch/mutants/mutmut-cicd-stats.json" "$module" "$scratch/survivors.txt" "$scratch/mutmut.log" \
        benchmarks/mutation-equivalent.tsv "$tests" "${shared:+with}" "${names[*]}" <<'PY' > "$report"
import csv, json, sys
stats_path, module, survivors_path, log, explained_path, tests, with_shared, names = sys.argv[1:]
stats = json.load(open(stats_path))
explained = {row[0]: row[1:] for row in csv.reader(open(explained_path), delimiter="\t") if row and row[0][0] != "#"}
survivors = [line.split(":")[0].strip() for line in open(survivors_path) if line.strip().endswith(": survived")]
judged = stats["killed"] + stats["survived"] + stats["timeout"]
if not judged:
    sys.exit(f"{module}: mutmut judged no mutant; the end of its log:\n" + open(log).read()[-3000:])
message = sum(explained.get(name, [""])[0] == "message" for name in survivors)
equivalent = sum(explained.get(name, [""])[0] == "equivalent" for name in survivors)
killed = stats["killed"] + stats["timeout"]  # a mutant that makes the tests hang is caught too
print(f"{module} ({'with' if with_shared else 'without'} ../shared; tests: {tests}"
      f"{'; mutants of ' + names if names else ''}): {judged} mutants, {killed} killed, "
      f"{message} survivors change only a message's wording, {equivalent} are equivalent, "
      f"{len(survivors) - message - equivalent} unexplained survivors; "
      f"score {killed / (judged - message - equivalent):.1%} ({stats['no_tests']} not reached by its tests, "
      f"{stats['suspicious']} suspicious, {stats['skipped']} skipped)")
for name in survivors:
    print(f"    {name}: {' - '.join(explained.get(name, ['UNEXPLAINED']))}")
PY
    cat "$report"
    # Each survivor's change, to kill with a test or to explain.
    (cd "$scratch" && sed -n 's/^ *\([^ ]*\): survived$/\1/p' survivors.txt | while read -r mutant; do
        mutmut show "$mutant" | sed 's/^/        /'
    done) | tee -a "$report"
    rm -rf "$top"
done

#!/usr/bin/env bash
# Mutation testing with mutmut 3.x: each module that carries the paper or a promise of the product, mutated
# against its own fast tests, one module at a time in a scratch copy of the checkout; prints the score per
# module (killed / mutants judged) with its surviving mutants. The scratch copy has no ../shared beside it,
# so this is the score without the shared data.
# Not part of CI: the full table takes hours on a 2-core machine.
#
#   pip install -e ".[mutation]"
#   benchmarks/mutation.sh                          # every module below
#   benchmarks/mutation.sh p2p_core/objective.py    # one
set -euo pipefail
cd "$(dirname "$0")/.."


# module -> its own fast tests
declare -A TESTS=(
    [p2p_core/model.py]="tests/test_engine.py"
    [p2p_core/objective.py]="tests/test_engine.py"
    [p2p_core/spec.py]="tests/test_engine.py tests/test_option_fuzz.py"
    [p2p_core/run.py]="tests/test_reliability.py tests/test_cli.py"
    [p2p_core/checkpoint.py]="tests/test_reliability.py"
    [p2p_core/images.py]="tests/test_images.py tests/test_datasets.py"
    [p2p_core/predict.py]="tests/test_predict.py"
    [p2p_core/testing/checks.py]="tests/test_testing_kit.py tests/test_kit_multiscale.py"
    [p2p_core/metrics.py]="tests/test_metrics.py"
    [plugins/p2p_unet/__init__.py]="tests/test_paper_facts.py tests/test_architecture.py"
    [plugins/p2p_patchgan/__init__.py]="tests/test_paper_facts.py tests/test_discriminator_outputs.py"
    [plugins/p2p_gan_losses/__init__.py]="tests/test_engine.py"
    [plugins/p2p_datasets/files.py]="tests/test_datasets.py"
    [plugins/p2p_datasets/synthetic.py]="tests/test_datasets.py tests/test_paper_facts.py"
)
modules=("$@")
[ ${#modules[@]} -gt 0 ] || mapfile -t modules < <(printf '%s\n' "${!TESTS[@]}" | sort)

for module in "${modules[@]}"; do
    tests="${TESTS[$module]:?no tests listed for $module in benchmarks/mutation.sh}"
    scratch="$(mktemp -d "${TMPDIR:-/tmp}/p2p-mutation.XXXXXX")"
    trap 'rm -rf "$scratch"' EXIT
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
        echo "pytest_add_cli_args_test_selection ="
        for test in $tests; do echo "    $test"; done
    } > "$scratch/setup.cfg"
    (cd "$scratch" && mutmut run --max-children 1 > mutmut.log 2>&1 || true
     mutmut export-cicd-stats > /dev/null && mutmut results > survivors.txt 2>&1 || true)
    python - "$scratch/mutants/mutmut-cicd-stats.json" "$module" "$scratch/survivors.txt" "$scratch/mutmut.log" <<'PY'
import json, sys
stats, module, survivors = json.load(open(sys.argv[1])), sys.argv[2], open(sys.argv[3]).read().split("\n")
judged = stats["killed"] + stats["survived"] + stats["timeout"]
if not judged:
    sys.exit(f"{module}: mutmut judged no mutant; the end of its log:\n" + open(sys.argv[4]).read()[-3000:])
score = (stats["killed"] + stats["timeout"]) / judged  # a mutant that makes the tests hang is caught too
print(f"{module}: {score:.0%} of {judged} mutants killed ({stats['survived']} survived, "
      f"{stats['no_tests']} not reached by its tests, {stats['suspicious']} suspicious, {stats['skipped']} skipped)")
for line in filter(None, survivors):
    print("    " + line.strip())
PY
    # Each survivor's change, to kill with a test or to explain as equivalent.
    (cd "$scratch" && sed -n 's/^ *\([^ ]*\): survived$/\1/p' survivors.txt | while read -r mutant; do
        mutmut show "$mutant" | sed 's/^/        /'
    done)
    rm -rf "$scratch"
done

#!/usr/bin/env bash
# Mutation testing with mutmut 3.x: each module that carries the paper or a promise of the product, mutated
# against its own fast tests, one module at a time in a scratch copy of the checkout, at the lowest CPU
# priority. Writes per module benchmarks/mutation/MODULE.txt: the mutants, how many the tests killed, and each
# survivor (a mutant the tests do not reach counts as one) with its change (`mutmut show`) and its explanation;
# benchmarks/mutation_report.py scores it (see there) and prints the score, then the unexplained survivors.
# Not part of CI: the full table takes hours on a 2-core machine.
#
#   pip install -e ".[test,export,demo,mutation]" -e examples/p2p-plugin-example -e examples/p2p-plugin-hd \
#       -e examples/p2p-plugin-cyclegan     # README's install command plus mutmut: the rows run the suite's tests
#   benchmarks/mutation.sh                                  # every module below, without the shared data
#   benchmarks/mutation.sh p2p_core/objective.py            # one
#   benchmarks/mutation.sh --shared p2p_core/run.py         # with ../shared beside the scratch copy
#   benchmarks/mutation.sh p2p_core/run.py 'p2p_core.run.*fit*'   # only the mutants whose names match
#   MUTATION_SAMPLE=40 benchmarks/mutation.sh               # 40 mutants per module, drawn at random
#
# MUTATION_CHILDREN (default 1) is mutmut's --max-children. MUTATION_SAMPLE=N judges N mutants per module drawn
# with a fixed seed, MUTATION_SEED (default 0): the same N and seed give the same mutants while the module is
# unchanged. The report is then MODULE.sample.txt (MODULE.sample-seedS.txt), and mutation_report.py gives the score
# with its 95% interval. Tests written for one sample's survivors flatter it: measure them with another seed.
set -euo pipefail
cd "$(dirname "$0")/.."
checkout="$PWD"

# module -> the fast test files that exercise it
declare -A TESTS=(
    [p2p_core/training.py]="tests/test_engine.py tests/test_paper_facts.py tests/test_methods.py tests/test_kit_methods.py tests/test_fast_paths.py::test_the_precision_option_decides_the_dtype_of_the_steps_forward_passes tests/test_fast_paths.py::test_the_channels_last_option_lays_out_the_batches_and_the_networks_so tests/test_training_callbacks.py tests/test_discriminator_outputs.py::test_output_size_and_receptive_field_per_scale_or_plain tests/test_loss_terms.py tests/test_cli.py::test_fit_writes_config_checkpoints_and_tensorboard_events_that_predict_reuses"
    [plugins/p2p_pix2pix/__init__.py]="tests/test_engine.py tests/test_paper_facts.py tests/test_methods.py tests/test_discriminator_outputs.py tests/test_generator_outputs.py tests/test_conformance.py"
    [p2p_core/objective.py]="tests/test_engine.py tests/test_paper_facts.py tests/test_discriminator_outputs.py tests/test_loss_terms.py tests/test_generator_outputs.py"
    [p2p_core/spec.py]="tests/test_engine.py tests/test_paper_facts.py tests/test_option_fuzz.py tests/test_methods.py tests/test_safetensors.py tests/test_predict.py tests/test_label_inputs.py tests/test_architecture.py::test_a_format_1_checkpoint_loads_predicts_and_resumes tests/test_architecture.py::test_the_checkpoint_spec_rejects_malformed_content_with_the_field_named tests/test_spec.py"
    [p2p_core/run.py]="tests/test_reliability.py tests/test_cli.py tests/test_validation.py tests/test_distributed.py::test_a_signal_to_one_rank_stops_every_rank_at_the_same_step_and_rank_0_says_how_to_continue tests/test_training_callbacks.py tests/test_discriminator_outputs.py::test_a_run_failing_in_its_first_step_leaves_no_run_folder tests/test_safetensors.py::test_a_model_folder_and_fit_init_from_read_it tests/test_label_inputs.py::test_the_checkpoint_records_the_encoding_and_an_old_one_reads_images tests/test_sweep_seeds.py::test_each_recipe_runs_once_per_seed_and_is_summarised"
    [p2p_core/checkpoint.py]="tests/test_reliability.py tests/test_safetensors.py"
    [p2p_core/images.py]="tests/test_images.py tests/test_datasets.py tests/test_image_channels.py tests/test_label_inputs.py tests/test_tiles.py tests/test_any_size.py"
    [p2p_core/predict.py]="tests/test_predict.py tests/test_tiles.py tests/test_label_inputs.py::test_predict_reads_a_class_index_png_as_one_hot_channels"
    [p2p_core/testing/checks.py]="tests/test_testing_kit.py tests/test_kit_multiscale.py tests/test_kit_methods.py tests/test_conformance.py tests/test_generator_outputs.py::test_the_example_and_the_attention_keep_the_kit_contracts tests/test_loss_terms.py::test_the_kit_accepts_a_term_below_zero_that_declares_its_range_and_fails_it_otherwise tests/test_discriminator_outputs.py::test_the_kit_checks_that_the_smallest_input_trains"
    [p2p_core/metrics.py]="tests/test_metrics.py tests/test_scoring.py::test_segmentation_scores_follow_the_confusion_matrix"
    [plugins/p2p_unet/__init__.py]="tests/test_paper_facts.py tests/test_architecture.py"
    [plugins/p2p_patchgan/__init__.py]="tests/test_paper_facts.py tests/test_discriminator_outputs.py tests/test_initialisation.py"
    [plugins/p2p_gan_losses/__init__.py]="tests/test_engine.py tests/test_paper_facts.py tests/test_discriminator_outputs.py tests/test_loss_terms.py"
    [plugins/p2p_datasets/files.py]="tests/test_datasets.py tests/test_image_channels.py tests/test_dataset_files.py"
    [plugins/p2p_datasets/synthetic.py]="tests/test_datasets.py tests/test_paper_facts.py tests/test_synthetic.py"
)
# module -> tests to leave out under mutmut, with the reason
declare -A DESELECT=(
    # The kit trims a failing component's traceback to the component's own frames; mutmut's trampolines add frames
    # of their own, so this test fails on the unmutated code under mutmut (and mutmut then judges nothing).
    [p2p_core/testing/checks.py]="tests/test_testing_kit.py::test_a_component_that_raises_fails_the_check_with_its_contract_and_only_its_own_lines"
    # A warning's stacklevel points at the caller's line; mutmut's trampolines are frames between, so it points there.
    [p2p_core/images.py]="tests/test_images.py::test_the_skipped_names_warning_shows_five_names_and_counts_the_rest"
    [p2p_core/predict.py]="tests/test_predict.py::test_one_image_far_from_the_training_scale_is_warned_about_alone_at_the_callers_line"
)
shared=""
if [ "${1:-}" = "--shared" ]; then
    shared="$(cd .. && pwd)/shared"
    [ -d "$shared" ] || { echo "no shared data at $shared" >&2; exit 2; }
    shift
fi
modules=("${1:-}")
names=("${@:2}")
sample="${MUTATION_SAMPLE:-}"
[ -z "$sample" ] || [ ${#names[@]} = 0 ] || { echo "MUTATION_SAMPLE draws from all of a module's mutants: give no names" >&2; exit 2; }
[ -n "${modules[0]}" ] || mapfile -t modules < <(printf '%s\n' "${!TESTS[@]}" | sort)
mkdir -p benchmarks/mutation
failed=()

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
        echo "pytest_add_cli_args ="
        echo "    -p"
        echo "    no:cacheprovider"
        for test in ${DESELECT[$module]:-}; do echo "    --deselect"; echo "    $test"; done
        echo "pytest_add_cli_args_test_selection ="
        for test in $tests; do echo "    $test"; done
    } > "$scratch/setup.cfg"
    if [ -n "$sample" ]; then
        # A first run with a name no mutant has makes the mutants and maps the tests to them, judging none.
        (cd "$scratch" && nice -n 19 mutmut run --max-children "${MUTATION_CHILDREN:-1}" 'no-such-mutant' > mutmut.log 2>&1 || true)
        mapfile -t names < <(cd "$scratch" && mutmut results --all true 2>/dev/null | sed -n 's/^ *\([^ ]*\): .*/\1/p' |
            python -c 'import random, sys; names = sorted(sys.stdin.read().split()); random.Random(int(sys.argv[2])).shuffle(names); print("\n".join(sorted(names[: int(sys.argv[1])])))' "$sample" "${MUTATION_SEED:-0}")
        if [ ${#names[@]} = 0 ]; then
            echo "$module: mutmut made no mutants; the end of its log:" >&2; tail -c 3000 "$scratch/mutmut.log" >&2
            failed+=("$module"); rm -rf "$top"; continue
        fi
    fi
    (cd "$scratch" && nice -n 19 mutmut run --max-children "${MUTATION_CHILDREN:-1}" "${names[@]}" >> mutmut.log 2>&1 || true
     mutmut export-cicd-stats > /dev/null && mutmut results > survivors.txt 2>&1 || true)
    suffix="${names[*]:+.some}"
    [ -z "$sample" ] || suffix=".sample${MUTATION_SEED:+-seed$MUTATION_SEED}"
    report="benchmarks/mutation/$(echo "$module" | tr / .)$suffix.txt"
    # The mutants and how many were killed (a mutant that makes the tests hang is caught too); then each survivor
    # (unreached ones too) with its change; mutation_report.py explains what it can and scores the module.
    # A module mutmut could not judge (its tests fail on the unmutated code under mutmut) is named at the end; the
    # others go on.
    if ! summary="$(cd "$scratch" && python - "$module" "${shared:+with}" "$tests" "${names[*]}" "$sample" "${MUTATION_SEED:-0}" <<'PY'
import json, sys
module, with_shared, tests, names, sample, seed = sys.argv[1:]
stats = json.load(open("mutants/mutmut-cicd-stats.json"))
killed = stats["killed"] + stats["timeout"]
mutants = killed + stats["survived"] + stats["no_tests"]
if not mutants:
    sys.exit(f"{module}: mutmut judged no mutant; the end of its log:\n" + open("mutmut.log").read()[-3000:])
# A run stopped early (mutmut interrupted) judged only some of the mutants.
stopped = f"; stopped: {mutants} of its {stats['total']} mutants checked" if mutants < stats["total"] and not names else ""
if sample:
    names, stopped = "", f"; a random sample of {len(names.split())} of its {stats['total']} mutants (seed {seed})"
print(f"{module} ({'with' if with_shared else 'without'} ../shared; tests: {tests}"
      f"{'; mutants of ' + names if names else ''}{stopped}): {mutants} mutants, {killed} killed")
PY
)"; then
        failed+=("$module"); rm -rf "$top"; continue
    fi
    (echo "$summary"
     cd "$scratch" && sed -n 's/^ *\([^ ]*\): \(survived\|no tests\)$/\1 \2/p' survivors.txt | while read -r mutant status; do
        echo "    $mutant ($status): unexplained"
        mutmut show "$mutant" | sed 's/^/        /'
    done) > "$report"
    python benchmarks/mutation_report.py "$report"
    grep -A12 ': unexplained' "$report" || true
    rm -rf "$top"
done
[ ${#failed[@]} = 0 ] || { echo "mutmut judged no mutant of: ${failed[*]} (see above)" >&2; exit 1; }

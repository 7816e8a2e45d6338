#!/usr/bin/env bash
# The discriminator study (the paper's Table 2) and the objective study (Table 1) at 128x128, 3 seeds each, tested
# in both test-time modes; the synthetic task scored by the FCN-score, the outlines by the image metrics.
#   bash docs/results/studies.sh SWEEPS_DIR [JOBS]     (from the checkout, with the outlines at ../shared/data)
# JOBS runs train at once (default 12: sized for one GPU and 16 CPU cores). docs/results/README.md has the outcome.
set -euo pipefail
out=${1:?usage: studies.sh SWEEPS_DIR [JOBS]}
jobs=${2:-12}
outlines=${OUTLINES:-../shared/data/outlines}
A=recipes/ablations
mkdir -p "$out"

# The scorer: a segmenter trained on the real train photos at the studies' size and scale.
python -m p2p_core scorer fit --out "$out/scorer128.pt" --data synthetic \
    --data_options '{length: 200, load_size: 144, crop_size: 128}' --steps 2000 --batch_size 16

# Table 1's five objectives and Table 2's other three discriminators (objective/l1-cgan is Table 2's patch70 row).
python -m p2p_core sweep $A/objective/{l1,gan,cgan,l1-gan,l1-cgan}.yaml $A/discriminator/{pixel,patch16,image286}.yaml \
    --base $A/small/synthetic128.yaml --seeds 3 --mode paper eval --jobs "$jobs" --scorer "$out/scorer128.pt" \
    --out_dir "$out" --name synthetic128

# The outlines where they are (the base recipe reads them at ../shared, as from a checkout in /work).
printf 'data: {root: %s}\n' "$(realpath "$outlines")" >"$out/outlines-root.yaml"
python -m p2p_core sweep $A/discriminator/{pixel,patch16,patch70,image286}.yaml \
    --base $A/small/outlines128.yaml "$out/outlines-root.yaml" --seeds 3 --mode paper eval --jobs "$jobs" \
    --out_dir "$out" --name outlines128

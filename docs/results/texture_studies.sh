#!/usr/bin/env bash
# The objective study (the paper's Table 1) and the discriminator study (Table 2) on the synthetic task's texture
# variant, 3 seeds, scored by the FCN-score and the scorer's realism distances, sized for a 2-core CPU: 64x64.
# Run with JOBS 2 on the shared 2-core CPU in 84 minutes beside other jobs; the results are in docs/results/README.md.
#   bash docs/results/texture_studies.sh SWEEPS_DIR [JOBS]      (from the checkout; JOBS runs at once, default 1)
# At 64x64 the 286x286 ImageGAN has no room (it needs 128 pixels); its row needs recipes/ablations/small/texture128.yaml
# and a scorer fitted at 128 (docs/results/README.md, "The texture task", has the lines).
set -euo pipefail
out=${1:?usage: texture_studies.sh SWEEPS_DIR [JOBS]}
jobs=${2:-1}
A=recipes/ablations
mkdir -p "$out"
# One thread a process: on a shared CPU, two threads of one small run wait on each other.
export OMP_NUM_THREADS=1

# The scorer: a segmenter trained on the texture variant's real train photos at the studies' size and scale.
python -m p2p_core scorer fit --out "$out/texture-scorer64.pt" --data synthetic \
    --data_options '{variant: texture, length: 200, load_size: 72, crop_size: 64}' --steps 1500 --batch_size 8 --device cpu
# Does it see texture? Its scores on the real val photos, on blurred copies and at chance.
python docs/results/texture_check.py "$out/texture-scorer64.pt"

# Table 1's five objectives and Table 2's 1x1 and 16x16 discriminators (objective/l1-cgan is Table 2's 70x70 row):
# 7 recipes x 3 seeds = 21 runs of 2000 steps, each tested in both test-time modes.
python -m p2p_core sweep $A/objective/{l1,gan,cgan,l1-gan,l1-cgan}.yaml $A/discriminator/{pixel,patch16}.yaml \
    --base $A/small/texture.yaml --seeds 3 --mode eval paper --jobs "$jobs" --scorer "$out/texture-scorer64.pt" \
    --out_dir "$out" --name texture64

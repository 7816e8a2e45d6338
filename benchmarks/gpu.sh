#!/usr/bin/env bash
# The GPU checks of benchmarks/README.md in one call, sized for a lent device's 15 minutes (about 6 minutes on an
# H200): where predict's time goes (every installed backend and precision alone, through `p2p predict`, and the
# bare G(x) loop) and the training step of the facades settings (the paper's U-Net 256 and 70x70 PatchGAN, batch 1)
# eager at float32 against `--trainer.compile reduce-overhead` at bfloat16. Prints the tables; nothing is written
# into the checkout.
#
#   bash benchmarks/gpu.sh                  # on the device machine, from the checkout (../shared or shared/ holds the outlines)
#   DEVICE=cpu QUICK=1 bash benchmarks/gpu.sh   # a smoke run of the same steps on a CPU (tiny sizes, figures meaningless)
set -euo pipefail
cd "$(dirname "$0")/.."
device=${DEVICE:-cuda}
if [ -n "${QUICK:-}" ]; then
    limit=2 rounds=1 size=64 steps=2 ngf=8
else
    limit=60 rounds=3 size=256 steps=30 ngf=64
fi
images=../shared/data/outlines/val
[ -d "$images" ] || images=shared/data/outlines/val
python - <<'PY'
import platform, torch
name = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or platform.machine()
print(f"# {name}; torch {torch.__version__}")
PY

echo "## predict: each backend and precision alone and through p2p predict, against the bare G(x) loop"
python benchmarks/predict_backends.py --device "$device" --images "$images" --limit "$limit" --rounds "$rounds" \
    --batch_sizes 1 4

echo "## the training step, facades settings (batch 1, ${size}x${size}): eager float32 against compiled bfloat16"
results=$(mktemp -d)
trap 'rm -rf "$results"' EXIT
settings=("--trainer.compile none --trainer.precision float32"
          "--trainer.compile reduce-overhead --trainer.precision bfloat16")
for round in $(seq "$rounds"); do  # alternating, so that a machine's moods fall on both sides
    for index in "${!settings[@]}"; do
        # shellcheck disable=SC2086  # a setting is several options
        python -m p2p_core bench --generator unet --generator.ngf "$ngf" --disc patch70 --trainer.batch_size 1 \
            --trainer.device "$device" --image_size "$size" --steps "$steps" --warmup 3 --no_inference --json \
            ${settings[$index]} > "$results/$index-$round.json"
    done
done
python - "$results" "${settings[@]}" <<'PY'
import json, statistics, sys
from pathlib import Path
results, settings = Path(sys.argv[1]), sys.argv[2:]
rates = []
print("| setting | train images/s (median) | rounds | % of the matmul peak | peak memory (MiB) |")
print("| --- | --- | --- | --- | --- |")
for index, setting in enumerate(settings):
    runs = [json.loads(path.read_text()) for path in sorted(results.glob(f"{index}-*.json"))]
    rate = statistics.median(run["train_images_per_s"] for run in runs)
    rates.append(rate)
    share = statistics.median(run["peak_fraction"] for run in runs)
    memory = max(run["peak_memory_mib"] for run in runs)
    each = ", ".join(f"{run['train_images_per_s']:.2f}" for run in runs)
    print(f"| {setting} | {rate:.2f} | {each} | {100 * share:.0f}% | {memory:.0f} |")
print(f"\ncompiled bfloat16 / eager float32: {rates[1] / rates[0]:.2f}x (target 3x on a GPU)")
PY

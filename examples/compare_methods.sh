#!/usr/bin/env bash
# Compare methods over several seeds on one dataset, then plot their learning curves with spread.
#   bash examples/compare_methods.sh [OUT_DIR]
# Every run starts from the same prepared scenes and, for a given seed, the same random seed set.
# Environment (defaults in brackets): METHODS ["random entropy margin"], SEEDS ["0 1 2"],
# UNIT [region], SCENES [6], POINTS [20000], SEED_BUDGET [2%], BUDGET [1%], ROUNDS [4],
# STEPS [150], CR [0.25], DEVICE [auto].
set -euo pipefail
out="${1:-compare}"
mkdir -p "$out"
base="$out/_prepared"
if [ ! -f "$base/pcal.yaml" ]; then
    pcal prepare synthetic -p "$base" --scenes "${SCENES:-6}" --points "${POINTS:-20000}" --seed 0
fi
runs=()
for seed in ${SEEDS:-0 1 2}; do
    for method in ${METHODS:-random entropy margin}; do
        run="$out/${method}_${UNIT:-region}_s${seed}"
        if [ ! -d "$run" ]; then
            cp -r "$base" "$run.tmp" && mv "$run.tmp" "$run"   # a copy of the scenes, no rounds yet
        fi
        pcal seed -p "$run" --unit "${UNIT:-region}" --budget "${SEED_BUDGET:-2%}" --seed "$seed"
        pcal round -p "$run" --method "$method" --unit "${UNIT:-region}" --rounds "${ROUNDS:-4}" \
            --budget "${BUDGET:-1%}" --steps "${STEPS:-150}" --cr "${CR:-0.25}" --device "${DEVICE:-auto}" \
            --seed "$seed"
        runs+=("$run")
    done
done
pcal report "${runs[@]}" --out "$out"

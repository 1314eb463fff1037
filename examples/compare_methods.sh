#!/usr/bin/env bash
# Compare methods over several seeds on one dataset with `pcal compare`, then report their
# learning curves with spread, the ratio to full supervision and the per-class IoU.
#   bash examples/compare_methods.sh [PROJ]
# For each seed every method starts from the same initial set; runs live in PROJ/compare/.
# Environment (defaults in brackets): METHODS ["random,entropy,margin"], SEEDS [3],
# UNIT [region] (of the shared seed), SCENES [6], POINTS [20000], SEED_BUDGET [2%], BUDGET [1%],
# ROUNDS [4], STEPS [150], CR [0.25], DEVICE [auto].
set -euo pipefail
proj="${1:-compare_demo}"
if [ ! -f "$proj/pcal.yaml" ]; then
    pcal prepare synthetic -p "$proj" --scenes "${SCENES:-6}" --points "${POINTS:-20000}" --seed 0
fi
pcal compare -p "$proj" --methods "${METHODS:-random,entropy,margin}" --seeds "${SEEDS:-3}" \
    --rounds "${ROUNDS:-4}" --budget "${BUDGET:-1%}" --seed-unit "${UNIT:-region}" \
    --seed-budget "${SEED_BUDGET:-2%}" --steps "${STEPS:-150}" --cr "${CR:-0.25}" --device "${DEVICE:-auto}"
pcal report "$proj/compare"

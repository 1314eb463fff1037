#!/usr/bin/env bash
# The embedded synthetic demo: does active learning pay on these rooms? margin against random from
# the same seed set, plus the full-supervision reference, then the table, one sentence to quote and
# the learning curve (PROJ/compare/report/learning_curve.png).
#   bash examples/synthetic_demo.sh [PROJECT_DIR]
# Environment (defaults in brackets): SCENES [9], POINTS [3000], SEED [0], METHODS [margin,random],
# SEEDS [2], ROUNDS [2], UNIT [region], SEED_BUDGET [2%], BUDGET [2%] per round, WORKERS [2],
# REFERENCE_SEEDS [1] (the full-supervision reference of seed 0 serves both seeds), DEVICE [auto];
# STEPS, FINETUNE_STEPS, FULL_STEPS, CR: the demo training profile's unless given.
set -euo pipefail
proj="${1:-demo}"
if [ ! -f "$proj/pcal.yaml" ]; then
    pcal prepare synthetic -p "$proj" --scenes "${SCENES:-9}" --points "${POINTS:-3000}" --seed "${SEED:-0}" \
        --profile demo --seed-resolution 0.5
fi
train=()
[ -n "${STEPS:-}" ] && train+=(--steps "$STEPS")
[ -n "${FINETUNE_STEPS:-}" ] && train+=(--finetune-steps "$FINETUNE_STEPS")
[ -n "${FULL_STEPS:-}" ] && train+=(--full-steps "$FULL_STEPS")
[ -n "${CR:-}" ] && train+=(--cr "$CR")
pcal compare -p "$proj" --methods "${METHODS:-margin,random}" --seeds "${SEEDS:-2}" --rounds "${ROUNDS:-2}" \
    --seed-unit "${UNIT:-region}" --seed-budget "${SEED_BUDGET:-2%}" --budget "${BUDGET:-2%}" \
    --workers "${WORKERS:-2}" --reference-seeds "${REFERENCE_SEEDS:-1}" --device "${DEVICE:-auto}" "${train[@]}"
pcal report "$proj/compare"

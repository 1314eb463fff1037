#!/usr/bin/env bash
# Compare methods over several seeds on one dataset with `pcal compare`, then report their
# learning curves with spread, the ratio to full supervision and the per-class IoU.
#   bash examples/compare_methods.sh [PROJ]
# For each seed every method starts from the same initial set and round-0 network, spends the
# same points per round and fine-tunes the previous round's network; runs live in PROJ/compare/.
# Environment (defaults in brackets): METHODS ["random,entropy,margin"], SEEDS [3],
# UNIT [region] (of the shared seed), SCENES [6], POINTS [20000], SEED_BUDGET [2%], BUDGET [1%],
# ROUNDS [4], DEVICE [auto]; STEPS, FINETUNE_STEPS, FULL_STEPS, CR [the project's training profile].
set -euo pipefail
proj="${1:-compare_demo}"
if [ ! -f "$proj/pcal.yaml" ]; then
    pcal prepare synthetic -p "$proj" --scenes "${SCENES:-6}" --points "${POINTS:-20000}" --seed 0
fi
train=()
[ -n "${STEPS:-}" ] && train+=(--steps "$STEPS")
[ -n "${FINETUNE_STEPS:-}" ] && train+=(--finetune-steps "$FINETUNE_STEPS")
[ -n "${FULL_STEPS:-}" ] && train+=(--full-steps "$FULL_STEPS")
[ -n "${CR:-}" ] && train+=(--cr "$CR")
pcal compare -p "$proj" --methods "${METHODS:-random,entropy,margin}" --seeds "${SEEDS:-3}" \
    --rounds "${ROUNDS:-4}" --budget "${BUDGET:-1%}" --seed-unit "${UNIT:-region}" \
    --seed-budget "${SEED_BUDGET:-2%}" --device "${DEVICE:-auto}" "${train[@]}"
pcal report "$proj/compare"

#!/usr/bin/env bash
# The embedded synthetic demo: procedural S3DIS-like rooms (no download), a random seed set,
# then active learning rounds with the margin baseline, ending with the report table and curve.
#   bash examples/synthetic_demo.sh [PROJECT_DIR]
# Environment (defaults in brackets): SCENES [6], POINTS [20000], SEED [0], METHOD [margin],
# UNIT [region], SEED_BUDGET [2%], BUDGET [1%] per round, ROUNDS [3], STEPS [150] per round,
# CR [0.25] network width, DEVICE [auto].
set -euo pipefail
proj="${1:-demo}"
if [ -d "$proj/rounds" ] && [ -n "$(ls -A "$proj/rounds")" ]; then
    echo "$proj already has rounds: continuing it (delete the folder to start over)" >&2
else
    pcal prepare synthetic -p "$proj" --scenes "${SCENES:-6}" --points "${POINTS:-20000}" --seed "${SEED:-0}" --force
fi
pcal seed -p "$proj" --method random --unit "${UNIT:-region}" --budget "${SEED_BUDGET:-2%}" --seed "${SEED:-0}"
pcal round -p "$proj" --method "${METHOD:-margin}" --unit "${UNIT:-region}" --rounds "${ROUNDS:-3}" \
    --budget "${BUDGET:-1%}" --steps "${STEPS:-150}" --cr "${CR:-0.25}" --device "${DEVICE:-auto}" --seed "${SEED:-0}"
pcal report -p "$proj"

#!/usr/bin/env bash
# The embedded synthetic demo: procedural S3DIS-like rooms, no download needed.
#   bash examples/synthetic_demo.sh [PROJECT_DIR]
# Environment: SCENES (default 6), POINTS (default 40000), SEED (default 0).
set -euo pipefail
proj="${1:-demo}"
pcal prepare synthetic -p "$proj" --scenes "${SCENES:-6}" --points "${POINTS:-40000}" --seed "${SEED:-0}" --force

#!/usr/bin/env bash
# Your own scans: a folder of PLY / LAS / LAZ / NPY files plus a class map, into a project.
#   bash examples/prepare_folder.sh RAW_FOLDER CLASSES_YAML [PROJECT_DIR]
# Outdoor-sized regions: 2 m grid cells (use --regions supervoxel for VCCS-like supervoxels).
set -euo pipefail
raw="$1"
classes="$2"
proj="${3:-my_project}"
pcal prepare folder "$raw" -p "$proj" --classes "$classes" --regions cells --cell "${CELL:-2.0}" --force

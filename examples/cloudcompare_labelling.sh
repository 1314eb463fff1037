#!/usr/bin/env bash
# A person labels the latest round's queries in CloudCompare (see docs/labelling.md).
#   bash examples/cloudcompare_labelling.sh export PROJECT [DIR]   # DIR/<scene>.ply + manifest.json
#   ... label the files in CloudCompare, save them over the exported ones (binary PLY) ...
#   bash examples/cloudcompare_labelling.sh import PROJECT [DIR]   # check them, create the next round
# The round must have queries: 'pcal round -p PROJECT --method margin --no-label' stops there.
# Environment: FORMAT (ply or las, default ply), ALLOW_RELABEL=1 to accept corrections.
set -euo pipefail
step="${1:?usage: cloudcompare_labelling.sh export|import PROJECT [DIR]}"
proj="${2:?usage: cloudcompare_labelling.sh export|import PROJECT [DIR]}"
dir="${3:-$proj/labelling}"

case "$step" in
export)
    pcal label export -p "$proj" --out "$dir" --format "${FORMAT:-ply}"
    cat <<TEXT

In CloudCompare, for each file in $dir:
  1. File > Open (no dialog: pid, query and Classification load as scalar fields).
  2. Edit > Scalar fields > Filter by value (query, 1..1) to work on the points to label.
  3. Make 'Classification' the active scalar field: 255 = to label, 254 = not asked,
     0..N-1 = class ids (names and colours in $dir/manifest.json).
  4. Edit > Segment (scissors) around the points of one class, then
     Edit > Scalar fields > Set SF value, and type the class id; repeat.
  5. File > Save as binary PLY under the same name in $dir (keep every scalar field).
Then run: bash $0 import $proj $dir
TEXT
    ;;
import)
    if [ "${ALLOW_RELABEL:-0}" = 1 ]; then relabel=--allow-relabel; else relabel=; fi
    pcal label import -p "$proj" "$dir" $relabel
    pcal report -p "$proj"
    ;;
*)
    echo "usage: cloudcompare_labelling.sh export|import PROJECT [DIR]" >&2
    exit 2
    ;;
esac

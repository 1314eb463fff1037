#!/usr/bin/env bash
# Active learning benchmark: `pcal compare` of methods x seeds on the synthetic rooms and, when
# ../shared/data is present, on real scans (ScanNet: train scene0000_00, test scene0000_01;
# IGN LiDAR HD: three tiles train, one test). Then `pcal report` of each comparison.
#
#   bash benchmarks/al_benchmark.sh [OUT] [cpu|gpu]        # default: bench_al cpu
#
# cpu profile (2 cores): MinkUNet cr 0.25, 5 cm grid, 100 steps per round, lr 0.01, 2 seeds,
# 2 rounds; IGN trains on crops of 20,000 points (--max-points). Measured on a 2-vCPU VM shared
# with other jobs: ScanNet takes about 70 CPU-minutes (one torch thread) for the 5 methods x 2
# seeds (docs/benchmarks.md), more than an hour there; use METHODS and SEEDS to fit an hour.
# gpu profile: cr 1.0, 2 cm grid, 3000 steps per round, 3 seeds, 5 rounds.
# Environment: METHODS (default random,margin,redal,hpal,jopro), SEEDS, ROUNDS, STEPS, DATA (../shared/data),
# DATASETS (default "synthetic scannet ign").
set -euo pipefail
out="${1:-bench_al}"
profile="${2:-cpu}"
here="$(cd "$(dirname "$0")/.." && pwd)"
data="${DATA:-$here/../shared/data}"
methods="${METHODS:-random,margin,redal,hpal,jopro}"
if [ "$profile" = gpu ]; then
    train=(--cr 1.0 --steps "${STEPS:-3000}" --device cuda); grid=0.02; seeds="${SEEDS:-3}"; rounds="${ROUNDS:-5}"
    crop=()
else
    train=(--cr 0.25 --steps "${STEPS:-100}" --lr 0.01 --device cpu); grid=0.05; seeds="${SEEDS:-2}"; rounds="${ROUNDS:-2}"
    crop=(--max-points 20000)
fi
mkdir -p "$out"
# Budgets are the same for every method (points per round), so the curves compare at equal cost.
run() {  # run PROJ SEED_UNIT SEED_BUDGET BUDGET [more pcal compare options]
    pcal compare -p "$1" --methods "$methods" --seeds "$seeds" --rounds "$rounds" --seed-unit "$2" \
        --seed-budget "$3" --budget "$4" "${train[@]}" "${@:5}"
    pcal report "$1/compare" --out "$1/compare/report"
}
for dataset in ${DATASETS:-synthetic scannet ign}; do
    case "$dataset" in
    synthetic)
        [ -f "$out/synthetic/pcal.yaml" ] || pcal prepare synthetic -p "$out/synthetic" --scenes 12 --points 6000
        run "$out/synthetic" point 1% 1%
        ;;
    scannet)
        if [ ! -d "$data/scannet" ]; then echo "skipped scannet: $data/scannet not found"; continue; fi
        printf 'train: [scene0000_00]\ntest: [scene0000_01]\n' > "$out/scannet_split.yaml"
        [ -f "$out/scannet/pcal.yaml" ] || pcal prepare scannet "$data/scannet" -p "$out/scannet" \
            --split-file "$out/scannet_split.yaml" --grid "$grid"
        run "$out/scannet" point 0.5% 0.5%
        ;;
    ign)
        if [ ! -d "$data/aerial_ign" ]; then echo "skipped ign: $data/aerial_ign not found"; continue; fi
        printf 'classes: [ground, vegetation, building]\nids: {2: ground, 3: vegetation, 4: vegetation, 5: vegetation, 6: building}\nignore_ids: [1, 9, 17, 64, 65, 66, 67]\n' \
            > "$out/ign_classes.yaml"
        printf 'train: [test_data_77050_627755_LA93_IGN69, test_data_77050_627760_LA93_IGN69, test_data_77055_627755_LA93_IGN69]\ntest: [test_data_77055_627760_LA93_IGN69]\n' \
            > "$out/ign_split.yaml"
        [ -f "$out/ign/pcal.yaml" ] || pcal prepare folder "$data/aerial_ign" -p "$out/ign" \
            --classes "$out/ign_classes.yaml" --split-file "$out/ign_split.yaml" --regions cells --cell 2.0 \
            --grid "$grid"
        run "$out/ign" point 0.5% 0.5% "${crop[@]}"
        ;;
    *) echo "unknown dataset '$dataset' (synthetic, scannet, ign)"; exit 2 ;;
    esac
done

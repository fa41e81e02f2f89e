#!/usr/bin/env bash
# Baselines at their authors' strength (issue 15, item 1): seed 0, forget class 0, the
# digits MLP, metrics after unlearning only (no DiMRA), each fix against the old
# behaviour it replaces. ~28 min on 2 busy cores (SA's 20,000 steps take ~22 of them).
#   bash simulations/unlearning_baselines.sh [OUT]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-simulations/results/unlearning-baselines}"
G=(nice -n 10 .venv/bin/python simulations/run_unlearning_grid.py --seeds 0 --attacks
   --out "$OUT" --threads 1)
"${G[@]}" --methods salun ga
"${G[@]}" --methods salun --set salun_retain_reduction=mean --label _oldweight
"${G[@]}" --methods erasediff
"${G[@]}" --methods erasediff --set erasediff_optimizer=fresh --label _fresh
"${G[@]}" --methods sa

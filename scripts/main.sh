#!/usr/bin/env bash
# Set up, then run the main job: VFLGAN on the embedded sklearn digits (2 parties: top
# and bottom image halves). Extra arguments go to `python -m vflgan_app train`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TORCH_NUM_THREADS="${TORCH_NUM_THREADS:-1}"
exec .venv/bin/python -m vflgan_app train --dataset digits --output-dir runs "$@"

#!/usr/bin/env bash
# One command for newcomers: set up, then train a CycleGAN on the built-in synthetic portraits on
# the CPU (cpu preset, a few minutes) and write runs/demo/result.png (test photos above their
# cartoons and the true cartoons) plus runs/demo/checkpoints/latest.pt.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
# --overwrite: running the demo again replaces the previous demo run (any other run dir is protected)
toonlab train cyclegan --preset cpu --device "${TOONLAB_DEVICE:-cpu}" --run-dir runs/demo --overwrite "$@"
echo "Open runs/demo/result.png to see photos turned into cartoons; runs/demo/metrics.json holds the scores (toonlab eval runs/demo prints them)."

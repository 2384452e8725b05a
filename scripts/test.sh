#!/usr/bin/env bash
# One command for every test: set up, run the unit tests, then every notebook under nbval in FAST mode.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
# idle OpenMP threads sleep instead of spinning: on a busy 2-core machine spinning threads slow torch down many times
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
python -m pytest tests -q -p no:cacheprovider "$@"
TOONLAB_FAST=1 python -m pytest --nbval-lax --nbval-current-env -p no:python -p no:cacheprovider \
  --nbval-cell-timeout=600 notebooks/

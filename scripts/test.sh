#!/usr/bin/env bash
# One command for every test: set up, run the unit tests, then every notebook under nbval in FAST mode.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
python -m pytest tests -q -p no:cacheprovider "$@"
TOONLAB_FAST=1 python -m pytest --nbval-lax --nbval-current-env -p no:python -p no:cacheprovider \
  --nbval-cell-timeout=600 notebooks/

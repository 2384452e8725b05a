#!/usr/bin/env bash
# Create .venv (if missing) and install toonlab with notebook and test extras, pinned by constraints.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
python -m pip install --quiet -c constraints.txt torch torchvision
python -m pip install --quiet -c constraints.txt -e ".[notebooks,dev]"
python -m ipykernel install --user --name python3 --display-name "Python 3 (toonlab)" >/dev/null 2>&1 || true
python -c "import toonlab, torch; print(f'toonlab {toonlab.__version__} with torch {torch.__version__}, CUDA: {torch.cuda.is_available()}')"

#!/usr/bin/env bash
# One command for the benchmark: sets up .venv (scripts/setup.sh) and .venv-bench (dlt).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ ! -x .venv-bench/bin/python ] || ! .venv-bench/bin/python -c "import dlt" 2>/dev/null; then
  echo "==> Installing dlt (benchmark only) into .venv-bench"
  python3 -m venv .venv-bench
  .venv-bench/bin/pip install -q "dlt==1.31.0" requests
fi
exec .venv/bin/python bench/run.py "$@"

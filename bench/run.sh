#!/usr/bin/env bash
# One command for the benchmark: sets up .venv (scripts/setup.sh) and .venv-bench (dlt).
#   bench/run.sh [options]        the tap alone: records/s, child listings, full sync, memory
#   bench/run.sh --e2e [options]  rows in PostgreSQL: meltano run vs dlt (bench/e2e.py)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ ! -x .venv-bench/bin/python ] || ! .venv-bench/bin/python -c "import dlt" 2>/dev/null; then
  echo "==> Installing dlt (benchmark only) into .venv-bench"
  python3 -m venv .venv-bench
  .venv-bench/bin/pip install -q "dlt[postgres]==1.31.0" requests
fi
if ! .venv-bench/bin/python -c "import psycopg2" 2>/dev/null; then
  .venv-bench/bin/pip install -q "dlt[postgres]==1.31.0"  # the end-to-end mode's destination
fi
if [ "${1:-}" = "--e2e" ]; then
  shift
  exec .venv/bin/python bench/e2e.py "$@"
fi
exec .venv/bin/python bench/run.py "$@"

#!/usr/bin/env bash
# The demo: a fake Analytics API, `meltano run tap-analytics target-duckdb` twice, tables.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m scripts.demo "$@"

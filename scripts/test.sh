#!/usr/bin/env bash
# The test suite: sets everything up, then lint and pytest (unit, end-to-end, PostgreSQL).
# Scale knob for the slow suites: TEST_SCALE=small|full (default small).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dagster
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  echo "note: PostgreSQL (initdb/pg_ctl) is not installed; its tests will skip" \
       "(in CI they fail). Install it with: apt-get install postgresql" >&2
fi
.venv/bin/ruff check .
exec .venv/bin/pytest "$@"

#!/usr/bin/env bash
# Sync every account of the tenants file (or the named ones) through Dagster:
#   TAP_ANALYTICS_TENANTS=tenants.yml TARGET_POSTGRES_HOST=... ./scripts/fleet.sh [ID...]
# One `meltano run` per account, TAP_ANALYTICS_FLEET_CONCURRENCY (4) at once; one line per
# account (landed: rows per table, or failed: the reason); exit 1 if any failed.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${TAP_ANALYTICS_DAGSTER_VENV:-.venv-dagster}  # scripts/dagster_next.sh: the next release
bash scripts/setup.sh --dagster >&2
exec "$VENV"/bin/python -m orchestrate.fleet "$@"

#!/usr/bin/env bash
# Dagster's UI, daemon and code server on this machine, with the instance fleet.sh uses:
#   TAP_ANALYTICS_TENANTS=tenants.yml TARGET_POSTGRES_HOST=... ./scripts/dagster_dev.sh [dagster dev options]
# DAGSTER_HOME (.dagster/ by default) gets fleet.sh's dagster.yaml: the run queue with the
# pool `tap_analytics` (TAP_ANALYTICS_FLEET_CONCURRENCY), one run per account, the limit
# per API host, run monitoring and retries; runs start with Dagster's own DefaultRunLauncher
# (TAP_ANALYTICS_FLEET_LAUNCHER=warm: the warm run workers fleet.sh uses). A bare `dagster
# dev` would run on a temporary instance with none of them.
# One daemon per instance: dagster dev holds DAGSTER_HOME/daemon.lock while it runs, so a
# fleet.sh beside it hosts no daemon of its own (its runs are launched by dagster dev's);
# while a fleet.sh hosts the daemon, this waits for it to end.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${TAP_ANALYTICS_DAGSTER_VENV:-.venv-dagster}  # scripts/dagster_next.sh: the next release
bash scripts/setup.sh --dagster >&2
DAGSTER_HOME=$("$VENV"/bin/python -m orchestrate.fleet --instance)
export DAGSTER_HOME
exec 9>>"$DAGSTER_HOME/daemon.lock"
if ! flock -n 9; then
  echo "dagster_dev: a fleet.sh hosts the daemon of $DAGSTER_HOME; waiting for it to end" >&2
  flock 9
fi
exec "$VENV"/bin/dagster dev -m orchestrate "$@"

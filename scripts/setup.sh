#!/usr/bin/env bash
# Set up what the demo (no argument) or the fleet and the tests (--dagster) need, on a
# fresh machine: idempotent.
#   .venv          the tap, its test tools, the fake API's needs
#   .venv-meltano  Meltano, which installs the tap and the loaders under .meltano/
#   .venv-dagster  Dagster 1.13, the orchestrator of many accounts (orchestrate/): --dagster
# --image (deploy/k8s/Dockerfile): .venv-meltano and .venv-dagster only, no test tools.
set -euo pipefail
DAGSTER=no TOOLS=yes
[ "${1:-}" = "--dagster" ] && DAGSTER=yes
[ "${1:-}" = "--image" ] && DAGSTER=yes TOOLS=no
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export MELTANO_SEND_ANONYMOUS_USAGE_STATS=false MELTANO_CLI_DISABLE_VERSION_CHECK=1
export PIP_DISABLE_PIP_VERSION_CHECK=1

step() { printf '\n==> %s\n' "$*"; }

stamp=$(cat pyproject.toml meltano.yml orchestrate/requirements.txt scripts/setup.sh \
        | sha1sum | cut -c1-12)
if [ "$TOOLS" = yes ] && [ ! -f .venv/.stamp-"$stamp" ]; then
  step "Installing tap-analytics and its test tools into .venv"
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e ".[test]"
  rm -f .venv/.stamp-*; touch .venv/.stamp-"$stamp"
fi
if [ ! -f .venv-meltano/.stamp-"$stamp" ] || [ ! -d .meltano ]; then
  step "Installing Meltano and the pipeline's plugins (tap-analytics, target-postgres, target-duckdb)"
  [ -x .venv-meltano/bin/python ] || "$PY" -m venv .venv-meltano
  .venv-meltano/bin/pip install -q --upgrade pip
  # psycopg: Meltano's state in PostgreSQL (MELTANO_DATABASE_URI=postgresql+psycopg://...)
  .venv-meltano/bin/pip install -q "meltano==4.4.1" "psycopg[binary]>=3.2"
  .venv-meltano/bin/meltano install > .meltano-install.log 2>&1 || {
    cat .meltano-install.log; exit 1; }
  # Meltano installs plugins with uv, which writes no bytecode: compile it now (as pip
  # does), or every run of the tap and the target compiles ~1,300 modules again wherever
  # .pyc files are not written on import (PYTHONDONTWRITEBYTECODE, read-only images)
  for venv in .meltano/extractors/*/venv .meltano/loaders/*/venv; do
    "$venv/bin/python" -m compileall -q -j 0 "$venv/lib" > /dev/null
  done
  # the tap's own (editable) modules
  .meltano/extractors/tap-analytics/venv/bin/python -m compileall -q tap_analytics
  rm -f .venv-meltano/.stamp-*; touch .venv-meltano/.stamp-"$stamp"
fi
if [ "$DAGSTER" = yes ] && [ ! -f .venv-dagster/.stamp-"$stamp" ]; then
  step "Installing Dagster (orchestrate/requirements.txt) into .venv-dagster"
  [ -x .venv-dagster/bin/python ] || "$PY" -m venv .venv-dagster
  .venv-dagster/bin/pip install -q --upgrade pip
  .venv-dagster/bin/pip install -q -r orchestrate/requirements.txt
  # `orchestrate` importable from any directory: dagster.yaml names its run launcher
  # (orchestrate.launcher), which `dagster dev` and `dagster-daemon` load wherever they run
  .venv-dagster/bin/python -c 'import site, sys; open(site.getsitepackages()[0] + "/tap_analytics_fleet.pth", "w").write(sys.argv[1] + "\n")' "$PWD"
  .venv-dagster/bin/python -m compileall -q orchestrate
  rm -f .venv-dagster/.stamp-*; touch .venv-dagster/.stamp-"$stamp"
fi

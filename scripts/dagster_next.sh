#!/usr/bin/env bash
# Would the next Dagster release pass? Installs the newest release that a widened pin
# allows (orchestrate/requirements.txt pins one exact version) into .venv-dagster-next, with
# the rest of orchestrate/requirements.txt, and runs the fleet's tests against it, then
# prints one verdict line. dagster-postgres and dagster-k8s are left out (their releases pin
# one Dagster release each): the tests that keep Dagster's storage in PostgreSQL are not run here.
#   scripts/dagster_next.sh            report only (exit 0): CI runs it this way
#   scripts/dagster_next.sh --strict   exit 1 when the newest release fails
set -euo pipefail
cd "$(dirname "$0")/.."
WIDENED=${DAGSTER_PIN:-"dagster>=1.13.27,<1.14"}
VENV=.venv-dagster-next
export PIP_DISABLE_PIP_VERSION_CHECK=1
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
grep -v -E '^(dagster|dagster-webserver|dagster-postgres|dagster-k8s)==' orchestrate/requirements.txt \
  > "$VENV/requirements-rest.txt"
"$VENV/bin/pip" install -q --upgrade "$WIDENED" "dagster-webserver${WIDENED#dagster}" \
  -r "$VENV/requirements-rest.txt"
"$VENV/bin/python" -c 'import site, sys; open(site.getsitepackages()[0] + "/tap_analytics_fleet.pth", "w").write(sys.argv[1] + "\n")' "$PWD"
VERSION=$("$VENV/bin/python" -c "from importlib.metadata import version; print(version('dagster'))")
echo "==> dagster $VERSION (newest allowed by '$WIDENED')"
if TAP_ANALYTICS_DAGSTER_VENV=$VENV .venv/bin/pytest -q -p no:cacheprovider \
    tests/test_tenants.py tests/test_helm_values.py tests/test_fleet_assets.py tests/test_fleet_cold.py \
    -k "not each_table_alone and not target_that_raises and not stale_account and not beside_dagster_dev"; then
  echo "dagster-next: dagster $VERSION PASSES the fleet's tests"
else
  echo "dagster-next: dagster $VERSION FAILS: see the named tests above (docs/ARCHITECTURE.md lists the private Dagster names orchestrate/ uses)"
  [ "${1:-}" = "--strict" ] && exit 1
fi
exit 0

#!/usr/bin/env bash
# Would the next singer-sdk release pass? Installs the newest release that a widened pin
# allows into .venv-sdk-next (the tap itself pins ~=0.54.9) and runs the SDK contract tests
# and the quick end-to-end suites against it, then prints one verdict line.
#   scripts/sdk_next.sh            report only (exit 0): CI runs it this way
#   scripts/sdk_next.sh --strict   exit 1 when the newest release fails
set -euo pipefail
cd "$(dirname "$0")/.."
WIDENED=${SDK_PIN:-"singer-sdk[msgspec]>=0.54.9,<0.56"}
VENV=.venv-sdk-next
export PIP_DISABLE_PIP_VERSION_CHECK=1
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
# the test tools from pyproject.toml, the SDK from the widened pin, the tap without its pin
mapfile -t TOOLS < <(python3 - <<'PY'
import tomllib
print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["test"]))
PY
)
"$VENV/bin/pip" install -q --upgrade "$WIDENED" "requests>=2.32" "${TOOLS[@]}"
"$VENV/bin/pip" install -q --no-deps -e .
VERSION=$("$VENV/bin/python" -c "from importlib.metadata import version; print(version('singer-sdk'))")
echo "==> singer-sdk $VERSION (newest allowed by '$WIDENED')"
if "$VENV/bin/pytest" -q -p no:cacheprovider tests/test_sdk_contract.py tests/test_sdk_standard.py \
    tests/test_e2e_cli.py tests/test_moving_api.py tests/test_concurrency.py \
    tests/test_selection.py; then
  echo "sdk-next: singer-sdk $VERSION PASSES the contract and end-to-end tests"
else
  echo "sdk-next: singer-sdk $VERSION FAILS: see the named tests above (tests/test_sdk_contract.py names what changed)"
  [ "${1:-}" = "--strict" ] && exit 1
fi
exit 0

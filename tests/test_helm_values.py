"""The Helm values (`deploy/k8s/values.yaml`) set the limits `fleet.sh` sets, under keys
the Dagster chart of the pinned release reads.

Helm is not installable here (no Debian package), so the chart is not rendered: `CHART`
below is what chart 1.13 reads of the sections we set (its values schema forbids other keys
there: a limit under a key it does not read fails the install or is dropped), and `render`
is what its templates write into `dagster.yaml` from them (`_concurrency.tpl`: only when
`concurrency.enabled`; camelCase keys become snake_case). The result must equal what
`orchestrate.fleet.instance_config` writes for `fleet.sh` and `scripts/dagster_dev.sh`.
"""

from __future__ import annotations

import json
import re
import subprocess
import typing as t

import yaml

from tests.pg import DAGSTER_BIN, ROOT

VALUES = ROOT / "deploy" / "k8s" / "values.yaml"
LIMIT = {"key": str, "value": {"applyLimitPerUniqueValue": bool}, "limit": int}
IMAGE = {"repository": str, "tag": str, "pullPolicy": str}
CHART = {  # the chart's top-level keys we use, and what it reads under the ones we check
    "dagster-user-deployments": None, "runLauncher": None, "postgresql": None,
    "concurrency": {"enabled": bool,
                    "pools": {"defaultLimit": int, "granularity": str,
                              "opGranularityRunBuffer": int},
                    "runs": {"maxConcurrentRuns": int, "tagConcurrencyLimits": [LIMIT]}},
    "dagsterWebserver": {"image": IMAGE, "volumes": None, "volumeMounts": None, "env": None},
    "dagsterDaemon": {
        "image": IMAGE, "volumes": None, "volumeMounts": None, "env": None,
        "runMonitoring": {"enabled": bool, "startTimeoutSeconds": int,
                          "cancelTimeoutSeconds": int, "maxResumeRunAttempts": int,
                          "pollIntervalSeconds": int, "freeSlotsAfterRunEndSeconds": int},
        "runRetries": {"enabled": bool, "maxRetries": int, "retryOnAssetOrOpFailure": bool},
        "runCoordinator": {"enabled": bool, "type": str, "config": {"queuedRunCoordinator": {
            "maxConcurrentRuns": int, "tagConcurrencyLimits": [LIMIT],
            "dequeueIntervalSeconds": int, "dequeueNumWorkers": int,
            "dequeueUseThreads": bool},
            "customRunCoordinator": {"module": str, "class": str, "config": dict}}}},
}


def unread(values: t.Any, schema: t.Any, where: str = "") -> list[str]:
    """The paths in `values` the chart does not read (or reads as another type)."""
    if schema is None:
        return []
    if isinstance(schema, list):
        return [p for i, item in enumerate(values or []) for p in unread(item, schema[0],
                                                                         f"{where}[{i}]")]
    if isinstance(schema, dict):
        if not isinstance(values, dict):
            return [where]
        return [p for key, value in values.items()
                for p in ([f"{where}.{key}"] if key not in schema else
                          unread(value, schema[key], f"{where}.{key}"))]
    return [] if isinstance(values, schema) else [where]


def snake(name: str) -> str:
    return re.sub(r"(?<=[a-z])([A-Z])", lambda m: "_" + m.group(1).lower(), name)


def render(values: dict) -> dict:
    """What the chart writes into dagster.yaml from these sections."""
    out: dict[str, t.Any] = {}
    concurrency = values.get("concurrency") or {}
    if concurrency.get("enabled"):
        out["concurrency"] = {
            "pools": {snake(k): v for k, v in (concurrency.get("pools") or {}).items()},
            "runs": {snake(k): v for k, v in (concurrency.get("runs") or {}).items()}}
    daemon = values.get("dagsterDaemon") or {}
    coordinator = daemon.get("runCoordinator") or {}
    if coordinator.get("enabled") and coordinator.get("type") == "CustomRunCoordinator":
        out["run_coordinator"] = coordinator["config"]["customRunCoordinator"]
    for section in ("runMonitoring", "runRetries"):
        if section in daemon:
            out[snake(section)] = {snake(k): v for k, v in daemon[section].items()}
    return out


def fleet_instance() -> dict:
    script = ("import json; from orchestrate.fleet import instance_config; "
              "print(json.dumps(instance_config(4, {})))")
    proc = subprocess.run([str(DAGSTER_BIN / "python"), "-c", script],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    return json.loads(proc.stdout)


def test_every_value_sits_under_a_key_the_chart_reads() -> None:
    values = yaml.safe_load(VALUES.read_text())
    assert unread(values, CHART) == []
    # a limit under a key of our own invention is found
    assert unread({"dagsterInstance": {"concurrency": {"pools": {"default_limit": 4}}}},
                  CHART) == [".dagsterInstance"]
    assert unread({"concurrency": {"pools": {"default_limit": 4}}},
                  CHART) == [".concurrency.pools.default_limit"]


def test_the_chart_writes_the_limits_fleet_sh_writes() -> None:
    rendered = render(yaml.safe_load(VALUES.read_text()))
    fleet = fleet_instance()
    assert rendered["concurrency"] == fleet["concurrency"]
    assert rendered["run_retries"] == {k: v for k, v in fleet["run_retries"].items()}
    assert rendered["run_monitoring"]["enabled"] is True
    assert rendered["run_monitoring"]["max_resume_run_attempts"] == 0
    # the coordinator that gives runs of the assets their account's tags (fleet.sh's is
    # polled each second, the chart's every 5)
    assert {k: v for k, v in rendered["run_coordinator"].items() if k != "config"} == {
        k: v for k, v in fleet["run_coordinator"].items() if k != "config"}
    # values that leave `enabled` out write no concurrency at all: no limit, no pool
    assert "concurrency" not in render({"concurrency": {"pools": {"defaultLimit": 4}}})


def pinned_dagster() -> str:
    requirements = (ROOT / "orchestrate" / "requirements.txt").read_text()
    return re.search(r"^dagster==(\S+)$", requirements, re.M).group(1)


def test_the_chart_and_the_image_are_pinned() -> None:
    """The chart's release is the Dagster release the image runs, in the values' install
    line and the docs'; the image's tag names what it was built from (a tag that never
    moves, as `IfNotPresent` pulls it once per node); dagster-k8s (K8sRunLauncher, the run
    pods' Secrets) is the release that pins that Dagster."""
    version = pinned_dagster()
    install = f"dagster/dagster --version {version}"
    assert install in VALUES.read_text()
    assert install in (ROOT / "docs" / "KUBERNETES.md").read_text()
    values = yaml.safe_load(VALUES.read_text())
    image = values["dagster-user-deployments"]["deployments"][0]["image"]
    assert re.fullmatch(r"git-[0-9a-f]{7,40}", image["tag"]), image["tag"]
    # the UI and the daemon load orchestrate.coordinator and the tenants file: same image
    for section in ("dagsterWebserver", "dagsterDaemon"):
        assert values[section]["image"] == image, section
        assert values[section]["volumeMounts"] == values["runLauncher"]["config"][
            "k8sRunLauncher"]["volumeMounts"], section
        assert f"--set {section}.image.tag=git-<commit>" in VALUES.read_text()
        assert f"--set {section}.image.tag=git-<commit>" in (
            ROOT / "docs" / "KUBERNETES.md").read_text()
    minor = version.split(".", 1)[1]  # dagster 1.13.27 <-> its libraries 0.29.27
    assert re.search(rf"^dagster-k8s==0\.\d+\.{re.escape(minor.split('.')[1])}$",
                     (ROOT / "orchestrate" / "requirements.txt").read_text(), re.M)


def test_the_image_runs_as_a_user_without_test_tools() -> None:
    dockerfile = (ROOT / "deploy" / "k8s" / "Dockerfile").read_text()
    users = re.findall(r"^USER (\S+)", dockerfile, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0"), users
    assert "scripts/setup.sh --image" in dockerfile
    # the chart's DAGSTER_HOME (its default dagsterHome), writable by that user
    home = yaml.safe_load(VALUES.read_text()).get("dagsterHome", "/opt/dagster/dagster_home")
    assert f"chown tap:tap {home}" in dockerfile and "--uid 10001" in dockerfile
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {"tests", "bench", ".venv", ".venv-*", ".meltano", ".env"} <= set(ignored)
    # --image makes no .venv (the tap's test tools): only Meltano's and Dagster's venvs
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert '[ "${1:-}" = "--image" ] && DAGSTER=yes TOOLS=no' in setup
    assert 'if [ "$TOOLS" = yes ] && [ ! -f .venv/.stamp-"$stamp" ]; then' in setup

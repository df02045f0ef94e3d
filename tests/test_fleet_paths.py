"""Every way a Dagster user starts an account's run gives it the account's tags: its API
host (the run queue's limit per host) and its own Kubernetes Secret, and no other's.

`dagster dev` (UI, daemon, code server) on fleet.sh's instance, with a code location that
adds the schedule and sensor a user would write for the assets (`tests/fleet_paths.py`).
Runs are started from the UI's GraphQL as the UI does (materializing a table of the asset
graph, the job's Launchpad, an asset backfill) and by the daemon (the shipped hourly
schedule ticking every minute here, the user's schedule and sensor, the backfill's runs).
The instance's limit per API host is 0, so a run that carries its host's tag stays queued
while one without it would start: every run must be queued, tagged with its account's
host and Secret. (`dagster asset materialize` runs in its own process without the queue:
its limit is the host slot each sync takes, tests/test_fleet_lock.py.)"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.pg import DAGSTER_BIN, ROOT, Cluster
from tests.test_fleet import fleet, fleet_env
from tests.test_fleet_cold import free_port, stop_group

pytestmark = [pytest.mark.postgres, pytest.mark.e2e]
PATH_TAG = "test/path"  # tests/fleet_paths.py's (its module imports Dagster)
HOSTS = {"path_a": "api-a.example.test", "path_b": "api-b.example.test"}
HOST_TAG, K8S_TAG, PARTITION = "tap_analytics/api_host", "dagster-k8s/config", "dagster/partition"
LOCATION = {"repositoryLocationName": "tests.fleet_paths", "repositoryName": "__repository__"}
TEAMS = {"path": ["tap_analytics", "teams"]}
OWN_K8S = {"container_config": {"resources": {"limits": {"memory": "2Gi"}}}}
LAUNCH = """mutation($p: ExecutionParams!) { launchPipelineExecution(executionParams: $p) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
  ... on RunConfigValidationInvalid { errors { message } } } }"""
BACKFILL = """mutation($p: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $p) {
  __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }"""
RUNS = """{ runsOrError { ... on Runs { results { runId status tags { key value } } } } }"""
# what each path's runs are known by: its own tag, or the schedule's name
PATHS = {"asset graph": 1, "job launchpad": 1, "asset backfill": 2, "user schedule": 1,
         "user sensor": 1, "every_tenant": 2}


def graphql(port: int, query: str, variables: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql", method="POST",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        body = json.loads(response.read())
    assert "errors" not in body, body
    return body["data"]


def secret(account: str) -> str:
    return "tap-analytics-" + account.replace("_", "-")


def path_of(tags: dict[str, str]) -> str:
    return tags.get(PATH_TAG) or tags.get("dagster/schedule_name", "?")


def test_every_path_of_starting_a_run_carries_its_accounts_tags(
        cluster: Cluster, tmp_path: Path) -> None:
    tenants = [{"id": ident, "schema": f"paths_{ident}", "secret": secret(ident),
                "settings": {"base_url": f"http://{host}", "api_key": "${PATHS_KEY}"}}
               for ident, host in HOSTS.items()]
    env = fleet_env(tmp_path, tenants, cluster, PATHS_KEY="paths-key-0x",
                    TAP_ANALYTICS_FLEET_SCHEDULE="* * * * *",
                    TAP_ANALYTICS_FLEET_SCHEDULE_RUNNING="true")
    registered = fleet(env, "--register")
    assert registered.returncode == 0, registered.stderr[-2000:]
    instance = Path(env["DAGSTER_HOME"]) / "dagster.yaml"
    config = yaml.safe_load(instance.read_text())
    config.pop("run_launcher")  # Dagster's own, as dagster_dev.sh and Kubernetes have
    for limit in config["concurrency"]["runs"]["tag_concurrency_limits"]:
        if limit["key"] == HOST_TAG:
            limit["limit"] = 0  # a run tagged with its host is held in the queue
    instance.write_text(yaml.safe_dump(config))
    port = free_port()
    log = tmp_path / "dev.log"
    with log.open("w") as out:
        dev = subprocess.Popen([str(DAGSTER_BIN / "dagster"), "dev", "-m", "tests.fleet_paths",
                                "-p", str(port), "-h", "127.0.0.1"], env=env, cwd=ROOT,
                               stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while True:  # the UI answers once the code location is loaded
            assert dev.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            try:
                if graphql(port, "{ version }")["version"]:
                    break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.5)
        launched = [graphql(port, LAUNCH, {"p": {
            "selector": {**LOCATION, "pipelineName": "__ASSET_JOB", "assetSelection": [TEAMS]},
            "executionMetadata": {"tags": [
                {"key": PARTITION, "value": "path_a"}, {"key": PATH_TAG, "value": "asset graph"},
                {"key": K8S_TAG, "value": json.dumps(OWN_K8S)}]}}}),
            graphql(port, LAUNCH, {"p": {
                "selector": {**LOCATION, "pipelineName": "sync_tenants"},
                "executionMetadata": {"tags": [
                    {"key": PARTITION, "value": "path_b"},
                    {"key": PATH_TAG, "value": "job launchpad"}]}}}),
            graphql(port, BACKFILL, {"p": {
                "assetSelection": [TEAMS], "partitionNames": list(HOSTS),
                "tags": [{"key": PATH_TAG, "value": "asset backfill"}]}})]
        assert [next(iter(r.values()))["__typename"] for r in launched] == [
            "LaunchRunSuccess", "LaunchRunSuccess", "LaunchBackfillSuccess"], launched
        deadline = time.monotonic() + 240  # the schedules tick at the next minute
        while True:
            runs = graphql(port, RUNS)["runsOrError"]["results"]
            found = [{tag["key"]: tag["value"] for tag in run["tags"]} | {
                "status": run["status"]} for run in runs]
            counts = {p: sum(path_of(tags) == p for tags in found) for p in PATHS}
            # a run the daemon made is NOT_STARTED until submitted (tagged, queued)
            if all(counts[p] >= n for p, n in PATHS.items()) and all(
                    tags["status"] != "NOT_STARTED" for tags in found):
                break
            assert dev.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, (counts, log.read_text()[-3000:])
            time.sleep(1)
    finally:
        stop_group(dev, log)
    for tags in found:
        account, where = tags[PARTITION], path_of(tags)
        assert tags["status"] == "QUEUED", (where, found)  # the host's limit held it
        assert tags[HOST_TAG] == HOSTS[account], (where, tags)
        k8s = json.loads(tags[K8S_TAG])
        assert k8s["container_config"]["env_from"] == [
            {"secret_ref": {"name": secret(account)}}], (where, tags)
        if where == "asset graph":  # the user's own pod settings stay
            assert k8s["container_config"]["resources"] == OWN_K8S["container_config"][
                "resources"]

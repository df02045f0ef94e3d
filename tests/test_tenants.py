"""The tenants file of the fleet: what it accepts, what it refuses (one line, no secret)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from orchestrate.tenants import EXAMPLE, ROOT, TenantError, load_tenants
from tests.pg import DAGSTER_BIN


def write(tmp_path: Path, tenants: list) -> Path:
    path = tmp_path / "tenants.yml"
    path.write_text(yaml.safe_dump({"tenants": tenants}))
    return path


def test_the_example_file_loads() -> None:
    tenants = load_tenants(EXAMPLE)
    assert [t.id for t in tenants] == ["acme", "globex"]
    assert [t.schema for t in tenants] == ["acme", "globex_analytics"]


def test_settings_become_the_environment_meltano_reads(tmp_path: Path) -> None:
    (tenant,) = load_tenants(write(tmp_path, [{"id": "acme", "settings": {
        "base_url": "https://x.example.com", "api_key": "${ACME_KEY}", "page_size": 50,
        "backoff_factor": 0.5, "resources": [{"name": "r", "endpoint": "/r"}]}}]))
    env = tenant.environment({"ACME_KEY": "k-1"})
    assert json.loads(env.pop("TAP_ANALYTICS_RESOURCES")) == [{"name": "r", "endpoint": "/r"}]
    assert env == {"TAP_ANALYTICS_BASE_URL": "https://x.example.com",
                   "TAP_ANALYTICS_API_KEY": "k-1", "TAP_ANALYTICS_PAGE_SIZE": "50",
                   "TAP_ANALYTICS_BACKOFF_FACTOR": "0.5"}
    with pytest.raises(TenantError, match="needs the environment variable ACME_KEY"):
        tenant.environment({})


def test_the_api_host_and_the_variables_a_tenant_names(tmp_path: Path) -> None:
    """Runs are limited per API host; every variable a tenant names stays out of the other
    accounts' runs."""
    acme, globex, initech = load_tenants(write(tmp_path, [
        {"id": "acme", "settings": {"base_url": "https://API.vendor.com:8443/v1",
                                    "api_key": "${ACME_KEY}"}},
        {"id": "globex", "settings": {"base_url": "${GLOBEX_URL}", "auth_type": "oauth2",
                                      "client_secret": "${GLOBEX_SECRET}"}},
        {"id": "initech", "settings": {}}]))
    assert acme.api_host({}) == "api.vendor.com"
    assert globex.api_host({"GLOBEX_URL": "http://eu.vendor.com/"}) == "eu.vendor.com"
    assert initech.api_host({}) == "api.example.com"  # the plugin's default base_url
    assert acme.references() == {"ACME_KEY"}
    assert globex.references() == {"GLOBEX_URL", "GLOBEX_SECRET"}


@pytest.mark.parametrize(("tenants", "fragment"), [
    ([{"id": "acme", "settings": {"api_key": "s3cr3t-inline"}}],
     "setting 'api_key' is a secret written inline"),
    ([{"id": "acme", "settings": {"client_secret": "x${Y}"}}], "is a secret written inline"),
    ([{"id": "Acme", "settings": {}}], "'id' must match [a-z0-9_]+"),
    ([{"id": "a", "settings": {}}, {"id": "a", "settings": {}}], "tenant id 'a' appears twice"),
    ([{"id": "a", "schema": "s"}, {"id": "b", "schema": "s"}], "schema 's' is used by two"),
    ([{"id": "a", "settings": {"page_sise": 5}}], "'page_sise' is not a tap-analytics setting"),
    ([{"id": "a", "setings": {}}], "unknown key 'setings'"),
    ([{"id": "a", "schema": "bad-name"}], "'schema' must match"),
    ([{"id": "a", "secret": "Keys_Of_A"}], "'secret' must be the name of a Kubernetes Secret"),
])
def test_bad_entries_are_refused_in_one_line(tmp_path: Path, tenants: list, fragment: str
                                            ) -> None:
    with pytest.raises(TenantError) as info:
        load_tenants(write(tmp_path, tenants))
    message = str(info.value)
    assert fragment in message and "\n" not in message
    assert "s3cr3t-inline" not in message


def test_a_missing_or_shapeless_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(TenantError, match="cannot be read"):
        load_tenants(tmp_path / "none.yml")
    (tmp_path / "t.yml").write_text("tenants: 3\n")
    with pytest.raises(TenantError, match="needs a list under 'tenants'"):
        load_tenants(tmp_path / "t.yml")


SENSOR = """
from dagster import DagsterInstance, build_sensor_context
from orchestrate.definitions import TENANTS, tenants_file_sensor
with DagsterInstance.ephemeral() as instance:
    instance.add_dynamic_partitions(TENANTS.name, ["acme", "gone"])
    result = tenants_file_sensor(build_sensor_context(instance=instance))
    for request in result.dynamic_partitions_requests:
        print(type(request).__name__, ",".join(sorted(request.partition_keys)))
"""


def test_accounts_added_or_removed_in_the_file_become_or_stop_being_partitions(
        tmp_path: Path) -> None:
    """The sensor keeps the asset's partitions equal to the tenants file: no deploy."""
    python = DAGSTER_BIN / "python"
    if not python.exists():
        pytest.fail("Dagster is not installed (run scripts/setup.sh)")
    path = write(tmp_path, [{"id": "acme"}, {"id": "newco"}])
    proc = subprocess.run([str(python), "-c", SENSOR], cwd=ROOT, capture_output=True,
                          text=True, timeout=120,
                          env={**os.environ, "TAP_ANALYTICS_TENANTS": str(path)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split("\n")[:2] == ["AddDynamicPartitionsRequest newco",
                                            "DeleteDynamicPartitionsRequest gone"]


def test_a_tap_setting_in_the_projects_env_file_is_refused(tmp_path: Path) -> None:
    """Meltano reads `.env` into every run: a key there would reach every account."""
    python = DAGSTER_BIN / "python"
    if not python.exists():
        pytest.fail("Dagster is not installed (run scripts/setup.sh)")
    (tmp_path / ".env").write_text("# TAP_ANALYTICS_PAGE_SIZE=5\nTARGET_POSTGRES_PORT=5432\n")
    check = ("import sys; from pathlib import Path; "
             "from orchestrate.run_tenant import refuse_shared_settings as r; "
             "r(Path(sys.argv[1])); print('ok')")
    proc = subprocess.run([str(python), "-c", check, str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "ok", proc.stderr[-1000:]
    (tmp_path / ".env").write_text("TAP_ANALYTICS_API_KEY=a-key-of-one-account\n")
    proc = subprocess.run([str(python), "-c", check, str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "the project's .env sets TAP_ANALYTICS_API_KEY" in proc.stderr
    assert "a-key-of-one-account" not in proc.stderr


def test_the_file_is_parsed_once_per_change_whatever_is_asked(tmp_path: Path,
                                                              monkeypatch) -> None:
    """A tick asks for each account's tags: one parse of the file serves them all, and a
    changed file is read again."""
    from orchestrate import tenants as module

    parses = []
    real = module.yaml.load
    monkeypatch.setattr(module.yaml, "load", lambda *a, **k: parses.append(1) or real(*a, **k))
    path = write(tmp_path, [{"id": f"a{i}"} for i in range(200)])
    assert all(module.tenant_by_id(f"a{i}", path).id == f"a{i}" for i in range(200))
    assert len(load_tenants(path)) == 200 and module.tenant_by_id("nobody", path) is None
    assert len(parses) == 1
    path.write_text(path.read_text().replace("a199", "renamed"))
    assert module.tenant_by_id("renamed", path) is not None
    assert module.tenant_by_id("a199", path) is None
    assert len(parses) == 2


SCHEDULE = """
import datetime
from dagster import build_schedule_context, instance_for_test
from orchestrate.definitions import TENANTS, defs, every_tenant
with instance_for_test() as instance:
    instance.add_dynamic_partitions(TENANTS.name, ["acme", "globex"])
    def one_by_one(*args):
        raise AssertionError("a partition checked with a query of its own")
    instance.has_dynamic_partition = one_by_one
    context = build_schedule_context(instance=instance, repository_def=defs.get_repository_def(),
                                     scheduled_execution_time=datetime.datetime(2026, 12, 4))
    for request in every_tenant.evaluate_tick(context).run_requests:
        print(request.partition_key, sorted(request.tags.items()))
"""


def test_the_schedule_asks_every_account_in_one_call_with_its_tags(tmp_path: Path) -> None:
    """Only registered accounts are requested, each with the tags Dagster gives a partition
    of the job (partition, partition set), its API host and, where it names one, its
    Kubernetes Secret for its run pod alone; no query per account."""
    python = DAGSTER_BIN / "python"
    if not python.exists():
        pytest.fail("Dagster is not installed (run scripts/setup.sh)")
    path = write(tmp_path, [
        {"id": "acme", "secret": "tap-analytics-acme",
         "settings": {"base_url": "https://API.one.example/v1"}},
        {"id": "globex", "settings": {"base_url": "${GLOBEX_URL}"}},
        {"id": "unregistered"}])
    proc = subprocess.run([str(python), "-c", SCHEDULE], cwd=ROOT, capture_output=True,
                          text=True, timeout=120,
                          env={**os.environ, "TAP_ANALYTICS_TENANTS": str(path),
                               "GLOBEX_URL": "http://127.0.0.9:8080"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines() == [
        "acme " + str(sorted({"dagster/partition": "acme",
                              "dagster/partition_set": "sync_tenants_partition_set",
                              "dagster-k8s/config": json.dumps({"container_config": {
                                  "env_from": [{"secret_ref": {"name": "tap-analytics-acme"}}]}}),
                              "dagster/schedule_name": "every_tenant",
                              "tap_analytics/api_host": "api.one.example"}.items())),
        "globex " + str(sorted({"dagster/partition": "globex",
                                "dagster/partition_set": "sync_tenants_partition_set",
                                "dagster/schedule_name": "every_tenant",
                                "tap_analytics/api_host": "127.0.0.9"}.items()))]


def test_a_run_gets_what_it_lacks_of_its_accounts_tags(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """What orchestrate.coordinator adds to a run at submission (tests/test_fleet_paths.py
    starts runs from every path): the account's host and Secret; a run's own
    `dagster-k8s/config` keeps what it says; an unknown account adds nothing."""
    from orchestrate.run_tags import missing_tags
    monkeypatch.setenv("TAP_ANALYTICS_TENANTS", str(write(tmp_path, [
        {"id": "acme", "secret": "acme-key", "settings": {"base_url": "https://API.acme.test/v1"}},
        {"id": "globex", "settings": {}}])))
    env_from = [{"secret_ref": {"name": "acme-key"}}]
    assert missing_tags({"dagster/partition": "acme"}) == {
        "tap_analytics/api_host": "api.acme.test",
        "dagster-k8s/config": json.dumps({"container_config": {"env_from": env_from}})}
    own = {"container_config": {"resources": {"limits": {"memory": "2Gi"}}},
           "pod_spec_config": {"node_selector": {"pool": "etl"}}}
    merged = missing_tags({"dagster/partition": "acme", "tap_analytics/api_host": "x",
                           "dagster-k8s/config": json.dumps(own)})
    assert json.loads(merged.pop("dagster-k8s/config")) == {
        "container_config": {**own["container_config"], "env_from": env_from},
        "pod_spec_config": own["pod_spec_config"]}
    assert merged == {}  # a host the run names is its own choice
    complete = {"dagster/partition": "acme", **missing_tags({"dagster/partition": "acme"})}
    assert missing_tags(complete) == {}
    assert list(missing_tags({"dagster/partition": "globex"})) == ["tap_analytics/api_host"]
    assert missing_tags({"dagster/partition": "initech"}) == {}
    assert missing_tags({}) == {}
    monkeypatch.setenv("TAP_ANALYTICS_TENANTS", str(tmp_path / "gone.yml"))
    with pytest.raises(TenantError, match=r"gone\.yml: cannot be read"):
        missing_tags({"dagster/partition": "acme"})  # the coordinator says so in one line

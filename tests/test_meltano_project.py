"""Adoptable outside this repository: a fresh Meltano project in a temp directory adds the tap
from its plugin definition, lists streams before any key is set, takes fractional numbers
through `meltano config set`, and runs `meltano run tap-analytics target-postgres`."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from scripts.plugin_definition import render
from tests.helpers import OUTPUTS, FakeServer
from tests.pg import MELTANO, ROOT, Cluster
from tests.test_postgres import assert_tables_equal_server

pytestmark = [pytest.mark.postgres, pytest.mark.e2e]


def meltano(project: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(MELTANO), *args], cwd=project, env=env, capture_output=True,
                          text=True, timeout=900)
    OUTPUTS.extend([proc.stdout, proc.stderr])
    assert proc.returncode == 0, f"meltano {' '.join(args)}:\n{proc.stderr[-4000:]}"
    return proc


def test_fresh_project_adds_the_tap_from_its_definition_and_runs(
        server: FakeServer, cluster: Cluster, tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    loaders = [p for p in yaml.safe_load((ROOT / "meltano.yml").read_text())["plugins"]
               ["loaders"] if p["name"] == "target-postgres"]
    (project / "meltano.yml").write_text(yaml.safe_dump({
        "project_id": "fresh-analytics-project", "default_environment": "dev",
        "environments": [{"name": "dev"}], "send_anonymous_usage_stats": False,
        "plugins": {"loaders": loaders}}, sort_keys=False))
    # the repository's definition, installing this checkout as a package (not editable)
    reference = tmp_path / "tap-analytics.yml"
    reference.write_text(render(pip_url=str(ROOT)))
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("TAP_ANALYTICS_", "TARGET_POSTGRES_", "MELTANO_"))}
    env |= {"MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
            "MELTANO_CLI_DISABLE_VERSION_CHECK": "1",
            "MELTANO_DATABASE_URI": f"sqlite:///{tmp_path}/meltano.db"}

    meltano(project, env, "add", "--plugin-type", "extractor", "tap-analytics",
            "--from-ref", str(reference))
    meltano(project, env, "install", "--plugin-type", "loader", "target-postgres")
    # before any credential: discovery lists every stream (the declared catalog)
    listed = meltano(project, env, "select", "tap-analytics", "--list", "--all").stdout
    assert "segment_people.segment_id" in listed and "conversations.updated_at" in listed

    for name, value in (("base_url", server.url), ("backoff_factor", "0.5"),
                        ("request_timeout", "30.5"), ("max_requests_per_second", "500.5"),
                        ("page_size", "40")):
        meltano(project, env, "config", "set", "tap-analytics", name, value)
    stored = yaml.safe_load((project / "meltano.yml").read_text())
    config = stored["plugins"]["extractors"][0]["config"]
    # kept as text (the plugin declares them `string`): the tap reads the number from it
    assert float(config["backoff_factor"]) == 0.5 and float(config["request_timeout"]) == 30.5

    run_env = {**env, "TAP_ANALYTICS_API_KEY": server.api.api_key,
               # a fractional number from the environment: Meltano 4.4.1 crashed on it
               # while the plugin declared it `decimal`
               "TAP_ANALYTICS_MAX_REQUESTS_PER_SECOND": "400.5",
               "TARGET_POSTGRES_HOST": "127.0.0.1", "TARGET_POSTGRES_PORT": str(cluster.port),
               "TARGET_POSTGRES_USER": cluster.user, "TARGET_POSTGRES_PASSWORD": "unused",
               "TARGET_POSTGRES_DATABASE": cluster.database,
               "TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA": "fresh"}
    meltano(project, run_env, "run", "tap-analytics", "target-postgres")
    assert_tables_equal_server(cluster, "fresh", server)
    limits = {r["query"].get("limit") for r in server.requests() if "offset" in r["query"]}
    assert limits == {"40"}
